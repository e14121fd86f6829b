//! The `headwater` command line: parsing, logging, signals. `main.rs` only calls [`main`], so the
//! tests crate can build the same binary for its child-process tests.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, Listen};
use crate::server::Broker;
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

/// Stack of the runtime's threads. Plugins and log commits may run on them inline (in
/// `block_in_place`): a guest's calls take up to `plugin::MAX_WASM_STACK` below the task's own
/// frames, so the 2 MiB default leaves too little margin. Untouched pages cost no memory.
const RUNTIME_STACK: usize = 8 * 1024 * 1024;

/// Headwater: an edge broker for IoT gateways. MQTT, Kafka and QUIC into durable partition
/// logs in LMDB, WebAssembly plugins on the records, store-and-forward to a central Kafka cluster.
#[derive(Parser)]
#[command(name = "headwater", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (with no --config: the embedded default, loopback listeners, data in ./headwater-data).
    Serve(ServeArgs),
    /// Manage the Kafka SASL credentials file (`kafka.sasl.credentials`).
    #[command(subcommand)]
    Credentials(CredentialsCommand),
}

#[derive(Subcommand)]
enum CredentialsCommand {
    /// Add or replace a user: stores SCRAM-SHA-256 and SCRAM-SHA-512 keys (salted, no password),
    /// which serve PLAIN logins too. The password is read from the first line of stdin.
    Add {
        /// User name.
        #[arg(long)]
        user: String,
        /// Read the password from stdin (required: a password on the command line would show in `ps`).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Credentials file to update (created with mode 0600 if missing; comments are not kept).
        /// Without it, the entry is printed to stdout.
        #[arg(long)]
        file: Option<PathBuf>,
        /// PBKDF2 iterations (at least 4096).
        #[arg(long, default_value_t = crate::kafka::sasl::scram::MIN_ITERATIONS)]
        iterations: u32,
    },
}

#[derive(Parser)]
struct ServeArgs {
    /// TOML config file (see headwater.example.toml); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of the data (LMDB environment).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// MQTT listener address, or "off" (default 127.0.0.1:1883).
    #[arg(long)]
    mqtt: Option<String>,
    /// Kafka listener address, or "off" (default 127.0.0.1:9092).
    #[arg(long)]
    kafka: Option<String>,
    /// MQTT-over-QUIC listener address (UDP), or "off" (default 127.0.0.1:14567).
    #[arg(long)]
    quic: Option<String>,
    /// HTTP health/metrics listener address, or "off" (default 127.0.0.1:8480).
    #[arg(long)]
    http: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// Runs the command line; the binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            match serve(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("headwater: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Credentials(CredentialsCommand::Add {
            user,
            password_stdin: _,
            file,
            iterations,
        }) => {
            let stdin = std::io::stdin().lock();
            match crate::kafka::sasl::credentials::add_from_cli(
                &user,
                stdin,
                file.as_deref(),
                iterations,
            ) {
                Ok(printed) => {
                    print!("{printed}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("headwater: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in files or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    let listen = |flag: &Option<String>, slot: &mut Listen| -> anyhow::Result<()> {
        if let Some(value) = flag {
            *slot = Listen::parse(value)?;
        }
        Ok(())
    };
    listen(&args.mqtt, &mut config.listeners.mqtt)?;
    listen(&args.kafka, &mut config.listeners.kafka)?;
    listen(&args.quic, &mut config.listeners.quic)?;
    listen(&args.http, &mut config.listeners.http)?;
    config.validate()?;
    Ok(config)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(RUNTIME_STACK)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let broker = Broker::start(config).await?;
        // One parseable line per listener on stdout, for scripts and tests using port 0.
        let a = broker.addrs;
        let mut out = std::io::stdout().lock();
        for (name, addr) in [
            ("mqtt", a.mqtt),
            ("kafka", a.kafka),
            ("quic", a.quic),
            ("http", a.http),
            ("mqtt_tls", a.mqtt_tls),
            ("mqtt_ws", a.mqtt_ws),
            ("mqtt_wss", a.mqtt_wss),
        ] {
            if let Some(addr) = addr {
                let _ = writeln!(out, "listening {name} {addr}");
            }
        }
        let _ = writeln!(out, "ready");
        let _ = out.flush();
        drop(out);
        wait_for_signal(&broker).await?;
        tracing::info!("shutting down");
        broker.stop().await;
        Ok(())
    })
}

/// Waits for SIGTERM or SIGINT; meanwhile each SIGHUP reloads the plugin modules (as
/// Mosquitto reloads on SIGHUP).
async fn wait_for_signal(broker: &Broker) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => return r.context("waiting for SIGINT"),
            _ = term.recv() => return Ok(()),
            _ = hup.recv() => {
                let replaced = broker.reload_plugins().await;
                tracing::info!(replaced, "SIGHUP: plugin modules reloaded");
            }
        }
    }
}
