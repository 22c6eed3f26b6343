use super::*;

use clap::{CommandFactory, Parser};

use crate::decision::{BacklogTarget, Policy};

fn cli(args: &[&str]) -> Cli {
    let mut argv = vec!["spotq-controller"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).expect("valid flags")
}

fn error(args: &[&str], file: Option<&str>) -> ConfigError {
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
    let cases: Vec<(ConfigError, &str)> = vec![
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
            "--metrics-urls",
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
fn the_readme_s_example_file_is_valid() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split_once("## Scale to zero: spotq-controller")
        .map(|(_, rest)| rest)
        .expect("the controller's README section");
    let example = section
        .split_once("```toml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(toml, _)| toml)
        .expect("a TOML example");
    let config = Config::from_parts(&cli(&[]), Some(example)).expect("the example parses");
    let names: Vec<&str> = config.bindings.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["orders", "thumbnails", "local-demo"]);
    assert_eq!(
        config.bindings[0].policy.scale_in_cooldown,
        Duration::from_secs(120)
    );
}
