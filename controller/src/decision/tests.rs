//! Scenario tables for the decision core, one poll every 5 s of paused time. The
//! service applies every change before the next poll, as ECS does with `desiredCount`.

use super::*;

use tokio::time::advance;

const POLL: Duration = Duration::from_secs(5);

/// One poll: `(visible, not visible, delayed)` read, and the desired count expected
/// after it.
type Row = (u64, u64, u64, u32);

/// A service driven by a scaler, polled every 5 s of paused time.
struct Sim {
    scaler: Scaler,
    desired: u32,
    deployment_in_progress: bool,
    /// What the workers are read to hold (`None`: not read).
    held: Option<u64>,
    changes: Vec<(u32, Reason)>,
}

impl Sim {
    fn new(policy: Policy, desired: u32) -> Self {
        Self {
            scaler: Scaler::new(policy),
            desired,
            deployment_in_progress: false,
            held: None,
            changes: Vec::new(),
        }
    }

    /// Waits one poll interval, then reads the queue as `counts`.
    async fn poll(&mut self, counts: Option<QueueCounts>) -> Decision {
        advance(POLL).await;
        let observation = Observation {
            queue: counts,
            service: Some(ServiceCounts {
                desired: self.desired,
                running: self.desired,
                pending: 0,
                deployment_in_progress: self.deployment_in_progress,
            }),
            throughput: None,
            held: self.held,
        };
        let decision = self.scaler.decide(Instant::now(), &observation);
        if let Some(desired) = decision.change() {
            self.desired = desired;
            self.changes.push((desired, decision.reason));
        }
        decision
    }

    async fn read(&mut self, visible: u64, not_visible: u64, delayed: u64) -> Decision {
        self.poll(Some(QueueCounts {
            visible,
            not_visible,
            delayed,
        }))
        .await
    }

    /// Runs the table, checking the desired count after every row.
    async fn table(&mut self, rows: &[Row]) {
        for (index, &(visible, not_visible, delayed, expected)) in rows.iter().enumerate() {
            let decision = self.read(visible, not_visible, delayed).await;
            assert_eq!(
                self.desired, expected,
                "poll {index} read ({visible}, {not_visible}, {delayed}): {decision:?}"
            );
        }
    }
}

fn policy() -> Policy {
    Policy::default()
}

#[tokio::test(start_paused = true)]
async fn a_burst_on_a_service_at_zero_wakes_it_on_the_first_poll() {
    let mut sim = Sim::new(policy(), 0);
    sim.table(&[(0, 0, 0, 0), (0, 0, 0, 0), (45, 0, 0, 5), (300, 0, 0, 10)])
        .await;
    assert_eq!(
        sim.changes,
        [(5, Reason::Wake), (10, Reason::ScaleOut)],
        "woken for 45 messages at 10 per task, then clamped to max 10"
    );

    // A single message is enough: no backlog-per-task threshold to cross first.
    let mut sim = Sim::new(policy(), 0);
    sim.table(&[(1, 0, 0, 1)]).await;
    assert_eq!(sim.changes, [(1, Reason::Wake)]);
}

#[tokio::test(start_paused = true)]
async fn the_activation_level_and_delayed_messages_decide_what_wakes() {
    let activation = Policy {
        activation: 5,
        ..policy()
    };
    let mut sim = Sim::new(activation, 0);
    sim.table(&[(5, 0, 0, 0), (0, 0, 50, 0), (6, 0, 0, 1)])
        .await;

    let delayed = Policy {
        count_delayed: true,
        ..policy()
    };
    let mut sim = Sim::new(delayed, 0);
    sim.table(&[(0, 0, 25, 3)]).await;
}

#[tokio::test(start_paused = true)]
async fn a_lone_not_visible_spike_on_an_idle_queue_does_not_wake_but_a_sustained_one_does() {
    let mut sim = Sim::new(policy(), 0);
    // KEDA #7845: an approximate count reads messages in flight on a queue nobody reads.
    sim.table(&[(0, 0, 0, 0), (0, 4, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0)])
        .await;
    let decision = sim.read(0, 4, 0).await;
    assert_eq!(decision.reason, Reason::InFlightNotSustained);
    // Seen on 3 polls in a row: someone holds them, and they may come back.
    sim.table(&[(0, 4, 0, 0), (0, 4, 0, 1)]).await;
    assert_eq!(sim.changes, [(1, Reason::SustainedInFlight)]);
}

#[tokio::test(start_paused = true)]
async fn steady_load_with_count_noise_settles_and_then_never_changes() {
    let max = Policy {
        max: 50,
        ..policy()
    };
    // 100 messages ± 20 %: 8 to 12 tasks' worth at 10 per task.
    let mut noise = fastrand::Rng::with_seed(7);
    let mut sim = Sim::new(max.clone(), 0);
    let settle = 24; // two minutes
    let mut settled = 0;
    for poll in 0..360 {
        let total = noise.u64(80..=120);
        let in_flight = total.min(sim.desired as u64 * 10);
        let decision = sim.read(total - in_flight, in_flight, 0).await;
        assert!((8..=12).contains(&sim.desired), "poll {poll}: {decision:?}");
        if poll == settle {
            settled = sim.changes.len();
            assert!(settled <= 3, "{:?}", sim.changes);
        }
    }
    assert_eq!(
        sim.changes.len(),
        settled,
        "no change in the 28 minutes after settling: {:?}",
        sim.changes
    );

    // The same trace without the cooldown window and tolerance flaps: the rules above
    // are what keeps the service still.
    let mut noise = fastrand::Rng::with_seed(7);
    let mut twitchy = Sim::new(
        Policy {
            scale_in_cooldown: Duration::ZERO,
            tolerance: 0.0,
            ..max
        },
        0,
    );
    for _ in 0..360 {
        let total = noise.u64(80..=120);
        let in_flight = total.min(twitchy.desired as u64 * 10);
        twitchy.read(total - in_flight, in_flight, 0).await;
    }
    assert!(twitchy.changes.len() > 50, "{}", twitchy.changes.len());
}

#[tokio::test(start_paused = true)]
async fn a_draining_queue_scales_in_gradually_and_only_after_the_cooldown() {
    let stepped = Policy {
        max: 20,
        max_step: Some(3),
        scale_in_cooldown: Duration::from_secs(30),
        ..policy()
    };
    let mut sim = Sim::new(stepped, 10);
    // 100 messages in flight, then 10 fewer every poll, down to the last one.
    let mut first_scale_in = None;
    for poll in 0..30u64 {
        let backlog = 100u64.saturating_sub(10 * poll).max(1);
        let before = sim.desired;
        let decision = sim.read(0, backlog, 0).await;
        assert!(sim.desired <= before, "poll {poll}: {decision:?}");
        assert!(before - sim.desired <= 3, "poll {poll}: {decision:?}");
        if sim.desired < before {
            assert_eq!(decision.reason, Reason::ScaleIn, "poll {poll}");
            first_scale_in.get_or_insert(poll);
        }
    }
    // 10 tasks' worth was read at poll 0: nothing lower for 30 s before poll 6.
    assert!(
        first_scale_in.is_some_and(|poll| poll > 6),
        "{first_scale_in:?}"
    );
    let counts: Vec<u32> = sim.changes.iter().map(|(count, _)| *count).collect();
    assert!(counts.len() >= 4, "several steps down: {counts:?}");
    assert_eq!(
        sim.desired, 1,
        "in-flight messages keep one task: {counts:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_queue_goes_to_zero_after_the_empty_polls_and_the_cooldown() {
    let quick = Policy {
        scale_in_cooldown: Duration::from_secs(20),
        empty_polls: 3,
        ..policy()
    };
    let mut sim = Sim::new(quick, 2);
    // First empty read at poll 0; 20 s later is poll 4.
    sim.table(&[
        (0, 0, 0, 2),
        (0, 0, 0, 2),
        (0, 0, 0, 2),
        (0, 0, 0, 2),
        (0, 0, 0, 0),
    ])
    .await;
    assert_eq!(sim.changes, [(0, Reason::ToZero)]);

    // Any message resets the count of empty polls.
    let quick = Policy {
        scale_in_cooldown: Duration::from_secs(10),
        empty_polls: 3,
        ..policy()
    };
    let mut sim = Sim::new(quick, 1);
    sim.table(&[
        (0, 0, 0, 1),
        (0, 0, 0, 1),
        (0, 0, 1, 1),
        (0, 0, 0, 1),
        (0, 0, 0, 1),
        (0, 0, 0, 0),
    ])
    .await;
}

#[tokio::test(start_paused = true)]
async fn messages_in_flight_never_let_a_service_go_to_zero() {
    let quick = Policy {
        scale_in_cooldown: Duration::from_secs(5),
        empty_polls: 1,
        ..policy()
    };
    let mut sim = Sim::new(quick, 4);
    for _ in 0..720 {
        let decision = sim.read(0, 1, 0).await;
        assert!(sim.desired >= 1, "{decision:?}");
    }
    assert_eq!(sim.desired, 1);
    sim.table(&[(0, 0, 0, 1), (0, 0, 0, 0)]).await;
}

#[tokio::test(start_paused = true)]
async fn messages_no_worker_holds_let_a_service_go_to_zero_and_wake_it_once_visible() {
    let quick = Policy {
        scale_in_cooldown: Duration::from_secs(10),
        empty_polls: 2,
        ..policy()
    };
    // One message waits out a RetryAfter of an hour: invisible, held by no worker.
    let mut sim = Sim::new(quick, 1);
    sim.held = Some(0);
    sim.table(&[(0, 1, 0, 1), (0, 1, 0, 1), (0, 1, 0, 0)]).await;
    assert_eq!(sim.changes, [(0, Reason::ToZero)]);
    // At zero it wakes nothing, however long it stays in flight...
    for _ in 0..100 {
        let decision = sim.read(0, 1, 0).await;
        assert_eq!((sim.desired, decision.reason), (0, Reason::Idle));
    }
    // ... until it is visible again.
    sim.table(&[(1, 0, 0, 1)]).await;
    assert_eq!(sim.changes.last(), Some(&(1, Reason::Wake)));

    // A thousand of them need no task either: none is sized for.
    let mut sim = Sim::new(policy(), 1);
    sim.held = Some(0);
    let decision = sim.read(0, 1000, 0).await;
    assert_eq!(
        (decision.in_flight, decision.needed, sim.desired),
        (0, 0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn messages_a_worker_holds_or_may_hold_keep_a_service_awake() {
    let quick = Policy {
        scale_in_cooldown: Duration::from_secs(5),
        empty_polls: 1,
        ..policy()
    };
    // The workers hold two messages the queue's lagging count does not show yet.
    let mut sim = Sim::new(quick.clone(), 1);
    sim.held = Some(2);
    for _ in 0..100 {
        let decision = sim.read(0, 0, 0).await;
        assert_eq!((sim.desired, decision.in_flight), (1, 2), "{decision:?}");
    }
    // A worker that could not be read may hold the message in flight: a poll without
    // the workers' figures counts the queue's, and starts the empty polls again.
    let mut sim = Sim::new(
        Policy {
            scale_in_cooldown: Duration::from_secs(10),
            empty_polls: 2,
            ..policy()
        },
        1,
    );
    for held in [Some(0), None, Some(0), None, Some(0), None] {
        sim.held = held;
        let decision = sim.read(0, 1, 0).await;
        assert_eq!(sim.desired, 1, "read {held:?}: {decision:?}");
    }
    sim.held = Some(0);
    sim.table(&[(0, 1, 0, 1), (0, 1, 0, 1), (0, 1, 0, 0)]).await;
    // Delayed messages keep it awake too: they will be visible soon.
    let mut sim = Sim::new(quick, 1);
    sim.held = Some(0);
    sim.table(&[(0, 0, 1, 1), (0, 0, 1, 1), (0, 0, 0, 1), (0, 0, 0, 0)])
        .await;
}

#[tokio::test(start_paused = true)]
async fn the_count_stays_within_min_and_max() {
    let bounded = Policy {
        min: 2,
        max: 5,
        ..policy()
    };
    let mut sim = Sim::new(bounded.clone(), 0);
    sim.table(&[(0, 0, 0, 2), (1000, 0, 0, 5), (0, 0, 0, 5)])
        .await;
    for _ in 0..100 {
        sim.read(0, 0, 0).await;
    }
    assert_eq!(sim.desired, 2, "never below min, never zero with min 2");

    // Someone set the count by hand outside the bounds.
    let mut sim = Sim::new(bounded.clone(), 9);
    sim.table(&[(1000, 0, 0, 5)]).await;
    assert_eq!(sim.changes, [(5, Reason::AboveMax)]);
    let mut sim = Sim::new(bounded, 1);
    sim.table(&[(0, 0, 0, 2)]).await;
    assert_eq!(sim.changes, [(2, Reason::BelowMin)]);
}

#[tokio::test(start_paused = true)]
async fn no_change_moves_more_than_the_max_step() {
    let stepped = Policy {
        max: 20,
        max_step: Some(3),
        ..policy()
    };
    let mut sim = Sim::new(stepped, 0);
    sim.table(&[
        (1000, 0, 0, 3),
        (1000, 0, 0, 6),
        (1000, 0, 0, 9),
        (1000, 0, 0, 12),
        (1000, 0, 0, 15),
        (1000, 0, 0, 18),
        (1000, 0, 0, 20),
    ])
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_deployment_or_a_failed_read_holds_the_count() {
    let mut sim = Sim::new(policy(), 2);
    sim.deployment_in_progress = true;
    let decision = sim.read(500, 0, 0).await;
    assert_eq!(
        (sim.desired, decision.reason),
        (2, Reason::DeploymentInProgress)
    );
    sim.deployment_in_progress = false;

    let decision = sim.poll(None).await;
    assert_eq!((sim.desired, decision.reason), (2, Reason::QueueUnreadable));

    // The service could not be read: the last count known is held.
    advance(POLL).await;
    let unread = Observation {
        queue: Some(QueueCounts {
            visible: 500,
            ..QueueCounts::default()
        }),
        service: None,
        throughput: None,
        held: None,
    };
    let decision = sim.scaler.decide(Instant::now(), &unread);
    assert_eq!(decision.change(), None);
    assert_eq!(
        (decision.desired, decision.reason),
        (2, Reason::ServiceUnreadable)
    );

    sim.table(&[(500, 0, 0, 10)]).await;
}

#[tokio::test(start_paused = true)]
async fn a_latency_goal_sizes_by_measured_throughput_when_there_is_one() {
    let latency = Policy {
        max: 100,
        target: BacklogTarget::Latency {
            goal: Duration::from_secs(60),
            message_time: Duration::from_secs(2),
            concurrency: 4,
        },
        ..policy()
    };
    // Estimated: 4 / 2 s = 2 msgs/s per task, 120 messages per task in 60 s.
    let mut scaler = Scaler::new(latency);
    let observe = |throughput| Observation {
        queue: Some(QueueCounts {
            visible: 1200,
            ..QueueCounts::default()
        }),
        service: Some(ServiceCounts {
            desired: 0,
            ..ServiceCounts::default()
        }),
        throughput,
        held: None,
    };
    let decision = scaler.decide(Instant::now(), &observe(None));
    assert_eq!((decision.backlog_per_task, decision.desired), (120.0, 10));
    // Measured: 0.5 msgs/s per task, so 30 per task.
    let decision = scaler.decide(Instant::now(), &observe(Some(0.5)));
    assert_eq!((decision.backlog_per_task, decision.desired), (30.0, 40));
    // A poll without a new measurement keeps the last one.
    let decision = scaler.decide(Instant::now(), &observe(None));
    assert_eq!(decision.backlog_per_task, 30.0);
    // Never below one message per task.
    assert_eq!(
        BacklogTarget::PerTask(0.2).backlog_per_task(None),
        1.0,
        "one message per task at most"
    );
}
