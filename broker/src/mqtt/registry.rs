//! Connected client ids, for session takeover.
//!
//! MQTT 3.1.1 §3.1.4: when a client connects with the id of a connected client, the server must
//! disconnect the existing one. Each connection registers its id with a token the registry can
//! cancel; the connection ends when its token is cancelled. Shared by TCP and QUIC connections.
//! Each entry also keeps the client's certificate identity, for operators and tests to see who
//! a connected client id is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
pub struct Registry {
    /// Distinguishes connections of the same client id, so a closing old connection does not
    /// unregister its successor.
    next_connection: AtomicU64,
    clients: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    connection: u64,
    taken_over: CancellationToken,
    /// Subject CN of the client's TLS certificate, if it presented one.
    cert_identity: Option<String>,
}

/// A registered connection: its number and the token cancelled when it is taken over (or the
/// broker shuts down: it is a child of the shutdown token, so a quiet connection waits on one
/// token, not two; tell the two apart with the shutdown token).
pub struct Registration {
    pub connection: u64,
    pub taken_over: CancellationToken,
}

impl Registry {
    /// Registers `client_id`, cancelling the connection that had it; returns that one's number
    /// too (a parked connection must also be told: see [`super::parking::Parking::kick`]).
    pub fn register(
        &self,
        client_id: &str,
        cert_identity: Option<String>,
        shutdown: &CancellationToken,
    ) -> (Registration, Option<u64>) {
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let token = shutdown.child_token();
        let previous = self
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                client_id.to_string(),
                Entry {
                    connection,
                    taken_over: token.clone(),
                    cert_identity,
                },
            );
        if let Some(old) = &previous {
            old.taken_over.cancel();
        }
        let registration = Registration {
            connection,
            taken_over: token,
        };
        (registration, previous.map(|old| old.connection))
    }

    /// Removes `client_id` if `connection` still holds it.
    pub fn unregister(&self, client_id: &str, connection: u64) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients
            .get(client_id)
            .is_some_and(|e| e.connection == connection)
        {
            clients.remove(client_id);
        }
    }

    /// The certificate identity of connected `client_id`; `None` if it is not connected.
    pub fn cert_identity(&self, client_id: &str) -> Option<Option<String>> {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.get(client_id).map(|e| e.cert_identity.clone())
    }

    pub fn len(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fresh id for a client that connected with an empty one (§3.1.3.1).
    pub fn generate_id(&self) -> String {
        let n = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("headwater-{nanos:08x}{n:x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_connection_takes_over_and_the_first_leaves_it_alone() {
        let r = Registry::default();
        let shutdown = CancellationToken::new();
        let (a, replaced) = r.register("dev", None, &shutdown);
        assert_eq!(replaced, None);
        let (b, replaced) = r.register("dev", Some("sensor-1".into()), &shutdown);
        assert_eq!(replaced, Some(a.connection));
        assert_eq!(r.cert_identity("dev"), Some(Some("sensor-1".into())));
        assert_eq!(r.cert_identity("other"), None);
        assert!(a.taken_over.is_cancelled());
        assert!(!b.taken_over.is_cancelled());
        r.unregister("dev", a.connection);
        assert_eq!(
            r.len(),
            1,
            "the old connection must not remove its successor"
        );
        shutdown.cancel();
        assert!(
            b.taken_over.is_cancelled(),
            "shutdown reaches every connection"
        );
        r.unregister("dev", b.connection);
        assert_eq!(r.len(), 0);
        assert_ne!(r.generate_id(), r.generate_id());
    }
}
