//! Mosquitto password files, as written by `mosquitto_passwd`: one `user:hash` per line.
//!
//! Two hash formats, both with a 64-byte SHA-512-sized result:
//! - `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512 over the password with the decoded
//!   salt (Mosquitto 2.0's default, 101 iterations).
//! - `$6$<salt>$<hash>`: SHA-512(password ‖ salt) (Mosquitto 1.6 and earlier).
//!
//! Salt and hash are standard base64. Lines starting with `#` and blank lines are skipped.
//! Where Mosquitto logs a bad entry and drops that user, this parser refuses the whole file with
//! the line number and reason: a user silently missing is a surprise at the worst moment.
//! Plain-text passwords (what `mosquitto_passwd -U` converts) are refused the same way.
//!
//! Checking a password costs the same for unknown users as for known ones: an unknown name is
//! checked against a decoy entry with the file's own parameters, so response time does not tell
//! which names exist. Comparisons are constant-time.

use std::collections::HashMap;
use std::num::NonZeroU32;

use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use ring::{digest, pbkdf2};
use subtle::ConstantTimeEq;

/// Length of both hash formats' result (SHA-512).
const HASH_LEN: usize = 64;
/// `mosquitto_passwd`'s PBKDF2 iterations; used for the decoy of a file without `$7$` entries.
const DEFAULT_ITERATIONS: u32 = 101;
/// Most PBKDF2 iterations accepted: a file asking for more would make every login hold a
/// blocking thread for seconds, so it is refused at startup instead.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// Longest salt accepted (Mosquitto writes 12 bytes; it reads 12 or 64).
const MAX_SALT: usize = 1024;

/// Base64 as `mosquitto_passwd` writes it, accepting missing padding too.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A malformed line of a password file (1-based line number).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

#[derive(Clone, PartialEq, Eq)]
enum Hash {
    Sha512 {
        salt: Vec<u8>,
        hash: [u8; HASH_LEN],
    },
    Pbkdf2 {
        iterations: NonZeroU32,
        salt: Vec<u8>,
        hash: [u8; HASH_LEN],
    },
}

impl Hash {
    fn parse(text: &str) -> Result<Hash, String> {
        let fields: Vec<&str> = text.split('$').collect();
        let decode = |what: &str, s: &str| {
            B64.decode(s)
                .map_err(|e| format!("{what} is not base64: {e}"))
        };
        let salt = |s: &str| {
            let salt = decode("salt", s)?;
            if salt.is_empty() || salt.len() > MAX_SALT {
                return Err(format!("salt of {} bytes", salt.len()));
            }
            Ok(salt)
        };
        let hash = |s: &str| -> Result<[u8; HASH_LEN], String> {
            let h = decode("hash", s)?;
            h.as_slice()
                .try_into()
                .map_err(|_| format!("hash of {} bytes, not {HASH_LEN}", h.len()))
        };
        match fields.as_slice() {
            ["", "7", iterations, s, h] => {
                let n: u32 = iterations
                    .parse()
                    .map_err(|_| format!("iteration count {iterations:?} is not a number"))?;
                if n > MAX_ITERATIONS {
                    return Err(format!("{n} iterations, more than {MAX_ITERATIONS}"));
                }
                let iterations =
                    NonZeroU32::new(n).ok_or_else(|| "iteration count 0".to_string())?;
                Ok(Hash::Pbkdf2 {
                    iterations,
                    salt: salt(s)?,
                    hash: hash(h)?,
                })
            }
            ["", "6", s, h] => Ok(Hash::Sha512 {
                salt: salt(s)?,
                hash: hash(h)?,
            }),
            ["", kind, ..] if *kind == "6" || *kind == "7" => {
                Err(format!("${kind}$ hash with the wrong number of fields"))
            }
            _ => Err(
                "not a $6$ or $7$ hash from mosquitto_passwd (plain-text passwords are not \
                 accepted: hash the file with `mosquitto_passwd -U`)"
                    .into(),
            ),
        }
    }

    /// Whether `password` hashes to this entry; the cost does not depend on the outcome.
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => {
                let mut derived = [0u8; HASH_LEN];
                pbkdf2::derive(
                    pbkdf2::PBKDF2_HMAC_SHA512,
                    *iterations,
                    salt,
                    password,
                    &mut derived,
                );
                bool::from(derived.ct_eq(hash))
            }
            Hash::Sha512 { salt, hash } => {
                let mut ctx = digest::Context::new(&digest::SHA512);
                ctx.update(password);
                ctx.update(salt);
                bool::from(ctx.finish().as_ref().ct_eq(hash.as_slice()))
            }
        }
    }

    /// An entry no password matches, with this one's cost.
    fn decoy(&self) -> Hash {
        let salt = b"headwater-decoy".to_vec();
        match self {
            Hash::Pbkdf2 { iterations, .. } => Hash::Pbkdf2 {
                iterations: *iterations,
                salt,
                hash: [0; HASH_LEN],
            },
            Hash::Sha512 { .. } => Hash::Sha512 {
                salt,
                hash: [0; HASH_LEN],
            },
        }
    }
}

/// The users of a password file. Immutable once loaded; share it behind an `Arc`.
pub struct PasswordFile {
    users: HashMap<String, Hash>,
    /// Checked instead when the user is unknown (see the module docs).
    decoy: Hash,
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl PasswordFile {
    /// Parses a whole file; the first malformed line is the error.
    pub fn parse(text: &str) -> Result<PasswordFile, LineError> {
        let mut users = HashMap::new();
        let mut first: Option<Hash> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |reason: String| LineError { line, reason };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = trimmed.split_once(':') else {
                return Err(err("expected `user:hash`".into()));
            };
            let user = user.trim();
            if user.is_empty() {
                return Err(err("empty user name".into()));
            }
            if user.len() > 65_535 {
                return Err(err("user name longer than 65535 bytes".into()));
            }
            let hash = Hash::parse(hash.trim()).map_err(|r| err(format!("user {user:?}: {r}")))?;
            if first.is_none() {
                first = Some(hash.clone());
            }
            if users.insert(user.to_string(), hash).is_some() {
                return Err(err(format!("user {user:?} appears twice")));
            }
        }
        let decoy = match first {
            Some(h) => h.decoy(),
            None => Hash::Pbkdf2 {
                iterations: NonZeroU32::MIN.saturating_add(DEFAULT_ITERATIONS - 1),
                salt: Vec::new(),
                hash: [0; HASH_LEN],
            }
            .decoy(),
        };
        Ok(PasswordFile { users, decoy })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `user` exists and `password` is theirs. Costs one hash whether or not the user
    /// exists (blocking: call it off the async workers).
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        let (entry, known) = match self.users.get(user) {
            Some(h) => (h, true),
            None => (&self.decoy, false),
        };
        entry.verify(password) & known
    }
}

/// `mosquitto_passwd`'s `$7$` line for `password`, for tests and tools that write files.
pub fn pbkdf2_entry(password: &[u8], salt: &[u8], iterations: NonZeroU32) -> String {
    let mut derived = [0u8; HASH_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA512,
        iterations,
        salt,
        password,
        &mut derived,
    );
    let b64 = &general_purpose::STANDARD;
    format!(
        "$7${iterations}${}${}",
        b64.encode(salt),
        b64.encode(derived)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by Mosquitto 2.0.11's `mosquitto_passwd -c -b` (PBKDF2) and `-H sha512`.
    const REAL_TOOL: &str = include_str!("fixtures/mosquitto_passwd.txt");

    #[test]
    fn files_from_the_real_tool_verify() {
        let file = PasswordFile::parse(REAL_TOOL).unwrap();
        assert_eq!(file.len(), 4);
        assert!(file.verify("alice", b"wonderland"));
        assert!(file.verify("bob", b"bu ilder:$x"));
        assert!(file.verify("carol", b"sha512-old"));
        assert!(file.verify("d\u{e9}j\u{e0}", "p\u{e4}ss\u{f6}rd".as_bytes()));
        assert!(!file.verify("alice", b"wonderlan"));
        assert!(!file.verify("alice", b""));
        assert!(!file.verify("carol", b"sha512-olD"));
        assert!(!file.verify("bob", b"wonderland"));
    }

    #[test]
    fn unknown_users_fail_like_wrong_passwords() {
        let file = PasswordFile::parse(REAL_TOOL).unwrap();
        assert!(!file.verify("mallory", b"wonderland"));
        assert!(!file.verify("", b""));
        // The decoy has the first entry's cost (PBKDF2, 101 rounds), and no password opens it.
        assert!(matches!(file.decoy, Hash::Pbkdf2 { iterations, .. } if iterations.get() == 101));
        assert!(!file.decoy.verify(b""));
    }

    #[test]
    fn entries_written_here_verify() {
        let n = NonZeroU32::new(1000).unwrap();
        let text = format!(
            "# comment\n\n  eve : {}  \n",
            pbkdf2_entry(b"pw", b"saltsaltsalt", n)
        );
        let file = PasswordFile::parse(&text).unwrap();
        assert!(file.verify("eve", b"pw"));
        assert!(!file.verify("eve", b"pW"));
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        let good = pbkdf2_entry(b"x", b"0123456789ab", NonZeroU32::new(101).unwrap());
        let cases: &[(&str, &str)] = &[
            ("justaname", "expected `user:hash`"),
            (":$6$c2FsdA==$AA==", "empty user name"),
            ("u:plaintext", "plain-text"),
            ("u:$7$abc$c2FsdA==$AA==", "not a number"),
            ("u:$7$0$c2FsdA==$AA==", "iteration count 0"),
            ("u:$7$99999999999$c2FsdA==$AA==", "not a number"),
            ("u:$7$20000000$c2FsdA==$AA==", "more than"),
            ("u:$7$101$!!$AA==", "salt is not base64"),
            ("u:$7$101$$AA==", "salt of 0 bytes"),
            ("u:$7$101$c2FsdA==$AA==", "hash of 1 bytes"),
            ("u:$6$c2FsdA==", "wrong number of fields"),
            ("u:$5$c2FsdA==$AA==", "not a $6$ or $7$"),
        ];
        for (bad, reason) in cases {
            let text = format!("# header\nok:{good}\n{bad}\n");
            let e = PasswordFile::parse(&text)
                .err()
                .unwrap_or_else(|| panic!("{bad} parsed"));
            assert_eq!(e.line, 3, "{bad}");
            assert!(e.reason.contains(reason), "{bad}: {}", e.reason);
        }
        let twice = format!("a:{good}\na:{good}\n");
        let e = PasswordFile::parse(&twice).err().unwrap();
        assert_eq!((e.line, e.reason.contains("twice")), (2, true));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "(?s).{0,200}") {
            if let Ok(file) = PasswordFile::parse(&text) {
                let _ = file.verify("a", b"b");
            }
        }

        #[test]
        fn hash_like_lines_never_panic(line in "[a-z]{0,3}:\\$[5-7]\\$[0-9A-Za-z+/=$]{0,40}") {
            if let Ok(file) = PasswordFile::parse(&line) {
                let _ = file.verify("a", b"b");
            }
        }
    }
}
