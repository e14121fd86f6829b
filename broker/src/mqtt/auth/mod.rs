//! MQTT authentication and authorization with Mosquitto's files (`[mqtt.auth]`), so a
//! Mosquitto installation's `password_file` and `acl_file` work unchanged.
//!
//! [`Auth`] is built once at startup from [`MqttAuth`] and held in the MQTT context; it is
//! immutable (no locks). Each connection:
//!
//! 1. [`Auth::authenticate`]s at CONNECT, before its client id is registered (so a failed login
//!    can neither take over nor resume a session). The password hash runs on the blocking
//!    thread pool. Outcomes, as the MQTT specification names them: unknown user or wrong
//!    password → CONNACK 0x04 (3.1.1) / 0x86 (5.0); no username when anonymous clients are
//!    not allowed → 0x05 / 0x87; then the connection closes. (Mosquitto 2.0 answers "not
//!    authorized" in both cases; clients treat either as a refused login.)
//! 2. Gets its [`Permissions`] ([`Auth::permissions`]), checked on every PUBLISH (write),
//!    SUBSCRIBE and delivered message (read); see [`acl`] for the rules. Without an ACL file
//!    they allow everything and the checks cost one branch.
//!
//! Refusals, as Mosquitto: a publish without write access is dropped (never appended), with a
//! PUBACK/PUBREC 0x87 for MQTT 5 QoS 1/2 and the usual positive ack for 3.1.1 (which cannot
//! refuse one); a subscription gets 0x80 (3.1.1) / 0x87 (5.0) for that filter only; a will
//! whose topic the client may not write is dropped at CONNECT, and the connection accepted
//! (Mosquitto 2.0 accepts such a CONNECT and never publishes the will).

pub mod acl;
pub mod passwords;

use std::path::Path;
use std::sync::Arc;

use crate::config::MqttAuth;

pub use acl::{AclFile, ClientAcl};
pub use passwords::PasswordFile;

/// A file of `[mqtt.auth]` that cannot be used; the broker does not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} {path} {reason}")]
    Invalid {
        what: &'static str,
        path: String,
        /// "line N: why".
        reason: String,
    },
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown user, wrong or missing password, or no certificate identity when
    /// `use_identity_as_username` is set.
    BadCredentials,
    /// No username and anonymous clients are not allowed.
    NotAuthorized,
}

/// The authentication settings and files. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    passwords: Option<Arc<PasswordFile>>,
    acl: Option<Arc<AclFile>>,
    allow_anonymous: bool,
    use_identity_as_username: bool,
}

impl Auth {
    /// No authentication: every client is served and may use every topic.
    pub fn open() -> Auth {
        Auth {
            allow_anonymous: true,
            ..Auth::default()
        }
    }

    /// Reads the configured files; any unreadable file or malformed line is an error.
    pub fn load(config: &MqttAuth) -> Result<Auth, AuthError> {
        let passwords = match &config.password_file {
            Some(path) => {
                let text = read("password file", path)?;
                let file =
                    PasswordFile::parse(&text).map_err(|e| invalid("password file", path, e))?;
                Some(Arc::new(file))
            }
            None => None,
        };
        let acl = match &config.acl_file {
            Some(path) => {
                let text = read("ACL file", path)?;
                let file = AclFile::parse(&text).map_err(|e| invalid("ACL file", path, e))?;
                Some(Arc::new(file))
            }
            None => None,
        };
        Ok(Auth {
            passwords,
            acl,
            allow_anonymous: config.allow_anonymous(),
            use_identity_as_username: config.use_identity_as_username,
        })
    }

    /// Checks a CONNECT's credentials and returns the username the client is known by from now
    /// on (`None`: anonymous). `cert_identity` is the Common Name of the client's TLS
    /// certificate, if it presented one. The password hash runs on the blocking pool; nothing
    /// is locked meanwhile.
    pub async fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
        cert_identity: Option<&str>,
    ) -> Result<Option<String>, Refusal> {
        if self.use_identity_as_username {
            return match cert_identity {
                Some(cn) => Ok(Some(cn.to_string())),
                None => Err(Refusal::BadCredentials),
            };
        }
        let Some(user) = username else {
            return if self.allow_anonymous {
                Ok(None)
            } else {
                Err(Refusal::NotAuthorized)
            };
        };
        let Some(file) = &self.passwords else {
            // As Mosquitto: without a password file a username only selects ACL rules.
            return Ok(Some(user.to_string()));
        };
        let (file, name) = (file.clone(), user.to_string());
        let given = password.is_some();
        // A missing password still costs a hash, like a wrong one.
        let password = password.unwrap_or_default().to_vec();
        let ok = tokio::task::spawn_blocking(move || file.verify(&name, &password))
            .await
            .unwrap_or(false);
        if ok && given {
            Ok(Some(user.to_string()))
        } else {
            Err(Refusal::BadCredentials)
        }
    }

    /// The topic permissions of a connection.
    pub fn permissions(&self, client_id: &str, username: Option<&str>) -> Permissions {
        Permissions {
            acl: self
                .acl
                .as_ref()
                .map(|file| Arc::new(file.for_client(client_id, username))),
        }
    }

    /// Whether an ACL file is in force (else every topic is allowed).
    pub fn has_acl(&self) -> bool {
        self.acl.is_some()
    }
}

fn read(what: &'static str, path: &Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn invalid(what: &'static str, path: &Path, e: impl std::fmt::Display) -> AuthError {
    AuthError::Invalid {
        what,
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// What one connection may do with topics. `Permissions::default()` allows everything.
#[derive(Debug, Clone, Default)]
pub struct Permissions {
    /// `None` without an ACL file: every check is one branch.
    acl: Option<Arc<ClientAcl>>,
}

impl Permissions {
    /// Everything allowed.
    pub fn all() -> Permissions {
        Permissions::default()
    }

    /// Whether every check passes (no ACL file).
    pub fn is_unrestricted(&self) -> bool {
        self.acl.is_none()
    }

    /// PUBLISH (and a will): write access to the topic.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.acl.as_ref().is_none_or(|a| a.may_publish(topic))
    }

    /// Delivery of a message: read access to its topic.
    #[inline]
    pub fn may_read(&self, topic: &str) -> bool {
        self.acl.as_ref().is_none_or(|a| a.may_read(topic))
    }

    /// SUBSCRIBE (see [`acl`]).
    pub fn may_subscribe(&self, filter: &str) -> bool {
        self.acl.as_ref().is_none_or(|a| a.may_subscribe(filter))
    }

    /// Whether every topic the filter matches may be read, so messages sent without the
    /// per-message check (retained messages) may go out for it.
    pub fn may_read_all(&self, filter: &str) -> bool {
        self.acl.as_ref().is_none_or(|a| a.may_read_all(filter))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const REAL_TOOL: &str = include_str!("fixtures/mosquitto_passwd.txt");

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn config(pw: Option<&Path>, acl: Option<&Path>) -> MqttAuth {
        MqttAuth {
            password_file: pw.map(Path::to_path_buf),
            acl_file: acl.map(Path::to_path_buf),
            ..MqttAuth::default()
        }
    }

    #[tokio::test]
    async fn passwords_anonymous_and_unknown_users() {
        let pw = file(REAL_TOOL);
        let auth = Auth::load(&config(Some(pw.path()), None)).unwrap();
        let ok = auth
            .authenticate(Some("alice"), Some(b"wonderland"), None)
            .await;
        assert_eq!(ok, Ok(Some("alice".to_string())));
        for (user, pass) in [
            (Some("alice"), Some(&b"wrong"[..])),
            (Some("alice"), None),
            (Some("mallory"), Some(&b"wonderland"[..])),
        ] {
            let r = auth.authenticate(user, pass, None).await;
            assert_eq!(r, Err(Refusal::BadCredentials), "{user:?}");
        }
        assert_eq!(
            auth.authenticate(None, None, None).await,
            Err(Refusal::NotAuthorized),
            "anonymous is off by default with a password file"
        );
        let mut anon = config(Some(pw.path()), None);
        anon.allow_anonymous = Some(true);
        let auth = Auth::load(&anon).unwrap();
        assert_eq!(auth.authenticate(None, None, None).await, Ok(None));
        // Without any file, everyone is in under the name they give.
        let open = Auth::load(&MqttAuth::default()).unwrap();
        assert_eq!(
            open.authenticate(Some("x"), None, None).await,
            Ok(Some("x".to_string()))
        );
        assert!(open.permissions("c", None).is_unrestricted());
    }

    #[tokio::test]
    async fn certificate_identity_replaces_the_username() {
        let pw = file(REAL_TOOL);
        let mut c = config(Some(pw.path()), None);
        c.use_identity_as_username = true;
        let auth = Auth::load(&c).unwrap();
        let r = auth
            .authenticate(Some("alice"), Some(b"nope"), Some("device-7"))
            .await;
        assert_eq!(r, Ok(Some("device-7".to_string())));
        let r = auth
            .authenticate(Some("alice"), Some(b"wonderland"), None)
            .await;
        assert_eq!(r, Err(Refusal::BadCredentials), "no certificate, no login");
    }

    #[test]
    fn bad_files_name_file_line_and_reason() {
        let missing = config(Some(Path::new("/nonexistent/pw")), None);
        let e = Auth::load(&missing).unwrap_err().to_string();
        assert!(e.contains("password file /nonexistent/pw"), "{e}");
        let pw = file("alice:$7$101$AAAA$BBBB\n");
        let e = Auth::load(&config(Some(pw.path()), None))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&pw.path().display().to_string()) && e.contains("line 1"),
            "{e}"
        );
        let acl = file("topic read a\n\nuser\n");
        let e = Auth::load(&config(None, Some(acl.path())))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("ACL file") && e.contains("line 3: `user` without a name"),
            "{e}"
        );
    }

    #[test]
    fn config_validation_loads_the_files() {
        let acl = file("topic bogus a b\n");
        let text = format!(
            "[mqtt.auth]\nacl_file = {:?}\n",
            acl.path().display().to_string()
        );
        let e = crate::config::Config::from_toml(&text, "t")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mqtt.auth: ACL file") && e.contains("line 1"),
            "{e}"
        );
        let good = file("topic read a\n");
        let text = format!(
            "[mqtt.auth]\nacl_file = {:?}\nallow_anonymous = true\n",
            good.path().display().to_string()
        );
        let c = crate::config::Config::from_toml(&text, "t").unwrap();
        let auth = c.mqtt.auth.unwrap();
        assert_eq!(auth.allow_anonymous, Some(true));
        assert!(!auth.use_identity_as_username);
    }
}
