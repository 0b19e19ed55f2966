//! The `tidefeed` binary: command-line parsing and wiring.
//!
//! `serve` loads the configuration, opens (and recovers) the storage engine,
//! starts the Kafka connector when `[kafka] enabled`, serves the HTTP API
//! (REST, change streams, metrics) and runs until SIGINT or SIGTERM, then
//! shuts down in order (see [`serve`]): the connector stops after the HTTP
//! service and before the engine closes.

mod cli;
mod kafka_status;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tidefeed_config::{Config, KafkaConfig, Overrides};
use tidefeed_connectors::{KafkaConnector, KafkaOptions};
use tidefeed_engine::{Durability, Engine, EngineOptions, Limits};
use tidefeed_http::{AppState, ServerOptions, Stopped};

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
    // Colour only for a terminal: a log file or a collector gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
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
    options.limits = Limits {
        max_key_bytes: storage.max_key_bytes,
        max_row_bytes: storage.max_row_bytes,
        max_batch_bytes: storage.max_batch_bytes,
    };
    options.history_window = config.feed.retention;
    options.history_bytes = config.feed.history_bytes;
    options.max_retention_bytes = Some(config.feed.max_retention_bytes);
    options.consumer_idle_expiry = config.feed.consumer_idle_expiry;
    options
}

/// The HTTP service's options, from the configuration: every `[server]`
/// key, the `[auth]` tokens and the feed's event settings.
fn http_options(config: &Config) -> ServerOptions {
    use tidefeed_config::{CorsOrigins, Scope as ConfigScope, TokenSecret as ConfigSecret};
    use tidefeed_http::{Scope, TokenRule, TokenSecret};
    let server = &config.server;
    let tokens = config
        .auth
        .tokens
        .iter()
        .map(|token| TokenRule {
            secret: match &token.secret {
                ConfigSecret::Plain(secret) => TokenSecret::Plain(secret.clone()),
                ConfigSecret::Sha256(digest) => TokenSecret::Sha256(*digest),
            },
            scopes: token
                .scopes
                .iter()
                .map(|scope| match scope {
                    ConfigScope::Read => Scope::Read,
                    ConfigScope::Write => Scope::Write,
                    ConfigScope::Admin => Scope::Admin,
                })
                .collect(),
            tables: token.tables.clone(),
        })
        .collect();
    ServerOptions {
        listen: server.listen,
        allow_insecure: server.allow_insecure,
        cors_allowed_origins: match &server.cors_allowed_origins {
            CorsOrigins::Disabled => Vec::new(),
            CorsOrigins::Any => vec!["*".to_owned()],
            CorsOrigins::Only(origins) => origins.clone(),
        },
        max_body_bytes: server.max_body_bytes,
        request_timeout: server.request_timeout,
        max_streams: server.max_streams,
        keep_alive_interval: server.keep_alive_interval,
        shutdown_grace: server.shutdown_grace,
        resolved_interval: config.feed.resolved_interval,
        max_event_bytes: config.feed.max_event_bytes,
        tokens,
        metrics_require_token: server.metrics_require_token,
        health_require_token: server.health_require_token,
    }
}

/// The Kafka connector's options, from the `[kafka]` section.
fn kafka_options(kafka: &KafkaConfig) -> KafkaOptions {
    use tidefeed_config::{DeliveryMode as Mode, EventFormat, TerminalErrorPolicy as Policy};
    use tidefeed_connectors::{DeliveryMode, TerminalErrorPolicy, TopicCreation};
    let mut options = KafkaOptions::new(kafka.brokers.clone(), &kafka.topic_prefix);
    options.topic = kafka.topic.as_str().to_owned();
    options.format = match kafka.format {
        EventFormat::Native => tidefeed_feed::Format::Native,
        EventFormat::Debezium => tidefeed_feed::Format::Debezium,
    };
    options.tombstones = kafka.tombstones;
    options.mode = match kafka.mode {
        Mode::AtLeastOnce => DeliveryMode::AtLeastOnce,
        Mode::ExactlyOnce => DeliveryMode::ExactlyOnce,
    };
    options.topic_creation = if kafka.create_topics {
        TopicCreation::Create {
            partitions: kafka.topic_partitions,
            replication_factor: kafka.topic_replication_factor,
        }
    } else {
        TopicCreation::Broker
    };
    options.on_terminal_error = match &kafka.on_terminal_error {
        Policy::Stop => TerminalErrorPolicy::Stop,
        Policy::DeadLetter { topic } => TerminalErrorPolicy::DeadLetter {
            topic: topic.clone(),
        },
    };
    options.max_in_flight_bytes = kafka.max_in_flight_bytes;
    options.librdkafka = kafka
        .librdkafka
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    options
}

/// Runs the server until SIGINT or SIGTERM, then shuts down in a fixed
/// order: stop accepting connections, end open change streams (each gets
/// an `error` event), wait up to `shutdown_grace` for requests in flight,
/// stop the Kafka connector (records in flight get up to `shutdown_grace`
/// to be confirmed, or the open transaction to commit, and its position is
/// acknowledged), then close the engine (which commits what it received,
/// syncs and seals the WAL and stops background work).
fn serve(args: cli::ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
    };
    let config = Config::load(args.config.as_deref(), std::env::vars(), &overrides)
        .context("configuration")?;
    let options = http_options(&config);
    // Refused before the data directory is touched.
    options
        .validate(options.listen)
        .context("server configuration")?;
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
        "storage engine ready"
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
    // The connector starts once the engine is open and before writes are
    // served; trouble with the brokers shows in its status, not here.
    let connector = if config.kafka.enabled {
        let options = kafka_options(&config.kafka);
        let connector = runtime
            .block_on(KafkaConnector::start(engine.clone(), options))
            .context("starting the Kafka connector")?;
        Some(connector)
    } else {
        None
    };
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(options.listen))
        .with_context(|| format!("listening on {}", options.listen))?;
    let listen = listener.local_addr().context("the bound address")?;
    let components: Vec<std::sync::Arc<dyn tidefeed_http::Component>> = connector
        .iter()
        .map(|c| {
            std::sync::Arc::new(kafka_status::KafkaComponent(c.status_handle()))
                as std::sync::Arc<dyn tidefeed_http::Component>
        })
        .collect();
    let state = AppState::with_components(engine.clone(), options, components);
    tracing::info!(%listen, "serving HTTP");
    // The readiness line tests and scripts wait for; with `--listen
    // 127.0.0.1:0` it is how they learn the port.
    println!(
        "tidefeed ready: listen={listen} data_dir={} visible_seq={}",
        config.storage.data_dir.display(),
        engine.visible_seq()
    );
    let served = runtime.block_on(tidefeed_http::serve(listener, state, async move {
        let signal = signals.wait().await;
        tracing::info!(signal, "shutting down");
    }));
    match &served {
        Ok(Stopped::Drained) => tracing::info!("HTTP service stopped"),
        Ok(Stopped::GraceExpired) => {
            tracing::warn!(
                "HTTP service stopped with connections still open after the grace period"
            )
        }
        Err(error) => tracing::error!(%error, "HTTP service failed"),
    }
    // Streams have ended and no write is accepted any more: flush the
    // connector before the engine it reads from closes.
    if let Some(connector) = connector {
        let status = runtime.block_on(connector.stop(config.server.shutdown_grace));
        tracing::info!(
            state = status.state.name(),
            position = status.position,
            lag_seqs = status.lag_seqs,
            "Kafka connector stopped"
        );
    }
    // The engine closes whatever happened to the service: acknowledged
    // writes are already durable, and close seals the WAL.
    let closed = engine.close().context("closing the storage engine");
    runtime.shutdown_timeout(Duration::from_secs(1));
    served.context("serving HTTP")?;
    closed?;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tidefeed_connectors::{DeliveryMode, TerminalErrorPolicy, TopicCreation};

    use super::*;

    #[test]
    fn the_kafka_section_maps_onto_the_connectors_options() {
        let config = Config::from_toml(
            r#"
            [kafka]
            enabled = true
            brokers = ["k1:9092", "k2:9092"]
            topic_prefix = "cdc"
            format = "debezium"
            tombstones = false
            mode = "exactly-once"
            topic_partitions = 6
            topic_replication_factor = 3
            on_terminal_error = "dead-letter"
            max_in_flight_bytes = "8MiB"
            [kafka.librdkafka]
            "linger.ms" = 20
            "#,
        )
        .unwrap();
        let options = kafka_options(&config.kafka);
        assert_eq!(options.brokers, ["k1:9092", "k2:9092"]);
        assert_eq!(options.topic, "cdc.{table}");
        assert_eq!(options.progress_topic, "cdc.__progress");
        assert_eq!(options.format, tidefeed_feed::Format::Debezium);
        assert!(!options.tombstones);
        assert_eq!(options.mode, DeliveryMode::ExactlyOnce);
        assert_eq!(
            options.topic_creation,
            TopicCreation::Create {
                partitions: Some(6),
                replication_factor: Some(3)
            }
        );
        assert_eq!(
            options.on_terminal_error,
            TerminalErrorPolicy::DeadLetter {
                topic: "cdc.dead-letter".into()
            }
        );
        assert_eq!(options.max_in_flight_bytes, 8 << 20);
        assert_eq!(
            options.librdkafka,
            [("linger.ms".to_owned(), "20".to_owned())]
        );
        assert_eq!(options.consumer, "kafka-connector");
        assert!(options.commit_interval < Duration::from_secs(1));

        let config = Config::from_toml("[kafka]\ncreate_topics = false\ntopic = \"all\"").unwrap();
        let options = kafka_options(&config.kafka);
        assert_eq!(options.topic_creation, TopicCreation::Broker);
        assert_eq!(options.topic, "all");
        assert_eq!(options.mode, DeliveryMode::AtLeastOnce);
        assert_eq!(options.on_terminal_error, TerminalErrorPolicy::Stop);
    }
}
