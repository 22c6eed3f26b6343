use super::*;

use clap::{CommandFactory, Parser};

use crate::decision::{BacklogTarget, Policy};

fn cli(args: &[&str]) -> Cli {
    let mut argv = vec!["spotq-controller"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).expect("valid flags")
}

fn error(args: &[&str], file: Option<&str>) -> InvalidSetting {
    Config::from_parts(&cli(args), file).expect_err("invalid")
}

const FILE: &str = r#"
http_addr = "127.0.0.1:9191"

[defaults]
poll_interval = "2s"
scale_in_cooldown = "2m"
max = 4

[[binding]]
queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
cluster = "jobs"
service = "orders-worker"
max = 20
backlog_per_task = 50
max_step = 5
metrics_port = 8080

[[binding]]
name = "thumbs"
queue = "thumbnails"
latency_goal = 30
message_time = "800ms"
concurrency = 8
count_delayed = true

[binding.local]
command = ["/usr/local/bin/thumbnailer", "--fast"]
env = { SPOTQ_QUEUE = "thumbnails" }
stop_timeout = "45s"
"#;

#[test]
fn a_file_with_defaults_and_two_bindings() {
    let config = Config::from_parts(&cli(&[]), Some(FILE)).expect("valid");
    assert_eq!(config.http_addr.to_string(), "127.0.0.1:9191");
    assert!(!config.dry_run);
    let [orders, thumbs] = config.bindings.as_slice() else {
        panic!("two bindings: {config:?}");
    };
    assert_eq!(orders.name, "orders", "named after the queue");
    assert_eq!(
        orders.target,
        TargetConfig::Ecs {
            cluster: "jobs".to_owned(),
            service: "orders-worker".to_owned()
        }
    );
    assert_eq!(orders.policy.max, 20, "the binding's own value wins");
    assert_eq!(orders.policy.target, BacklogTarget::PerTask(50.0));
    assert_eq!(orders.policy.max_step, Some(5));
    assert_eq!(
        orders.poll_interval,
        Duration::from_secs(2),
        "from [defaults]"
    );
    assert_eq!(orders.policy.scale_in_cooldown, Duration::from_secs(120));
    assert_eq!(orders.policy.empty_polls, 3, "built-in default");
    assert_eq!(
        (orders.metrics_port, orders.metrics_urls.as_slice()),
        (Some(8080), &[][..])
    );

    assert_eq!(thumbs.name, "thumbs");
    assert_eq!(thumbs.policy.max, 4, "from [defaults]");
    assert!(thumbs.policy.count_delayed);
    assert_eq!(
        thumbs.policy.target,
        BacklogTarget::Latency {
            goal: Duration::from_secs(30),
            message_time: Duration::from_millis(800),
            concurrency: 8
        }
    );
    assert_eq!(
        thumbs.target,
        TargetConfig::Local(LocalConfig {
            command: vec!["/usr/local/bin/thumbnailer".to_owned(), "--fast".to_owned()],
            env: vec![("SPOTQ_QUEUE".to_owned(), "thumbnails".to_owned())],
            stop_timeout: Duration::from_secs(45),
        })
    );
}

#[test]
fn flags_add_a_binding_and_sit_between_the_entries_and_the_defaults() {
    let config = Config::from_parts(
        &cli(&[
            "--queue",
            "jobs",
            "--cluster",
            "c",
            "--service",
            "s",
            "--max",
            "7",
            "--poll-interval",
            "500ms",
            "--dry-run",
        ]),
        Some(FILE),
    )
    .expect("valid");
    assert!(config.dry_run);
    assert_eq!(config.bindings.len(), 3);
    let from_flags = &config.bindings[2];
    assert_eq!(from_flags.name, "jobs");
    assert_eq!(from_flags.policy.max, 7);
    assert_eq!(from_flags.poll_interval, Duration::from_millis(500));
    // The flags beat the file's defaults, not the entries' own values.
    assert_eq!(config.bindings[0].policy.max, 20);
    assert_eq!(config.bindings[1].policy.max, 7);
    assert_eq!(config.bindings[0].poll_interval, Duration::from_millis(500));

    let defaults = Config::from_parts(
        &cli(&["--queue", "q", "--cluster", "c", "--service", "s"]),
        None,
    )
    .expect("valid");
    let binding = &defaults.bindings[0];
    assert_eq!(defaults.http_addr.to_string(), DEFAULT_HTTP_ADDR);
    assert_eq!(binding.poll_interval, DEFAULT_POLL_INTERVAL);
    assert!(binding.poll_interval <= Duration::from_secs(5));
    assert_eq!(binding.policy, Policy::default());
    let delayed = Config::from_parts(
        &cli(&[
            "--queue",
            "q",
            "--cluster",
            "c",
            "--service",
            "s",
            "--count-delayed",
        ]),
        None,
    )
    .expect("valid");
    assert!(delayed.bindings[0].policy.count_delayed);

    let local = Config::from_parts(
        &cli(&[
            "--queue",
            "q",
            "--local-command",
            "worker",
            "--local-arg",
            "--verbose",
            "--local-env",
            "A=b=c",
        ]),
        None,
    )
    .expect("valid");
    assert_eq!(
        local.bindings[0].target,
        TargetConfig::Local(LocalConfig {
            command: vec!["worker".to_owned(), "--verbose".to_owned()],
            env: vec![("A".to_owned(), "b=c".to_owned())],
            stop_timeout: DEFAULT_STOP_TIMEOUT,
        })
    );
}

#[test]
fn every_flag_has_an_environment_fallback() {
    let command = Cli::command();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if ["help", "version", "local_args", "local_env"].contains(&id) {
            continue;
        }
        assert!(
            arg.get_env().is_some(),
            "--{id} has no environment variable"
        );
    }
}

#[test]
fn a_bad_setting_fails_naming_it() {
    let ecs = ["--queue", "q", "--cluster", "c", "--service", "s"];
    let cases: Vec<(InvalidSetting, &str)> = vec![
        (error(&[], None), "--queue"),
        (error(&["--queue", "q"], None), "--cluster"),
        (
            error(&["--queue", "q", "--cluster", "c"], None),
            "--service",
        ),
        (
            error(&[&ecs[..], &["--min", "3", "--max", "2"]].concat(), None),
            "--max",
        ),
        (error(&[&ecs[..], &["--max", "0"]].concat(), None), "--max"),
        (
            error(&[&ecs[..], &["--poll-interval", "10ms"]].concat(), None),
            "--poll-interval",
        ),
        (
            error(&[&ecs[..], &["--latency-goal", "10s"]].concat(), None),
            "--message-time",
        ),
        (
            error(
                &[
                    &ecs[..],
                    &["--latency-goal", "10s", "--backlog-per-task", "3"],
                ]
                .concat(),
                None,
            ),
            "--latency-goal",
        ),
        (
            error(&[&ecs[..], &["--backlog-per-task", "0"]].concat(), None),
            "--backlog-per-task",
        ),
        (
            error(&[&ecs[..], &["--empty-polls", "0"]].concat(), None),
            "--empty-polls",
        ),
        (
            error(&[&ecs[..], &["--max-step", "0"]].concat(), None),
            "--max-step",
        ),
        (
            error(&[&ecs[..], &["--tolerance", "1.5"]].concat(), None),
            "--tolerance",
        ),
        (
            error(
                &[&ecs[..], &["--metrics-url", "https://x/metrics"]].concat(),
                None,
            ),
            "--metrics-url",
        ),
        (
            error(
                &[
                    "--queue",
                    "q",
                    "--local-command",
                    "w",
                    "--local-env",
                    "NOEQUALS",
                ],
                None,
            ),
            "--local-env",
        ),
        (
            error(&[&ecs[..], &["--metrics-port", "0"]].concat(), None),
            "--metrics-port",
        ),
        (
            error(
                &[
                    &ecs[..],
                    &[
                        "--metrics-port",
                        "8080",
                        "--metrics-url",
                        "http://x/metrics",
                    ],
                ]
                .concat(),
                None,
            ),
            "--metrics-port",
        ),
        (
            error(
                &[
                    "--queue",
                    "q",
                    "--local-command",
                    "w",
                    "--metrics-port",
                    "8080",
                ],
                None,
            ),
            "--metrics-port",
        ),
        (
            error(
                &[],
                Some(
                    "[[binding]]\nqueue = \"q\"\ncluster = \"c\"\nservice = \"s\"\nmin = 5\nmax = 2\n",
                ),
            ),
            "binding[0].max",
        ),
        (
            error(
                &[],
                Some(
                    "[[binding]]\nqueue = \"q\"\ncluster = \"c\"\nservice = \"s\"\npoll_interval = \"5 parsecs\"\n",
                ),
            ),
            "binding[0].poll_interval",
        ),
        (
            error(
                &[],
                Some(
                    "[[binding]]\nqueue = \"q\"\ncluster = \"c\"\nservice = \"s\"\n[binding.local]\ncommand = [\"w\"]\n",
                ),
            ),
            "binding[0].local",
        ),
        (
            error(
                &[],
                Some("[[binding]]\nqueue = \"q\"\n[binding.local]\ncommand = []\n"),
            ),
            "binding[0].local.command",
        ),
        (
            error(
                &[],
                Some(
                    "[[binding]]\nqueue = \"a/q\"\ncluster = \"c\"\nservice = \"s\"\n[[binding]]\nqueue = \"b/q\"\ncluster = \"c\"\nservice = \"t\"\n",
                ),
            ),
            "binding[1].name",
        ),
        (error(&[], Some("http_addr = \"nowhere\"\n")), "http_addr"),
    ];
    for (error, setting) in cases {
        assert_eq!(error.setting, setting, "{error}");
        assert!(error.to_string().contains(setting), "{error}");
    }

    // An unknown key in the file names the key and the line.
    let typo = error(&[], Some("[[binding]]\nqueue = \"q\"\nmaxx = 3\n"));
    assert!(
        typo.message.contains("maxx") && typo.message.contains("line 3"),
        "{typo}"
    );
    // A malformed flag value is refused by the parser, naming the flag.
    let flag = Cli::try_parse_from(["spotq-controller", "--poll-interval", "soon"])
        .expect_err("not a duration")
        .to_string();
    assert!(flag.contains("--poll-interval"), "{flag}");
}

#[test]
fn durations_take_a_unit_or_mean_seconds() {
    for (text, expected) in [
        ("250ms", Duration::from_millis(250)),
        ("5s", Duration::from_secs(5)),
        ("1.5s", Duration::from_millis(1500)),
        ("2m", Duration::from_secs(120)),
        ("2min", Duration::from_secs(120)),
        ("1m30s", Duration::from_secs(90)),
        ("1h2m3.5s", Duration::from_millis(3_723_500)),
        ("1h", Duration::from_secs(3600)),
        ("30", Duration::from_secs(30)),
        ("0.5", Duration::from_millis(500)),
    ] {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
    }
    for text in [
        "",
        "s",
        "5 parsecs",
        "-1s",
        "1e3s",
        " 5s",
        "30s1m",
        "1.5m30s",
        "1.0005s",
        "1m30",
    ] {
        assert!(parse_duration(text).is_err(), "{text}");
    }
    assert!(
        parse_duration("1.0005s")
            .expect_err("finer than a millisecond")
            .contains("finer than a millisecond")
    );
}

#[test]
fn flags_and_the_file_take_the_one_duration_syntax() {
    let flags = cli(&["--poll-interval", "1m30s", "--scale-in-cooldown", "1.5s"]);
    assert_eq!(flags.scaling.poll_interval, Some(Duration::from_secs(90)));
    assert_eq!(
        flags.scaling.scale_in_cooldown,
        Some(Duration::from_millis(1500))
    );
    let file = "[defaults]\npoll_interval = \"1m30s\"\nscale_in_cooldown = 0.5\n\
                [[binding]]\nqueue = \"q\"\ncluster = \"c\"\nservice = \"s\"\n";
    let config = Config::from_parts(&cli(&[]), Some(file)).expect("valid");
    assert_eq!(config.bindings[0].poll_interval, Duration::from_secs(90));
    assert_eq!(
        config.bindings[0].policy.scale_in_cooldown,
        Duration::from_millis(500)
    );
    // A number of seconds in the file is held to the millisecond as a text is.
    let fine = error(
        &[],
        Some(
            "[defaults]\nscale_in_cooldown = 0.0001\n[[binding]]\nqueue = \"q\"\ncluster = \"c\"\nservice = \"s\"\n",
        ),
    );
    assert_eq!(fine.setting, "defaults.scale_in_cooldown", "{fine}");
    assert!(fine.message.contains("finer than a millisecond"), "{fine}");
    let negative = error(
        &[],
        Some("[[binding]]\nqueue = \"q\"\ncluster = \"c\"\nservice = \"s\"\nlatency_goal = -1\n"),
    );
    assert!(negative.setting.ends_with("latency_goal"), "{negative}");
}

#[test]
fn the_manual_s_example_file_is_valid() {
    let manual = include_str!("../../README.md");
    let example = manual
        .split_once("```toml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(toml, _)| toml)
        .expect("a TOML example");
    let config = Config::from_parts(&cli(&[]), Some(example)).expect("the example parses");
    let names: Vec<&str> = config.bindings.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["orders", "thumbnails", "local-demo", "reports"]);
    assert_eq!(
        config.bindings[0].policy.scale_in_cooldown,
        Duration::from_secs(120)
    );
    let jobs = config.bindings[3].job_policy().expect("a job binding");
    assert_eq!(
        (jobs.messages_per_task, jobs.max_tasks, jobs.max_step),
        (100, 20, Some(5))
    );
}

const JOBS: &str = r#"
[defaults]
poll_interval = "2s"
max = 4
scale_in_cooldown = "2m"

[[binding]]
name = "reports"
queue = "reports"
cluster = "jobs"
max = 8
max_step = 3
count_delayed = true
[binding.job]
task_definition = "report-job:7"
subnets = ["subnet-0a1b2c3d", "subnet-4e5f6a7b"]
security_groups = ["sg-0a1b2c3d"]
assign_public_ip = true
messages_per_task = 200
spot_fallback = true
start_grace = "1m30s"

[[binding]]
queue = "nightly"
cluster = "jobs"
[binding.job]
task_definition = "nightly"
subnets = ["subnet-0a1b2c3d"]
capacity_provider = "FARGATE"

[[binding]]
name = "local-jobs"
queue = "local"
[binding.local]
command = ["worker"]
[binding.job]
messages_per_task = 5
"#;

#[test]
fn job_bindings_from_the_file_take_their_table_and_the_binding_s_bounds() {
    let config = Config::from_parts(&cli(&[]), Some(JOBS)).expect("valid");
    let [reports, nightly, local] = config.bindings.as_slice() else {
        panic!("three bindings: {config:?}");
    };
    assert_eq!(
        reports.target,
        TargetConfig::Job(JobConfig {
            runner: JobRunner::Ecs(EcsJobConfig {
                cluster: "jobs".to_owned(),
                task_definition: "report-job:7".to_owned(),
                subnets: vec!["subnet-0a1b2c3d".to_owned(), "subnet-4e5f6a7b".to_owned()],
                security_groups: vec!["sg-0a1b2c3d".to_owned()],
                assign_public_ip: true,
                capacity_provider: FARGATE_SPOT.to_owned(),
                spot_fallback: true,
            }),
            messages_per_task: 200,
            start_grace: Duration::from_secs(90),
        })
    );
    let policy = reports.job_policy().expect("a job binding");
    assert_eq!(
        (policy.messages_per_task, policy.max_tasks, policy.max_step),
        (200, 8, Some(3))
    );
    assert!(policy.count_delayed);
    assert_eq!(policy.start_grace, Duration::from_secs(90));
    assert_eq!(
        (policy.retry.base, policy.retry.max, policy.retry.jitter),
        (Duration::from_secs(2), MAX_START_BACKOFF, false),
        "retried a poll interval later, then doubling"
    );

    // The defaults of a job table, and the file's defaults for max.
    let TargetConfig::Job(job) = &nightly.target else {
        panic!("a job binding: {nightly:?}");
    };
    assert_eq!(nightly.name, "nightly");
    assert_eq!(
        (job.messages_per_task, job.start_grace),
        (DEFAULT_MESSAGES_PER_TASK, DEFAULT_START_GRACE)
    );
    let JobRunner::Ecs(ecs) = &job.runner else {
        panic!("ECS tasks: {job:?}");
    };
    assert_eq!(ecs.capacity_provider, "FARGATE");
    assert!(ecs.security_groups.is_empty());
    assert!(!ecs.assign_public_ip && !ecs.spot_fallback);
    let policy = nightly.job_policy().expect("a job binding");
    assert_eq!((policy.max_tasks, policy.max_step), (4, None));
    assert!(!policy.count_delayed);

    let TargetConfig::Job(job) = &local.target else {
        panic!("a local job binding: {local:?}");
    };
    assert_eq!(
        job.runner,
        JobRunner::Local(LocalConfig {
            command: vec!["worker".to_owned()],
            env: vec![],
            stop_timeout: DEFAULT_STOP_TIMEOUT,
        })
    );
    assert_eq!(job.messages_per_task, 5);
    assert_eq!(
        config
            .bindings
            .iter()
            .filter(|b| b.job_policy().is_none())
            .count(),
        0
    );
}

#[test]
fn job_flags_make_the_flags_binding_a_job_binding() {
    let config = Config::from_parts(
        &cli(&[
            "--queue",
            "jobs",
            "--cluster",
            "c",
            "--job-task-definition",
            "arn:aws:ecs:us-east-1:123456789012:task-definition/job:3",
            "--job-subnets",
            "subnet-1,subnet-2",
            "--job-security-groups",
            "sg-1",
            "--job-assign-public-ip",
            "--job-spot-fallback",
            "--job-messages-per-task",
            "50",
            "--job-start-grace",
            "45s",
            "--max",
            "6",
            "--max-step",
            "2",
        ]),
        None,
    )
    .expect("valid");
    let binding = &config.bindings[0];
    assert_eq!(
        binding.target,
        TargetConfig::Job(JobConfig {
            runner: JobRunner::Ecs(EcsJobConfig {
                cluster: "c".to_owned(),
                task_definition: "arn:aws:ecs:us-east-1:123456789012:task-definition/job:3"
                    .to_owned(),
                subnets: vec!["subnet-1".to_owned(), "subnet-2".to_owned()],
                security_groups: vec!["sg-1".to_owned()],
                assign_public_ip: true,
                capacity_provider: FARGATE_SPOT.to_owned(),
                spot_fallback: true,
            }),
            messages_per_task: 50,
            start_grace: Duration::from_secs(45),
        })
    );
    let policy = binding.job_policy().expect("a job binding");
    assert_eq!((policy.max_tasks, policy.max_step), (6, Some(2)));

    let local = Config::from_parts(
        &cli(&[
            "--queue",
            "q",
            "--local-command",
            "worker",
            "--job-messages-per-task",
            "5",
        ]),
        None,
    )
    .expect("valid");
    assert!(matches!(
        &local.bindings[0].target,
        TargetConfig::Job(JobConfig {
            runner: JobRunner::Local(_),
            messages_per_task: 5,
            ..
        })
    ));
    // No job flag: a service binding, as before.
    let service = Config::from_parts(
        &cli(&["--queue", "q", "--cluster", "c", "--service", "s"]),
        None,
    )
    .expect("valid");
    assert!(service.bindings[0].job_policy().is_none());
}

#[test]
fn a_bad_job_setting_fails_naming_it() {
    let ecs_job = |extra: &str| {
        format!(
            "[[binding]]\nqueue = \"q\"\ncluster = \"c\"\n{extra}\n[binding.job]\ntask_definition = \"t\"\nsubnets = [\"subnet-1\"]\n"
        )
    };
    let job_table = |table: &str| {
        format!("[[binding]]\nqueue = \"q\"\ncluster = \"c\"\n[binding.job]\n{table}\n")
    };
    let flags = [
        "--queue",
        "q",
        "--cluster",
        "c",
        "--job-task-definition",
        "t",
        "--job-subnets",
        "subnet-1",
    ];
    let cases: Vec<(InvalidSetting, &str)> = vec![
        (
            error(
                &[],
                Some(
                    "[[binding]]\nqueue = \"q\"\n[binding.job]\ntask_definition = \"t\"\nsubnets = [\"subnet-1\"]\n",
                ),
            ),
            "binding[0].cluster",
        ),
        (
            error(&[], Some(&job_table("subnets = [\"subnet-1\"]"))),
            "binding[0].job.task_definition",
        ),
        (
            error(
                &[],
                Some(&job_table(
                    "task_definition = \" \"\nsubnets = [\"subnet-1\"]",
                )),
            ),
            "binding[0].job.task_definition",
        ),
        (
            error(&[], Some(&job_table("task_definition = \"t\""))),
            "binding[0].job.subnets",
        ),
        (
            error(
                &[],
                Some(&job_table(
                    "task_definition = \"t\"\nsubnets = [\"10.0.0.0/24\"]",
                )),
            ),
            "binding[0].job.subnets",
        ),
        (
            error(
                &[],
                Some(&job_table(&format!(
                    "task_definition = \"t\"\nsubnets = [{}]",
                    (0..17)
                        .map(|n| format!("\"subnet-{n}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            ),
            "binding[0].job.subnets",
        ),
        (
            error(
                &[],
                Some(&job_table(
                    "task_definition = \"t\"\nsubnets = [\"subnet-1\"]\nsecurity_groups = [\"default\"]",
                )),
            ),
            "binding[0].job.security_groups",
        ),
        (
            error(
                &[],
                Some(&job_table(
                    "task_definition = \"t\"\nsubnets = [\"subnet-1\"]\nmessages_per_task = 0",
                )),
            ),
            "binding[0].job.messages_per_task",
        ),
        (
            error(
                &[],
                Some(&job_table(
                    "task_definition = \"t\"\nsubnets = [\"subnet-1\"]\nstart_grace = 0",
                )),
            ),
            "binding[0].job.start_grace",
        ),
        (
            error(
                &[],
                Some(&job_table(
                    "task_definition = \"t\"\nsubnets = [\"subnet-1\"]\nstart_grace = \"5 parsecs\"",
                )),
            ),
            "binding[0].job.start_grace",
        ),
        (
            error(
                &[],
                Some(&job_table(
                    "task_definition = \"t\"\nsubnets = [\"subnet-1\"]\ncapacity_provider = \"FARGATE\"\nspot_fallback = true",
                )),
            ),
            "binding[0].job.spot_fallback",
        ),
        (
            error(
                &[],
                Some(&job_table(
                    "task_definition = \"t\"\nsubnets = [\"subnet-1\"]\ncapacity_provider = \"\"",
                )),
            ),
            "binding[0].job.capacity_provider",
        ),
        (
            error(&[], Some(&ecs_job("service = \"s\""))),
            "binding[0].service",
        ),
        (error(&[], Some(&ecs_job("min = 1"))), "binding[0].min"),
        (
            error(&[], Some(&ecs_job("backlog_per_task = 5"))),
            "binding[0].backlog_per_task",
        ),
        (
            error(&[], Some(&ecs_job("scale_in_cooldown = \"1m\""))),
            "binding[0].scale_in_cooldown",
        ),
        (
            error(&[], Some(&ecs_job("metrics_urls = [\"http://w/metrics\"]"))),
            "binding[0].metrics_urls",
        ),
        (
            error(&[], Some(&ecs_job("name = \"reports#1\""))),
            "binding[0].name",
        ),
        (
            error(
                &[],
                Some(
                    "[[binding]]\nqueue = \"q\"\n[binding.local]\ncommand = [\"w\"]\n[binding.job]\nsubnets = [\"subnet-1\"]\n",
                ),
            ),
            "binding[0].job.subnets",
        ),
        (
            error(
                &[],
                Some(
                    "[[binding]]\nqueue = \"q\"\ncluster = \"c\"\n[binding.local]\ncommand = [\"w\"]\n[binding.job]\n",
                ),
            ),
            "binding[0].local",
        ),
        (
            error(
                &[],
                Some("[[binding]]\nqueue = \"q\"\n[binding.local]\ncommand = []\n[binding.job]\n"),
            ),
            "binding[0].local.command",
        ),
        (
            error(
                &[],
                Some(&format!(
                    "[defaults.job]\nmessages_per_task = 5\n{}",
                    ecs_job("")
                )),
            ),
            "defaults.job",
        ),
        // An unknown key of the job table, named by the file (`--config` without a path).
        (
            error(&[], Some(&job_table("subnet = [\"subnet-1\"]"))),
            "--config",
        ),
        (
            error(&["--queue", "q", "--job-task-definition", "t"], None),
            "--cluster",
        ),
        (
            error(
                &[
                    "--queue",
                    "q",
                    "--cluster",
                    "c",
                    "--job-messages-per-task",
                    "5",
                ],
                None,
            ),
            "--job-task-definition",
        ),
        (
            error(
                &[
                    "--queue",
                    "q",
                    "--cluster",
                    "c",
                    "--job-task-definition",
                    "t",
                ],
                None,
            ),
            "--job-subnets",
        ),
        (
            error(
                &[&flags[..], &["--job-messages-per-task", "0"]].concat(),
                None,
            ),
            "--job-messages-per-task",
        ),
        (
            error(&[&flags[..], &["--job-start-grace", "0s"]].concat(), None),
            "--job-start-grace",
        ),
        (
            error(
                &[
                    &flags[..],
                    &["--job-capacity-provider", "FARGATE", "--job-spot-fallback"],
                ]
                .concat(),
                None,
            ),
            "--job-spot-fallback",
        ),
        (
            error(&[&flags[..], &["--service", "s"]].concat(), None),
            "--service",
        ),
        (
            error(
                &[
                    "--queue",
                    "q",
                    "--local-command",
                    "w",
                    "--job-subnets",
                    "subnet-1",
                ],
                None,
            ),
            "--job-subnets",
        ),
    ];
    for (error, setting) in cases {
        assert_eq!(error.setting, setting, "{error}");
        assert!(error.to_string().contains(setting), "{error}");
    }
}

#[test]
fn the_config_module_s_example_file_is_valid() {
    let docs = include_str!("mod.rs");
    let example: String = docs
        .split_once("//! ```toml\n")
        .and_then(|(_, rest)| rest.split_once("//! ```\n"))
        .map(|(toml, _)| toml)
        .expect("a TOML example")
        .lines()
        .map(|line| line.trim_start_matches("//!").trim_start_matches(' '))
        .collect::<Vec<_>>()
        .join("\n");
    let config = Config::from_parts(&cli(&[]), Some(&example)).expect("the example parses");
    let names: Vec<&str> = config.bindings.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["orders", "thumbnails", "reports"]);
    assert!(config.bindings[2].job_policy().is_some());
}

/// An ECS service binding's entry in a file.
fn service_entry(name: &str, queue: &str, cluster: &str, service: &str) -> String {
    format!(
        "[[binding]]\nname = \"{name}\"\nqueue = \"{queue}\"\ncluster = \"{cluster}\"\nservice = \"{service}\"\n"
    )
}

#[test]
fn two_bindings_on_one_ecs_service_are_refused_naming_both() {
    // The same service, by name and by ARN: both bindings would set its desired count.
    let file = service_entry("orders", "orders", "jobs", "worker")
        + &service_entry(
            "replays",
            "orders-replay",
            "arn:aws:ecs:eu-west-1:123456789012:cluster/jobs",
            "arn:aws:ecs:eu-west-1:123456789012:service/jobs/worker",
        );
    let shared = error(&[], Some(&file));
    assert_eq!(shared.setting, "binding[1].service", "{shared}");
    for named in ["binding[0]", "\"orders\"", "\"replays\"", "jobs", "worker"] {
        assert!(shared.message.contains(named), "{named}: {shared}");
    }
    // The binding given by flags is named by its flag.
    let flags = error(
        &[
            "--queue",
            "orders-replay",
            "--cluster",
            "jobs",
            "--service",
            "worker",
        ],
        Some(&service_entry("orders", "orders", "jobs", "worker")),
    );
    assert_eq!(flags.setting, "--service", "{flags}");
    assert!(flags.message.contains("\"orders\""), "{flags}");

    // One service name in two clusters is two services; job and local bindings set no
    // service's count.
    let file = service_entry("a", "a", "jobs", "worker")
        + &service_entry("b", "b", "other", "worker")
        + "[[binding]]\nqueue = \"c\"\ncluster = \"jobs\"\n[binding.job]\ntask_definition = \"t\"\nsubnets = [\"subnet-1\"]\n"
        + "[[binding]]\nqueue = \"d\"\ncluster = \"jobs\"\n[binding.job]\ntask_definition = \"t\"\nsubnets = [\"subnet-1\"]\n"
        + "[[binding]]\nqueue = \"e\"\n[binding.local]\ncommand = [\"w\"]\n"
        + "[[binding]]\nqueue = \"f\"\n[binding.local]\ncommand = [\"w\"]\n";
    let config = Config::from_parts(&cli(&[]), Some(&file)).expect("valid");
    assert_eq!(config.bindings.len(), 6);
}

#[test]
fn a_default_cluster_is_the_cluster_of_each_binding_that_names_none() {
    let file = "[defaults]\ncluster = \"jobs\"\n\
                [[binding]]\nqueue = \"a\"\nservice = \"a-worker\"\n\
                [[binding]]\nqueue = \"b\"\ncluster = \"other\"\nservice = \"b-worker\"\n\
                [[binding]]\nqueue = \"c\"\n[binding.local]\ncommand = [\"w\"]\n\
                [[binding]]\nqueue = \"d\"\n[binding.job]\ntask_definition = \"t\"\nsubnets = [\"subnet-1\"]\n";
    let config = Config::from_parts(&cli(&["--queue", "e", "--service", "e-worker"]), Some(file))
        .expect("valid");
    let ecs = |cluster: &str, service: &str| TargetConfig::Ecs {
        cluster: cluster.to_owned(),
        service: service.to_owned(),
    };
    let [a, b, c, d, e] = config.bindings.as_slice() else {
        panic!("five bindings: {config:?}");
    };
    assert_eq!(a.target, ecs("jobs", "a-worker"), "from [defaults]");
    assert_eq!(b.target, ecs("other", "b-worker"), "its own");
    assert!(
        matches!(c.target, TargetConfig::Local(_)),
        "local processes have no cluster: {c:?}"
    );
    assert!(
        matches!(&d.target, TargetConfig::Job(JobConfig { runner: JobRunner::Ecs(job), .. }) if job.cluster == "jobs"),
        "{d:?}"
    );
    assert_eq!(e.target, ecs("jobs", "e-worker"), "the flags' binding too");
    // Still a service with it, or an error naming the binding's missing service.
    let missing = error(
        &[],
        Some("[defaults]\ncluster = \"jobs\"\n[[binding]]\nqueue = \"a\"\n"),
    );
    assert_eq!(missing.setting, "binding[0].service", "{missing}");
}

/// A file whose `[defaults]` has `setting`, and two bindings that could take it.
fn with_default(setting: &str) -> String {
    format!("[defaults]\n{setting}\n")
        + &service_entry("a", "a", "jobs", "a-worker")
        + &service_entry("b", "b", "jobs", "b-worker")
}

#[test]
fn a_default_service_is_refused() {
    let refused = error(&[], Some(&with_default("service = \"worker\"")));
    assert_eq!(refused.setting, "defaults.service", "{refused}");
}

#[test]
fn a_default_queue_is_refused() {
    let refused = error(&[], Some(&with_default("queue = \"orders\"")));
    assert_eq!(refused.setting, "defaults.queue", "{refused}");
}

#[test]
fn a_default_name_is_refused() {
    let refused = error(&[], Some(&with_default("name = \"orders\"")));
    assert_eq!(refused.setting, "defaults.name", "{refused}");
}

#[test]
fn a_default_local_table_is_refused() {
    let file = "[defaults.local]\ncommand = [\"worker\"]\n\
                [[binding]]\nqueue = \"a\"\n[binding.local]\ncommand = [\"w\"]\n";
    let refused = error(&[], Some(file));
    assert_eq!(refused.setting, "defaults.local", "{refused}");
}

#[test]
fn default_metrics_urls_for_more_than_one_binding_are_refused() {
    let urls = "metrics_urls = [\"http://10.0.0.1:8080/metrics\"]";
    let refused = error(&[], Some(&with_default(urls)));
    assert_eq!(refused.setting, "defaults.metrics_urls", "{refused}");
    assert!(
        refused.message.contains("\"a\"") && refused.message.contains("\"b\""),
        "{refused}"
    );

    // One binding takes them: its workers. A binding with its own list, or a job
    // binding (which reads no workers), takes none.
    let file = format!("[defaults]\n{urls}\n")
        + &service_entry("a", "a", "jobs", "a-worker")
        + &service_entry("b", "b", "jobs", "b-worker")
        + "metrics_urls = [\"http://10.0.0.2:8080/metrics\"]\n"
        + "[[binding]]\nname = \"c\"\nqueue = \"c\"\ncluster = \"jobs\"\n[binding.job]\ntask_definition = \"t\"\nsubnets = [\"subnet-1\"]\n";
    let config = Config::from_parts(&cli(&[]), Some(&file)).expect("valid");
    let lists: Vec<&[String]> = config
        .bindings
        .iter()
        .map(|binding| binding.metrics_urls.as_slice())
        .collect();
    assert_eq!(
        lists,
        [
            &["http://10.0.0.1:8080/metrics".to_owned()][..],
            &["http://10.0.0.2:8080/metrics".to_owned()][..],
            &[][..],
        ]
    );

    // A list no binding takes is not read at all: refused too.
    let file = format!("[defaults]\n{urls}\n")
        + &service_entry("a", "a", "jobs", "a-worker")
        + "metrics_urls = [\"http://10.0.0.2:8080/metrics\"]\n";
    let untaken = error(&[], Some(&file));
    assert_eq!(untaken.setting, "defaults.metrics_urls", "{untaken}");
}

#[test]
fn a_metrics_url_flag_for_more_than_one_binding_is_refused() {
    let url = ["--metrics-url", "http://127.0.0.1:8080/metrics"];
    let two =
        service_entry("a", "a", "jobs", "a-worker") + &service_entry("b", "b", "jobs", "b-worker");
    let refused = error(&url, Some(&two));
    assert_eq!(refused.setting, "--metrics-url", "{refused}");
    // The flags' binding and a binding of the file.
    let flags_binding = ["--queue", "q", "--cluster", "jobs", "--service", "q-worker"];
    let refused = error(
        &[&flags_binding[..], &url[..]].concat(),
        Some(&service_entry("a", "a", "jobs", "a-worker")),
    );
    assert_eq!(refused.setting, "--metrics-url", "{refused}");

    // The flags' binding alone, or beside a binding with its own list: its workers.
    let alone =
        Config::from_parts(&cli(&[&flags_binding[..], &url[..]].concat()), None).expect("valid");
    assert_eq!(alone.bindings[0].metrics_urls, [url[1]]);
    let beside = Config::from_parts(
        &cli(&[&flags_binding[..], &url[..]].concat()),
        Some(
            &(service_entry("a", "a", "jobs", "a-worker")
                + "metrics_urls = [\"http://10.0.0.2:8080/metrics\"]\n"),
        ),
    )
    .expect("valid");
    assert_eq!(beside.bindings[1].metrics_urls, [url[1]]);
    // A job binding reads no workers.
    let job = error(
        &[
            &url[..],
            &[
                "--queue",
                "q",
                "--cluster",
                "jobs",
                "--job-task-definition",
                "t",
                "--job-subnets",
                "subnet-1",
            ],
        ]
        .concat(),
        None,
    );
    assert_eq!(job.setting, "--metrics-url", "{job}");
}
