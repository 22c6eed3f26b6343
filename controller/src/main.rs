//! `spotq-controller`: scales ECS services (or local worker processes) with their SQS
//! queues, down to zero. See `spotq-controller --help`, and its manual,
//! `controller/README.md`.

use anyhow::Context as _;
use clap::Parser;
use spotq::telemetry::logging::{LogFormat, init};
use spotq::{shutdown::ShutdownHandle, telemetry::health::Health};
use spotq_controller::config::{Cli, Config};
use spotq_controller::run::Controller;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init(LogFormat::from_env());
    let cli = Cli::parse();
    // A bad setting stops the controller here, naming the setting.
    let config = Config::load(&cli)?;
    // SIGTERM or SIGINT stops the loops (and a local target's workers, with SIGTERM);
    // the handlers are installed before anything starts, so an early signal is not lost.
    let shutdown = ShutdownHandle::new();
    shutdown
        .on_termination_signals()
        .context("cannot handle SIGTERM and SIGINT")?;

    // `/health` answers 200 while the process serves, `/ready` while its loops run;
    // `/metrics` has the figures.
    let health = Health::default();
    let server = spotq::telemetry::serve::serve(config.http_addr, health.clone()).await?;
    tracing::info!(
        addr = %server.local_addr(),
        bindings = config.bindings.len(),
        dry_run = config.dry_run,
        "spotq-controller started"
    );
    let controller = Controller::start(config).await?;
    health.set_ready(true);
    shutdown.begun().await;
    tracing::info!("spotq-controller stopping");
    health.set_ready(false);
    controller.stop().await;
    server.shutdown().await;
    Ok(())
}
