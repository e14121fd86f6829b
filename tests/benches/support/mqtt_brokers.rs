//! The MQTT brokers compared side by side, each started as a child process on a free loopback
//! port with the same limits: Headwater (fsync'd and relaxed durability), Mosquitto (Debian's
//! `mosquitto`) and rumqttd (`cargo install rumqttd`). In-flight windows are 100 everywhere and no
//! broker drops queued messages, so every broker delivers everything it is sent.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use headwater_tests::ChildBroker;

/// Unacknowledged QoS 1/2 deliveries per client, the same for every broker.
pub const INFLIGHT: usize = 100;

/// Which broker, and how it is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Headwater; `relaxed` is `durability = "relaxed"` (no fsync per group commit).
    Headwater {
        relaxed: bool,
    },
    Mosquitto,
    Rumqttd,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Headwater { relaxed: false } => "Headwater (fsync)",
            Kind::Headwater { relaxed: true } => "Headwater (relaxed)",
            Kind::Mosquitto => "Mosquitto",
            Kind::Rumqttd => "rumqttd",
        }
    }
}

enum Process {
    /// Held for its `Drop`, which stops the broker.
    #[allow(dead_code)]
    Headwater(ChildBroker),
    Other(Child),
}

/// A running broker; stopped when dropped.
pub struct Running {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub pid: u32,
    /// Headwater's HTTP listener (for its `/metrics`).
    pub http: Option<SocketAddr>,
    _process: Process,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Process::Other(child) = &mut self._process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The path of `name` on PATH (or in ~/.cargo/bin), if installed.
pub fn find(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn wait_listening(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("broker exited before listening on {addr}: {status}");
        }
        assert!(Instant::now() < deadline, "broker not listening on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `kind`, or `None` (said on stderr) when it is not installed.
pub fn start(kind: Kind, headwater_bin: &str) -> Option<Running> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (process, addr, pid) = match kind {
        Kind::Headwater { relaxed } => {
            let durability = if relaxed { "relaxed" } else { "fsync" };
            let toml = format!(
                "[log]\ndurability = \"{durability}\"\nmax_disk_bytes = 8589934592\n\
                 [mqtt]\nmax_inflight = {INFLIGHT}\nmax_connections = 20000\n"
            );
            let broker = ChildBroker::spawn(headwater_bin, &dir.path().join("data"), &toml);
            let addr = broker.addrs.mqtt.expect("mqtt listener");
            let pid = broker.pid();
            (Process::Headwater(broker), addr, pid)
        }
        Kind::Mosquitto => {
            let bin = installed("mosquitto", "apt-get install mosquitto")?;
            let port = free_port();
            let conf = dir.path().join("mosquitto.conf");
            // max_queued_messages 0: no limit, so nothing is dropped while a subscriber lags.
            let text = format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_inflight_messages {INFLIGHT}\nmax_queued_messages 0\nlog_type none\n"
            );
            std::fs::write(&conf, text).expect("write conf");
            let child = spawn(Command::new(bin).arg("-c").arg(&conf));
            other(child, port)
        }
        Kind::Rumqttd => {
            let bin = installed("rumqttd", "cargo install rumqttd --version 0.20.0")?;
            let port = free_port();
            let conf = dir.path().join("rumqttd.toml");
            std::fs::write(&conf, rumqttd_config(port)).expect("write conf");
            let child = spawn(Command::new(bin).arg("-c").arg(&conf).arg("-q"));
            other(child, port)
        }
    };
    let http = match &process {
        Process::Headwater(b) => b.addrs.http,
        _ => None,
    };
    Some(Running {
        kind,
        addr,
        pid,
        http,
        _process: process,
        _dir: dir,
    })
}

fn installed(name: &str, how: &str) -> Option<PathBuf> {
    let found = find(name);
    if found.is_none() {
        eprintln!("SKIPPED: {name} is not installed ({how})");
    }
    found
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn broker")
}

fn other(mut child: Child, port: u16) -> (Process, SocketAddr, u32) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(addr, &mut child);
    let pid = child.id();
    (Process::Other(child), addr, pid)
}

/// rumqttd 0.20's configuration: one MQTT 3.1.1 listener, in-memory segments large enough
/// that a benchmark's messages are never evicted before delivery.
fn rumqttd_config(port: u16) -> String {
    format!(
        r#"id = 0

[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = {INFLIGHT}
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = {INFLIGHT}
    dynamic_filters = true
"#
    )
}
