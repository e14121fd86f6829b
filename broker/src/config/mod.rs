//! The broker's configuration: one serde tree read from TOML, with every default a named constant
//! and validation at load time. `headwater.example.toml` at the repository root is the annotated
//! reference and is parsed by a test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod mqtt_auth;
mod tls;
pub use mqtt_auth::MqttAuth;
pub use tls::TlsFiles;

pub const DEFAULT_DATA_DIR: &str = "headwater-data";
pub const DEFAULT_MQTT: &str = "127.0.0.1:1883";
pub const DEFAULT_KAFKA: &str = "127.0.0.1:9092";
pub const DEFAULT_QUIC: &str = "127.0.0.1:14567";
pub const DEFAULT_HTTP: &str = "127.0.0.1:8480";
/// 4 GiB on 64-bit targets; 1 GiB on 32-bit ones, where the map must fit the address space.
pub const DEFAULT_MAX_DISK_BYTES: u64 = if usize::BITS >= 64 { 4 << 30 } else { 1 << 30 };
pub const DEFAULT_PARTITIONS: u32 = 1;
/// Seven days, as Kafka's `log.retention.hours=168`.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
pub const DEFAULT_RETENTION_CHECK_MS: u64 = 60_000;
pub const DEFAULT_KAFKA_MAX_FRAME: usize = 16 * 1024 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Ten minutes, as Kafka's `connections.max.idle.ms`.
pub const DEFAULT_KAFKA_IDLE_TIMEOUT_MS: u64 = 600_000;
pub const DEFAULT_MQTT_MAX_PACKET: usize = 1024 * 1024;
pub const DEFAULT_MQTT_MAX_INFLIGHT: usize = 64;
/// Default `mqtt.max_retained`.
pub const DEFAULT_MQTT_MAX_RETAINED: usize = 100_000;
/// Default `mqtt.max_sessions`.
pub const DEFAULT_MQTT_MAX_SESSIONS: usize = 10_000;
/// Default `mqtt.session_expiry_max_secs`: 0, no cap (like Mosquitto's
/// `persistent_client_expiration` unset).
pub const DEFAULT_MQTT_SESSION_EXPIRY_MAX_SECS: u32 = 0;
/// Default `mqtt.max_queued_messages`: 0, no limit but the log's retention.
pub const DEFAULT_MQTT_MAX_QUEUED_MESSAGES: u64 = 0;
pub const DEFAULT_DEAD_LETTER_TOPIC: &str = "dead-letters";
pub const DEFAULT_PLUGIN_MEMORY_BYTES: u64 = 16 * 1024 * 1024;
pub const DEFAULT_PLUGIN_TIMEOUT_MS: u64 = 100;
pub const DEFAULT_PLUGIN_MAX_FAILURES: u32 = 10;
pub const DEFAULT_UPSTREAM_RETRY_MS: u64 = 1_000;
pub const DEFAULT_UPSTREAM_BATCH_BYTES: usize = 1024 * 1024;
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory of the LMDB environment. Default `headwater-data` (relative to the working dir).
    pub data_dir: PathBuf,
    /// Names this gateway in upstream record headers. Default: the host name, else "headwater".
    pub gateway_id: Option<String>,
    pub listeners: Listeners,
    pub log: LogSection,
    pub kafka: KafkaSection,
    pub mqtt: MqttSection,
    pub plugins: Vec<PluginSection>,
    pub upstream: Option<UpstreamSection>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            gateway_id: None,
            listeners: Listeners::default(),
            log: LogSection::default(),
            kafka: KafkaSection::default(),
            mqtt: MqttSection::default(),
            plugins: Vec::new(),
            upstream: None,
        }
    }
}

/// A listener address, or `off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Off,
    At(SocketAddr),
}

impl Listen {
    pub fn parse(s: &str) -> Result<Listen, ConfigError> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        s.parse()
            .map(Listen::At)
            .map_err(|e| ConfigError::Invalid(format!("listener address {s:?}: {e}")))
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            Listen::Off => None,
            Listen::At(a) => Some(*a),
        }
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Listen::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where each protocol listens; `"off"` disables one. Loopback by default: exposing a listener
/// to the network is a deliberate choice.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    /// MQTT over TCP. Default 127.0.0.1:1883.
    pub mqtt: Listen,
    /// Kafka wire protocol. Default 127.0.0.1:9092.
    pub kafka: Listen,
    /// MQTT over QUIC (UDP). Default 127.0.0.1:14567.
    pub quic: Listen,
    /// HTTP health, metrics and admin. Default 127.0.0.1:8480.
    pub http: Listen,
    /// MQTT over TLS (Mosquitto's 8883), with `[mqtt.tls]`. Default off.
    pub mqtt_tls: Listen,
    /// MQTT over WebSocket (subprotocol `mqtt`), plaintext. Default off.
    pub mqtt_ws: Listen,
    /// MQTT over WebSocket over TLS, with `[mqtt.tls]`. Default off.
    pub mqtt_wss: Listen,
}

impl Default for Listeners {
    fn default() -> Self {
        let at = |s: &str| Listen::parse(s).unwrap_or(Listen::Off);
        Listeners {
            mqtt: at(DEFAULT_MQTT),
            kafka: at(DEFAULT_KAFKA),
            quic: at(DEFAULT_QUIC),
            http: at(DEFAULT_HTTP),
            mqtt_tls: Listen::Off,
            mqtt_ws: Listen::Off,
            mqtt_wss: Listen::Off,
        }
    }
}

/// Storage settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Hard limit of the data directory (the LMDB map size). Writes past it are refused with the
    /// protocol's error, never a crash. Default 4 GiB (1 GiB on 32-bit). Costs address space
    /// only, not memory.
    pub max_disk_bytes: u64,
    /// `"fsync"` (default): every acked write is on disk. `"relaxed"`: no fsync per commit, like
    /// Kafka's default; a power cut can lose the last seconds of acked writes.
    pub durability: Durability,
    /// Create a topic when something first writes to it. Default true.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics. Default 1.
    pub default_partitions: u32,
    /// Keep data this long (ms); -1 forever. Default 7 days.
    pub retention_ms: i64,
    /// Keep at most about this many bytes per partition; -1 no limit (default).
    pub retention_bytes: i64,
    /// How often retention runs (ms). Default 60 000.
    pub retention_check_interval_ms: u64,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            max_disk_bytes: DEFAULT_MAX_DISK_BYTES,
            durability: Durability::Fsync,
            auto_create_topics: true,
            default_partitions: DEFAULT_PARTITIONS,
            retention_ms: DEFAULT_RETENTION_MS,
            retention_bytes: -1,
            retention_check_interval_ms: DEFAULT_RETENTION_CHECK_MS,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    Fsync,
    Relaxed,
}

/// Kafka listener settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    /// Largest request frame accepted; bigger ones close the connection. Default 16 MiB, which is
    /// also the most memory one request can take.
    pub max_frame_bytes: usize,
    /// Most simultaneous Kafka connections. Default 4096.
    pub max_connections: usize,
    /// Host name given to clients in Metadata. Default: the listener's IP address.
    pub advertised_host: Option<String>,
    /// Consumer-group coordinator settings (`[kafka.groups]`).
    pub groups: GroupsSection,
    /// A connection that sends no complete request for this long is closed (Kafka's
    /// `connections.max.idle.ms`); a long-poll fetch in progress is not idle. Default 600 000
    /// (10 minutes). Lower frees idle clients' memory (one read buffer each) and connection
    /// permits sooner; clients reconnect transparently. 0 disables the timeout.
    pub idle_timeout_ms: u64,
    /// TLS on the Kafka listener (`[kafka.tls]`). Default: none (plaintext).
    pub tls: Option<KafkaTls>,
    /// SASL authentication on the Kafka listener (`[kafka.sasl]`). Default: none (every client
    /// is served).
    pub sasl: Option<KafkaSasl>,
}

impl Default for KafkaSection {
    fn default() -> Self {
        KafkaSection {
            max_frame_bytes: DEFAULT_KAFKA_MAX_FRAME,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            advertised_host: None,
            groups: GroupsSection::default(),
            idle_timeout_ms: DEFAULT_KAFKA_IDLE_TIMEOUT_MS,
            tls: None,
            sasl: None,
        }
    }
}

/// `[kafka.tls]`: when present the Kafka listener speaks TLS only (Kafka's `SSL` and
/// `SASL_SSL`).
pub type KafkaTls = TlsFiles;

/// `[kafka.sasl]`: when present every Kafka connection must authenticate before anything but
/// ApiVersions and SaslHandshake; other requests close the connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSasl {
    /// Enabled mechanisms: "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN". Default both SCRAM
    /// mechanisms; PLAIN is opt-in because it sends the password itself (use it with TLS).
    /// A SCRAM login costs a few HMACs on the broker; a PLAIN login one PBKDF2 derivation
    /// (about a millisecond at 4096 iterations) unless the entry stores a clear password.
    #[serde(default = "default_sasl_mechanisms")]
    pub mechanisms: Vec<crate::kafka::sasl::Mechanism>,
    /// The credentials file (see `headwater credentials add --help`); read at startup.
    pub credentials: PathBuf,
}

fn default_sasl_mechanisms() -> Vec<crate::kafka::sasl::Mechanism> {
    use crate::kafka::sasl::Mechanism;
    vec![Mechanism::ScramSha256, Mechanism::ScramSha512]
}

/// Consumer-group coordinator settings, named after the Kafka broker configs they mirror.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupsSection {
    /// Kafka's `group.initial.rebalance.delay.ms`. Default 3000: when a group without members
    /// gets its first one, the coordinator waits this long (longer while more keep arriving,
    /// never past the rebalance timeout) before handing out assignments, so consumers that start
    /// together cause one rebalance instead of one each. The cost is that latency for every
    /// consumer of a new or emptied group: its first assignment comes this much later. 0 turns
    /// it off (what tests want).
    pub initial_rebalance_delay_ms: u64,
    /// Kafka's `offsets.retention.minutes`. Default 10080 (7 days): committed offsets of a group
    /// are deleted (from memory and disk) once the group has had no members and no commits for
    /// this long. Longer keeps more offsets of dead groups in memory and on disk; shorter makes
    /// a consumer that comes back after a longer pause start from `auto.offset.reset`.
    pub offsets_retention_minutes: u64,
    /// Kafka's `offsets.retention.check.interval.ms`. Default 600000 (10 minutes): how often
    /// expired offsets and forgotten groups are looked for (on the next group request after
    /// the interval, so an idle broker does no work).
    pub offsets_retention_check_interval_ms: u64,
}

pub const DEFAULT_GROUP_INITIAL_REBALANCE_DELAY_MS: u64 = 3_000;
pub const DEFAULT_OFFSETS_RETENTION_MINUTES: u64 = 7 * 24 * 60;
pub const DEFAULT_OFFSETS_RETENTION_CHECK_INTERVAL_MS: u64 = 600_000;

impl Default for GroupsSection {
    fn default() -> Self {
        GroupsSection {
            initial_rebalance_delay_ms: DEFAULT_GROUP_INITIAL_REBALANCE_DELAY_MS,
            offsets_retention_minutes: DEFAULT_OFFSETS_RETENTION_MINUTES,
            offsets_retention_check_interval_ms: DEFAULT_OFFSETS_RETENTION_CHECK_INTERVAL_MS,
        }
    }
}

/// MQTT listener settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSection {
    /// Most simultaneous MQTT connections (TCP and QUIC together). Default 4096.
    pub max_connections: usize,
    /// Largest packet accepted. Default 1 MiB.
    pub max_packet_bytes: usize,
    /// Most unacknowledged QoS 1/2 deliveries to one client. Default 64.
    pub max_inflight: usize,
    /// Most MQTT topics with a retained message; a retained publish to a new topic beyond this
    /// is appended to the log but not retained. Default 100,000. Cost: the payloads live in
    /// LMDB (counted in the disk quota); memory holds each retained topic name plus about 64
    /// bytes, and a wildcard SUBSCRIBE walks all of them.
    pub max_retained: usize,
    /// Most stored persistent sessions (3.1.1 `clean_session = false`, MQTT 5 session expiry
    /// above 0); a new persistent session beyond this is refused (CONNACK "server unavailable" /
    /// 0x97 quota exceeded). Default 10,000. Cost: each session is two LMDB entries (its
    /// subscriptions and one cursor per log partition its filters select; counted in the disk
    /// quota) plus about 100 bytes of memory for its client id and expiry; messages queued for
    /// an offline session are the log's records after its cursors and cost nothing more.
    pub max_sessions: usize,
    /// Longest session expiry granted, in seconds; it also bounds 3.1.1 persistent sessions,
    /// which otherwise never expire. 0 (default) is no cap.
    pub session_expiry_max_secs: u32,
    /// Most records per log partition kept for an offline persistent session (Mosquitto's
    /// `max_queued_messages`): a session that comes back further behind starts that many
    /// records before the end, skipping the oldest (with a warning; Mosquitto drops the newest
    /// instead, but for sensor data the latest matters most). 0 (default): no limit but the
    /// log's retention. Costs nothing: the queue is the log.
    pub max_queued_messages: u64,
    /// MQTT topic filters mapped to log topics; the first match wins. Unmatched topics go to the
    /// log topic named after their first level.
    pub routes: Vec<Route>,
    /// Certificate of the `mqtt_tls` and `mqtt_wss` listeners (`[mqtt.tls]`); with `client_ca`
    /// clients must present a certificate (mutual TLS) whose subject CN becomes the
    /// connection's certificate identity. Default: none (those listeners cannot start).
    pub tls: Option<TlsFiles>,
    /// Username/password authentication and topic ACLs in Mosquitto's file formats
    /// (`[mqtt.auth]`, see [`MqttAuth`]). Default: none (every client, every topic).
    pub auth: Option<MqttAuth>,
}

impl Default for MqttSection {
    fn default() -> Self {
        MqttSection {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_packet_bytes: DEFAULT_MQTT_MAX_PACKET,
            max_inflight: DEFAULT_MQTT_MAX_INFLIGHT,
            max_retained: DEFAULT_MQTT_MAX_RETAINED,
            max_sessions: DEFAULT_MQTT_MAX_SESSIONS,
            session_expiry_max_secs: DEFAULT_MQTT_SESSION_EXPIRY_MAX_SECS,
            max_queued_messages: DEFAULT_MQTT_MAX_QUEUED_MESSAGES,
            routes: Vec::new(),
            tls: None,
            auth: None,
        }
    }
}

/// One MQTT → log route.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// MQTT topic filter (`+` and `#` allowed).
    pub filter: String,
    /// Log topic the matching publishes are written to.
    pub topic: String,
    /// The record key, which picks the partition (Kafka's murmur2, as a Kafka producer would):
    /// `"topic"` the full MQTT topic (default), `"client_id"` the publishing client, or
    /// `"level:N"` the N-th level of the MQTT topic (1-based; e.g. the device id in
    /// `plant/<device>/temp` is `level:2`; the full topic if it has fewer levels).
    #[serde(default)]
    pub key: RouteKey,
}

/// What a route uses as the record key.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub enum RouteKey {
    #[default]
    Topic,
    ClientId,
    /// 1-based.
    Level(usize),
}

impl TryFrom<String> for RouteKey {
    type Error = String;

    fn try_from(s: String) -> Result<RouteKey, String> {
        let level = |n: &str| n.parse::<usize>().ok().filter(|n| *n > 0);
        match s.as_str() {
            "topic" => Ok(RouteKey::Topic),
            "client_id" => Ok(RouteKey::ClientId),
            _ => match s.strip_prefix("level:").and_then(level) {
                Some(n) => Ok(RouteKey::Level(n)),
                None => Err(format!(
                    "route key {s:?}: expected \"topic\", \"client_id\" or \"level:N\" (N from 1)"
                )),
            },
        }
    }
}

/// Where a plugin runs.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Attach {
    Ingest,
    Upstream,
}

/// One `[[plugins]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    /// Used in metrics, logs and dead-letter headers.
    pub name: String,
    /// Path of the compiled WebAssembly module.
    pub module: PathBuf,
    pub attach: Attach,
    /// Topics whose records pass through this plugin.
    pub topics: Vec<String>,
    /// Where records the plugin fails on go. Default "dead-letters".
    #[serde(default = "default_dead_letter")]
    pub dead_letter_topic: String,
    /// Handed to the plugin's init as CBOR.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Memory cap of one instance. Default 16 MiB.
    #[serde(default = "default_plugin_memory")]
    pub max_memory_bytes: u64,
    /// CPU bound of one call (wall-clock, by epoch interruption). Default 100 ms.
    #[serde(default = "default_plugin_timeout")]
    pub timeout_ms: u64,
    /// Consecutive failed batches before the plugin is disabled. Default 10.
    #[serde(default = "default_plugin_failures")]
    pub max_consecutive_failures: u32,
    /// Instances run at once (each with its own memory, up to `max_memory_bytes`). Default 1.
    #[serde(default = "default_plugin_instances")]
    pub instances: u32,
}

fn default_dead_letter() -> String {
    DEFAULT_DEAD_LETTER_TOPIC.to_string()
}
fn default_plugin_memory() -> u64 {
    DEFAULT_PLUGIN_MEMORY_BYTES
}
fn default_plugin_timeout() -> u64 {
    DEFAULT_PLUGIN_TIMEOUT_MS
}
fn default_plugin_failures() -> u32 {
    DEFAULT_PLUGIN_MAX_FAILURES
}
fn default_plugin_instances() -> u32 {
    1
}

/// `[upstream]`: forward local topics to a central Kafka-protocol cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// `host:port` of any broker of the central cluster.
    pub bootstrap: String,
    /// Local topics to forward, under the same name upstream.
    pub topics: Vec<String>,
    /// Wait between reconnect attempts (ms). Default 1000.
    #[serde(default = "default_upstream_retry")]
    pub retry_backoff_ms: u64,
    /// Most bytes sent in one produce request per partition. Default 1 MiB.
    #[serde(default = "default_upstream_batch")]
    pub max_batch_bytes: usize,
    /// A request unanswered this long means the link hangs (ms). Default 10 000.
    #[serde(default = "default_upstream_timeout")]
    pub request_timeout_ms: u64,
}

fn default_upstream_retry() -> u64 {
    DEFAULT_UPSTREAM_RETRY_MS
}
fn default_upstream_batch() -> usize {
    DEFAULT_UPSTREAM_BATCH_BYTES
}
fn default_upstream_timeout() -> u64 {
    DEFAULT_UPSTREAM_TIMEOUT_MS
}

impl Config {
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            source: Box::new(e),
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.log.default_partitions == 0 {
            return bad("log.default_partitions must be at least 1".into());
        }
        if self.log.max_disk_bytes < 1024 * 1024 {
            return bad("log.max_disk_bytes must be at least 1 MiB".into());
        }
        self.validate_kafka()?;
        self.validate_mqtt_tls()?;
        if let Some(auth) = &self.mqtt.auth {
            auth.validate()?;
        }
        for route in &self.mqtt.routes {
            crate::mqtt::topic::validate_filter(&route.filter).map_err(|e| {
                ConfigError::Invalid(format!("mqtt route filter {:?}: {e}", route.filter))
            })?;
            crate::log::validate_topic_name(&route.topic)
                .map_err(|e| ConfigError::Invalid(format!("mqtt route {:?}: {e}", route.filter)))?;
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.plugins {
            if !names.insert(&p.name) {
                return bad(format!("plugin name {:?} is used twice", p.name));
            }
            if p.topics.is_empty() {
                return bad(format!("plugin {:?} lists no topics", p.name));
            }
            if p.timeout_ms == 0 {
                return bad(format!("plugin {:?}: timeout_ms must be > 0", p.name));
            }
            if p.attach == Attach::Upstream {
                let replicated = self.upstream.as_ref().map(|u| &u.topics);
                if let Some(t) = p
                    .topics
                    .iter()
                    .find(|t| !replicated.is_some_and(|r| r.contains(t)))
                {
                    return bad(format!(
                        "plugin {:?} attaches upstream to topic {t:?}, which [upstream] topics do not forward",
                        p.name
                    ));
                }
            }
        }
        if self.kafka.groups.offsets_retention_minutes == 0
            || self.kafka.groups.offsets_retention_check_interval_ms == 0
        {
            return bad(
                "kafka.groups.offsets_retention_minutes and offsets_retention_check_interval_ms must be at least 1"
                    .into(),
            );
        }
        if let Some(up) = &self.upstream {
            if up.bootstrap.trim().is_empty() {
                return bad("upstream.bootstrap is empty".into());
            }
        }
        Ok(())
    }

    /// Loads the Kafka listener's TLS files and credentials once, so that a bad file stops the
    /// broker at startup with a clear error instead of failing every connection.
    fn validate_kafka(&self) -> Result<(), ConfigError> {
        if let Some(tls) = &self.kafka.tls {
            crate::tls::server_config(tls)
                .map_err(|e| ConfigError::Invalid(format!("kafka.tls: {e}")))?;
        }
        if let Some(sasl) = &self.kafka.sasl {
            if sasl.mechanisms.is_empty() {
                return Err(ConfigError::Invalid(
                    "kafka.sasl.mechanisms lists no mechanism".into(),
                ));
            }
            crate::kafka::sasl::Credentials::load(&sasl.credentials)
                .map_err(|e| ConfigError::Invalid(format!("kafka.sasl: {e}")))?;
        }
        Ok(())
    }

    /// A TLS MQTT listener needs `[mqtt.tls]`, and its files must load.
    fn validate_mqtt_tls(&self) -> Result<(), ConfigError> {
        let wants_tls =
            self.listeners.mqtt_tls != Listen::Off || self.listeners.mqtt_wss != Listen::Off;
        match &self.mqtt.tls {
            None if wants_tls => Err(ConfigError::Invalid(
                "listeners.mqtt_tls / listeners.mqtt_wss need a [mqtt.tls] section (cert, key)"
                    .into(),
            )),
            None => Ok(()),
            Some(tls) => crate::tls::server_config(tls)
                .map(drop)
                .map_err(|e| ConfigError::Invalid(format!("mqtt.tls: {e}"))),
        }
    }

    /// The gateway id used in upstream headers.
    pub fn gateway_id(&self) -> String {
        if let Some(id) = &self.gateway_id {
            return id.clone();
        }
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "headwater".to_string())
    }

    pub fn log_options(&self) -> crate::log::LogOptions {
        crate::log::LogOptions {
            data_dir: self.data_dir.clone(),
            max_disk_bytes: self.log.max_disk_bytes,
            fsync: self.log.durability == Durability::Fsync,
            defaults: crate::log::TopicDefaults {
                auto_create: self.log.auto_create_topics,
                partitions: self.log.default_partitions,
                retention_ms: self.log.retention_ms,
                retention_bytes: self.log.retention_bytes,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_embedded_default() {
        let c = Config::from_toml("", "empty").unwrap();
        assert_eq!(c.data_dir, PathBuf::from("headwater-data"));
        assert_eq!(c.listeners.mqtt, Listen::parse("127.0.0.1:1883").unwrap());
        assert_eq!(c.listeners.kafka.addr().unwrap().port(), 9092);
        assert_eq!(c.listeners.quic.addr().unwrap().port(), 14567);
        assert_eq!(c.listeners.http.addr().unwrap().port(), 8480);
        assert_eq!(c.log.durability, Durability::Fsync);
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../../headwater.example.toml");
        let c = Config::from_toml(text, "headwater.example.toml").unwrap();
        assert_eq!(c.plugins.len(), 1);
        assert_eq!(c.plugins[0].attach, Attach::Ingest);
        assert_eq!(
            c.upstream.as_ref().unwrap().topics,
            vec!["sensors".to_string()]
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::from_toml("colour = 1", "x").is_err());
        assert!(Config::from_toml("[listeners]\nmqtt = \"nope\"", "x").is_err());
        assert!(Config::from_toml("[log]\ndefault_partitions = 0", "x").is_err());
        let off = Config::from_toml("[listeners]\nquic = \"off\"", "x").unwrap();
        assert_eq!(off.listeners.quic, Listen::Off);
    }

    #[test]
    fn upstream_plugins_must_attach_to_forwarded_topics() {
        let plugin = |topic: &str| {
            format!(
                "[[plugins]]\nname = \"p\"\nmodule = \"p.wasm\"\nattach = \"upstream\"\ntopics = [\"{topic}\"]\n"
            )
        };
        let upstream = "[upstream]\nbootstrap = \"central:9092\"\ntopics = [\"sensors\"]\n";
        let ok = format!("{}{upstream}", plugin("sensors"));
        assert!(Config::from_toml(&ok, "x").is_ok());
        let err = Config::from_toml(&format!("{}{upstream}", plugin("other")), "x").unwrap_err();
        assert!(
            err.to_string().contains("[upstream] topics do not forward"),
            "{err}"
        );
        assert!(
            Config::from_toml(&plugin("sensors"), "x").is_err(),
            "no [upstream] at all"
        );
    }
}
