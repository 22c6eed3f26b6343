//! The receives of a FIFO queue's store: group by group, and retried attempts.

use std::time::Duration;

use tokio::time::Instant;

use super::{HandedOut, State, Store, StoredMessage, delivery, hand_out};
use crate::backend::embedded::fifo::Handed;
use crate::backend::{MAX_VISIBILITY, ReceiveAttemptId};

impl Store {
    /// [`receive`](Store::receive) on a FIFO queue.
    ///
    /// A receive with the `attempt` id of one made in the last 5 minutes, whose messages
    /// are all still in flight and untouched (not deleted, no visibility change, not
    /// lapsed), hands those out again: the same receipt handles and receive counts,
    /// their visibility timeout started again. Otherwise it serves the groups that are
    /// not blocked, in the order they became ready.
    #[allow(clippy::too_many_arguments)] // The arguments of `receive`, passed on.
    pub(super) fn receive_fifo(
        &mut self,
        now: Instant,
        now_ms: u64,
        max: usize,
        visibility: Duration,
        max_receive_count: Option<u32>,
        attempt: Option<ReceiveAttemptId>,
        out: &mut Vec<HandedOut>,
        dead_letters: &mut Vec<StoredMessage>,
    ) -> bool {
        self.promote(now);
        let replayed = attempt.and_then(|id| self.replay(now, id, visibility, out));
        let wake = match replayed {
            Some(wake) => wake,
            None => {
                let wake = self.serve_groups(
                    now,
                    now_ms,
                    max,
                    visibility,
                    max_receive_count,
                    out,
                    dead_letters,
                );
                if let (Some(id), Some(fifo)) = (attempt, self.fifo.as_mut())
                    && !out.is_empty()
                {
                    let handed = out
                        .iter()
                        .map(|delivery| Handed {
                            index: delivery.index,
                            token: delivery.token,
                            // A receive stamps a message with its token.
                            stamp: delivery.token,
                        })
                        .collect();
                    fifo.attempts.record(now, id, handed);
                }
                wake
            }
        };
        self.stats.messages_received += out.len() as u64;
        wake
    }

    /// Serves each group that is not blocked as far as it goes: its visible messages in
    /// order, up to its first delayed one, before the next group. A message received
    /// `max_receive_count` times goes to `dead_letters` and no longer holds its group
    /// back.
    #[allow(clippy::too_many_arguments)] // The arguments of `receive`, passed on.
    fn serve_groups(
        &mut self,
        now: Instant,
        now_ms: u64,
        max: usize,
        visibility: Duration,
        max_receive_count: Option<u32>,
        out: &mut Vec<HandedOut>,
        dead_letters: &mut Vec<StoredMessage>,
    ) -> bool {
        let mut wake = false;
        while out.len() < max {
            let Some((key, mut group)) =
                self.fifo.as_mut().and_then(|fifo| fifo.groups.take_ready())
            else {
                break;
            };
            let mut index = 0;
            while out.len() < max {
                let Some(&entry) = group.entries.get(index) else {
                    break;
                };
                let Some(message) = self
                    .entries
                    .get_mut(entry.index)
                    .and_then(Option::as_mut)
                    .filter(|message| {
                        message
                            .fifo
                            .as_ref()
                            .is_some_and(|tag| tag.sequence == entry.sequence)
                    })
                else {
                    // Deleted or dead-lettered: the entry goes once it reaches the front.
                    if index == 0 {
                        group.entries.pop_front();
                    } else {
                        index += 1;
                    }
                    continue;
                };
                if !matches!(message.state, State::Visible) {
                    // A delayed message holds back the rest of its group.
                    break;
                }
                if max_receive_count.is_some_and(|max| message.receive_count >= max) {
                    if let Some(message) = self.remove(entry.index) {
                        self.counts.visible -= 1;
                        self.stats.messages_dead_lettered += 1;
                        dead_letters.push(message);
                        group.lost_visible();
                    }
                    continue;
                }
                self.last_stamp += 1;
                let token = self.last_stamp;
                hand_out(message, token, now, now_ms);
                out.push(delivery(message, entry.index, token));
                group.handed_out();
                self.counts.visible -= 1;
                self.counts.not_visible += 1;
                wake |= self.schedule(now + visibility, token, entry.index);
                index += 1;
            }
            if let Some(fifo) = self.fifo.as_mut() {
                fifo.groups.put_back(key, group);
            }
        }
        wake
    }

    /// Hands out again what the receive with attempt id `id` handed out, if every one
    /// of its messages is still as that receive left it; `None` when there is no such
    /// receive or one of them changed (the attempt is forgotten then).
    fn replay(
        &mut self,
        now: Instant,
        id: ReceiveAttemptId,
        visibility: Duration,
        out: &mut Vec<HandedOut>,
    ) -> Option<bool> {
        let (at, mut handed) = self.fifo.as_mut()?.attempts.take(now, id)?;
        // Every change of state gives a message a new stamp, and stamps never repeat.
        let untouched = handed.iter().all(|handed| {
            self.entries
                .get(handed.index)
                .and_then(Option::as_ref)
                .is_some_and(|message| message.stamp == handed.stamp)
        });
        if !untouched {
            return None;
        }
        let mut wake = false;
        for handed in &mut handed {
            let stamp = self.next_stamp();
            let Some(message) = self.entries.get_mut(handed.index).and_then(Option::as_mut) else {
                continue;
            };
            message.stamp = stamp;
            handed.stamp = stamp;
            let received_at = message.receipt.map_or(now, |receipt| receipt.at);
            let room = MAX_VISIBILITY.saturating_sub(now.saturating_duration_since(received_at));
            out.push(delivery(message, handed.index, handed.token));
            wake |= self.schedule(now + visibility.min(room), stamp, handed.index);
        }
        self.stats.replayed_receives += 1;
        if let Some(fifo) = self.fifo.as_mut() {
            fifo.attempts.restore(id, at, handed);
        }
        Some(wake)
    }
}
