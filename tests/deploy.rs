//! The deployment kit in `deploy/` agrees with the code it deploys: every file parses;
//! the task definitions set only environment variables the binaries read, on the ports
//! they serve, with the health check the images carry; the worker's stop timeout covers
//! its grace period and exit margin; the services use the capacity providers the Spot
//! contract needs; the job task definition runs the batch job on the worker's queue;
//! and the IAM policies grant exactly the calls the code makes, on the queue, the
//! service, the job task definition and the roles the other files name. The kit's
//! manual, `deploy/README.md`, uses these files and no others in its steps.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// A source file without its unit tests (a trailing `#[cfg(test)] mod tests { … }`).
fn code(path: &str) -> String {
    let source = read(path);
    match source.find("\n#[cfg(test)]\nmod tests {") {
        Some(end) => source[..end].to_owned(),
        None => source,
    }
}

/// Every `.rs` file below `dir`, test files and modules left out.
fn code_below(dir: &str) -> String {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|ext| ext == "rs")
                && path.file_name().is_some_and(|name| name != "tests.rs")
            {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join(dir), &mut files);
    files.sort();
    files
        .iter()
        .map(|path| {
            let relative = path.strip_prefix(root()).expect("below the root");
            code(&relative.to_string_lossy())
        })
        .collect()
}

/// The number in the first `{prefix}N{suffix}` of `text`.
fn number_after(text: &str, prefix: &str, what: &str) -> u64 {
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no `{prefix}` for {what}"))
        + prefix.len();
    text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number after `{prefix}` for {what}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|item| item.as_str().expect("a string").to_owned())
        .collect()
}

/// The one container of a task definition.
fn container(task_definition: &Value) -> &Value {
    let containers = task_definition["containerDefinitions"]
        .as_array()
        .expect("containerDefinitions");
    assert_eq!(containers.len(), 1, "one container per task");
    &containers[0]
}

fn environment(container: &Value) -> Vec<(String, String)> {
    container["environment"]
        .as_array()
        .expect("environment")
        .iter()
        .map(|pair| {
            (
                pair["name"].as_str().expect("name").to_owned(),
                pair["value"].as_str().expect("value").to_owned(),
            )
        })
        .collect()
}

fn env_value<'a>(env: &'a [(String, String)], name: &str) -> &'a str {
    env.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("no {name} in {env:?}"))
}

/// The names in `name = "…"`-style string literals of `source` that look like
/// environment variables: `SPOTQ_…`, `RUST_LOG`, `ECS_…`, `AWS_…`.
fn env_names_in(source: &str) -> BTreeSet<String> {
    // Every piece between two quotes that is a whole name: taking every other piece
    // would lose its place at a `'"'` or an escaped quote, and code between two
    // literals is never a bare upper-case name.
    source
        .split('"')
        .skip(1)
        .filter(|literal| {
            ["SPOTQ_", "RUST_LOG", "ECS_", "AWS_"]
                .iter()
                .any(|prefix| literal.starts_with(prefix))
                && literal
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

/// What the AWS SDK's standard configuration reads (the region, the endpoint overrides):
/// a task definition may set these for any binary that loads it.
const SDK_VARIABLES: [&str; 5] = [
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_ECS",
];

/// Variables ECS itself sets in every task; a task definition must not override them.
const SET_BY_ECS: [&str; 3] = [
    "ECS_AGENT_URI",
    "ECS_CONTAINER_METADATA_URI_V4",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
];

fn check_environment(env: &[(String, String)], read_by_code: &BTreeSet<String>) {
    let names: Vec<&str> = env.iter().map(|(name, _)| name.as_str()).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "a variable set twice: {names:?}");
    for name in names {
        assert!(
            !SET_BY_ECS.contains(&name),
            "{name} is set by ECS, not by the task definition"
        );
        assert!(
            read_by_code.contains(name) || SDK_VARIABLES.contains(&name),
            "{name} is read by no code: {read_by_code:?}"
        );
    }
}

/// `(region, account, name)` of `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`.
fn queue_url_parts(url: &str) -> (String, String, String) {
    let rest = url
        .strip_prefix("https://sqs.")
        .unwrap_or_else(|| panic!("not an SQS queue URL: {url}"));
    let (region, path) = rest
        .split_once(".amazonaws.com/")
        .unwrap_or_else(|| panic!("not an SQS queue URL: {url}"));
    let (account, name) = path
        .split_once('/')
        .unwrap_or_else(|| panic!("no account/name in {url}"));
    (region.to_owned(), account.to_owned(), name.to_owned())
}

/// The health check command the Dockerfile's stage `stage` declares (exec form), after
/// `CMD`.
fn dockerfile_health_check(stage: &str) -> Vec<String> {
    let dockerfile = read("Dockerfile");
    let start = dockerfile
        .find(&format!(" AS {stage}\n"))
        .unwrap_or_else(|| panic!("no stage {stage}"));
    let stage_text = &dockerfile[start..];
    let stage_text = stage_text[1..]
        .find("\nFROM ")
        .map_or(stage_text, |end| &stage_text[..=end]);
    let check = stage_text
        .split_once("HEALTHCHECK")
        .expect("a HEALTHCHECK")
        .1;
    let exec = check
        .split_once("CMD ")
        .expect("HEALTHCHECK … CMD")
        .1
        .lines()
        .next()
        .expect("the command");
    strings(&serde_json::from_str(exec).expect("exec form (a JSON array)"))
}

/// Every file of the kit below `deploy/`, as a path below it
/// (`autoscaling/wake-alarm.json`): all but its manual, `deploy/README.md`.
fn deploy_files() -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, files: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.path().is_dir() {
                walk(&entry.path(), &format!("{name}/"), files);
            } else if name != "README.md" {
                files.push(name);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("deploy"), "", &mut files);
    files.sort();
    files
}

#[test]
fn every_deploy_file_parses_and_the_manual_uses_each() {
    let manual = read("deploy/README.md");
    let files = deploy_files();
    assert!(files.len() >= 14, "{files:?}");
    for file in &files {
        assert!(file.ends_with(".json"), "{file}");
        json(&format!("deploy/{file}"));
        assert!(
            manual.contains(&format!("file://deploy/{file}")),
            "deploy/README.md's steps do not use deploy/{file}"
        );
    }
    for mention in manual.split("file://deploy/").skip(1) {
        let file: String = mention
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || ['-', '.', '/'].contains(c))
            .collect();
        assert!(
            files.contains(&file),
            "deploy/README.md uses a missing deploy/{file}"
        );
    }
}

#[test]
fn the_worker_task_definition_matches_the_worker_it_runs() {
    let task = json("deploy/worker-task-definition.json");
    assert_eq!(task["networkMode"], "awsvpc");
    assert_eq!(strings(&task["requiresCompatibilities"]), ["FARGATE"]);
    // The ECS guide's example size: a quarter vCPU, 512 MiB.
    assert_eq!(
        (&task["cpu"], &task["memory"]),
        (&"256".into(), &"512".into())
    );
    let worker = container(&task);
    assert_eq!(worker["essential"], true);

    // The port and the health path the example serves, probed by the image's binary.
    let example = code("examples/basic-sqs-worker.rs");
    assert!(
        example.contains("serve::serve(spotq::telemetry::serve::addr_from_env()?"),
        "the example serves on $SPOTQ_HTTP_ADDR"
    );
    let port = number_after(
        &code("runtime/src/telemetry/serve/mod.rs"),
        "DEFAULT_HTTP_ADDR: &str = \"0.0.0.0:",
        "the worker's default port",
    );
    assert!(
        environment(worker)
            .iter()
            .all(|(name, _)| name != "SPOTQ_HTTP_ADDR"),
        "the task serves on the default port its health check probes"
    );
    assert_eq!(worker["portMappings"][0]["containerPort"], port);
    let serve = code("runtime/src/telemetry/serve/mod.rs");
    assert!(
        serve.contains("\"/health\" => Path::Health"),
        "spotq::telemetry::serve answers /health"
    );
    let command = strings(&worker["healthCheck"]["command"]);
    assert_eq!(
        command,
        [
            "CMD".to_owned(),
            "/usr/local/bin/spotq-healthcheck".to_owned(),
            format!("http://127.0.0.1:{port}/health"),
        ]
    );
    assert_eq!(
        command[1..],
        dockerfile_health_check("worker"),
        "as in the image"
    );
    // The probe gives up before ECS does, so a hung worker reads unhealthy, not timed out.
    let timeout = worker["healthCheck"]["timeout"].as_u64().expect("timeout");
    assert!(spotq_healthcheck::DEFAULT_TIMEOUT.as_secs() < timeout);

    // Only variables the worker reads; the queue by URL (so no sqs:GetQueueUrl).
    let mut read_by_worker = env_names_in(&example);
    read_by_worker.extend(env_names_in(&code_below("runtime/src")));
    assert!(read_by_worker.contains("SPOTQ_QUEUE"), "{read_by_worker:?}");
    assert!(
        read_by_worker.contains("SPOTQ_LOG_FORMAT"),
        "{read_by_worker:?}"
    );
    assert!(code("runtime/src/telemetry/logging.rs").contains("EnvFilter::try_from_default_env()"));
    read_by_worker.insert("RUST_LOG".to_owned()); // EnvFilter's default variable
    let env = environment(worker);
    check_environment(&env, &read_by_worker);
    queue_url_parts(env_value(&env, "SPOTQ_QUEUE"));
    assert_eq!(env_value(&env, "SPOTQ_LOG_FORMAT"), "json");

    let logs = &worker["logConfiguration"];
    assert_eq!(logs["logDriver"], "awslogs");
    for option in ["awslogs-group", "awslogs-region", "awslogs-stream-prefix"] {
        assert!(logs["options"][option].is_string(), "{option}");
    }
}

#[test]
fn the_stop_timeout_covers_the_worker_s_grace_period_and_exit() {
    let task = json("deploy/worker-task-definition.json");
    let stop_timeout = container(&task)["stopTimeout"]
        .as_u64()
        .expect("stopTimeout");
    assert_eq!(stop_timeout, 120, "Fargate's longest, all of Spot's notice");

    // The example plans its shutdown for this stop timeout...
    let example = code("examples/basic-sqs-worker.rs");
    let worker_stop_timeout = number_after(
        &example,
        ".stop_timeout(Duration::from_secs(",
        "the example's stop_timeout",
    );
    assert_eq!(worker_stop_timeout, stop_timeout);
    // ... so its grace period (the default) and then the release, flush and exit end
    // before SIGKILL.
    assert!(
        !example.contains(".shutdown_grace("),
        "the default grace applies"
    );
    let config = spotq::config::WorkerConfig {
        stop_timeout: std::time::Duration::from_secs(worker_stop_timeout),
        ..spotq::config::WorkerConfig::default()
    };
    let grace = config
        .grace_period()
        .expect("the example's settings are valid");
    assert!(
        grace + spotq::shutdown::ROOM <= config.stop_timeout,
        "grace {grace:?} + release, flush and exit ({:?}) within stopTimeout {stop_timeout} s",
        spotq::shutdown::ROOM
    );
}

#[test]
fn the_worker_service_runs_on_spot_with_an_on_demand_base() {
    let service = json("deploy/worker-service.json");
    let task = json("deploy/worker-task-definition.json");
    assert_eq!(service["taskDefinition"], task["family"]);
    assert_eq!(service["desiredCount"], 0, "the controller wakes it");
    assert!(
        service.get("launchType").is_none(),
        "a strategy, not a launch type"
    );
    let strategy: Vec<(String, u64, u64)> = service["capacityProviderStrategy"]
        .as_array()
        .expect("capacityProviderStrategy")
        .iter()
        .map(|entry| {
            (
                entry["capacityProvider"]
                    .as_str()
                    .expect("provider")
                    .to_owned(),
                entry["weight"].as_u64().expect("weight"),
                entry["base"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        strategy,
        [
            ("FARGATE_SPOT".to_owned(), 4, 0),
            ("FARGATE".to_owned(), 1, 1),
        ]
    );
    let vpc = &service["networkConfiguration"]["awsvpcConfiguration"];
    assert!(!strings(&vpc["subnets"]).is_empty());
    assert!(!strings(&vpc["securityGroups"]).is_empty());
}

#[test]
fn the_controller_runs_always_on_and_scales_the_worker_service() {
    let task = json("deploy/controller-task-definition.json");
    let controller = container(&task);
    let worker_task = json("deploy/worker-task-definition.json");
    let worker_service = json("deploy/worker-service.json");

    let mut read_by_controller = env_names_in(&code_below("controller/src"));
    read_by_controller.extend(env_names_in(&code("runtime/src/telemetry/logging.rs")));
    read_by_controller.insert("RUST_LOG".to_owned());
    let env = environment(controller);
    check_environment(&env, &read_by_controller);
    assert_eq!(
        env_value(&env, "SPOTQ_CONTROLLER_QUEUE"),
        env_value(&environment(container(&worker_task)), "SPOTQ_QUEUE"),
        "the worker's queue"
    );
    assert_eq!(
        env_value(&env, "SPOTQ_CONTROLLER_CLUSTER"),
        worker_service["cluster"]
    );
    assert_eq!(
        env_value(&env, "SPOTQ_CONTROLLER_SERVICE"),
        worker_service["serviceName"]
    );
    // It reads the workers' `/metrics` on the port their task definition maps.
    assert_eq!(
        env_value(&env, "SPOTQ_CONTROLLER_METRICS_PORT"),
        container(&worker_task)["portMappings"][0]["containerPort"].to_string()
    );

    let port = number_after(
        &code("controller/src/config/mod.rs"),
        "DEFAULT_HTTP_ADDR: &str = \"0.0.0.0:",
        "the controller's port",
    );
    assert!(
        env.iter()
            .all(|(name, _)| name != "SPOTQ_CONTROLLER_HTTP_ADDR")
    );
    assert_eq!(controller["portMappings"][0]["containerPort"], port);
    let command = strings(&controller["healthCheck"]["command"]);
    assert_eq!(command[0], "CMD");
    assert_eq!(
        command[1..],
        dockerfile_health_check("controller"),
        "as in the image"
    );
    assert_eq!(command[2], format!("http://127.0.0.1:{port}/health"));

    let service = json("deploy/controller-service.json");
    assert_eq!(service["taskDefinition"], task["family"]);
    assert_eq!(service["cluster"], worker_service["cluster"]);
    assert_eq!(service["desiredCount"], 1);
    let strategy = service["capacityProviderStrategy"]
        .as_array()
        .expect("capacityProviderStrategy");
    assert_eq!(strategy.len(), 1, "on-demand only: {strategy:?}");
    assert_eq!(strategy[0]["capacityProvider"], "FARGATE");
    assert_eq!(strategy[0]["base"], 1);
    // One controller at a time, also during a deployment.
    assert_eq!(service["deploymentConfiguration"]["maximumPercent"], 100);
}

/// The `ecs:cluster` an action's statement is narrowed to by its condition, if any.
fn cluster_condition(policy: &Value, action: &str) -> Option<String> {
    policy["Statement"]
        .as_array()
        .expect("Statement")
        .iter()
        .find(|statement| match &statement["Action"] {
            Value::String(one) => one == action,
            many => strings(many).iter().any(|granted| granted == action),
        })
        .and_then(|statement| statement["Condition"]["ArnEquals"]["ecs:cluster"].as_str())
        .map(str::to_owned)
}

/// The text of the fluent call that starts with `.method()` in `source`, up to its
/// `.send()`.
fn call_chain<'a>(source: &'a str, method: &str) -> &'a str {
    let start = source
        .find(&format!(".{method}()"))
        .unwrap_or_else(|| panic!("no .{method}() call"));
    let rest = &source[start..];
    let end = rest.find(".send()").unwrap_or(rest.len());
    &rest[..end]
}

/// Every action a policy allows, with the resources of its statement.
fn grants(policy: &Value) -> Vec<(String, Vec<String>)> {
    assert_eq!(policy["Version"], "2012-10-17");
    let mut grants = Vec::new();
    for statement in policy["Statement"].as_array().expect("Statement") {
        assert_eq!(statement["Effect"], "Allow");
        let list = |value: &Value| match value {
            Value::String(one) => vec![one.clone()],
            many => strings(many),
        };
        let resources = list(&statement["Resource"]);
        // `*` only where ECS authorizes a call on no resource of its own (ListTasks of a
        // whole cluster), narrowed to the cluster by the `ecs:cluster` condition.
        assert!(
            resources.iter().all(|resource| resource != "*")
                || statement["Condition"]["ArnEquals"]["ecs:cluster"].is_string(),
            "least privilege: name the resources, or the cluster ({statement})"
        );
        for action in list(&statement["Action"]) {
            assert!(!action.contains('*'), "{action}");
            grants.push((action, resources.clone()));
        }
    }
    grants
}

fn actions(grants: &[(String, Vec<String>)]) -> BTreeSet<String> {
    grants.iter().map(|(action, _)| action.clone()).collect()
}

fn resources_of<'a>(grants: &'a [(String, Vec<String>)], action: &str) -> &'a [String] {
    grants
        .iter()
        .find(|(granted, _)| granted == action)
        .map(|(_, resources)| resources.as_slice())
        .unwrap_or_else(|| panic!("{action} is not granted"))
}

/// The AWS API calls made in `source`: SDK fluent calls (`.receive_message()`) of SQS
/// and ECS operations, as IAM actions. A batch call needs its single action's
/// permission (IAM has no `sqs:DeleteMessageBatch`).
fn sdk_calls(source: &str) -> BTreeSet<String> {
    const OPERATIONS: [(&str, &str); 24] = [
        ("receive_message", "sqs:ReceiveMessage"),
        ("delete_message", "sqs:DeleteMessage"),
        ("delete_message_batch", "sqs:DeleteMessage"),
        ("change_message_visibility", "sqs:ChangeMessageVisibility"),
        (
            "change_message_visibility_batch",
            "sqs:ChangeMessageVisibility",
        ),
        ("get_queue_attributes", "sqs:GetQueueAttributes"),
        ("get_queue_url", "sqs:GetQueueUrl"),
        ("send_message", "sqs:SendMessage"),
        ("send_message_batch", "sqs:SendMessage"),
        ("purge_queue", "sqs:PurgeQueue"),
        ("create_queue", "sqs:CreateQueue"),
        ("delete_queue", "sqs:DeleteQueue"),
        ("set_queue_attributes", "sqs:SetQueueAttributes"),
        ("list_queues", "sqs:ListQueues"),
        ("describe_tasks", "ecs:DescribeTasks"),
        ("describe_services", "ecs:DescribeServices"),
        ("update_service", "ecs:UpdateService"),
        ("update_task_protection", "ecs:UpdateTaskProtection"),
        ("get_task_protection", "ecs:GetTaskProtection"),
        ("list_tasks", "ecs:ListTasks"),
        ("list_services", "ecs:ListServices"),
        ("describe_clusters", "ecs:DescribeClusters"),
        ("run_task", "ecs:RunTask"),
        ("stop_task", "ecs:StopTask"),
    ];
    OPERATIONS
        .iter()
        .filter(|(method, _)| source.contains(&format!(".{method}()")))
        .map(|(_, action)| (*action).to_owned())
        .collect()
}

#[test]
fn the_worker_policy_grants_exactly_the_calls_the_worker_makes() {
    let policy = grants(&json("deploy/worker-task-role-policy.json"));
    let continuing = grants(&json("deploy/worker-continue-policy.json"));

    let sqs = code("runtime/src/backend/sqs.rs");
    let mut calls = sdk_calls(&sqs);
    calls.extend(sdk_calls(&code("runtime/src/ecs/mod.rs")));
    // Task protection goes through the ECS agent (PUT $ECS_AGENT_URI/task-protection/
    // v1/state), which calls UpdateTaskProtection with the task role.
    let protection = code("runtime/src/ecs/protection/mod.rs");
    assert!(protection.contains("/task-protection/v1/state") && protection.contains("Method::PUT"));
    assert!(
        !protection.contains("Method::GET"),
        "reading protection needs GetTaskProtection"
    );
    calls.insert("ecs:UpdateTaskProtection".to_owned());
    // SendMessage only for Outcome::Continue: the separate policy.
    assert!(
        calls.remove("sqs:SendMessage"),
        "Backend::send sends continuations"
    );
    // GetQueueUrl only for a queue given by name; the task definition gives a URL.
    assert!(
        calls.remove("sqs:GetQueueUrl"),
        "SqsBackend::connect resolves names"
    );
    assert_eq!(actions(&policy), calls);
    assert_eq!(
        actions(&continuing),
        BTreeSet::from(["sqs:SendMessage".to_owned()])
    );

    // On the worker's queue, its cluster's tasks and its own service only.
    let task = json("deploy/worker-task-definition.json");
    let service = json("deploy/worker-service.json");
    let queue = env_value(&environment(container(&task)), "SPOTQ_QUEUE").to_owned();
    let (region, account, name) = queue_url_parts(&queue);
    let queue_arn = format!("arn:aws:sqs:{region}:{account}:{name}");
    let cluster = service["cluster"].as_str().expect("cluster");
    let tasks = format!("arn:aws:ecs:{region}:{account}:task/{cluster}/*");
    let own_service = format!(
        "arn:aws:ecs:{region}:{account}:service/{cluster}/{}",
        service["serviceName"].as_str().expect("serviceName")
    );
    for (action, resources) in policy.iter().chain(&continuing) {
        let expected = if action.starts_with("sqs:") {
            &queue_arn
        } else if action == "ecs:DescribeServices" {
            &own_service
        } else {
            &tasks
        };
        assert_eq!(resources, std::slice::from_ref(expected), "{action}");
    }
    assert_eq!(resources_of(&policy, "ecs:UpdateTaskProtection"), [tasks]);
}

#[test]
fn the_job_task_definition_runs_the_job_example_on_the_worker_s_queue() {
    let task = json("deploy/batch-job-task-definition.json");
    let worker_task = json("deploy/worker-task-definition.json");
    assert_eq!(task["networkMode"], "awsvpc");
    assert_eq!(strings(&task["requiresCompatibilities"]), ["FARGATE"]);
    // The worker's roles: its task role's policy covers what the job does on the queue.
    for role in ["executionRoleArn", "taskRoleArn"] {
        assert_eq!(task[role], worker_task[role], "{role}");
    }
    let job = container(&task);
    assert_eq!(job["essential"], true);
    assert_eq!(
        job["stopTimeout"],
        container(&worker_task)["stopTimeout"],
        "all of Spot's notice, as the worker"
    );

    // The batch job runs to completion, then exits with its run's exit code: a task a
    // job binding starts ends by itself.
    let example = code("examples/advanced-batch-job.rs");
    assert!(
        example.contains("exit_after_empty_receives = ")
            && example.contains("Ok(report.exit_code())")
    );
    assert!(example.contains("queue = env(\"JOBS_QUEUE\")"));
    let mut read_by_job = env_names_in(&example);
    read_by_job.extend(env_names_in(&code_below("runtime/src")));
    read_by_job.insert("JOBS_QUEUE".to_owned()); // the worker attribute's `env("…")`
    read_by_job.insert("RUST_LOG".to_owned());
    let env = environment(job);
    check_environment(&env, &read_by_job);
    assert_eq!(
        env_value(&env, "JOBS_QUEUE"),
        env_value(&environment(container(&worker_task)), "SPOTQ_QUEUE"),
        "a queue is worked by the worker service or by job tasks: here, the same queue"
    );
    assert!(
        job.get("portMappings").is_none(),
        "the batch job serves nothing"
    );
    assert_eq!(job["logConfiguration"]["logDriver"], "awslogs");
}

#[test]
fn the_controller_policy_grants_exactly_the_calls_the_controller_makes() {
    let document = json("deploy/controller-task-role-policy.json");
    let policy = grants(&document);
    let controller = code_below("controller/src");
    let mut calls = sdk_calls(&controller);
    // The queue's counts come through spotq's SqsBackend: GetQueueAttributes (and
    // GetQueueUrl for a queue given by name; the task definition gives a URL).
    assert!(
        controller.contains("SqsBackend"),
        "the controller reads the queue through SqsBackend"
    );
    calls.extend(
        sdk_calls(&code("runtime/src/backend/sqs.rs"))
            .intersection(&BTreeSet::from(["sqs:GetQueueAttributes".to_owned()]))
            .cloned(),
    );
    // The service's counts come through spotq::ecs::describe_service: DescribeServices.
    assert!(
        controller.contains("describe_service("),
        "the controller reads the service through spotq::ecs::describe_service"
    );
    calls.extend(
        sdk_calls(&code("runtime/src/ecs/mod.rs"))
            .intersection(&BTreeSet::from(["ecs:DescribeServices".to_owned()]))
            .cloned(),
    );
    // RunTask passes the task definition's roles to ECS (iam:PassRole), and a RunTask
    // with tags tags the task it creates (ecs:TagResource).
    assert!(calls.contains("ecs:RunTask"), "job bindings start tasks");
    calls.insert("iam:PassRole".to_owned());
    if call_chain(&controller, "run_task").contains(".tags(") {
        calls.insert("ecs:TagResource".to_owned());
    }
    assert_eq!(actions(&policy), calls);

    let worker_service = json("deploy/worker-service.json");
    let task = json("deploy/controller-task-definition.json");
    let queue = env_value(&environment(container(&task)), "SPOTQ_CONTROLLER_QUEUE").to_owned();
    let (region, account, name) = queue_url_parts(&queue);
    assert_eq!(
        resources_of(&policy, "sqs:GetQueueAttributes"),
        [format!("arn:aws:sqs:{region}:{account}:{name}")]
    );
    let cluster = worker_service["cluster"].as_str().expect("cluster");
    let worker = format!(
        "arn:aws:ecs:{region}:{account}:service/{cluster}/{}",
        worker_service["serviceName"].as_str().expect("serviceName")
    );
    for action in ["ecs:DescribeServices", "ecs:UpdateService"] {
        assert_eq!(
            resources_of(&policy, action),
            std::slice::from_ref(&worker),
            "{action}"
        );
    }

    // Job tasks: the job task definition, in the worker's cluster, with its roles.
    let job = json("deploy/batch-job-task-definition.json");
    let cluster_arn = format!("arn:aws:ecs:{region}:{account}:cluster/{cluster}");
    assert_eq!(
        resources_of(&policy, "ecs:RunTask"),
        [format!(
            "arn:aws:ecs:{region}:{account}:task-definition/{}:*",
            job["family"].as_str().expect("family")
        )]
    );
    assert_eq!(
        cluster_condition(&document, "ecs:RunTask").as_deref(),
        Some(cluster_arn.as_str())
    );
    let mut roles = vec![
        job["executionRoleArn"]
            .as_str()
            .expect("executionRoleArn")
            .to_owned(),
        job["taskRoleArn"].as_str().expect("taskRoleArn").to_owned(),
    ];
    roles.sort();
    let mut passed = resources_of(&policy, "iam:PassRole").to_vec();
    passed.sort();
    assert_eq!(passed, roles);
    let tasks = format!("arn:aws:ecs:{region}:{account}:task/{cluster}/*");
    for action in ["ecs:DescribeTasks", "ecs:TagResource"] {
        assert_eq!(
            resources_of(&policy, action),
            std::slice::from_ref(&tasks),
            "{action}"
        );
    }
    // ListTasks of a whole cluster is authorized on no resource: `*`, narrowed to the
    // cluster.
    assert_eq!(resources_of(&policy, "ecs:ListTasks"), ["*"]);
    assert_eq!(
        cluster_condition(&document, "ecs:ListTasks").as_deref(),
        Some(cluster_arn.as_str())
    );
    // The job binding that would use these: the controller's own flags, named as the
    // deploy steps (deploy/README.md) name them.
    let manual = read("deploy/README.md");
    assert!(
        manual.contains(&format!(
            "SPOTQ_CONTROLLER_JOB_TASK_DEFINITION={}",
            job["family"].as_str().expect("family")
        )),
        "deploy/README.md's steps show the job binding"
    );
}

#[test]
fn the_task_roles_trust_only_ecs_tasks_of_the_account() {
    let trust = json("deploy/ecs-tasks-trust-policy.json");
    let statement = &trust["Statement"][0];
    assert_eq!(statement["Principal"]["Service"], "ecs-tasks.amazonaws.com");
    assert_eq!(statement["Action"], "sts:AssumeRole");
    let task = json("deploy/worker-task-definition.json");
    let role = task["taskRoleArn"].as_str().expect("taskRoleArn");
    let account = role.split(':').nth(4).expect("the account");
    assert_eq!(
        statement["Condition"]["StringEquals"]["aws:SourceAccount"],
        account
    );
}

// The AWS-native kit, `deploy/autoscaling/`: Application Auto Scaling and CloudWatch
// alarms on the metrics the worker publishes, no controller.

/// What the deployed worker publishes, read from the other deploy files and the code:
/// its EMF namespace and dimension values, its queue, its service.
struct Published {
    region: String,
    account: String,
    queue: String,
    cluster: String,
    service: String,
    namespace: String,
    /// The EMF dimensions, in the order the worker writes them, with their values.
    dimensions: Vec<(String, String)>,
}

fn published() -> Published {
    let task = json("deploy/worker-task-definition.json");
    let service = json("deploy/worker-service.json");
    let env = environment(container(&task));
    let (region, account, queue) = queue_url_parts(env_value(&env, "SPOTQ_QUEUE"));
    // The example turns EMF on with these two variables, as namespace and ServiceName.
    let example = code("examples/basic-sqs-worker.rs");
    for needle in [
        "std::env::var(\"SPOTQ_EMF_NAMESPACE\")",
        "std::env::var(\"SPOTQ_EMF_SERVICE\")",
        ".emf(EmfSettings::new(namespace, service))",
    ] {
        assert!(example.contains(needle), "the example: {needle}");
    }
    let emf_service = env_value(&env, "SPOTQ_EMF_SERVICE").to_owned();
    let service_name = service["serviceName"].as_str().expect("serviceName");
    assert_eq!(
        emf_service, service_name,
        "ServiceName is the worker service"
    );
    // The record's dimensions, by the runtime's catalog: the queue's name (the backend's
    // name, not its URL) and the service.
    assert_eq!(
        spotq::telemetry::emf::names::DIMENSIONS,
        [
            spotq::telemetry::emf::names::QUEUE_NAME,
            spotq::telemetry::emf::names::SERVICE_NAME
        ]
    );
    let report = code("runtime/src/telemetry/report.rs");
    assert!(report.contains(".dimension(names::QUEUE_NAME, shared.backend.name())"));
    assert!(report.contains(".dimension(names::SERVICE_NAME, settings.service_name.as_str())"));
    Published {
        dimensions: vec![
            (
                spotq::telemetry::emf::names::QUEUE_NAME.to_owned(),
                queue.clone(),
            ),
            (
                spotq::telemetry::emf::names::SERVICE_NAME.to_owned(),
                emf_service,
            ),
        ],
        region,
        account,
        queue,
        cluster: service["cluster"].as_str().expect("cluster").to_owned(),
        service: service_name.to_owned(),
        namespace: env_value(&env, "SPOTQ_EMF_NAMESPACE").to_owned(),
    }
}

fn dimensions(value: &Value) -> Vec<(String, String)> {
    value
        .as_array()
        .expect("Dimensions")
        .iter()
        .map(|pair| {
            (
                pair["Name"].as_str().expect("Name").to_owned(),
                pair["Value"].as_str().expect("Value").to_owned(),
            )
        })
        .collect()
}

/// The SQS metrics the alarms may use (AWS's names).
const SQS_METRICS: [&str; 4] = [
    "ApproximateNumberOfMessagesVisible",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "NumberOfMessagesSent",
];

/// Checks that a metric a policy or an alarm reads is one that exists: the worker's EMF
/// (its namespace, a metric and unit of the runtime's catalog, its dimensions in
/// order), the queue's SQS metrics, or the worker service's ECS CPU.
fn check_metric(
    published: &Published,
    namespace: &str,
    name: &str,
    dims: &[(String, String)],
    unit: Option<&str>,
) {
    match namespace {
        "AWS/SQS" => {
            assert!(SQS_METRICS.contains(&name), "{name}");
            assert_eq!(dims, [("QueueName".to_owned(), published.queue.clone())]);
            assert_eq!(unit, None, "{name}: SQS's own unit");
        }
        "AWS/ECS" => {
            assert_eq!(name, "CPUUtilization");
            assert_eq!(
                dims,
                [
                    ("ClusterName".to_owned(), published.cluster.clone()),
                    ("ServiceName".to_owned(), published.service.clone()),
                ]
            );
        }
        _ => {
            assert_eq!(namespace, published.namespace, "the worker's EMF namespace");
            let (_, published_unit, _) = spotq::telemetry::emf::names::METRICS
                .iter()
                .find(|(metric, ..)| *metric == name)
                .unwrap_or_else(|| panic!("the worker publishes no {name}"));
            assert_eq!(unit, Some(published_unit.as_str()), "{name}'s unit");
            assert_eq!(dims, published.dimensions, "{name}'s dimensions");
        }
    }
}

/// The policy ARN `put-scaling-policy` prints for `policy`, but with a placeholder id.
fn policy_arn_shape(published: &Published, policy: &Value) -> (String, String) {
    (
        format!(
            "arn:aws:autoscaling:{}:{}:scalingPolicy:",
            published.region, published.account
        ),
        format!(
            ":resource/ecs/{}:policyName/{}",
            policy["ResourceId"].as_str().expect("ResourceId"),
            policy["PolicyName"].as_str().expect("PolicyName")
        ),
    )
}

#[test]
fn the_autoscaling_kit_scales_the_worker_service_on_what_the_worker_publishes() {
    let published = published();
    let target = json("deploy/autoscaling/scalable-target.json");
    assert_eq!(target["ServiceNamespace"], "ecs");
    assert_eq!(
        target["ResourceId"],
        format!("service/{}/{}", published.cluster, published.service)
    );
    assert_eq!(target["ScalableDimension"], "ecs:service:DesiredCount");
    assert_eq!(target["MinCapacity"], 0, "it scales to zero");
    // The same bounds and backlog per task as the controller's deployment.
    let controller = environment(container(&json("deploy/controller-task-definition.json")));
    assert_eq!(
        target["MaxCapacity"].to_string(),
        env_value(&controller, "SPOTQ_CONTROLLER_MAX")
    );

    for file in ["backlog-policy", "wake-policy", "zero-policy"] {
        let policy = json(&format!("deploy/autoscaling/{file}.json"));
        for key in ["ServiceNamespace", "ResourceId", "ScalableDimension"] {
            assert_eq!(policy[key], target[key], "{file}: {key}");
        }
    }

    let backlog = json("deploy/autoscaling/backlog-policy.json");
    assert_eq!(backlog["PolicyType"], "TargetTrackingScaling");
    let tracking = &backlog["TargetTrackingScalingPolicyConfiguration"];
    assert_eq!(
        tracking["TargetValue"].to_string(),
        env_value(&controller, "SPOTQ_CONTROLLER_BACKLOG_PER_TASK")
    );
    let metric = &tracking["CustomizedMetricSpecification"];
    assert_eq!(
        metric["MetricName"],
        spotq::telemetry::emf::names::BACKLOG_PER_TASK
    );
    // Every task publishes the same figure: their average is it.
    assert_eq!(metric["Statistic"], "Average");
    check_metric(
        &published,
        metric["Namespace"].as_str().expect("Namespace"),
        metric["MetricName"].as_str().expect("MetricName"),
        &dimensions(&metric["Dimensions"]),
        metric["Unit"].as_str(),
    );

    for (alarm, policy) in [("wake-alarm", "wake-policy"), ("zero-alarm", "zero-policy")] {
        let alarm = json(&format!("deploy/autoscaling/{alarm}.json"));
        let policy = json(&format!("deploy/autoscaling/{policy}.json"));
        assert_eq!(policy["PolicyType"], "StepScaling");
        // The alarm's action is this policy (its id is the placeholder the deploy
        // steps replace with the ARN put-scaling-policy prints).
        let actions = strings(&alarm["AlarmActions"]);
        assert_eq!(actions.len(), 1, "{actions:?}");
        let (prefix, suffix) = policy_arn_shape(&published, &policy);
        let id = actions[0]
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(&suffix))
            .unwrap_or_else(|| panic!("{} is not {prefix}ID{suffix}", actions[0]));
        assert_eq!(id.len(), 36, "a policy id: {id}");
        assert_eq!(alarm["AlarmName"], policy["PolicyName"]);
        assert_eq!(alarm["ActionsEnabled"], true);
        for query in alarm["Metrics"].as_array().expect("Metrics") {
            if let Some(stat) = query.get("MetricStat") {
                assert_eq!(stat["Period"], 60, "one-minute datapoints");
                let metric = &stat["Metric"];
                check_metric(
                    &published,
                    metric["Namespace"].as_str().expect("Namespace"),
                    metric["MetricName"].as_str().expect("MetricName"),
                    &dimensions(&metric["Dimensions"]),
                    stat["Unit"].as_str(),
                );
            }
        }
    }
}

/// A CloudWatch alarm on a metric math expression, evaluated over datapoints: each
/// query id's value per minute (`None`: no datapoint), oldest first.
struct Alarm(Value);

impl Alarm {
    fn load(file: &str) -> Self {
        Self(json(&format!("deploy/autoscaling/{file}.json")))
    }

    /// The expression's value in one minute (the one query that returns data).
    fn value(&self, minute: &[(&str, Option<f64>)]) -> Option<f64> {
        let queries = self.0["Metrics"].as_array().expect("Metrics");
        let returned: Vec<&Value> = queries
            .iter()
            .filter(|query| query["ReturnData"] == true)
            .collect();
        assert_eq!(returned.len(), 1, "an alarm reads one series");
        let ids: Vec<&str> = queries
            .iter()
            .filter(|query| query.get("MetricStat").is_some())
            .map(|query| query["Id"].as_str().expect("Id"))
            .collect();
        let mut given: Vec<&str> = minute.iter().map(|(id, _)| *id).collect();
        given.sort_unstable();
        let mut expected = ids.clone();
        expected.sort_unstable();
        assert_eq!(given, expected, "a value (or none) for every metric");
        let lookup = |id: &str| {
            minute
                .iter()
                .find(|(given, _)| *given == id)
                .unwrap_or_else(|| panic!("no metric {id}"))
                .1
        };
        match returned[0]["Expression"].as_str() {
            Some(expression) => metric_math::evaluate(expression, &lookup),
            None => lookup(returned[0]["Id"].as_str().expect("Id")),
        }
    }

    /// Whether the alarm goes to ALARM on these minutes (the last
    /// `EvaluationPeriods` of them), missing data treated as the alarm says.
    fn fires(&self, minutes: &[Vec<(&str, Option<f64>)>]) -> bool {
        let alarm = &self.0;
        let periods = alarm["EvaluationPeriods"]
            .as_u64()
            .expect("EvaluationPeriods") as usize;
        let needed = alarm["DatapointsToAlarm"]
            .as_u64()
            .expect("DatapointsToAlarm") as usize;
        assert_eq!(alarm["TreatMissingData"], "notBreaching");
        let threshold = alarm["Threshold"].as_f64().expect("Threshold");
        let breaches = |value: f64| match alarm["ComparisonOperator"].as_str() {
            Some("GreaterThanOrEqualToThreshold") => value >= threshold,
            Some("GreaterThanThreshold") => value > threshold,
            Some("LessThanOrEqualToThreshold") => value <= threshold,
            Some("LessThanThreshold") => value < threshold,
            other => panic!("operator {other:?}"),
        };
        let evaluated = &minutes[minutes.len().saturating_sub(periods)..];
        let breaching = evaluated
            .iter()
            .filter(|minute| self.value(minute).is_some_and(breaches))
            .count();
        breaching >= needed
    }

    /// The value the last minute gives its action's step scaling policy.
    fn last_value(&self, minutes: &[Vec<(&str, Option<f64>)>]) -> f64 {
        self.value(minutes.last().expect("a minute"))
            .expect("a datapoint")
    }
}

/// The desired count a step scaling policy sets for an alarm's `value`, from `current`,
/// within the scalable target's bounds (Application Auto Scaling's rules: above the
/// threshold a step's lower bound is inclusive and its upper exclusive; below, the other
/// way round).
fn step(policy: &str, alarm: &Alarm, value: f64, current: u64) -> u64 {
    let policy = json(&format!("deploy/autoscaling/{policy}.json"));
    let target = json("deploy/autoscaling/scalable-target.json");
    let config = &policy["StepScalingPolicyConfiguration"];
    let threshold = alarm.0["Threshold"].as_f64().expect("Threshold");
    let difference = value - threshold;
    // Strict operators and whole counts keep a value off the threshold, where the
    // bounds' inclusiveness is a matter of reading.
    assert!(difference != 0.0, "{value} is on the threshold");
    let above = difference > 0.0;
    let steps = config["StepAdjustments"]
        .as_array()
        .expect("StepAdjustments");
    let matching: Vec<&Value> = steps
        .iter()
        .filter(|step| {
            let lower = step["MetricIntervalLowerBound"].as_f64();
            let upper = step["MetricIntervalUpperBound"].as_f64();
            let over_lower = lower.is_none_or(|lower| {
                if above {
                    difference >= lower
                } else {
                    difference > lower
                }
            });
            let under_upper = upper.is_none_or(|upper| {
                if above {
                    difference < upper
                } else {
                    difference <= upper
                }
            });
            over_lower && under_upper
        })
        .collect();
    assert_eq!(matching.len(), 1, "one step for {value}: {steps:?}");
    let adjustment = matching[0]["ScalingAdjustment"]
        .as_i64()
        .expect("ScalingAdjustment");
    let desired = match config["AdjustmentType"].as_str() {
        Some("ExactCapacity") => adjustment,
        Some("ChangeInCapacity") => current as i64 + adjustment,
        other => panic!("adjustment type {other:?}"),
    };
    let min = target["MinCapacity"].as_i64().expect("MinCapacity");
    let max = target["MaxCapacity"].as_i64().expect("MaxCapacity");
    desired.clamp(min, max) as u64
}

#[test]
fn one_visible_message_wakes_a_service_at_zero_and_only_then() {
    let wake = Alarm::load("wake-alarm");
    assert_eq!(
        (&wake.0["EvaluationPeriods"], &wake.0["DatapointsToAlarm"]),
        (&Value::from(1), &Value::from(1)),
        "one minute's datapoint is enough"
    );
    let minute = |visible: Option<f64>, tasks: Option<f64>| {
        vec![vec![("visible", visible), ("tasks", tasks)]]
    };
    // No task runs (the service's CPU metric has no datapoint): one message wakes it.
    let one = minute(Some(1.0), None);
    assert!(wake.fires(&one));
    assert_eq!(step("wake-policy", &wake, wake.last_value(&one), 0), 1);
    assert_eq!(
        step("wake-policy", &wake, wake.last_value(&one), 1),
        1,
        "fired again while the task starts, it sets 1 again"
    );
    let many = minute(Some(5000.0), None);
    assert_eq!(step("wake-policy", &wake, wake.last_value(&many), 0), 1);
    // Nothing visible, or the queue's metric missing: nothing to wake for.
    assert!(!wake.fires(&minute(Some(0.0), None)));
    assert!(!wake.fires(&minute(None, None)));
    // Tasks run: sizing is the target tracking policy's, not the wake's.
    assert!(!wake.fires(&minute(Some(1000.0), Some(2.0))));
}

#[test]
fn the_service_goes_to_zero_once_nothing_is_visible_sent_or_held_for_five_minutes() {
    let zero = Alarm::load("zero-alarm");
    let quiet = |held: Option<f64>| {
        vec![
            ("visible", Some(0.0)),
            ("delayed", Some(0.0)),
            ("sent", Some(0.0)),
            ("held", held),
        ]
    };
    // Nothing visible, delayed or sent, and every worker holding nothing. A message
    // retried for an hour is in flight, but held by no worker: it is not read here (the
    // wake alarm brings the service back once the message is visible).
    let five_quiet: Vec<_> = (0..5).map(|_| quiet(Some(0.0))).collect();
    assert!(zero.fires(&five_quiet));
    assert_eq!(
        step("zero-policy", &zero, zero.last_value(&five_quiet), 3),
        0
    );

    // Four quiet minutes are not enough.
    assert!(!zero.fires(&five_quiet[..4]));
    // A worker holding a message, a message sent, visible or delayed in any of the five
    // minutes keeps it.
    for (id, value) in [
        ("held", 1.0),
        ("sent", 3.0),
        ("visible", 1.0),
        ("delayed", 2.0),
    ] {
        for at in 0..5 {
            let mut minutes = five_quiet.clone();
            for entry in &mut minutes[at] {
                if entry.0 == id {
                    entry.1 = Some(value);
                }
            }
            assert!(!zero.fires(&minutes), "{id} = {value} in minute {at}");
        }
    }
    // No worker's word (no task, or its EMF line missing): no datapoint, no zero.
    let mut minutes = five_quiet.clone();
    minutes[2] = quiet(None);
    assert!(!zero.fires(&minutes));
    let none_running: Vec<_> = (0..5).map(|_| quiet(None)).collect();
    assert!(!zero.fires(&none_running));
}

/// The part of CloudWatch metric math the alarms use: numbers, metric ids, `+ - * /`,
/// comparisons (1 or 0), `IF(condition, then, else)` and `FILL(series, value)`. A value
/// is a datapoint or its absence: arithmetic on an absent one is absent.
mod metric_math {
    pub fn evaluate(expression: &str, lookup: &dyn Fn(&str) -> Option<f64>) -> Option<f64> {
        let tokens = tokenize(expression);
        let mut parser = Parser {
            tokens: &tokens,
            at: 0,
            lookup,
        };
        let value = parser.comparison();
        assert_eq!(parser.at, tokens.len(), "all of {expression:?} is read");
        value
    }

    fn tokenize(expression: &str) -> Vec<String> {
        let mut tokens = Vec::new();
        let chars: Vec<char> = expression.chars().collect();
        let mut index = 0;
        while index < chars.len() {
            let c = chars[index];
            if c.is_whitespace() {
                index += 1;
            } else if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                let start = index;
                while index < chars.len()
                    && (chars[index].is_ascii_alphanumeric()
                        || chars[index] == '_'
                        || chars[index] == '.')
                {
                    index += 1;
                }
                tokens.push(chars[start..index].iter().collect());
            } else if index + 1 < chars.len()
                && ["==", "!=", ">=", "<="].contains(&format!("{c}{}", chars[index + 1]).as_str())
            {
                tokens.push(format!("{c}{}", chars[index + 1]));
                index += 2;
            } else {
                assert!(
                    "+-*/()<>,".contains(c),
                    "unexpected {c:?} in {expression:?}"
                );
                tokens.push(c.to_string());
                index += 1;
            }
        }
        tokens
    }

    struct Parser<'a> {
        tokens: &'a [String],
        at: usize,
        lookup: &'a dyn Fn(&str) -> Option<f64>,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<&str> {
            self.tokens.get(self.at).map(String::as_str)
        }

        fn expect(&mut self, token: &str) {
            assert_eq!(self.peek(), Some(token), "at token {}", self.at);
            self.at += 1;
        }

        fn comparison(&mut self) -> Option<f64> {
            let left = self.sum();
            let Some(op) = self
                .peek()
                .filter(|op| ["==", "!=", ">=", "<=", ">", "<"].contains(op))
                .map(str::to_owned)
            else {
                return left;
            };
            self.at += 1;
            let right = self.sum();
            let (left, right) = (left?, right?);
            let holds = match op.as_str() {
                "==" => left == right,
                "!=" => left != right,
                ">=" => left >= right,
                "<=" => left <= right,
                ">" => left > right,
                _ => left < right,
            };
            Some(if holds { 1.0 } else { 0.0 })
        }

        fn sum(&mut self) -> Option<f64> {
            let mut value = self.product();
            while let Some(op) = self.peek().filter(|op| ["+", "-"].contains(op)) {
                let add = op == "+";
                self.at += 1;
                let right = self.product();
                value = value
                    .zip(right)
                    .map(|(a, b)| if add { a + b } else { a - b });
            }
            value
        }

        fn product(&mut self) -> Option<f64> {
            let mut value = self.atom();
            while let Some(op) = self.peek().filter(|op| ["*", "/"].contains(op)) {
                let multiply = op == "*";
                self.at += 1;
                let right = self.atom();
                value = value
                    .zip(right)
                    .map(|(a, b)| if multiply { a * b } else { a / b });
            }
            value
        }

        fn atom(&mut self) -> Option<f64> {
            let token = self.peek().expect("more of the expression").to_owned();
            self.at += 1;
            if token == "(" {
                let value = self.comparison();
                self.expect(")");
                return value;
            }
            if let Ok(number) = token.parse::<f64>() {
                return Some(number);
            }
            if self.peek() != Some("(") {
                return (self.lookup)(&token);
            }
            self.expect("(");
            let mut arguments = vec![self.comparison()];
            while self.peek() == Some(",") {
                self.at += 1;
                arguments.push(self.comparison());
            }
            self.expect(")");
            match (token.as_str(), arguments.as_slice()) {
                ("FILL", [series, fill]) => series.or(*fill),
                ("IF", [condition, then, otherwise]) => {
                    condition.and_then(|c| if c != 0.0 { *then } else { *otherwise })
                }
                (function, arguments) => {
                    panic!("{function} with {} arguments", arguments.len())
                }
            }
        }
    }

    #[test]
    fn the_functions_and_absent_datapoints_behave_as_in_cloudwatch() {
        let values = |id: &str| match id {
            "a" => Some(2.0),
            "b" => Some(3.0),
            _ => None,
        };
        assert_eq!(evaluate("a + b * 2", &values), Some(8.0));
        assert_eq!(evaluate("(a + b) * 2", &values), Some(10.0));
        assert_eq!(evaluate("a + missing", &values), None);
        assert_eq!(evaluate("FILL(missing, 0) == 0", &values), Some(1.0));
        assert_eq!(evaluate("IF(a >= 2, b, 0)", &values), Some(3.0));
        assert_eq!(evaluate("IF(a > 2, b, 0)", &values), Some(0.0));
    }
}
