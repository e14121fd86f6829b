//! The credentials file named by `kafka.sasl.credentials`.
//!
//! A TOML file with one table per user. The recommended entry holds SCRAM keys only, so the
//! file never contains a password (`headwater credentials add` writes one):
//!
//! ```toml
//! [users.alice.scram-sha-256]
//! salt = "base64"            # random, 16+ bytes
//! iterations = 4096          # at least 4096
//! stored_key = "base64"      # H(HMAC(SaltedPassword, "Client Key"))
//! server_key = "base64"      # HMAC(SaltedPassword, "Server Key")
//!
//! [users.alice.scram-sha-512]
//! # same four keys
//! ```
//!
//! A SCRAM entry serves its SCRAM mechanism and PLAIN too: PLAIN derives the keys from the
//! password it received with the stored salt and compares them in constant time (costing one
//! PBKDF2 of `iterations` rounds per login). For quick setups an entry may instead hold
//! `password = "..."` in clear; keys for both SCRAM mechanisms are then derived at load time
//! with a random salt. The trade-off: anyone who can read the file can log in as that user
//! (and as anyone whose password is the same elsewhere), while stolen SCRAM keys let an attacker
//! impersonate the *broker* to that user but not log in, and brute-forcing them costs
//! `iterations` HMACs per guess. Keep the file readable by the broker's user only either way.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use base64::prelude::{Engine, BASE64_STANDARD};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::scram::{ScramCredential, ScramHash, MIN_ITERATIONS};

/// Salt length written by `headwater credentials add` and used for keys derived at load time.
pub const SALT_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write credentials file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid credentials file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("credentials file {path}, user {user:?}: {reason}")]
    Invalid {
        path: PathBuf,
        user: String,
        reason: String,
    },
    #[error("no system randomness: {0}")]
    Random(String),
    #[error("encoding credentials: {0}")]
    Encode(#[from] toml::ser::Error),
}

/// The file as written on disk.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsFile {
    #[serde(default)]
    pub users: BTreeMap<String, UserEntry>,
}

/// One user's entry in the file.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// The password in clear (quick setups only; see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(
        default,
        rename = "scram-sha-256",
        skip_serializing_if = "Option::is_none"
    )]
    pub scram_sha_256: Option<ScramEntry>,
    #[serde(
        default,
        rename = "scram-sha-512",
        skip_serializing_if = "Option::is_none"
    )]
    pub scram_sha_512: Option<ScramEntry>,
}

impl std::fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserEntry")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("scram_sha_256", &self.scram_sha_256.is_some())
            .field("scram_sha_512", &self.scram_sha_512.is_some())
            .finish()
    }
}

/// SCRAM keys for one mechanism, base64 as in Kafka's `kafka-configs` output.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScramEntry {
    pub salt: String,
    pub iterations: u32,
    pub stored_key: String,
    pub server_key: String,
}

impl ScramEntry {
    fn from_credential(c: &ScramCredential) -> ScramEntry {
        ScramEntry {
            salt: BASE64_STANDARD.encode(&c.salt),
            iterations: c.iterations,
            stored_key: BASE64_STANDARD.encode(&c.stored_key),
            server_key: BASE64_STANDARD.encode(&c.server_key),
        }
    }

    fn to_credential(&self, hash: ScramHash) -> Result<ScramCredential, String> {
        let decode = |what: &str, text: &str| {
            BASE64_STANDARD
                .decode(text)
                .map_err(|e| format!("{what} is not base64: {e}"))
        };
        let credential = ScramCredential {
            salt: decode("salt", &self.salt)?,
            iterations: self.iterations,
            stored_key: decode("stored_key", &self.stored_key)?,
            server_key: decode("server_key", &self.server_key)?,
        };
        if credential.iterations < MIN_ITERATIONS {
            return Err(format!(
                "iterations {} is below the minimum {MIN_ITERATIONS}",
                credential.iterations
            ));
        }
        if credential.salt.is_empty() {
            return Err("salt is empty".into());
        }
        if credential.stored_key.len() != hash.output_len()
            || credential.server_key.len() != hash.output_len()
        {
            return Err(format!(
                "stored_key and server_key must be {} bytes for {hash:?}",
                hash.output_len()
            ));
        }
        Ok(credential)
    }
}

/// One user, ready to authenticate.
struct User {
    sha256: Option<ScramCredential>,
    sha512: Option<ScramCredential>,
}

/// The iteration count most users' keys were derived with ([`MIN_ITERATIONS`] if none).
fn most_common_iterations(users: &HashMap<String, User>) -> u32 {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for c in users
        .values()
        .flat_map(|u| u.sha256.iter().chain(u.sha512.iter()))
    {
        *counts.entry(c.iterations).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(iterations, n)| (*n, *iterations))
        .map_or(MIN_ITERATIONS, |(iterations, _)| iterations)
}

/// Every user the Kafka listener accepts.
pub struct Credentials {
    users: HashMap<String, User>,
    /// Keys made-up salts for unknown users: the same name always gets the same salt, so
    /// repeated attempts cannot tell an unknown user from a known one by a changing salt.
    secret: ring::hmac::Key,
    /// The iteration count most users have, offered for unknown users so the count does not
    /// tell them apart.
    fake_iterations: u32,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

fn random(rng: &SystemRandom, len: usize) -> Result<Vec<u8>, CredentialsError> {
    let mut out = vec![0u8; len];
    rng.fill(&mut out)
        .map_err(|_| CredentialsError::Random("the system random generator failed".into()))?;
    Ok(out)
}

/// A fresh entry holding SCRAM keys for both mechanisms and no password.
pub fn new_entry(password: &str, iterations: u32) -> Result<UserEntry, CredentialsError> {
    let rng = SystemRandom::new();
    let derive = |hash| -> Result<ScramEntry, CredentialsError> {
        let salt = random(&rng, SALT_LEN)?;
        let c = ScramCredential::derive(hash, password.as_bytes(), salt, iterations);
        Ok(ScramEntry::from_credential(&c))
    };
    Ok(UserEntry {
        password: None,
        scram_sha_256: Some(derive(ScramHash::Sha256)?),
        scram_sha_512: Some(derive(ScramHash::Sha512)?),
    })
}

/// Adds or replaces `user` in the file at `path` (created if missing). The file is rewritten,
/// so comments in it are lost.
pub fn add_user(
    path: &Path,
    user: &str,
    password: &str,
    iterations: u32,
) -> Result<(), CredentialsError> {
    let mut file = match std::fs::read_to_string(path) {
        Ok(text) => parse_file(path, &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => CredentialsFile::default(),
        Err(source) => {
            return Err(CredentialsError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    file.users
        .insert(user.to_string(), new_entry(password, iterations)?);
    let text = toml::to_string(&file)?;
    write_private(path, &text).map_err(|source| CredentialsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// `headwater credentials add`: reads the password from the first line of `input`, then adds
/// the user to `file`, or returns the entry as TOML to print when there is no file.
pub fn add_from_cli(
    user: &str,
    mut input: impl std::io::BufRead,
    file: Option<&Path>,
    iterations: u32,
) -> Result<String, CredentialsError> {
    let invalid = |reason: &str| CredentialsError::Invalid {
        path: file.map(Path::to_path_buf).unwrap_or_default(),
        user: user.to_string(),
        reason: reason.to_string(),
    };
    if user.is_empty() {
        return Err(invalid("empty user name"));
    }
    if iterations < MIN_ITERATIONS {
        return Err(invalid("iterations must be at least 4096"));
    }
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|source| CredentialsError::Read {
            path: PathBuf::from("<stdin>"),
            source,
        })?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(invalid("empty password on stdin"));
    }
    match file {
        Some(path) => {
            add_user(path, user, password, iterations)?;
            Ok(String::new())
        }
        None => {
            let mut one = CredentialsFile::default();
            one.users
                .insert(user.to_string(), new_entry(password, iterations)?);
            Ok(toml::to_string(&one)?)
        }
    }
}

/// Writes through a temporary file and a rename, readable by the owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn parse_file(path: &Path, text: &str) -> Result<CredentialsFile, CredentialsError> {
    toml::from_str(text).map_err(|e| CredentialsError::Parse {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

impl Credentials {
    /// Reads and checks the file. Entries with a clear password get SCRAM keys derived here.
    pub fn load(path: &Path) -> Result<Credentials, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Credentials::from_file(path, parse_file(path, &text)?)
    }

    pub fn from_file(path: &Path, file: CredentialsFile) -> Result<Credentials, CredentialsError> {
        let rng = SystemRandom::new();
        let secret = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &random(&rng, 32)?);
        let mut users = HashMap::new();
        for (name, entry) in file.users {
            let invalid = |reason: String| CredentialsError::Invalid {
                path: path.to_path_buf(),
                user: name.clone(),
                reason,
            };
            if name.is_empty() {
                return Err(invalid("empty user name".into()));
            }
            let scram = |entry: &Option<ScramEntry>, hash| match entry {
                Some(e) => e.to_credential(hash).map(Some).map_err(&invalid),
                None => Ok(None),
            };
            let mut user = User {
                sha256: scram(&entry.scram_sha_256, ScramHash::Sha256)?,
                sha512: scram(&entry.scram_sha_512, ScramHash::Sha512)?,
            };
            if let Some(password) = entry.password {
                if password.is_empty() {
                    return Err(invalid("empty password".into()));
                }
                let derive = |hash| -> Result<_, CredentialsError> {
                    let salt = random(&rng, SALT_LEN)?;
                    Ok(Some(ScramCredential::derive(
                        hash,
                        password.as_bytes(),
                        salt,
                        MIN_ITERATIONS,
                    )))
                };
                if user.sha256.is_none() {
                    user.sha256 = derive(ScramHash::Sha256)?;
                }
                if user.sha512.is_none() {
                    user.sha512 = derive(ScramHash::Sha512)?;
                }
            }
            if user.sha256.is_none() && user.sha512.is_none() {
                return Err(invalid(
                    "needs a password or scram-sha-256/scram-sha-512 keys".into(),
                ));
            }
            users.insert(name, user);
        }
        let fake_iterations = most_common_iterations(&users);
        Ok(Credentials {
            users,
            secret,
            fake_iterations,
        })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user's keys for `hash`, or made-up keys and `false` when the user or that mechanism's
    /// keys are unknown (the exchange then fails at the proof, like a wrong password).
    pub fn scram(&self, hash: ScramHash, user: &str) -> (ScramCredential, bool) {
        let found = self.users.get(user).and_then(|u| match hash {
            ScramHash::Sha256 => u.sha256.as_ref(),
            ScramHash::Sha512 => u.sha512.as_ref(),
        });
        match found {
            Some(c) => (c.clone(), true),
            None => (self.fake(hash, user), false),
        }
    }

    fn fake(&self, hash: ScramHash, user: &str) -> ScramCredential {
        let tag = |label: &str| {
            let input = format!("{label}\0{user}");
            ring::hmac::sign(&self.secret, input.as_bytes())
                .as_ref()
                .to_vec()
        };
        let mut stored_key = tag("stored");
        stored_key.resize(hash.output_len(), 0);
        let mut server_key = tag("server");
        server_key.resize(hash.output_len(), 0);
        let mut salt = tag("salt");
        salt.truncate(SALT_LEN);
        ScramCredential {
            salt,
            iterations: self.fake_iterations,
            stored_key,
            server_key,
        }
    }

    /// Checks a PLAIN login by deriving the user's SCRAM keys from the password. Every user,
    /// known or not and with a clear password in the file or not, costs the same derivation.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        let Some(entry) = self.users.get(user) else {
            let _ = self
                .fake(ScramHash::Sha256, user)
                .verify_password(ScramHash::Sha256, password);
            return false;
        };
        match (&entry.sha256, &entry.sha512) {
            (Some(c), _) => c.verify_password(ScramHash::Sha256, password),
            (None, Some(c)) => c.verify_password(ScramHash::Sha512, password),
            (None, None) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Credentials, CredentialsError> {
        let file = parse_file(Path::new("test.toml"), text)?;
        Credentials::from_file(Path::new("test.toml"), file)
    }

    #[test]
    fn generated_entries_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        add_user(&path, "alice", "wonderland", 4096).unwrap();
        add_user(&path, "bob", "builder", 4096).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("wonderland"), "{text}");
        assert!(text.contains("[users.alice.scram-sha-512]"), "{text}");
        let creds = Credentials::load(&path).unwrap();
        assert_eq!(creds.len(), 2);
        assert!(creds.verify("alice", b"wonderland"));
        assert!(!creds.verify("alice", b"builder"));
        assert!(creds.verify("bob", b"builder"));
        assert!(!creds.verify("carol", b"builder"));
        let (c, known) = creds.scram(ScramHash::Sha512, "alice");
        assert!(known);
        assert!(c.verify_password(ScramHash::Sha512, b"wonderland"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn cli_prints_or_writes_an_entry_without_the_password() {
        let printed = add_from_cli("eve", &b"hunter22\n"[..], None, 4096).unwrap();
        assert!(!printed.contains("hunter22"));
        let creds = load(&printed).unwrap();
        assert!(creds.verify("eve", b"hunter22"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        assert_eq!(
            add_from_cli("eve", &b"pw\r\n"[..], Some(&path), 4096).unwrap(),
            ""
        );
        assert!(Credentials::load(&path).unwrap().verify("eve", b"pw"));
        assert!(add_from_cli("eve", &b"\n"[..], None, 4096).is_err());
        assert!(add_from_cli("eve", &b"pw"[..], None, 1000).is_err());
    }

    #[test]
    fn unknown_users_are_offered_the_iteration_count_most_users_have() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        add_user(&path, "alice", "wonderland", 8192).unwrap();
        add_user(&path, "bob", "builder", 8192).unwrap();
        let creds = Credentials::load(&path).unwrap();
        for hash in [ScramHash::Sha256, ScramHash::Sha512] {
            let (fake, known) = creds.scram(hash, "mallory");
            assert!(!known);
            assert_eq!(fake.iterations, creds.scram(hash, "alice").0.iterations);
        }
    }

    #[test]
    fn clear_passwords_serve_every_mechanism() {
        let creds = load("[users.dev]\npassword = \"devpw\"\n").unwrap();
        assert!(creds.verify("dev", b"devpw"));
        assert!(!creds.verify("dev", b"devpw2"));
        for hash in [ScramHash::Sha256, ScramHash::Sha512] {
            let (c, known) = creds.scram(hash, "dev");
            assert!(known && c.verify_password(hash, b"devpw"));
        }
    }

    #[test]
    fn unknown_users_get_stable_made_up_keys() {
        let creds = load("").unwrap();
        let (a, known) = creds.scram(ScramHash::Sha256, "ghost");
        assert!(!known);
        assert_eq!(a, creds.scram(ScramHash::Sha256, "ghost").0);
        assert_ne!(a.salt, creds.scram(ScramHash::Sha256, "other").0.salt);
        assert_eq!(a.salt.len(), SALT_LEN);
        assert_eq!(a.iterations, MIN_ITERATIONS);
    }

    #[test]
    fn bad_entries_are_refused_with_the_user_named() {
        for text in [
            "[users.a]\n",
            "[users.a]\npassword = \"\"\n",
            "[users.a.scram-sha-256]\nsalt = \"c2FsdA==\"\niterations = 100\nstored_key = \"\"\nserver_key = \"\"\n",
            "[users.a.scram-sha-256]\nsalt = \"!\"\niterations = 4096\nstored_key = \"\"\nserver_key = \"\"\n",
            "[users.a.scram-sha-256]\nsalt = \"c2FsdA==\"\niterations = 4096\nstored_key = \"c2FsdA==\"\nserver_key = \"c2FsdA==\"\n",
        ] {
            match load(text) {
                Err(CredentialsError::Invalid { user, .. }) => assert_eq!(user, "a"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            load("[users.a]\npasword = \"x\"\n"),
            Err(CredentialsError::Parse { .. })
        ));
    }
}
