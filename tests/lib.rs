//! Test harness: starts Headwater for end-to-end tests, in-process or as a child process, always on
//! `127.0.0.1:0` ports, and finds the third-party clients the tests drive.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use headwater::config::{Config, Listen};
use headwater::server::Broker;

/// Set by `.ci/run`: a missing system client (kcat, mosquitto_pub, ...) fails the test instead of
/// skipping it.
pub const REQUIRE_CLIENTS_VAR: &str = "HEADWATER_REQUIRE_CLIENTS";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A config with every listener on an ephemeral loopback port and data in `dir`.
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    let any = Listen::At("127.0.0.1:0".parse().expect("literal address"));
    config.listeners.mqtt = any.clone();
    config.listeners.kafka = any.clone();
    config.listeners.quic = any.clone();
    config.listeners.http = any;
    config.log.max_disk_bytes = 256 * 1024 * 1024;
    // Consumer groups form at once instead of after Kafka's 3 s initial rebalance delay.
    config.kafka.groups.initial_rebalance_delay_ms = 0;
    config
}

/// A broker running inside the test process.
pub struct InProcess {
    pub broker: Broker,
    pub dir: tempfile::TempDir,
}

impl InProcess {
    pub async fn start() -> InProcess {
        Self::start_with(|_| {}).await
    }

    /// Starts with the test config, adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> InProcess {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let broker = Broker::start(config).await.expect("broker starts");
        InProcess { broker, dir }
    }

    pub fn kafka(&self) -> String {
        self.broker.addrs.kafka.expect("kafka listener").to_string()
    }

    pub fn mqtt(&self) -> SocketAddr {
        self.broker.addrs.mqtt.expect("mqtt listener")
    }
}

/// Addresses a child broker printed on stdout.
#[derive(Debug, Default, Clone)]
pub struct ChildAddrs {
    pub mqtt: Option<SocketAddr>,
    pub kafka: Option<SocketAddr>,
    pub quic: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
}

/// A broker running as a child process (for restarts, SIGTERM and `kill -9`).
pub struct ChildBroker {
    child: Child,
    pub addrs: ChildAddrs,
}

impl ChildBroker {
    /// Runs `bin serve --config <file>` where the file is `toml` plus listeners on port 0 unless
    /// `toml` names them. Waits for the "ready" line.
    pub fn spawn(bin: &str, data_dir: &Path, toml: &str) -> ChildBroker {
        let mut text = format!("data_dir = {:?}\n", data_dir.display().to_string());
        text.push_str(toml);
        if !toml.contains("[kafka.groups]") {
            // As in `test_config`: no initial rebalance delay.
            text.push_str("\n[kafka.groups]\ninitial_rebalance_delay_ms = 0\n");
        }
        if !toml.contains("[listeners]") {
            text.push_str(
                "\n[listeners]\nmqtt = \"127.0.0.1:0\"\nkafka = \"127.0.0.1:0\"\nquic = \"off\"\nhttp = \"127.0.0.1:0\"\n",
            );
        }
        let config = data_dir.with_extension("toml");
        std::fs::write(&config, text).expect("write config");
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn broker");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut addrs = ChildAddrs::default();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "broker did not become ready");
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("broker exited before it was ready: {:?}", child.try_wait()),
            };
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["ready"] => break,
                ["listening", name, addr] => {
                    let addr: SocketAddr = addr.parse().expect("address");
                    match *name {
                        "mqtt" => addrs.mqtt = Some(addr),
                        "kafka" => addrs.kafka = Some(addr),
                        "quic" => addrs.quic = Some(addr),
                        "http" => addrs.http = Some(addr),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ChildBroker { child, addrs }
    }

    pub fn kafka(&self) -> String {
        self.addrs.kafka.expect("kafka listener").to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait; returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "broker ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of a system client, or `None` (test skipped, said on stderr) when it is missing and
/// `HEADWATER_REQUIRE_CLIENTS` is not set. With the variable set, a missing client panics.
pub fn system_client(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os(REQUIRE_CLIENTS_VAR).is_some() {
            panic!("{name} is required ({REQUIRE_CLIENTS_VAR} is set) but not installed");
        }
        eprintln!(
            "SKIPPED: {name} is not installed (set {REQUIRE_CLIENTS_VAR}=1 to make this a failure)"
        );
    }
    found
}

/// python3 with kafka-python and confluent-kafka importable, under the same rule as
/// [`system_client`]: missing is a skip, or a failure when `HEADWATER_REQUIRE_CLIENTS` is set.
pub fn python_kafka_clients() -> Option<PathBuf> {
    python_with("kafka, confluent_kafka", "kafka-python confluent-kafka")
}

/// python3 with paho-mqtt importable, under the same rule as [`system_client`].
pub fn python_paho() -> Option<PathBuf> {
    python_with("paho.mqtt.client", "paho-mqtt")
}

/// python3 if it can `import modules` (pip packages `packages`), else a skip or a failure.
fn python_with(modules: &str, packages: &str) -> Option<PathBuf> {
    let python = system_client("python3")?;
    let has = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has {
        if std::env::var_os(REQUIRE_CLIENTS_VAR).is_some() {
            panic!("python packages {packages} are required ({REQUIRE_CLIENTS_VAR} is set)");
        }
        eprintln!("SKIPPED: pip install {packages} to run this test");
        return None;
    }
    Some(python)
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The compiled example plugins (built by this crate's build script).
pub fn plugin_wasm(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("HEADWATER_PLUGIN_DIR"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: the tests crate's build script builds plugins/ for wasm32-unknown-unknown",
        path.display()
    );
    path
}

/// One HTTP/1.1 request to the broker's admin listener: (status code, body). Blocking; the admin
/// API is small enough that a client library would be the bigger part of the test.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the HTTP listener");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read response");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
