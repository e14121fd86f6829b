//! `[mqtt.auth]`: MQTT username/password authentication and topic ACLs, in Mosquitto's own
//! file formats so a Mosquitto installation's `password_file` and `acl_file` work unchanged.
//!
//! The files are read and checked when the configuration is validated and again when the MQTT
//! listener starts ([`crate::mqtt::auth::Auth::load`]); either failure stops the broker with the
//! file, line and reason: it never starts with less security than configured.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// `[mqtt.auth]`. Without this section every MQTT client is served and may publish and
/// subscribe to everything.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MqttAuth {
    /// Mosquitto password file (`mosquitto_passwd`): `user:$7$...` (PBKDF2-SHA512, Mosquitto
    /// 2.0's default) or `user:$6$...` (salted SHA-512, older files) per line. A client that
    /// sends a username must then send that user's password. Default: none (a username is
    /// taken as given and only selects the user's ACL rules, as in Mosquitto). Cost: each
    /// login with a password runs the hash (101 PBKDF2 rounds by default: tens of microseconds)
    /// on the blocking thread pool; unknown users cost the same as wrong passwords.
    pub password_file: Option<PathBuf>,
    /// Mosquitto ACL file: `user`, `topic [read|write|readwrite|deny] <filter>` and
    /// `pattern ...` lines (with `%c` and `%u`). With it, anything not granted is denied.
    /// Default: none (no topic restrictions). Cost: every publish, subscription and delivered
    /// message is matched against the client's rules (none of that work without the file).
    pub acl_file: Option<PathBuf>,
    /// Whether clients that send no username are served. Default: `true` when no
    /// `password_file` is set, `false` when one is (unlike Mosquitto 2.0, whose default is
    /// always `false`, a broker without any auth config stays open as before).
    pub allow_anonymous: Option<bool>,
    /// Mosquitto's option of that name: the Common Name of the client's TLS certificate
    /// becomes its username (no password is checked) and the CONNECT's username is ignored.
    /// A connection without a client certificate (plain TCP, QUIC, or TLS without
    /// `client_ca`) is then refused with "bad user name or password", as in Mosquitto.
    /// Default `false`.
    #[serde(default)]
    pub use_identity_as_username: bool,
}

impl MqttAuth {
    /// `allow_anonymous` with its default applied.
    pub fn allow_anonymous(&self) -> bool {
        self.allow_anonymous.unwrap_or(self.password_file.is_none())
    }

    /// Reads both files once, so a missing file or a malformed line is a configuration error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::mqtt::auth::Auth::load(self)
            .map(drop)
            .map_err(|e| ConfigError::Invalid(format!("mqtt.auth: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_default_follows_the_password_file() {
        let open = MqttAuth::default();
        assert!(open.allow_anonymous());
        let with_file = MqttAuth {
            password_file: Some("pw".into()),
            ..MqttAuth::default()
        };
        assert!(!with_file.allow_anonymous());
        let explicit = MqttAuth {
            allow_anonymous: Some(true),
            ..with_file
        };
        assert!(explicit.allow_anonymous());
    }
}
