//! The `tidefeed` binary: command-line parsing and wiring.
//!
//! `serve` loads the configuration, opens (and recovers) the storage engine
//! and runs until SIGINT or SIGTERM, then shuts down in order. The HTTP API,
//! change stream and Kafka connector are wired in here as they land
//! (issues [4/6] and [5/6]); until then `serve` holds the engine open and
//! serves no requests.

mod cli;

use std::process::ExitCode;

use anyhow::Context as _;
use tidefeed_config::{Config, Overrides};
use tidefeed_engine::{Durability, Engine, EngineOptions};

fn main() -> ExitCode {
    // Usage errors exit with code 2; --help and --version print and exit 0.
    let cli = cli::parse(std::env::args_os()).unwrap_or_else(|error| error.exit());
    match cli.command {
        cli::Command::PrintConfig => print!("{}", tidefeed_config::example_toml()),
        cli::Command::Serve(args) => {
            init_logging();
            if let Err(error) = serve(args) {
                tracing::error!("{error:#}");
                eprintln!("tidefeed: {error:#}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDEFEED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn engine_options(config: &Config) -> EngineOptions {
    let storage = &config.storage;
    let mut options = EngineOptions::new(&storage.data_dir);
    options.durability = match storage.durability {
        tidefeed_config::Durability::Sync => Durability::Sync,
        tidefeed_config::Durability::Async { interval } => Durability::Async { interval },
    };
    options.wal_segment_bytes = storage.wal_segment_bytes;
    options.memtable_bytes = storage.memtable_bytes;
    options.history_window = config.feed.retention;
    options.history_bytes = config.feed.history_bytes;
    options.max_retention_bytes = Some(config.feed.max_retention_bytes);
    options.consumer_idle_expiry = config.feed.consumer_idle_expiry;
    options
}

fn serve(args: cli::ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
    };
    let config = Config::load(args.config.as_deref(), std::env::vars(), &overrides)
        .context("configuration")?;
    let engine = Engine::open(engine_options(&config)).with_context(|| {
        format!(
            "opening the data directory {}",
            config.storage.data_dir.display()
        )
    })?;
    let recovery = engine.recovery();
    tracing::info!(
        data_dir = %config.storage.data_dir.display(),
        tables = recovery.tables,
        visible_seq = engine.visible_seq(),
        "storage engine ready; the HTTP API is not part of this build yet (issue [4/6]), so no requests are served"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Handlers are installed before readiness is announced, so a signal
    // sent as soon as the readiness line appears is never lost to the
    // default action.
    let signals = runtime.block_on(async { ShutdownSignals::install() })?;
    // The readiness line tests and scripts wait for.
    println!(
        "tidefeed ready: data_dir={} visible_seq={}",
        config.storage.data_dir.display(),
        engine.visible_seq()
    );
    let signal = runtime.block_on(signals.wait());
    tracing::info!(signal, "shutting down");
    engine.close().context("closing the storage engine")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

struct ShutdownSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<ShutdownSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
