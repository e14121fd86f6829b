//! SCRAM-SHA-256 and SCRAM-SHA-512, server side (RFC 5802, RFC 7677), as Kafka speaks them
//! (KIP-84).
//!
//! The exchange is two round trips, each one SaslAuthenticate request:
//!
//! ```text
//! client-first   n,,n=alice,r=<client nonce>
//! server-first   r=<client nonce><server nonce>,s=<salt>,i=<iterations>
//! client-final   c=biws,r=<both nonces>,p=<proof>
//! server-final   v=<server signature>
//! ```
//!
//! The server stores only `StoredKey = H(HMAC(SaltedPassword, "Client Key"))` and
//! `ServerKey = HMAC(SaltedPassword, "Server Key")`: enough to check a proof and to prove itself,
//! not enough to log in as the user. Like Kafka, Headwater does no SASLprep: a password is its
//! UTF-8 bytes, which is what the Java client and librdkafka send.
//!
//! Channel binding is not offered (`p=` is refused; `n,,` and `y,,` are accepted). An
//! `a=authzid` must name the authenticating user, as in Kafka. An unknown user goes through the
//! whole exchange with a made-up salt and fails at the proof, answered exactly like a wrong
//! password, so the exchange does not tell which user names exist.
//!
//! This file does no I/O and draws no randomness: the server nonce is an argument, so the
//! RFC 7677 test vector runs as a unit test.

use std::num::NonZeroU32;

use base64::prelude::{Engine, BASE64_STANDARD};
use ring::{digest, hmac, pbkdf2};
use subtle::ConstantTimeEq;

/// Kafka's minimum (and `kafka-configs`' default) iteration count, RFC 7677's recommendation.
pub const MIN_ITERATIONS: u32 = 4096;

/// The hash function a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramHash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramHash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramHash::Sha256 => hmac::HMAC_SHA256,
            ScramHash::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramHash::Sha256 => &digest::SHA256,
            ScramHash::Sha512 => &digest::SHA512,
        }
    }

    /// Output length in bytes: the length of every key and of the proof.
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha256 => 32,
            ScramHash::Sha512 => 64,
        }
    }
}

/// What the server keeps for one user and one mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs even though they are not the password.
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

fn hmac(hash: ScramHash, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hash.hmac(), key), data)
        .as_ref()
        .to_vec()
}

fn salted_password(hash: ScramHash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; hash.output_len()];
    let iterations = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(hash.pbkdf2(), iterations, salt, password, &mut out);
    out
}

impl ScramCredential {
    /// Derives the stored keys from a password (costs `iterations` HMACs: about a millisecond
    /// per 4096 on a gateway-class CPU).
    pub fn derive(
        hash: ScramHash,
        password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> ScramCredential {
        let salted = salted_password(hash, password, &salt, iterations);
        let client_key = hmac(hash, &salted, b"Client Key");
        ScramCredential {
            stored_key: digest::digest(hash.digest(), &client_key).as_ref().to_vec(),
            server_key: hmac(hash, &salted, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// Whether `password` is the one these keys were derived from; the comparison takes the
    /// same time wherever the keys differ. This is how SASL PLAIN checks a password without
    /// the password being stored.
    pub fn verify_password(&self, hash: ScramHash, password: &[u8]) -> bool {
        let derived = ScramCredential::derive(hash, password, self.salt.clone(), self.iterations);
        bool::from(derived.stored_key.ct_eq(&self.stored_key))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("SCRAM message is not UTF-8")]
    NotUtf8,
    #[error("malformed SCRAM {0}")]
    Malformed(&'static str),
    #[error("SCRAM channel binding is not supported")]
    ChannelBinding,
    #[error("SCRAM authorization id {authzid:?} differs from user {user:?}")]
    AuthzId { user: String, authzid: String },
    #[error("SCRAM extension {0:?} is not supported")]
    Extension(String),
    #[error("SCRAM client-final message: {0} does not match the exchange")]
    Mismatch(&'static str),
    #[error("invalid credentials for user {0:?}")]
    BadProof(String),
}

/// A parsed client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user name, `=2C`/`=3D` decoded.
    pub user: String,
    /// `n,,` or `y,,` (or with `a=`), repeated base64-encoded in the client-final message.
    gs2_header: String,
    client_nonce: String,
    /// The message without the GS2 header: part of the signed AuthMessage.
    bare: String,
}

/// Parses `gs2-header client-first-message-bare`.
pub fn parse_client_first(message: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(message).map_err(|_| ScramError::NotUtf8)?;
    let mut parts = text.splitn(3, ',');
    let cbind = parts.next().unwrap_or_default();
    let authzid = parts.next().ok_or(ScramError::Malformed("client-first"))?;
    let bare = parts.next().ok_or(ScramError::Malformed("client-first"))?;
    match cbind {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("GS2 header")),
    }
    let gs2_header = format!("{cbind},{authzid},");
    let mut attrs = bare.split(',');
    let user = match attrs.next().and_then(|a| a.strip_prefix("n=")) {
        Some(name) => decode_name(name)?,
        None => return Err(ScramError::Malformed("user name")),
    };
    let client_nonce = match attrs.next().and_then(|a| a.strip_prefix("r=")) {
        Some(nonce) if valid_nonce(nonce) => nonce.to_string(),
        _ => return Err(ScramError::Malformed("client nonce")),
    };
    if let Some(ext) = attrs.next() {
        // Kafka's only extension is `tokenauth` (delegation tokens), which Headwater lacks.
        let name = ext.split('=').next().unwrap_or_default();
        return Err(ScramError::Extension(name.to_string()));
    }
    if !authzid.is_empty() {
        let id = authzid
            .strip_prefix("a=")
            .ok_or(ScramError::Malformed("authorization id"))
            .and_then(decode_name)?;
        if id != user {
            return Err(ScramError::AuthzId { user, authzid: id });
        }
    }
    Ok(ClientFirst {
        user,
        gs2_header,
        client_nonce,
        bare: bare.to_string(),
    })
}

/// RFC 5802 `saslname`: `,` and `=` travel as `=2C` and `=3D`; any other `=` is an error.
fn decode_name(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("user name escape")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("user name"));
    }
    Ok(out)
}

/// Printable ASCII except `,` (RFC 5802 `printable`).
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// The server between its first message and the client's proof.
#[derive(Debug)]
pub struct ScramServer {
    hash: ScramHash,
    user: String,
    /// The user's keys, or made-up ones for an unknown user.
    credential: ScramCredential,
    /// False for an unknown user: the proof cannot match, and must not even if it did.
    known: bool,
    first: ClientFirst,
    server_first: String,
    nonce: String,
}

impl ScramServer {
    /// Answers a client-first message. `server_nonce` must be fresh random printable text.
    pub fn start(
        hash: ScramHash,
        first: ClientFirst,
        credential: ScramCredential,
        known: bool,
        server_nonce: &str,
    ) -> (ScramServer, String) {
        let nonce = format!("{}{server_nonce}", first.client_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64_STANDARD.encode(&credential.salt),
            credential.iterations
        );
        let server = ScramServer {
            hash,
            user: first.user.clone(),
            credential,
            known,
            first,
            server_first: server_first.clone(),
            nonce,
        };
        (server, server_first)
    }

    /// Checks the client-final message; on success returns the user and the server-final
    /// message that proves the server knew the user's keys.
    pub fn finish(self, message: &[u8]) -> Result<(String, String), ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::NotUtf8)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("client-final"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("channel binding"))?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("nonce"))?;
        if let Some(ext) = attrs.next() {
            let name = ext.split('=').next().unwrap_or_default();
            return Err(ScramError::Extension(name.to_string()));
        }
        let binding = BASE64_STANDARD
            .decode(binding)
            .map_err(|_| ScramError::Malformed("channel binding"))?;
        if binding != self.first.gs2_header.as_bytes() {
            return Err(ScramError::Mismatch("channel binding"));
        }
        // Kafka checks only that the nonce *ends with* the server-first nonce, and librdkafka
        // (2.0 at least) relies on it: it sends the client nonce once more in front. The proof
        // signs the message as sent, and the fresh server part is still required, so a replay
        // from another exchange fails all the same.
        if !nonce.ends_with(&self.nonce) {
            return Err(ScramError::Mismatch("nonce"));
        }
        let proof = BASE64_STANDARD
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof"))?;
        if proof.len() != self.hash.output_len() {
            return Err(ScramError::Malformed("proof length"));
        }
        let auth_message = format!("{},{},{without_proof}", self.first.bare, self.server_first);
        let signature = hmac(
            self.hash,
            &self.credential.stored_key,
            auth_message.as_bytes(),
        );
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let stored = digest::digest(self.hash.digest(), &client_key);
        let matches = bool::from(stored.as_ref().ct_eq(&self.credential.stored_key));
        if !(matches && self.known) {
            return Err(ScramError::BadProof(self.user));
        }
        let server_signature = hmac(
            self.hash,
            &self.credential.server_key,
            auth_message.as_bytes(),
        );
        let server_final = format!("v={}", BASE64_STANDARD.encode(server_signature));
        Ok((self.user, server_final))
    }
}

/// The client side, for tests only: computes the client-final message and the expected
/// server-final message for a password.
#[cfg(test)]
pub fn client_final(
    hash: ScramHash,
    password: &[u8],
    client_first_bare: &str,
    server_first: &str,
) -> (String, String) {
    client_final_with(hash, password, client_first_bare, server_first, "")
}

/// [`client_final`] with `nonce_prefix` sent in front of the nonce, as librdkafka does.
#[cfg(test)]
fn client_final_with(
    hash: ScramHash,
    password: &[u8],
    client_first_bare: &str,
    server_first: &str,
    nonce_prefix: &str,
) -> (String, String) {
    let attrs: Vec<&str> = server_first.split(',').collect();
    let nonce = &attrs[0][2..];
    let salt = BASE64_STANDARD.decode(&attrs[1][2..]).unwrap();
    let iterations: u32 = attrs[2][2..].parse().unwrap();
    let salted = salted_password(hash, password, &salt, iterations);
    let client_key = hmac(hash, &salted, b"Client Key");
    let stored_key = digest::digest(hash.digest(), &client_key);
    let without_proof = format!("c=biws,r={nonce_prefix}{nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(hash, stored_key.as_ref(), auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_key = hmac(hash, &salted, b"Server Key");
    let server_signature = hmac(hash, &server_key, auth_message.as_bytes());
    (
        format!("{without_proof},p={}", BASE64_STANDARD.encode(proof)),
        format!("v={}", BASE64_STANDARD.encode(server_signature)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_credential() -> ScramCredential {
        let salt = BASE64_STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        ScramCredential::derive(ScramHash::Sha256, b"pencil", salt, 4096)
    }

    fn rfc_server() -> ScramServer {
        let first = parse_client_first(RFC_CLIENT_FIRST.as_bytes()).unwrap();
        assert_eq!(first.user, "user");
        let (server, server_first) = ScramServer::start(
            ScramHash::Sha256,
            first,
            rfc_credential(),
            true,
            RFC_SERVER_NONCE,
        );
        assert_eq!(server_first, RFC_SERVER_FIRST);
        server
    }

    #[test]
    fn rfc7677_test_vector() {
        let (user, server_final) = rfc_server().finish(RFC_CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(user, "user");
        assert_eq!(server_final, RFC_SERVER_FINAL);
        // The test client computes the same proof.
        let (client_final, expected) = client_final(
            ScramHash::Sha256,
            b"pencil",
            "n=user,r=rOprNGfwEbeRWgbNEkqO",
            RFC_SERVER_FIRST,
        );
        assert_eq!(client_final, RFC_CLIENT_FINAL);
        assert_eq!(expected, RFC_SERVER_FINAL);
    }

    #[test]
    fn sha512_round_trip_and_wrong_password() {
        let credential =
            ScramCredential::derive(ScramHash::Sha512, b"s3cret", b"salt-512".to_vec(), 4096);
        assert_eq!(credential.stored_key.len(), 64);
        let exchange = |password: &[u8]| {
            let first = parse_client_first(b"n,,n=alice,r=abc123").unwrap();
            let (server, server_first) =
                ScramServer::start(ScramHash::Sha512, first, credential.clone(), true, "XYZ");
            let (final_message, expected) = client_final(
                ScramHash::Sha512,
                password,
                "n=alice,r=abc123",
                &server_first,
            );
            server
                .finish(final_message.as_bytes())
                .map(|(user, server_final)| (user, server_final == expected))
        };
        assert_eq!(exchange(b"s3cret"), Ok(("alice".to_string(), true)));
        assert_eq!(
            exchange(b"s3creT"),
            Err(ScramError::BadProof("alice".into()))
        );
        assert!(credential.verify_password(ScramHash::Sha512, b"s3cret"));
        assert!(!credential.verify_password(ScramHash::Sha512, b"s3cret "));
    }

    #[test]
    fn unknown_user_fails_like_a_wrong_password() {
        let first = parse_client_first(RFC_CLIENT_FIRST.as_bytes()).unwrap();
        // Even the right keys do not let an unknown user in.
        let (server, _) = ScramServer::start(
            ScramHash::Sha256,
            first,
            rfc_credential(),
            false,
            RFC_SERVER_NONCE,
        );
        assert_eq!(
            server.finish(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::BadProof("user".into()))
        );
    }

    #[test]
    fn replayed_and_garbled_final_messages_are_refused() {
        // librdkafka's form (client nonce repeated in front) is accepted, as Kafka does.
        let first = parse_client_first(b"n,,n=user,r=c1").unwrap();
        let (server, server_first) =
            ScramServer::start(ScramHash::Sha256, first, rfc_credential(), true, "s1");
        let (doubled, expected) = client_final_with(
            ScramHash::Sha256,
            b"pencil",
            "n=user,r=c1",
            &server_first,
            "c1",
        );
        assert!(doubled.starts_with("c=biws,r=c1c1s1,"));
        assert_eq!(server.finish(doubled.as_bytes()).unwrap().1, expected);
        // The proof covers the nonce as sent.
        let first = parse_client_first(b"n,,n=user,r=c1").unwrap();
        let (server, server_first) =
            ScramServer::start(ScramHash::Sha256, first, rfc_credential(), true, "s1");
        let (plain, _) = client_final(ScramHash::Sha256, b"pencil", "n=user,r=c1", &server_first);
        let tampered = plain.replace("r=c1s1", "r=c1c1s1");
        assert!(matches!(
            server.finish(tampered.as_bytes()),
            Err(ScramError::BadProof(_))
        ));
        // A proof from another exchange (another server nonce) is refused.
        let first = parse_client_first(RFC_CLIENT_FIRST.as_bytes()).unwrap();
        let (server, _) =
            ScramServer::start(ScramHash::Sha256, first, rfc_credential(), true, "fresh");
        assert_eq!(
            server.finish(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::Mismatch("nonce"))
        );
        let garbled = [
            &b"c=biws,r=x"[..],
            b"p=abc",
            b"\xff\xfe",
            b"c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!",
        ];
        for message in garbled {
            assert!(rfc_server().finish(message).is_err(), "{message:?}");
        }
        // A flipped proof bit is a bad proof.
        let mut tampered = RFC_CLIENT_FINAL.to_string();
        tampered.replace_range(tampered.len() - 3..tampered.len() - 2, "W");
        assert!(matches!(
            rfc_server().finish(tampered.as_bytes()),
            Err(ScramError::BadProof(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_messages_never_panic_or_authenticate(
            first in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            last in proptest::collection::vec(proptest::num::u8::ANY, 0..160),
        ) {
            if let Ok(first) = parse_client_first(&first) {
                let (server, _) =
                    ScramServer::start(ScramHash::Sha256, first, rfc_credential(), true, "n");
                proptest::prop_assert!(server.finish(&last).is_err());
            }
            proptest::prop_assert!(rfc_server().finish(&last).is_err());
        }

        #[test]
        fn user_names_survive_escaping(name in "[a-z,=]{1,12}") {
            let escaped = name.replace('=', "=3D").replace(',', "=2C");
            let message = format!("n,,n={escaped},r=abc");
            let first = parse_client_first(message.as_bytes()).unwrap();
            proptest::prop_assert_eq!(first.user, name);
        }
    }

    #[test]
    fn client_first_parsing() {
        let first = parse_client_first(b"n,a=a=2Cb,n=a=2Cb,r=nonce").unwrap();
        assert_eq!(first.user, "a,b");
        assert_eq!(first.gs2_header, "n,a=a=2Cb,");
        assert_eq!(parse_client_first(b"y,,n=x=3Dy,r=n").unwrap().user, "x=y");
        for bad in [
            &b"p=tls-unique,,n=u,r=n"[..],
            b"n,,n=u",
            b"n,,r=n,n=u",
            b"n,,n=,r=n",
            b"n,,n=u=41,r=n",
            b"n,,n=u,r=a,b",
            b"n,,n=u,r=n,tokenauth=true",
            b"n,a=v,n=u,r=n",
            b"x,,n=u,r=n",
            b"",
        ] {
            assert!(parse_client_first(bad).is_err(), "{bad:?}");
        }
    }
}
