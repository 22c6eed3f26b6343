//! The chaos run's verifier: from what was sent, the workers' event records, the signals
//! the run sent, and what the dead-letter queue and the queue hold at the end, the
//! figures of the run's table. A pure function of its inputs, so each definition is
//! tested on hand-made records.
//!
//! The figures, precisely (a *message* is a body; every body the producer sends is
//! unique; a *receive* is a `start` record, written when a handler starts, which is
//! when its message was received since a worker receives only what it can start):
//!
//! - **sent**: messages the queue accepted from the producer, poison ones included.
//! - **handled**: messages other than poison that some handler finished with success
//!   (a `done` record).
//! - **lost** (must be 0): sent messages with no `done` record that are neither in the
//!   dead-letter queue nor left in the queue at the end.
//! - **duplicates**: successful handler runs beyond each message's first: at-least-once
//!   delivery at work (a worker killed between a handler's success and its delete, or a
//!   delete that failed).
//! - **dead-lettered**: messages in the dead-letter queue at the end; every one should
//!   be poison and every poison message should be there (`maxReceiveCount` failures).
//! - **stranded after SIGTERM exits** (must be 0): a worker that exits after SIGTERM
//!   (it writes an `exit` record once `Worker::run` has returned) must release every
//!   message whose handler it had started and not finished. Such a message is
//!   *held at the exit*; it is *stranded* if no worker starts it again within the
//!   strand window (a few seconds, far below the visibility timeout) of the exit —
//!   unless it was held at its `maxReceiveCount`-th receive and is in the dead-letter
//!   queue: then its next receive moved it there (untimed, counted apart), or its next
//!   recorded receive skips a count and comes a visibility timeout after a moment at
//!   which another worker was SIGKILLed (−0.5 s to +1 s): then that worker took it with
//!   a receive that reached no handler (counted apart). The
//!   producer is paced below the workers' capacity, so a released message is received
//!   again within about one poll; one left invisible comes back only when its visibility
//!   timeout (extended by heartbeats) runs out, well past the window.
//! - **longest invisible after SIGKILL**: for each message whose latest receive before a
//!   SIGKILL was by the killed worker and whose next receive reached a handler (its
//!   receive count is the next number), the time from the SIGKILL to that next receive;
//!   the longest. A message whose next receive reached no handler (say, a receive cut
//!   off by another SIGKILL, after which it waits out another visibility timeout) is
//!   counted apart, untimed: when that receive happened is not recorded. Nothing releases such a message,
//!   so it waits out its visibility timeout counted from the last receive or heartbeat
//!   before the kill: bounded by the visibility timeout plus one poll.
//!
//! - **receives without a handler** (reported, not judged): a recorded receive whose
//!   receive count skips one or more numbers after the message's previous record: the
//!   skipped receives reached no handler (received during a shutdown and released
//!   unstarted, or cut off by a SIGKILL; the proxy answers its faults without
//!   forwarding, so a faulted receive takes no message). With
//!   them, the longest time from the message's previous record (its send, or its
//!   previous handler's start or end) to the receive that reached a handler: about a
//!   poll for a release, a visibility timeout for a receive cut off by a SIGKILL; longer
//!   would mean a receive in transit was stranded.
//!
//! Caveats stated rather than hidden: a message received during shutdown and released
//! unstarted leaves no record (the engine releases it before any handler sees it), so
//! stranding of such a message shows only in the receives without a handler, not in
//! the stranded figure; poison handlers are short (well inside the grace period), so none is held at a
//! SIGTERM exit; pids are assumed not to be reused within a run.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// A FIFO run's message: its group and its place in the group's send order, from a
/// body `cN.gG:…` or `pN.gG:…` (N the send index, G the group); `None` for others.
pub fn fifo_place(body: &str) -> Option<(&str, u64)> {
    let name = body.split(':').next()?;
    let (index, group) = name.split_once(".g")?;
    let index = index.strip_prefix(['c', 'p'])?.parse().ok()?;
    Some((group, index))
}

/// One line of a worker's event log (`SPOTQ_EVENTS_FORMAT=json`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Event {
    /// `ready`, `start`, `done`, `fail`, `exit` (or `listening`).
    pub event: String,
    /// The message body (empty for `ready` and `exit`).
    #[serde(default)]
    pub body: String,
    /// The worker's pid.
    pub pid: u32,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The message's `ApproximateReceiveCount` at this receive.
    #[serde(default)]
    pub receive: Option<u32>,
}

/// The two signals the run sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Signal {
    /// Graceful stop: the worker releases what it holds and exits.
    Term,
    /// No goodbye: what the worker holds waits out its visibility timeout.
    Kill,
}

/// A signal the run sent to a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignalSent {
    /// The worker's pid.
    pub pid: u32,
    /// Which signal.
    pub signal: Signal,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Everything the verifier reads.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Bodies the queue accepted.
    pub sent: BTreeSet<String>,
    /// When each was accepted, ms since the Unix epoch.
    pub sent_at: HashMap<String, u64>,
    /// The poison ones among them (their handler always fails).
    pub poison: BTreeSet<String>,
    /// Every worker's event records.
    pub events: Vec<Event>,
    /// The signals the run sent.
    pub signals: Vec<SignalSent>,
    /// Bodies found in the dead-letter queue at the end.
    pub dead_lettered: Vec<String>,
    /// Bodies found in the queue at the end.
    pub left: Vec<String>,
    /// How long after a SIGTERM exit a held message must be received again.
    pub strand_window_ms: u64,
    /// The redrive policy's `maxReceiveCount`.
    pub max_receive_count: u32,
    /// The queue's visibility timeout, in ms.
    pub visibility_timeout_ms: u64,
    /// A FIFO run: bodies name their group and place ([`fifo_place`]).
    pub fifo: bool,
}

/// The figures of the table (see the module docs for each definition).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// Messages sent.
    pub sent: usize,
    /// Poison messages among them.
    pub poison: usize,
    /// Non-poison messages handled with success at least once.
    pub handled: usize,
    /// Messages neither handled, dead-lettered nor left in the queue.
    pub lost: usize,
    /// Successful handler runs beyond each message's first.
    pub duplicates: usize,
    /// Messages in the dead-letter queue.
    pub dead_lettered: usize,
    /// Of those, messages that were not poison.
    pub dead_lettered_not_poison: usize,
    /// Messages still in the queue at the end.
    pub left_in_queue: usize,
    /// Handler starts (receives that reached a handler).
    pub receives: usize,
    /// Receives that reached no handler (skipped receive counts).
    pub receives_without_handler: usize,
    /// The longest time from a message's previous record to a receive that reached a
    /// handler after receives that did not, in ms.
    pub longest_return_after_unhandled_ms: u64,
    /// Worker processes that got as far as `ready`.
    pub workers_started: usize,
    /// SIGTERMs the run sent.
    pub sigterms_sent: usize,
    /// SIGKILLs the run sent.
    pub sigkills_sent: usize,
    /// Workers that exited after SIGTERM (the run's or the controller's).
    pub sigterm_exits: usize,
    /// The longest time from one of the run's SIGTERMs to its worker's exit, in ms (must
    /// stay under the stop timeout, when ECS would SIGKILL it).
    pub longest_sigterm_to_exit_ms: u64,
    /// Workers that ended neither by SIGTERM exit nor by the run's SIGKILL.
    pub other_exits: usize,
    /// Messages whose handler had started and not finished when their worker exited
    /// after SIGTERM.
    pub held_at_sigterm_exits: usize,
    /// Of those, messages held at their last allowed receive that the next receive moved
    /// to the dead-letter queue (untimed: that receive left no record).
    pub held_at_sigterm_exits_redriven: usize,
    /// Of those, messages taken by a receive that reached no handler, in a worker a
    /// SIGKILL ended just after (back a visibility timeout later: not stranded by the exit).
    pub held_at_sigterm_exits_taken_by_kill: usize,
    /// Of those, messages not received again within the strand window.
    pub stranded: usize,
    /// The longest time from a SIGTERM exit to the next receive of a message it held,
    /// in ms (0 when re-received before the exit).
    pub longest_return_after_sigterm_ms: u64,
    /// Messages a SIGKILLed worker held whose next receive reached a handler.
    pub held_at_sigkills: usize,
    /// Messages a SIGKILLed worker held whose next receive reached no handler (their
    /// return is not timed: that receive left no record).
    pub held_at_sigkills_via_unhandled: usize,
    /// The longest time from a SIGKILL to the next receive of a message the killed
    /// worker held, in ms.
    pub longest_invisible_after_sigkill_ms: u64,
    /// The lost messages' bodies (for the report).
    pub lost_bodies: Vec<String>,
    /// The stranded messages: body, the exiting worker's pid, how long after its exit
    /// the message was received again (none: never).
    pub stranded_messages: Vec<(String, u32, Option<u64>)>,
    /// FIFO runs: message groups whose messages reached a handler.
    pub fifo_groups: usize,
    /// FIFO runs (must be 0): groups in which a message started after a later one of its
    /// group had started (a message started again after a later one is out of order;
    /// again before any later one, as after a SIGKILL, is not).
    pub fifo_groups_out_of_order: usize,
    /// The groups out of order: the group, and its starts' places in time order.
    pub out_of_order_groups: Vec<(String, Vec<u64>)>,
}

/// A SIGKILL this long before, or [`KILL_SLACK_AFTER_MS`] after, the moment a message
/// held at a SIGTERM exit was taken again (its return less the visibility timeout)
/// explains a take that reached no handler.
const KILL_SLACK_BEFORE_MS: u64 = 500;
/// See [`KILL_SLACK_BEFORE_MS`].
const KILL_SLACK_AFTER_MS: u64 = 1_000;

/// Computes the figures.
pub fn verify(inputs: &Inputs) -> Figures {
    let mut figures = Figures {
        sent: inputs.sent.len(),
        poison: inputs.poison.len(),
        ..Figures::default()
    };

    // Per message, its starts in time order, and per (pid, body, receive) whether the
    // handler finished.
    let mut starts: HashMap<&str, Vec<&Event>> = HashMap::new();
    let mut finished: BTreeSet<(u32, &str, Option<u32>)> = BTreeSet::new();
    // Every record's time per message, for the receives without a handler.
    let mut records: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut done: HashMap<&str, usize> = HashMap::new();
    let mut ready = BTreeSet::new();
    let mut exits: BTreeMap<u32, u64> = BTreeMap::new();
    for event in &inputs.events {
        if matches!(event.event.as_str(), "start" | "done" | "fail") {
            records.entry(&event.body).or_default().push(event.at_ms);
        }
        match event.event.as_str() {
            "start" => starts.entry(&event.body).or_default().push(event),
            "done" | "fail" => {
                finished.insert((event.pid, &event.body, event.receive));
                if event.event == "done" {
                    *done.entry(&event.body).or_default() += 1;
                }
            }
            "ready" => {
                ready.insert(event.pid);
            }
            "exit" => {
                exits.insert(event.pid, event.at_ms);
            }
            _ => {}
        }
    }
    for list in starts.values_mut() {
        list.sort_by_key(|event| event.at_ms);
    }
    figures.receives = starts.values().map(Vec::len).sum();
    for (body, list) in &starts {
        let mut previous_count = 0;
        for start in list {
            let Some(count) = start.receive else {
                continue;
            };
            if count > previous_count + 1 {
                figures.receives_without_handler += (count - previous_count - 1) as usize;
                let previous = records
                    .get(body)
                    .and_then(|times| times.iter().filter(|&&at| at < start.at_ms).max())
                    .copied()
                    .or_else(|| inputs.sent_at.get(*body).copied());
                if let Some(previous) = previous {
                    figures.longest_return_after_unhandled_ms = figures
                        .longest_return_after_unhandled_ms
                        .max(start.at_ms.saturating_sub(previous));
                }
            }
            previous_count = previous_count.max(count);
        }
    }
    if inputs.fifo {
        fifo_order(&inputs.events, &mut figures);
    }
    figures.workers_started = ready.len();

    let dead: BTreeSet<&str> = inputs.dead_lettered.iter().map(String::as_str).collect();
    let left: BTreeSet<&str> = inputs.left.iter().map(String::as_str).collect();
    figures.handled = done
        .keys()
        .filter(|body| !inputs.poison.contains(**body))
        .count();
    figures.duplicates = done.values().map(|count| count.saturating_sub(1)).sum();
    figures.dead_lettered = dead.len();
    figures.dead_lettered_not_poison = dead
        .iter()
        .filter(|body| !inputs.poison.contains(**body))
        .count();
    figures.left_in_queue = left.len();
    figures.lost_bodies = inputs
        .sent
        .iter()
        .filter(|body| {
            !done.contains_key(body.as_str())
                && !dead.contains(body.as_str())
                && !left.contains(body.as_str())
        })
        .cloned()
        .collect();
    figures.lost = figures.lost_bodies.len();

    // The next receive of `body` after `after_ms` (strictly later), if any.
    let next_start = |body: &str, after_ms: u64| -> Option<u64> {
        starts
            .get(body)?
            .iter()
            .map(|event| event.at_ms)
            .find(|&at| at > after_ms)
    };

    // SIGTERM exits: every held message comes back within the window.
    figures.sigterm_exits = exits.len();
    figures.longest_sigterm_to_exit_ms = inputs
        .signals
        .iter()
        .filter(|signal| signal.signal == Signal::Term)
        .filter_map(|signal| {
            exits
                .get(&signal.pid)
                .map(|exit| exit.saturating_sub(signal.at_ms))
        })
        .max()
        .unwrap_or(0);
    for (&pid, &exit_ms) in &exits {
        for (body, list) in &starts {
            for start in list.iter().filter(|event| event.pid == pid) {
                if finished.contains(&(pid, *body, start.receive)) {
                    continue;
                }
                figures.held_at_sigterm_exits += 1;
                let back = next_start(body, start.at_ms).map(|at| at.saturating_sub(exit_ms));
                // Its last allowed receive: the next one moved it to the dead-letter
                // queue, leaving no record.
                let redriven = back.is_none()
                    && dead.contains(*body)
                    && start.receive >= Some(inputs.max_receive_count);
                // Received again, but by a receive that reached no handler and whose
                // worker a SIGKILL ended just after (its message then waits out the
                // visibility timeout): the receive is dated from the message's return.
                let next = list.iter().find(|event| event.at_ms > start.at_ms);
                let taken_by_killed = next.is_some_and(|next| {
                    let skipped = matches!(
                        (start.receive, next.receive),
                        (Some(held), Some(next)) if next > held + 1
                    );
                    let taken = next.at_ms.saturating_sub(inputs.visibility_timeout_ms);
                    skipped
                        && inputs.signals.iter().any(|signal| {
                            signal.signal == Signal::Kill
                                && signal.at_ms + KILL_SLACK_BEFORE_MS >= taken
                                && signal.at_ms <= taken + KILL_SLACK_AFTER_MS
                        })
                });
                match back {
                    Some(_) if taken_by_killed => figures.held_at_sigterm_exits_taken_by_kill += 1,
                    Some(delay) if delay <= inputs.strand_window_ms => {
                        figures.longest_return_after_sigterm_ms =
                            figures.longest_return_after_sigterm_ms.max(delay);
                    }
                    None if redriven => figures.held_at_sigterm_exits_redriven += 1,
                    _ => {
                        figures.stranded += 1;
                        figures
                            .stranded_messages
                            .push(((*body).to_owned(), pid, back));
                    }
                }
            }
        }
    }
    figures.stranded_messages.sort();

    // SIGKILLs: what the killed worker held comes back when its visibility runs out.
    let mut killed = BTreeSet::new();
    for signal in &inputs.signals {
        match signal.signal {
            Signal::Term => figures.sigterms_sent += 1,
            Signal::Kill => {
                figures.sigkills_sent += 1;
                killed.insert(signal.pid);
                for list in starts.values() {
                    let Some(held) = list
                        .iter()
                        .rev()
                        .find(|event| event.at_ms <= signal.at_ms)
                        .filter(|last| last.pid == signal.pid)
                    else {
                        continue;
                    };
                    let Some(next) = list.iter().find(|event| event.at_ms > signal.at_ms) else {
                        continue;
                    };
                    let consecutive = match (held.receive, next.receive) {
                        (Some(held), Some(next)) => next == held + 1,
                        _ => true,
                    };
                    if consecutive {
                        figures.held_at_sigkills += 1;
                        figures.longest_invisible_after_sigkill_ms = figures
                            .longest_invisible_after_sigkill_ms
                            .max(next.at_ms - signal.at_ms);
                    } else {
                        figures.held_at_sigkills_via_unhandled += 1;
                    }
                }
            }
        }
    }
    figures.other_exits = ready
        .iter()
        .filter(|pid| !exits.contains_key(pid) && !killed.contains(pid))
        .count();
    figures
}

/// The FIFO figures: each group's starts, in time order, must never go back to an
/// earlier message of the group once a later one started.
fn fifo_order(events: &[Event], figures: &mut Figures) {
    let mut groups: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for event in events.iter().filter(|event| event.event == "start") {
        if let Some((group, place)) = fifo_place(&event.body) {
            groups.entry(group).or_default().push((event.at_ms, place));
        }
    }
    figures.fifo_groups = groups.len();
    for (group, mut starts) in groups {
        // Stable: one worker's records of the same millisecond keep their order.
        starts.sort_by_key(|(at, _)| *at);
        let places: Vec<u64> = starts.into_iter().map(|(_, place)| place).collect();
        if !places.is_sorted() {
            figures.fifo_groups_out_of_order += 1;
            figures.out_of_order_groups.push((group.to_owned(), places));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: &str, body: &str, pid: u32, at_ms: u64, receive: u32) -> Event {
        Event {
            event: event.to_owned(),
            body: body.to_owned(),
            pid,
            at_ms,
            receive: Some(receive),
        }
    }

    fn lifecycle(pid: u32, ready_ms: u64, exit_ms: Option<u64>) -> Vec<Event> {
        let mut events = vec![event("ready", "", pid, ready_ms, 0)];
        if let Some(at) = exit_ms {
            events.push(event("exit", "", pid, at, 0));
        }
        events
    }

    fn inputs(sent: &[&str], events: Vec<Event>) -> Inputs {
        Inputs {
            sent: sent.iter().map(|body| (*body).to_owned()).collect(),
            events,
            strand_window_ms: 3_000,
            max_receive_count: 4,
            visibility_timeout_ms: 8_000,
            ..Inputs::default()
        }
    }

    #[test]
    fn handled_duplicates_and_lost() {
        let mut events = lifecycle(1, 0, Some(10_000));
        events.extend([
            event("start", "a:1", 1, 100, 1),
            event("done", "a:1", 1, 101, 1),
            event("start", "a:1", 1, 9_000, 2),
            event("done", "a:1", 1, 9_001, 2),
            event("start", "b:1", 1, 200, 1),
            event("done", "b:1", 1, 201, 1),
        ]);
        let figures = verify(&inputs(&["a:1", "b:1", "c:1"], events));
        assert_eq!(figures.handled, 2);
        assert_eq!(figures.duplicates, 1);
        assert_eq!(
            (figures.lost, figures.lost_bodies),
            (1, vec!["c:1".to_owned()])
        );
    }

    #[test]
    fn poison_in_the_dead_letter_queue_is_neither_lost_nor_handled() {
        let mut events = lifecycle(1, 0, Some(10_000));
        for receive in 1..=3 {
            let at = u64::from(receive) * 1_000;
            events.push(event("start", "p:1:fail", 1, at, receive));
            events.push(event("fail", "p:1:fail", 1, at + 1, receive));
        }
        let mut inputs = inputs(&["p:1:fail", "q:1"], events);
        inputs.poison = ["p:1:fail".to_owned()].into();
        inputs.dead_lettered = vec!["p:1:fail".to_owned(), "q:1".to_owned()];
        let figures = verify(&inputs);
        assert_eq!((figures.handled, figures.lost), (0, 0));
        assert_eq!(
            (figures.dead_lettered, figures.dead_lettered_not_poison),
            (2, 1)
        );
        assert_eq!(figures.held_at_sigterm_exits, 0, "failed handlers finished");
    }

    #[test]
    fn a_message_held_at_a_sigterm_exit_must_come_back_within_the_window() {
        let mut events = lifecycle(1, 0, Some(5_000));
        events.extend(lifecycle(2, 0, None));
        events.extend([
            // Released and received again 500 ms after the exit: fine.
            event("start", "back:1", 1, 1_000, 1),
            event("start", "back:1", 2, 5_500, 2),
            event("done", "back:1", 2, 5_600, 2),
            // Received again only 8 s after the exit: stranded.
            event("start", "late:1", 1, 1_000, 1),
            event("start", "late:1", 2, 13_000, 2),
            event("done", "late:1", 2, 13_100, 2),
            // Finished before the exit (even if redelivered later): not held.
            event("start", "finished:1", 1, 1_000, 1),
            event("done", "finished:1", 1, 1_100, 1),
            event("start", "finished:1", 2, 12_000, 2),
            event("done", "finished:1", 2, 12_100, 2),
            // Never received again: stranded, and lost.
            event("start", "never:1", 1, 1_000, 1),
            // Released, taken at once by pid 2 (receive 2, no handler), which is
            // SIGKILLed 300 ms later: back at receive 3 a visibility timeout on.
            event("start", "taken:1", 1, 1_000, 1),
            event("start", "taken:1", 3, 13_000, 3),
            event("done", "taken:1", 3, 13_100, 3),
            // Held at its 4th receive; the 5th moved it to the DLQ: not stranded.
            event("start", "redriven:1", 1, 1_000, 4),
            // Held at its 3rd: it should have been received again.
            event("start", "dead-early:1", 1, 1_000, 3),
        ]);
        let mut inputs = inputs(
            &[
                "back:1",
                "late:1",
                "finished:1",
                "never:1",
                "redriven:1",
                "dead-early:1",
            ],
            events,
        );
        inputs.dead_lettered = vec!["redriven:1".to_owned(), "dead-early:1".to_owned()];
        inputs.signals = vec![
            SignalSent {
                pid: 1,
                signal: Signal::Term,
                at_ms: 4_000,
            },
            SignalSent {
                pid: 2,
                signal: Signal::Kill,
                at_ms: 5_300,
            },
        ];
        let figures = verify(&inputs);
        assert_eq!(figures.sigterms_sent, 1);
        assert_eq!(figures.sigterm_exits, 1);
        assert_eq!(figures.held_at_sigterm_exits, 6);
        assert_eq!(figures.held_at_sigterm_exits_redriven, 1);
        assert_eq!(figures.held_at_sigterm_exits_taken_by_kill, 1);
        assert_eq!(figures.stranded, 3);
        assert_eq!(
            figures.stranded_messages,
            vec![
                ("dead-early:1".to_owned(), 1, None),
                ("late:1".to_owned(), 1, Some(8_000)),
                ("never:1".to_owned(), 1, None)
            ]
        );
        assert_eq!(figures.longest_return_after_sigterm_ms, 500);
        assert_eq!(figures.lost, 1);
        assert_eq!(figures.other_exits, 0, "pid 1 exited, pid 2 was killed");
    }

    #[test]
    fn receives_that_reached_no_handler_are_counted_with_their_return() {
        let mut events = lifecycle(1, 0, None);
        events.extend([
            // Receive 1 reached no handler (released at a shutdown); back 300 ms after
            // the send.
            event("start", "a:1", 1, 1_300, 2),
            event("done", "a:1", 1, 1_301, 2),
            // Receives 2 and 3 reached no handler; back 9 s after the first's end.
            event("start", "b:1", 1, 1_000, 1),
            event("fail", "b:1", 1, 1_010, 1),
            event("start", "b:1", 1, 10_010, 4),
            event("done", "b:1", 1, 10_020, 4),
        ]);
        let mut inputs = inputs(&["a:1", "b:1"], events);
        inputs.sent_at = [("a:1".to_owned(), 1_000), ("b:1".to_owned(), 900)].into();
        let figures = verify(&inputs);
        assert_eq!(figures.receives_without_handler, 3);
        assert_eq!(figures.longest_return_after_unhandled_ms, 9_000);
    }

    #[test]
    fn the_longest_invisible_time_after_a_sigkill() {
        let mut events = lifecycle(1, 0, None);
        events.extend(lifecycle(2, 0, Some(30_000)));
        events.extend([
            event("start", "a:1", 1, 1_000, 1),
            event("start", "a:1", 2, 9_000, 2),
            event("done", "a:1", 2, 9_100, 2),
            // Finished and deleted before the kill: not held, never back.
            event("start", "b:1", 1, 1_000, 1),
            event("done", "b:1", 1, 1_100, 1),
            // Done, but killed before its delete went out: back after the timeout.
            event("start", "c:1", 1, 1_500, 1),
            event("done", "c:1", 1, 1_600, 1),
            event("start", "c:1", 2, 10_000, 2),
            event("done", "c:1", 2, 10_100, 2),
            // Back only through a receive that reached no handler (count 2 unrecorded):
            // counted apart, not timed.
            event("start", "e:1", 1, 1_700, 1),
            event("start", "e:1", 2, 18_000, 3),
            event("done", "e:1", 2, 18_100, 3),
            // Last received by another worker before the kill: not held by pid 1.
            event("start", "d:1", 1, 500, 1),
            event("start", "d:1", 2, 1_800, 2),
            event("done", "d:1", 2, 1_900, 2),
        ]);
        let mut inputs = inputs(&["a:1", "b:1", "c:1", "d:1", "e:1"], events);
        inputs.signals = vec![SignalSent {
            pid: 1,
            signal: Signal::Kill,
            at_ms: 2_000,
        }];
        let figures = verify(&inputs);
        assert_eq!(figures.sigkills_sent, 1);
        assert_eq!(figures.held_at_sigkills, 2);
        assert_eq!(figures.held_at_sigkills_via_unhandled, 1);
        assert_eq!(figures.longest_invisible_after_sigkill_ms, 8_000);
        assert_eq!(figures.duplicates, 1);
        assert_eq!((figures.lost, figures.other_exits), (0, 0));
    }

    #[test]
    fn a_fifo_group_is_out_of_order_when_an_earlier_message_starts_after_a_later_one() {
        assert_eq!(fifo_place("c12.g7:40"), Some(("7", 12)));
        assert_eq!(fifo_place("p3.g0:20:fail"), Some(("0", 3)));
        assert_eq!(fifo_place("c12:40"), None);
        let mut events = lifecycle(1, 0, None);
        events.extend(lifecycle(2, 0, None));
        events.extend([
            // Group 1: c1 again after a SIGKILL, before c3: in order.
            event("start", "c1.g1:5", 1, 100, 1),
            event("start", "c1.g1:5", 2, 9_000, 2),
            event("start", "c3.g1:5", 2, 9_100, 1),
            // Group 2: c2 handed out again after c4 ran: out of order.
            event("start", "c2.g2:5", 1, 200, 1),
            event("start", "c4.g2:5", 1, 300, 1),
            event("start", "c2.g2:5", 2, 9_200, 2),
        ]);
        let mut inputs = inputs(&["c1.g1:5", "c3.g1:5", "c2.g2:5", "c4.g2:5"], events);
        inputs.fifo = true;
        let figures = verify(&inputs);
        assert_eq!(figures.fifo_groups, 2);
        assert_eq!(figures.fifo_groups_out_of_order, 1);
        assert_eq!(
            figures.out_of_order_groups,
            vec![("2".to_owned(), vec![2, 4, 2])]
        );
    }
}
