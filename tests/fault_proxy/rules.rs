//! Fault rules: `ACTION:FAULT:WHEN`, parsed, and chosen for each request.
//!
//! - `ACTION`: an action name as the request names it (SQS's `ReceiveMessage`,
//!   `DeleteMessageBatch`, …, ECS's `RunTask`, `ListTasks`) or `*` for every request.
//! - `FAULT`: `throttle`, `500`, `503`, `reset`, `lost`, `hang`, `slow=MS`, `partial`, `no_spot`
//!   (ECS `RunTask`) or `unlisted` (ECS `ListTasks`).
//! - `WHEN`: `N%` (a rate, drawn from the seeded generator), `count=N` (the first N
//!   requests the rule sees) or `always`.
//!
//! Rules are tried in order; the first whose action matches and whose `WHEN` fires
//! applies, so a request gets at most one fault. A rule "sees" a request when its
//! action matches and no earlier rule fired for it.

use std::fmt;
use std::time::Duration;

/// What the proxy does to a request instead of (or on top of) forwarding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 400 with the SQS throttling error (`RequestThrottled`).
    Throttle,
    /// HTTP 500 or 503 with an SQS error body.
    Status(u16),
    /// The connection is closed without a response.
    Reset,
    /// Forwarded; then the answer is dropped and the connection closed.
    Lost,
    /// Forwarded after this delay.
    Slow(Duration),
    /// Never answered nor forwarded: the connection stays open, silent.
    Hang,
    /// Forwarded; then some entries of a successful batch answer are reported failed.
    Partial,
    /// A `RunTask` asking for `FARGATE_SPOT` is answered, unforwarded, with every task
    /// in `failures` for lack of capacity; any other request is forwarded.
    NoSpot,
    /// Forwarded; then a `ListTasks` answer lists no task, as before ECS catches up.
    Unlisted,
}

impl Fault {
    /// The name under which the proxy's stats count this fault.
    pub fn name(self) -> &'static str {
        match self {
            Self::Throttle => "throttle",
            Self::Status(500) => "500",
            Self::Status(503) => "503",
            Self::Status(_) => "status",
            Self::Reset => "reset",
            Self::Lost => "lost",
            Self::Slow(_) => "slow",
            Self::Hang => "hang",
            Self::Partial => "partial",
            Self::NoSpot => "no_spot",
            Self::Unlisted => "unlisted",
        }
    }
}

/// When a rule fires for a request it sees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum When {
    /// For this fraction of requests, 0 to 1.
    Rate(f64),
    /// For the first N requests.
    Count(u64),
    /// For every request.
    Always,
}

/// One parsed rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// The action it targets; `None` for `*`.
    pub action: Option<String>,
    /// What it does.
    pub fault: Fault,
    /// When it fires.
    pub when: When,
    /// The rule as written, for `GET /__proxy/rules`.
    pub text: String,
}

/// A rule that does not parse, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    /// The rule as given.
    pub rule: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad rule {:?}: {} (expected ACTION:FAULT:WHEN, FAULT one of throttle, 500, 503, \
             reset, lost, hang, slow=MS, partial, no_spot, unlisted; WHEN one of N%, count=N, always)",
            self.rule, self.reason
        )
    }
}

impl std::error::Error for RuleError {}

impl std::str::FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| RuleError {
            rule: text.to_owned(),
            reason,
        };
        let mut parts = text.split(':');
        let (Some(action), Some(fault), Some(when), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(error(
                "it needs exactly three parts separated by ':'".into(),
            ));
        };
        let action = match action.trim() {
            "" => return Err(error("the action is empty".into())),
            "*" => None,
            name if name.chars().all(|c| c.is_ascii_alphanumeric()) => Some(name.to_owned()),
            name => return Err(error(format!("{name:?} is not an action name or '*'"))),
        };
        let fault = match fault.trim() {
            "throttle" => Fault::Throttle,
            "500" => Fault::Status(500),
            "503" => Fault::Status(503),
            "reset" => Fault::Reset,
            "lost" => Fault::Lost,
            "hang" => Fault::Hang,
            "partial" => Fault::Partial,
            "no_spot" => Fault::NoSpot,
            "unlisted" => Fault::Unlisted,
            other => match other.strip_prefix("slow=") {
                Some(millis) => {
                    Fault::Slow(Duration::from_millis(millis.parse().map_err(|_| {
                        error(format!("slow={millis}: MS must be a whole number"))
                    })?))
                }
                None => return Err(error(format!("unknown fault {other:?}"))),
            },
        };
        let when =
            match when.trim() {
                "always" => When::Always,
                other => {
                    if let Some(percent) = other.strip_suffix('%') {
                        let percent: f64 = percent
                            .parse()
                            .ok()
                            .filter(|percent: &f64| (0.0..=100.0).contains(percent))
                            .ok_or_else(|| error(format!("{other}: N% needs N from 0 to 100")))?;
                        When::Rate(percent / 100.0)
                    } else if let Some(count) = other.strip_prefix("count=") {
                        When::Count(count.parse().map_err(|_| {
                            error(format!("count={count}: N must be a whole number"))
                        })?)
                    } else {
                        return Err(error(format!("unknown WHEN {other:?}")));
                    }
                }
            };
        Ok(Self {
            action,
            fault,
            when,
            text: text.to_owned(),
        })
    }
}

/// The rules in force, with what each has seen, and the seeded generator for rates.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<(Rule, u64)>,
    rng: fastrand::Rng,
}

impl RuleSet {
    /// The rules, in order, drawing rates from a generator seeded with `seed`.
    pub fn new(rules: Vec<Rule>, seed: u64) -> Self {
        Self {
            rules: rules.into_iter().map(|rule| (rule, 0)).collect(),
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// Replaces the rules; counts start again, the generator goes on.
    pub fn replace(&mut self, rules: Vec<Rule>) {
        self.rules = rules.into_iter().map(|rule| (rule, 0)).collect();
    }

    /// The rules as written.
    pub fn texts(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|(rule, _)| rule.text.clone())
            .collect()
    }

    /// The fault for a request naming `action`, if a rule fires.
    pub fn pick(&mut self, action: &str) -> Option<Fault> {
        for (rule, seen) in &mut self.rules {
            if rule.action.as_deref().is_some_and(|name| name != action) {
                continue;
            }
            *seen += 1;
            let fires = match rule.when {
                When::Always => true,
                When::Count(count) => *seen <= count,
                When::Rate(rate) => self.rng.f64() < rate,
            };
            if fires {
                return Some(rule.fault);
            }
        }
        None
    }

    /// A number from the generator below `bound`, for choosing entries.
    pub fn below(&mut self, bound: usize) -> usize {
        self.rng.usize(..bound.max(1))
    }
}

/// Parses each rule, or names the first that does not parse.
pub fn parse_all<S: AsRef<str>>(texts: &[S]) -> Result<Vec<Rule>, RuleError> {
    texts.iter().map(|text| text.as_ref().parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Rule {
        text.parse().expect("the rule parses")
    }

    #[test]
    fn every_fault_and_when_parses() {
        let cases = [
            (
                "DeleteMessageBatch:throttle:30%",
                Some("DeleteMessageBatch"),
                Fault::Throttle,
                When::Rate(0.3),
            ),
            (
                "ReceiveMessage:500:count=2",
                Some("ReceiveMessage"),
                Fault::Status(500),
                When::Count(2),
            ),
            (
                "ReceiveMessage:503:always",
                Some("ReceiveMessage"),
                Fault::Status(503),
                When::Always,
            ),
            ("*:reset:100%", None, Fault::Reset, When::Rate(1.0)),
            (
                "GetQueueAttributes:hang:always",
                Some("GetQueueAttributes"),
                Fault::Hang,
                When::Always,
            ),
            (
                "ReceiveMessage:lost:count=4",
                Some("ReceiveMessage"),
                Fault::Lost,
                When::Count(4),
            ),
            (
                "SendMessage:slow=250:0%",
                Some("SendMessage"),
                Fault::Slow(Duration::from_millis(250)),
                When::Rate(0.0),
            ),
            (
                "ChangeMessageVisibilityBatch:partial:12.5%",
                Some("ChangeMessageVisibilityBatch"),
                Fault::Partial,
                When::Rate(0.125),
            ),
            (
                "RunTask:no_spot:always",
                Some("RunTask"),
                Fault::NoSpot,
                When::Always,
            ),
            (
                "ListTasks:unlisted:count=3",
                Some("ListTasks"),
                Fault::Unlisted,
                When::Count(3),
            ),
        ];
        for (text, action, fault, when) in cases {
            let parsed = rule(text);
            assert_eq!(parsed.action.as_deref(), action, "{text}");
            assert_eq!(parsed.fault, fault, "{text}");
            assert_eq!(parsed.when, when, "{text}");
            assert_eq!(parsed.text, text);
        }
    }

    #[test]
    fn malformed_rules_are_refused_with_the_reason() {
        for (text, reason) in [
            ("ReceiveMessage:throttle", "three parts"),
            ("ReceiveMessage:throttle:always:extra", "three parts"),
            (":throttle:always", "action is empty"),
            ("Receive-Message:throttle:always", "not an action name"),
            ("ReceiveMessage:teapot:always", "unknown fault"),
            ("ReceiveMessage:slow=fast:always", "whole number"),
            ("ReceiveMessage:500:150%", "from 0 to 100"),
            ("ReceiveMessage:500:-1%", "from 0 to 100"),
            ("ReceiveMessage:500:count=two", "whole number"),
            ("ReceiveMessage:500:sometimes", "unknown WHEN"),
        ] {
            let error = text.parse::<Rule>().expect_err(text);
            assert!(error.reason.contains(reason), "{text}: {}", error.reason);
            assert!(error.to_string().contains(text), "{error}");
        }
        assert!(parse_all(&["*:500:always", "nope"]).is_err());
        assert_eq!(parse_all::<&str>(&[]).expect("no rules"), []);
    }

    #[test]
    fn count_fires_for_the_first_n_matching_requests_only() {
        let mut rules = RuleSet::new(vec![rule("GetQueueAttributes:throttle:count=2")], 1);
        assert_eq!(rules.pick("ReceiveMessage"), None, "another action");
        let picks: Vec<_> = (0..4).map(|_| rules.pick("GetQueueAttributes")).collect();
        assert_eq!(
            picks,
            [Some(Fault::Throttle), Some(Fault::Throttle), None, None]
        );
        rules.replace(vec![rule("GetQueueAttributes:throttle:count=1")]);
        assert_eq!(rules.pick("GetQueueAttributes"), Some(Fault::Throttle));
        assert_eq!(rules.pick("GetQueueAttributes"), None);
    }

    #[test]
    fn the_first_rule_that_fires_wins_and_star_matches_everything() {
        let mut rules = RuleSet::new(
            vec![rule("ReceiveMessage:reset:count=1"), rule("*:503:always")],
            1,
        );
        assert_eq!(rules.pick("ReceiveMessage"), Some(Fault::Reset));
        assert_eq!(rules.pick("ReceiveMessage"), Some(Fault::Status(503)));
        assert_eq!(rules.pick("SendMessage"), Some(Fault::Status(503)));
        rules.replace(Vec::new());
        assert_eq!(rules.pick("ReceiveMessage"), None, "[] clears");
    }

    #[test]
    fn rates_are_seeded_and_near_their_share() {
        let draw = |seed| {
            let mut rules = RuleSet::new(vec![rule("*:throttle:30%")], seed);
            (0..10_000)
                .map(|_| rules.pick("DeleteMessageBatch").is_some())
                .collect::<Vec<_>>()
        };
        let first = draw(7);
        assert_eq!(first, draw(7), "the same seed gives the same faults");
        assert_ne!(first, draw(8));
        let fired = first.iter().filter(|fired| **fired).count();
        assert!((2_700..3_300).contains(&fired), "{fired} of 10000 at 30%");
        let mut never = RuleSet::new(vec![rule("*:throttle:0%")], 7);
        assert!((0..1_000).all(|_| never.pick("ReceiveMessage").is_none()));
    }
}
