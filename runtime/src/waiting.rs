//! Counting the tasks that wait for a wake-up, so the side that wakes them can skip the
//! notify (and its lock) while nobody waits.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts one waiter for as long as it lives, also when the waiting future is dropped.
///
/// Registering is `SeqCst`, so a waker that changes state and then reads the count
/// (`SeqCst` too, or under a lock the waiter takes after registering) either sees this
/// waiter or is seen by the waiter's next look at the state.
pub(crate) struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    pub(crate) fn register(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
