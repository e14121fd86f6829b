//! Connected client ids, for session takeover.
//!
//! MQTT 3.1.1 §3.1.4: when a client connects with the id of a connected client, the server must
//! disconnect the existing one. Each connection registers its id with a token the registry can
//! cancel; the connection ends when its token is cancelled. Shared by TCP and QUIC connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
pub struct Registry {
    /// Distinguishes connections of the same client id, so a closing old connection does not
    /// unregister its successor.
    next_connection: AtomicU64,
    clients: Mutex<HashMap<String, (u64, CancellationToken)>>,
}

/// A registered connection: its number and the token cancelled when it is taken over.
pub struct Registration {
    pub connection: u64,
    pub taken_over: CancellationToken,
}

impl Registry {
    /// Registers `client_id`, cancelling the connection that had it.
    pub fn register(&self, client_id: &str) -> Registration {
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let previous = self
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(client_id.to_string(), (connection, token.clone()));
        if let Some((_, old)) = previous {
            old.cancel();
        }
        Registration {
            connection,
            taken_over: token,
        }
    }

    /// Removes `client_id` if `connection` still holds it.
    pub fn unregister(&self, client_id: &str, connection: u64) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients
            .get(client_id)
            .is_some_and(|(c, _)| *c == connection)
        {
            clients.remove(client_id);
        }
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
        let a = r.register("dev");
        let b = r.register("dev");
        assert!(a.taken_over.is_cancelled());
        assert!(!b.taken_over.is_cancelled());
        r.unregister("dev", a.connection);
        assert_eq!(
            r.len(),
            1,
            "the old connection must not remove its successor"
        );
        r.unregister("dev", b.connection);
        assert_eq!(r.len(), 0);
        assert_ne!(r.generate_id(), r.generate_id());
    }
}
