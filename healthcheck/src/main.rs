//! `spotq-healthcheck [URL] [--timeout SECONDS]`: GETs URL (default
//! `http://127.0.0.1:8080/health`) and exits 0 on a 2xx answer, 1 otherwise. The health
//! check of the worker image, which has no shell and no `curl`.

use std::process::ExitCode;
use std::time::Duration;

use spotq_healthcheck::{DEFAULT_TIMEOUT, DEFAULT_URL, Probe};

const USAGE: &str = "usage: spotq-healthcheck [URL] [--timeout SECONDS]

GETs URL (default http://127.0.0.1:8080/health) and exits 0 when the answer is 2xx,
1 otherwise (refused, timed out, another status, not HTTP). The timeout (default 3 s)
bounds the whole check.";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Check { url: String, timeout: Duration },
    Help,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut url = None;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--timeout" => {
                let value = args.next().ok_or("--timeout needs a number of seconds")?;
                timeout = value
                    .parse::<f64>()
                    .ok()
                    .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds <= 3600.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        format!("--timeout {value:?}: seconds, more than 0 and at most 3600")
                    })?;
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            _ if url.is_some() => return Err(format!("one URL only, got another: {arg}")),
            _ => url = Some(arg),
        }
    }
    Ok(Command::Check {
        url: url.unwrap_or_else(|| DEFAULT_URL.to_owned()),
        timeout,
    })
}

fn main() -> ExitCode {
    let (url, timeout) = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Check { url, timeout }) => (url, timeout),
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("spotq-healthcheck: {message}\n\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match Probe::parse(&url).and_then(|probe| probe.check(timeout)) {
        Ok(status) => {
            println!("healthy: HTTP {status} from {url}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("spotq-healthcheck: {url}: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|arg| (*arg).to_owned()))
    }

    #[test]
    fn without_arguments_it_checks_the_worker_s_health_endpoint() {
        assert_eq!(
            parse(&[]),
            Ok(Command::Check {
                url: DEFAULT_URL.to_owned(),
                timeout: DEFAULT_TIMEOUT,
            })
        );
    }

    #[test]
    fn a_url_and_a_timeout_in_any_order() {
        let expected = Ok(Command::Check {
            url: "http://127.0.0.1:9090/health".to_owned(),
            timeout: Duration::from_millis(1500),
        });
        assert_eq!(
            parse(&["http://127.0.0.1:9090/health", "--timeout", "1.5"]),
            expected
        );
        assert_eq!(
            parse(&["--timeout", "1.5", "http://127.0.0.1:9090/health"]),
            expected
        );
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        for (args, expected) in [
            (&["--timeout"][..], "needs a number"),
            (&["--timeout", "0"], "more than 0"),
            (&["--timeout", "soon"], "more than 0"),
            (&["--timeout", "NaN"], "more than 0"),
            (&["--verbose"], "unknown option --verbose"),
            (&["http://a/health", "http://b/health"], "one URL only"),
        ] {
            let error = parse(args).expect_err("rejected");
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }
}
