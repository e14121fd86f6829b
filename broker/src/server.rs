//! Wires the stages together: opens the log, loads plugins, binds every listener, starts the
//! retention sweep and the upstream replicator, and stops them all in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin;
use crate::config::Config;
use crate::ingest::Ingest;
use crate::kafka::{self, KafkaContext};
use crate::log::{self, Log, LogError};
use crate::metrics::MetricSources;
use crate::mqtt::{self, MqttContext};
use crate::plugin::{self, PluginError};
use crate::quic;
use crate::upstream::{self, UpstreamContext};

/// How long shutdown waits for connections to finish their in-flight work.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the log in {dir}: {source}")]
    Log { dir: String, source: LogError },
    #[error("loading plugins: {0}")]
    Plugins(#[from] PluginError),
    #[error("binding the {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Unsupported(String),
    #[error("starting the QUIC listener: {0}")]
    Quic(#[from] quic::QuicError),
    #[error("Kafka listener security: {0}")]
    KafkaSecurity(#[from] kafka::server::SecurityError),
    #[error("MQTT TLS listeners: {0}")]
    MqttTls(String),
}

/// The addresses the listeners actually bound (port 0 resolved), `None` where disabled.
#[derive(Debug, Clone, Copy, Default)]
pub struct BoundAddrs {
    pub mqtt: Option<SocketAddr>,
    pub kafka: Option<SocketAddr>,
    pub quic: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// MQTT over TLS (`listeners.mqtt_tls`).
    pub mqtt_tls: Option<SocketAddr>,
    /// MQTT over WebSocket (`listeners.mqtt_ws`).
    pub mqtt_ws: Option<SocketAddr>,
    /// MQTT over WebSocket over TLS (`listeners.mqtt_wss`).
    pub mqtt_wss: Option<SocketAddr>,
}

/// A running broker.
pub struct Broker {
    pub addrs: BoundAddrs,
    log: Log,
    /// Every loaded plugin, ingest and upstream.
    plugins: Vec<Arc<plugin::Plugin>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

async fn bind_tcp(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

fn local(
    what: &'static str,
    l: &TcpListener,
    requested: SocketAddr,
) -> Result<SocketAddr, StartError> {
    l.local_addr().map_err(|source| StartError::Bind {
        what,
        addr: requested,
        source,
    })
}

/// Binds the TLS and WebSocket MQTT listeners; `[mqtt.tls]` is required by the TLS ones.
async fn start_mqtt_transports(
    config: &Config,
    ctx: &MqttContext,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
    addrs: &mut BoundAddrs,
) -> Result<(), StartError> {
    let l = &config.listeners;
    let wants_tls = l.mqtt_tls.addr().is_some() || l.mqtt_wss.addr().is_some();
    let acceptor = match (&config.mqtt.tls, wants_tls) {
        (_, false) => None,
        (None, true) => {
            return Err(StartError::MqttTls(
                "listeners.mqtt_tls / listeners.mqtt_wss need a [mqtt.tls] section (cert, key)"
                    .into(),
            ))
        }
        (Some(files), true) => Some(
            crate::tls::acceptor(files)
                .map_err(|e| StartError::MqttTls(format!("mqtt.tls: {e}")))?,
        ),
    };
    let listeners = [
        (
            "MQTT over TLS",
            l.mqtt_tls.addr(),
            acceptor.clone().map(mqtt::Transport::Tls),
            &mut addrs.mqtt_tls,
        ),
        (
            "MQTT over WebSocket",
            l.mqtt_ws.addr(),
            Some(mqtt::Transport::Ws),
            &mut addrs.mqtt_ws,
        ),
        (
            "MQTT over secure WebSocket",
            l.mqtt_wss.addr(),
            acceptor.map(mqtt::Transport::Wss),
            &mut addrs.mqtt_wss,
        ),
    ];
    for (what, addr, transport, slot) in listeners {
        let (Some(addr), Some(transport)) = (addr, transport) else {
            continue;
        };
        let listener = bind_tcp(what, addr).await?;
        let bound = local(what, &listener, addr)?;
        *slot = Some(bound);
        tasks.spawn(mqtt::run_transport(
            listener,
            transport,
            ctx.clone(),
            shutdown.clone(),
        ));
        tracing::info!(addr = %bound, "{what} listening");
    }
    Ok(())
}

impl Broker {
    /// Starts everything the config asks for; returns once all listeners are bound.
    pub async fn start(config: Config) -> Result<Broker, StartError> {
        let log = Log::open(&config.log_options()).map_err(|source| StartError::Log {
            dir: config.data_dir.display().to_string(),
            source,
        })?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let started = Self::start_services(&config, &log, &shutdown, &tasks).await;
        tasks.close();
        match started {
            Ok((addrs, plugins)) => Ok(Broker {
                addrs,
                log,
                plugins,
                shutdown,
                tasks,
            }),
            Err(e) => {
                // Whatever started stops, and the log closes, so the same directory can be
                // opened again in this process (heed refuses a second open of a live env).
                shutdown.cancel();
                tasks.wait().await;
                log.close().await;
                Err(e)
            }
        }
    }

    /// Loads plugins and binds every listener the config asks for, spawning them on `tasks`.
    async fn start_services(
        config: &Config,
        log: &Log,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<(BoundAddrs, Vec<Arc<plugin::Plugin>>), StartError> {
        // Compiling modules and running their init blocks: keep it off the async workers.
        let sections = config.plugins.clone();
        let (plugins, upstream_plugins) =
            tokio::task::spawn_blocking(move || plugin::load(&sections))
                .await
                .map_err(|e| StartError::Unsupported(format!("plugin loader panicked: {e}")))??;
        let all_plugins: Vec<_> = plugins
            .plugins()
            .iter()
            .chain(upstream_plugins.plugins())
            .cloned()
            .collect();
        let restored = plugins.restore_held_states(log)?;
        if restored > 0 {
            tracing::info!(restored, "ingest plugin states restored from the log");
        }
        let ingest = Ingest::new(log.clone(), Arc::new(plugins));
        let upstream_plugins = Arc::new(upstream_plugins);
        let mut addrs = BoundAddrs::default();

        tasks.spawn(log::retention::run(
            log.clone(),
            Duration::from_millis(config.log.retention_check_interval_ms.max(100)),
            shutdown.clone(),
        ));

        if let Some(addr) = config.listeners.kafka.addr() {
            let listener = bind_tcp("Kafka", addr).await?;
            let bound = local("Kafka", &listener, addr)?;
            addrs.kafka = Some(bound);
            let ctx = KafkaContext::new(ingest.clone(), &config.kafka)?;
            tasks.spawn(kafka::run(listener, ctx, shutdown.clone()));
            tracing::info!(addr = %bound, "Kafka listening");
        }
        let mqtt_ctx = MqttContext::new(ingest.clone(), &config.mqtt)
            .map_err(|e| StartError::Unsupported(format!("mqtt routes: {e}")))?;
        tasks.spawn(mqtt_ctx.clone().run_share_saver(shutdown.clone()));
        if let Some(addr) = config.listeners.mqtt.addr() {
            let listener = bind_tcp("MQTT", addr).await?;
            let bound = local("MQTT", &listener, addr)?;
            addrs.mqtt = Some(bound);
            tasks.spawn(mqtt::run(listener, mqtt_ctx.clone(), shutdown.clone()));
            tracing::info!(addr = %bound, "MQTT listening");
        }
        start_mqtt_transports(config, &mqtt_ctx, shutdown, tasks, &mut addrs).await?;
        if let Some(addr) = config.listeners.quic.addr() {
            let endpoint = quic::bind(addr, quic::Identity::self_signed(addr)?)?;
            let bound = endpoint.local_addr().map_err(|source| StartError::Bind {
                what: "QUIC",
                addr,
                source,
            })?;
            addrs.quic = Some(bound);
            tasks.spawn(quic::run(endpoint, mqtt_ctx.clone(), shutdown.clone()));
            tracing::info!(addr = %bound, "MQTT over QUIC listening (self-signed certificate)");
        }
        let upstream_lag = match &config.upstream {
            Some(up) => {
                let ctx = UpstreamContext {
                    log: log.clone(),
                    config: up.clone(),
                    gateway_id: Arc::from(config.gateway_id()),
                    lag: Default::default(),
                    plugins: upstream_plugins,
                };
                let lag = ctx.lag.clone();
                tasks.spawn(upstream::run(ctx, shutdown.clone()));
                Some(lag)
            }
            None => None,
        };
        if let Some(addr) = config.listeners.http.addr() {
            let listener = bind_tcp("HTTP", addr).await?;
            let bound = local("HTTP", &listener, addr)?;
            addrs.http = Some(bound);
            let sources = MetricSources {
                log: log.clone(),
                upstream_lag,
                plugins: all_plugins.clone(),
                mqtt: Some(mqtt_ctx.clone()),
            };
            tasks.spawn(admin::run(listener, sources, shutdown.clone()));
            tracing::info!(addr = %bound, "HTTP listening (/healthz, /metrics, /topics, /plugins)");
        }
        Ok((addrs, all_plugins))
    }

    /// Reloads every plugin's module from its path (SIGHUP): each swaps in between two batches,
    /// and one that fails to load keeps its running module. Returns how many were replaced.
    pub async fn reload_plugins(&self) -> usize {
        let mut replaced = 0;
        for plugin in &self.plugins {
            match plugin.reload().await {
                Ok(()) => replaced += 1,
                Err(e) => tracing::error!(plugin = plugin.name(), error = %e,
                    "plugin reload refused; the running module stays"),
            }
        }
        replaced
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// A token that stops the broker when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, lets in-flight requests finish (up to a deadline), commits what is queued
    /// and closes the log.
    pub async fn stop(self) {
        self.shutdown.cancel();
        if tokio::time::timeout(DRAIN_DEADLINE, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within {DRAIN_DEADLINE:?}");
        }
        self.log.close().await;
        tracing::info!("stopped");
    }
}
