//! Fault injection on the real SDK path: `aws-sdk-sqs` through `spotq-fault-proxy`
//! in front of moto. Each test checks that the faults fired (the proxy's stats) and
//! that no message was lost: every one deleted once its handler succeeded, and the
//! queue empty at the end.

mod support;

use spotq::BackendError;
use spotq::backend::Backend;
use support::proxy::FaultProxy;
use support::{create_queue, unique};

/// The proxy's throttling answer is throttling to the SDK (which retries it, three
/// attempts in all by default) and to spotq's classifier; a 500 is transient; a reset
/// is a connection error; without a rule, calls pass through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_errors_are_sorted_as_real_ones() {
    let queue = create_queue(&unique("sorted"), &[]).await;
    let proxy = FaultProxy::start(&["GetQueueAttributes:throttle:always"], 1);
    let through = proxy.backend(&queue).await;

    let error = through.attributes().await.expect_err("always throttled");
    assert!(matches!(error, BackendError::Throttled { .. }), "{error:?}");
    let stats = proxy.stats().await;
    assert_eq!(
        stats.faults("GetQueueAttributes", "throttle"),
        3,
        "{stats:?}"
    );
    assert_eq!(stats.requests("GetQueueAttributes"), 3, "the SDK retried");

    proxy.set_rules(&["GetQueueAttributes:500:always"]).await;
    let error = through.attributes().await.expect_err("always 500");
    assert!(matches!(error, BackendError::Transient { .. }), "{error:?}");
    proxy.set_rules(&["GetQueueAttributes:reset:count=3"]).await;
    let error = through.attributes().await.expect_err("three resets");
    assert!(matches!(error, BackendError::Transient { .. }), "{error:?}");

    proxy.set_rules(&[]).await;
    through.attributes().await.expect("no rule: forwarded");
    let stats = proxy.stats().await;
    assert_eq!(stats.faults("GetQueueAttributes", "500"), 3, "{stats:?}");
    assert_eq!(stats.faults("GetQueueAttributes", "reset"), 3, "{stats:?}");
    assert_eq!(stats.requests("GetQueueAttributes"), 10, "{stats:?}");
    assert!(proxy.stop(), "the proxy exits 0 on SIGTERM");
}
