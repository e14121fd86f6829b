//! The accept loop.
//!
//! A semaphore permit is taken *before* `accept`, so at most `kafka.max_connections`
//! connections exist at once and further clients wait in the kernel's listen backlog instead
//! of costing memory here. Accept errors (for example running out of file descriptors) are
//! logged and retried after a growing pause rather than ending the listener.
//!
//! Security ([`Security`]): with `[kafka.tls]` each accepted stream is wrapped in TLS inside
//! its connection task, so the handshake holds a connection permit and runs under
//! [`tls::HANDSHAKE_TIMEOUT`]; with `[kafka.sasl]` each connection starts unauthenticated
//! (see [`super::sasl`]). Files that cannot be loaded stop [`super::KafkaContext::new`], so a
//! listener never runs with less security than configured.
//!
//! Shutdown: stop accepting, let every connection finish the request it is handling (idle ones
//! close at once, waiting fetches return early), and after [`DRAIN_TIMEOUT`] abort whatever
//! is still running, for example a write to a client that stopped reading.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::connection::{self, ConnInfo};
use super::sasl::credentials::CredentialsError;
use super::sasl::{Credentials, Mechanism, SaslConfig};
use super::tls::{self, TlsAcceptor, TlsError};
use super::KafkaContext;
use crate::config::KafkaSection;

/// How long connections get to finish in-flight requests at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest pause after a failed `accept`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Serves Kafka clients on `listener` until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, ctx: KafkaContext, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(ctx.max_connections.max(1)));
    let mut connections = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "Kafka listener ready");
    }
    loop {
        // Finished connections leave their result in the set until collected.
        while let Some(done) = connections.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "a Kafka connection task failed");
            }
        }
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, "Kafka accept failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        backoff = ACCEPT_BACKOFF.0;
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "Kafka connection gone before it was served");
                continue;
            }
        };
        tracing::debug!(%peer, "Kafka connection accepted");
        let info = ConnInfo { peer, local };
        let ctx = ctx.clone();
        let token = shutdown.child_token();
        connections.spawn(async move {
            serve_stream(stream, info, ctx, token).await;
            drop(permit);
        });
    }
    drop(listener);
    let busy = connections.len();
    if busy > 0 {
        tracing::info!(
            connections = busy,
            "Kafka listener stopping; draining connections"
        );
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "Kafka connections still busy after the drain timeout; aborting them"
        );
        connections.shutdown().await;
    }
}

/// What a connection must pass before it is served; shared by all connections.
#[derive(Clone)]
pub struct Security {
    /// Wraps every accepted stream when `[kafka.tls]` is set.
    tls: Option<TlsAcceptor>,
    /// Mechanisms and credentials when `[kafka.sasl]` is set.
    pub(super) sasl: Option<Arc<SaslConfig>>,
    /// `kafka.idle_timeout_ms`; `None` when 0 (never).
    pub(super) idle_timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("kafka.tls: {0}")]
    Tls(#[from] TlsError),
    #[error("kafka.sasl: {0}")]
    Credentials(#[from] CredentialsError),
    #[error("kafka.sasl.mechanisms lists no mechanism")]
    NoMechanism,
}

impl Security {
    /// Loads the certificate, key and credentials files the section names.
    pub fn load(section: &KafkaSection) -> Result<Security, SecurityError> {
        let tls = section.tls.as_ref().map(tls::acceptor).transpose()?;
        let sasl = match &section.sasl {
            None => None,
            Some(sasl) => {
                if sasl.mechanisms.is_empty() {
                    return Err(SecurityError::NoMechanism);
                }
                let credentials = Credentials::load(&sasl.credentials)?;
                let mut mechanisms = Vec::new();
                for m in &sasl.mechanisms {
                    if !mechanisms.contains(m) {
                        mechanisms.push(*m);
                    }
                }
                if tls.is_none() && mechanisms.contains(&Mechanism::Plain) {
                    tracing::warn!(
                        "Kafka SASL PLAIN is enabled without TLS: passwords cross the network in clear"
                    );
                }
                tracing::info!(
                    users = credentials.len(),
                    mechanisms = ?mechanisms.iter().map(|m| m.name()).collect::<Vec<_>>(),
                    "Kafka SASL authentication required"
                );
                Some(Arc::new(SaslConfig {
                    mechanisms,
                    credentials,
                }))
            }
        };
        Ok(Security {
            tls,
            sasl,
            idle_timeout: idle_timeout(section),
        })
    }
}

fn idle_timeout(section: &KafkaSection) -> Option<Duration> {
    (section.idle_timeout_ms > 0).then(|| Duration::from_millis(section.idle_timeout_ms))
}

/// Runs the TLS handshake if configured, then serves the connection.
async fn serve_stream(
    stream: TcpStream,
    info: ConnInfo,
    ctx: KafkaContext,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = ctx.security.tls.clone() else {
        return connection::serve(stream, info, ctx, shutdown).await;
    };
    // A client silent during the handshake is idle too.
    let limit = match ctx.security.idle_timeout {
        Some(idle) => idle.min(tls::HANDSHAKE_TIMEOUT),
        None => tls::HANDSHAKE_TIMEOUT,
    };
    let handshake = tokio::time::timeout(limit, acceptor.accept(stream));
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::info!(peer = %info.peer, error = %e, "Kafka TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::info!(peer = %info.peer, timeout_ms = limit.as_millis() as u64, "Kafka TLS handshake timed out");
                return;
            }
        },
        _ = shutdown.cancelled() => return,
    };
    connection::serve(stream, info, ctx, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KafkaSasl, KafkaTls};

    #[test]
    fn unloadable_security_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let bad_tls = KafkaSection {
            tls: Some(KafkaTls {
                cert: missing.clone(),
                key: missing.clone(),
                client_ca: None,
            }),
            ..KafkaSection::default()
        };
        assert!(matches!(
            Security::load(&bad_tls),
            Err(SecurityError::Tls(_))
        ));
        let bad_sasl = KafkaSection {
            sasl: Some(KafkaSasl {
                mechanisms: vec![Mechanism::Plain],
                credentials: missing,
            }),
            ..KafkaSection::default()
        };
        assert!(matches!(
            Security::load(&bad_sasl),
            Err(SecurityError::Credentials(_))
        ));
        let fine = Security::load(&KafkaSection {
            idle_timeout_ms: 0,
            ..KafkaSection::default()
        })
        .unwrap();
        assert!(fine.idle_timeout.is_none());
    }
}
