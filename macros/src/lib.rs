//! `#[spotq::worker]`: an `async fn` becomes a spotq SQS worker.
//!
//! Use it through `spotq` (`spotq::worker`, on by default with the `macros` feature);
//! everything is documented on [`macro@worker`].

mod args;
mod expand;
mod shape;

use proc_macro::TokenStream;

/// The attribute's key table, for its docs: the attribute's own keys, and between them
/// one row per key of spotq-settings' table of settings (its example, its default and
/// what it allows). One string, so that no doc line breaks the table.
macro_rules! key_table {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $ty:ty $(=> Some($($setter:tt)+))? {
            $(feature: $feature:literal,)?
            default: $default:expr, shown as $shown:literal,
            allowed: $allowed:literal,
            $(check: $check:expr,)?
            $(attribute: $key:ident = $example:tt as $syntax:ident,)?
        }
    )*) => {
        concat!(
            "| key | default | allowed |\n",
            "| --- | --- | --- |\n",
            "| `queue = \"orders\"` or `queue = env(\"ORDERS_QUEUE\")` | required | a queue name \
             or URL, or an environment variable holding one, read when the worker starts (an \
             unset variable stops the start with an error naming it) |\n",
            $(key_row!([$($key = $example)?] $shown, $allowed),)*
            "| `fifo = true` | `false` | the queue must be FIFO: a literal `queue` must end in \
             `.fifo`; an `env` queue is checked when the worker starts. A FIFO queue (by its \
             name or its `FifoQueue` attribute) runs each message group in order with or \
             without this key; the key only makes a standard queue an error |\n",
            "| `crate = \"my_spotq\"` | `\"::spotq\"` | the path to the `spotq` crate, when it \
             is renamed or re-exported |",
        )
    };
}

/// One row of `key_table!`; none for a setting the builder alone sets.
macro_rules! key_row {
    ([] $shown:literal, $allowed:literal) => {
        ""
    };
    ([$key:ident = $example:tt] $shown:literal, $allowed:literal) => {
        concat!(
            "| `",
            stringify!($key),
            " = ",
            stringify!($example),
            "` | ",
            $shown,
            " | ",
            $allowed,
            " |\n"
        )
    };
}

/// Makes an `async fn` the handler of an SQS worker.
///
/// ```no_run
/// #[derive(serde::Deserialize)]
/// struct Order {
///     id: u64,
/// }
///
/// #[derive(Debug)]
/// struct OrderError;
///
/// impl std::fmt::Display for OrderError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("order failed")
///     }
/// }
///
/// impl std::error::Error for OrderError {}
///
/// #[spotq::worker(queue = env("ORDERS_QUEUE"), concurrency = 32, visibility_timeout = "2m")]
/// async fn handle_order(order: Order, cx: &spotq::Context) -> Result<(), OrderError> {
///     println!("order {} (receive #{})", order.id, cx.receive_count());
///     Ok(())
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), spotq::Error> {
///     // Several workers share the process, its shutdown signal and its metrics.
///     spotq::run([handle_order_worker()]).await?;
///     Ok(())
/// }
/// ```
///
/// The function stays exactly as written, so unit tests call it directly. Beside it the
/// macro adds `<name>_worker()` (here `handle_order_worker`), with the function's
/// visibility and `#[cfg]` attributes, which returns a `spotq::WorkerSpec`: the queue, the
/// settings and the handler, not yet bound to a queue. `spotq::run([...])` runs specs on
/// SQS until SIGTERM; `spec.worker(queue)` binds one to any backend, such as an
/// `EmbeddedQueue` in a test.
///
/// Tower layers (a rate limit, a timeout, a user's middleware) go on the spec, not in
/// the attribute: `handle_order_worker().layer(ServiceBuilder::new().buffer(1)
/// .rate_limit(50, Duration::from_secs(1)))` for a per-message handler,
/// `.batch_layer(...)` for a batch handler (`spotq::WorkerSpec::layer`).
///
/// # Handler shapes
///
/// The macro runs before type checking, so it reads the signature as written:
///
/// | first argument | the handler gets | decoded by |
/// | --- | --- | --- |
/// | `Message` (any path ending in `Message`) | the message as received | `spotq::handler::input::raw` |
/// | `String` (any path ending in `String`) | the body as it is, not decoded | `spotq::handler::input::raw`, then `Message::into_body` |
/// | `SqsMessage` (e.g. `spotq::handler::lambda_events::sqs::SqsMessage`) | the Lambda event record | `spotq::handler::input::lambda` |
/// | `Sns<T>` (`spotq::handler::input::Sns`) | an SNS notification, wrapped or raw: `T` from the published message, with topic ARN, subject and attributes | `spotq::handler::input::sns::<T>` |
/// | `EventBridge<T>` (`spotq::handler::input::EventBridge`) | an EventBridge event: `T` from its `detail`, with source, detail-type and time | `spotq::handler::input::event_bridge::<T>` |
/// | any other type `T` | the body, deserialized from JSON; `T: serde::de::DeserializeOwned` | `spotq::handler::input::json::<T>` |
/// | `Vec<X>`, `X` one of the above | a batch: every message of one receive | `spotq::handler::input::batch` |
///
/// - A per-message handler may take a second argument, the message's `spotq::Context`
///   (message id, receive count, attributes, cancellation, shutdown deadline), as
///   `&Context` or `Context`. A batch handler takes only the `Vec` (each
///   `spotq::Message` of a `Vec<Message>` has its own `context()`).
/// - A body that does not deserialize never reaches the handler: that message fails with
///   `HandlerError::Decode`, is retried per `retry_backoff` and, after the queue's
///   `maxReceiveCount`, moved to its dead-letter queue. In a batch, only that message
///   fails; the others go to the handler.
/// - A per-message handler returns anything `spotq::handler::IntoOutcome`: `()`,
///   `Result<(), E>`, `spotq::Outcome` (ack, retry after a delay, fail, continue) or
///   `Result<Outcome, E>`, with `E: Into<Box<dyn Error + Send + Sync>>`. A batch handler
///   returns anything `spotq::handler::IntoBatchOutcome`: `()`, `spotq::handler::BatchOutcome`,
///   `SqsBatchResponse` (Lambda's `batchItemFailures`: the listed messages are retried,
///   the rest deleted), or a `Result` of one of those (an `Err` fails every message).
/// - A JSON body that is itself a list goes through an alias or a newtype
///   (`type Orders = Vec<Order>;`): `Vec<Order>` as written means a batch.
/// - The argument patterns are the function's own business (`_`, `mut order`,
///   `(a, b): (u32, u32)` all work): the macro only calls the function.
///
/// Compile errors, each pointing at the offending token: a fn that is not `async`, or is
/// `const`, `unsafe`, `extern`, generic or has a `where` clause; no argument, `self`, more
/// than two arguments, or a second argument that is not the context; an input taken by
/// reference, or an input type that is `impl Trait`, `_`, a trait object, a pointer or a
/// slice. Type errors come from the traits and point at the type in the signature: an
/// input type that does not deserialize, a return type that is not an outcome, or a
/// future that is not `Send`.
///
/// # Arguments
///
/// `key = value` pairs, each at most once. Durations are string literals in the one
/// syntax of spotq: numbers with the units `h`, `m` (or `min`), `s` and `ms`, largest unit
/// first, each unit once, a decimal fraction on the last part only, whole milliseconds
/// (`"500ms"`, `"30s"`, `"1.5s"`, `"5m"`, `"1m30s"`, `"1h2m3.5s"`, `"2h"`). Every limit
/// below is checked when the crate compiles, by the same checks as
/// `WorkerConfig::validate` at start; a setting
/// that depends on the queue (its own visibility timeout, whether an `env` queue is
/// FIFO) is checked when the worker starts, before its first receive.
///
#[doc = spotq_settings::for_each_setting!(key_table)]
///
/// Every key but `queue`, `fifo` and `crate` sets the `spotq::config::WorkerConfig` field
/// of its name (`retry_backoff` sets `retry`), whose doc says what it does; the rows
/// come from the same table as the field. Whole numbers are written as they are and
/// durations as strings; `heartbeat` also takes `true` (every half visibility timeout)
/// and `false` (never extend the visibility); `retry_backoff` takes the first delay and
/// the cap of a jittered backoff that doubles with each receive, or `false` (leave a
/// failed message until its visibility timeout lapses).
///
/// The other settings of `spotq::config::WorkerConfig` (stop timeout, shutdown grace, task
/// protection, …) keep their defaults; a worker that needs them is written by hand, as
/// below, or changes its spec with `WorkerSpec::configure`.
///
/// # Batch jobs
///
/// With `exit_after_empty_receives`, a worker runs to completion: a task started for a
/// backlog works the queue, exits once it is drained, and costs nothing after. SIGTERM
/// still stops it by the shutdown contract. Its `main` returns the exit code:
///
/// ```no_run
/// # #[derive(serde::Deserialize)]
/// # struct Job {}
/// use std::process::ExitCode;
///
/// #[spotq::worker(queue = env("JOBS_QUEUE"), exit_after_empty_receives = 2, max_run_time = "6h")]
/// async fn handle_job(_job: Job) {}
///
/// #[tokio::main]
/// async fn main() -> Result<ExitCode, spotq::Error> {
///     let reports = spotq::run([handle_job_worker()]).await?;
///     // 0 once drained (or stopped by a signal, or at the maximum run time), 1 after a
///     // fatal error.
///     Ok(spotq::RunReport::exit_code_of(&reports))
/// }
/// ```
///
/// # The expansion
///
/// Only spotq's public API, by absolute path (`::spotq::…`, or the `crate` path). For
/// the example at the top it is, in effect:
///
/// ```no_run
/// # #[derive(serde::Deserialize)]
/// # struct Order {
/// #     id: u64,
/// # }
/// # async fn handle_order(order: Order, cx: &spotq::Context) -> Result<(), std::io::Error> {
/// #     Ok(())
/// # }
/// /// The spotq worker that runs [`handle_order`] on the queue named by the environment
/// /// variable `ORDERS_QUEUE` (read when the worker starts), as set by its
/// /// `#[spotq::worker]` attribute.
/// #[must_use]
/// fn handle_order_worker() -> ::spotq::WorkerSpec {
///     ::spotq::WorkerSpec::new(
///         ::spotq::config::QueueSource::env("ORDERS_QUEUE"),
///         ::spotq::config::WorkerConfig {
///             concurrency: 32,
///             visibility_timeout: Some(std::time::Duration::from_secs(120)),
///             ..Default::default()
///         },
///         |message: ::spotq::Message| async move {
///             match ::spotq::handler::input::json::<Order>(message) {
///                 Ok((input, cx)) => {
///                     ::spotq::handler::IntoOutcome::into_outcome(handle_order(input, &cx).await)
///                 }
///                 Err(error) => ::spotq::Outcome::Fail(error),
///             }
///         },
///     )
/// }
/// ```
///
/// A raw `Message` (or a `String` body) without a context goes to the handler as it is; a batch handler
/// becomes `WorkerSpec::batch(queue, config, |messages| async move {
/// spotq::handler::input::batch(messages, decoder, handler).await })`; `fifo = true` adds
/// `.fifo(true)`. When the attribute has an error, the function is still emitted as
/// written, with a stand-in `<name>_worker()`, so that only the error is reported.
#[proc_macro_attribute]
pub fn worker(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::worker(args.into(), item.into()).into()
}
