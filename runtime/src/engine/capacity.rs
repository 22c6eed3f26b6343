//! Slots: the bound on handlers in flight.
//!
//! A counter of free slots rather than a `tokio::sync::Semaphore`: pollers take several
//! slots at once and message tasks hand theirs back with one atomic add, so the hot path
//! takes no lock. At most one poller waits for slots at a time (pollers take turns), as
//! do the FIFO group tasks that got no slot from their receive, and shutdown waits for
//! every slot to come back; a slot handed back wakes them all to look. A group task
//! waiting for a slot goes first: no poller takes one while it waits.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::waiting::Waiting;

#[derive(Debug)]
pub(crate) struct Capacity {
    total: usize,
    free: AtomicUsize,
    /// Slots handed to messages (the rest of the taken ones belong to pollers waiting on
    /// a receive).
    in_tasks: AtomicUsize,
    /// Tasks waiting in `take` or `all_returned`: a slot handed back wakes them only then,
    /// so the hot path of a busy worker is one atomic add.
    waiting: AtomicUsize,
    /// FIFO group tasks waiting for a slot ([`take_for_group`](Self::take_for_group)):
    /// while any does, pollers take none, so the groups a receive brought start before
    /// another receive brings more.
    groups_waiting: AtomicUsize,
    returned: Notify,
}

impl Capacity {
    pub(crate) fn new(total: usize) -> Self {
        Self {
            total,
            free: AtomicUsize::new(total),
            in_tasks: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            groups_waiting: AtomicUsize::new(0),
            returned: Notify::new(),
        }
    }

    /// Takes up to `max` free slots for a receive without waiting; returns how many it
    /// took: none while a group task waits for one.
    pub(crate) fn try_take(&self, max: usize) -> usize {
        if self.groups_waiting.load(Ordering::SeqCst) > 0 {
            return 0;
        }
        self.take_free(max)
    }

    fn take_free(&self, max: usize) -> usize {
        let mut free = self.free.load(Ordering::SeqCst);
        loop {
            let take = free.min(max);
            if take == 0 {
                return 0;
            }
            match self.free.compare_exchange_weak(
                free,
                free - take,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return take,
                Err(actual) => free = actual,
            }
        }
    }

    /// Takes between 1 and `max` slots for a receive, waiting until at least one is free
    /// and no group task waits for one.
    pub(crate) async fn take(&self, max: usize) -> usize {
        let taken = self.try_take(max);
        if taken > 0 {
            return taken;
        }
        self.wait_until(|| self.try_take(max)).await
    }

    /// Takes one slot for a FIFO group task, before any poller takes one.
    pub(crate) async fn take_for_group(&self) {
        let _waiting = GroupWaiting::register(self);
        self.wait_until(|| self.take_free(1)).await;
    }

    /// Waits until `ready` returns non-zero; re-checks after every hand-back.
    async fn wait_until(&self, ready: impl Fn() -> usize) -> usize {
        let _waiting = Waiting::register(&self.waiting);
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            // Registered before the check, so a slot handed back in between wakes us.
            returned.as_mut().enable();
            let result = ready();
            if result > 0 {
                return result;
            }
            returned.await;
        }
    }

    /// Hands `n` slots back.
    pub(crate) fn give_back(&self, n: usize) {
        if n > 0 {
            self.free.fetch_add(n, Ordering::SeqCst);
            if self.waiting.load(Ordering::SeqCst) > 0 {
                self.returned.notify_waiters();
            }
        }
    }

    /// Slots taken and not handed back.
    pub(crate) fn in_use(&self) -> usize {
        self.total - self.free.load(Ordering::SeqCst)
    }

    /// Hands `n` taken slots to messages: each comes back through a [`Slot`].
    pub(crate) fn hand_to_messages(&self, n: usize) {
        self.in_tasks.fetch_add(n, Ordering::Relaxed);
    }

    /// One message handed to a task that keeps its slot (a [`GroupSlot`]) is settled.
    pub(crate) fn message_settled(&self) {
        self.in_tasks.fetch_sub(1, Ordering::Relaxed);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.returned.notify_waiters();
        }
    }

    /// Messages handed to tasks and not yet settled. A long poll on an idle queue holds slots but no message,
    /// so this is not [`in_use`](Self::in_use).
    pub(crate) fn messages_in_tasks(&self) -> usize {
        self.in_tasks.load(Ordering::Relaxed)
    }

    /// Resolves once at most `limit` messages are in tasks.
    pub(crate) async fn in_tasks_at_most(&self, limit: usize) {
        self.wait_until(|| usize::from(self.messages_in_tasks() <= limit))
            .await;
    }

    /// Resolves once no message is being handled (every slot handed to a message came
    /// back), while pollers may still hold theirs. Only one task may wait here.
    pub(crate) async fn messages_settled(&self) {
        self.wait_until(|| usize::from(self.messages_in_tasks() == 0))
            .await;
    }

    /// Resolves once every slot is back. Only one task may wait here, and only once no
    /// poller takes slots any more.
    pub(crate) async fn all_returned(&self) {
        self.wait_until(|| usize::from(self.in_use() == 0)).await;
    }
}

/// Counts a group task waiting for a slot; when the last stops waiting, the pollers
/// that wait for slots look again.
struct GroupWaiting<'a>(&'a Capacity);

impl<'a> GroupWaiting<'a> {
    fn register(capacity: &'a Capacity) -> Self {
        capacity.groups_waiting.fetch_add(1, Ordering::SeqCst);
        Self(capacity)
    }
}

impl Drop for GroupWaiting<'_> {
    fn drop(&mut self) {
        let capacity = self.0;
        if capacity.groups_waiting.fetch_sub(1, Ordering::SeqCst) == 1
            && capacity.waiting.load(Ordering::SeqCst) > 0
        {
            capacity.returned.notify_waiters();
        }
    }
}

/// A slot kept by a task that runs several messages one after another (a FIFO group),
/// handed back when the task ends. Each of its messages is settled with
/// [`Capacity::message_settled`].
#[derive(Debug)]
pub(crate) struct GroupSlot<'a>(pub(crate) &'a Capacity);

impl Drop for GroupSlot<'_> {
    fn drop(&mut self) {
        self.0.give_back(1);
    }
}

/// One message's slot, handed back when the message task is done with it.
#[derive(Debug)]
pub(crate) struct Slot<'a>(pub(crate) &'a Capacity);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.in_tasks.fetch_sub(1, Ordering::Relaxed);
        self.0.give_back(1);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn takes_no_more_than_is_free() {
        let capacity = Capacity::new(7);
        assert_eq!(capacity.try_take(10), 7);
        assert_eq!(capacity.try_take(1), 0);
        capacity.give_back(3);
        assert_eq!(capacity.try_take(2), 2);
        assert_eq!(capacity.in_use(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_taker_wakes_when_a_slot_comes_back() {
        let capacity = Arc::new(Capacity::new(1));
        assert_eq!(capacity.try_take(1), 1);
        let waiter = tokio::spawn({
            let capacity = Arc::clone(&capacity);
            async move { capacity.take(5).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        drop(Slot(&capacity));
        assert_eq!(waiter.await.expect("waiter"), 1);

        let all = tokio::spawn({
            let capacity = Arc::clone(&capacity);
            async move { capacity.all_returned().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!all.is_finished(), "one slot is still out");
        capacity.give_back(1);
        all.await.expect("all returned");
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_waiting_for_a_slot_gets_the_next_one_before_a_poller() {
        let capacity = Arc::new(Capacity::new(1));
        assert_eq!(capacity.try_take(1), 1);
        // The poller waits first.
        let poller = tokio::spawn({
            let capacity = Arc::clone(&capacity);
            async move { capacity.take(1).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let group = tokio::spawn({
            let capacity = Arc::clone(&capacity);
            async move { capacity.take_for_group().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        capacity.give_back(1);
        group.await.expect("the group took the slot");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!poller.is_finished(), "the group took the one slot");
        assert_eq!(capacity.try_take(1), 0, "none while the slot is out");
        capacity.give_back(1);
        assert_eq!(poller.await.expect("poller"), 1);
    }
}
