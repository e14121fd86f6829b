//! SASL PLAIN (RFC 4616): one message, `authzid NUL authcid NUL password`.
//!
//! The password travels as it is, so PLAIN belongs on a TLS listener (the broker warns when it
//! is enabled without TLS). Like Kafka, an authorization id must be empty or name the
//! authenticating user. Checking the password is [`super::credentials::Credentials::verify`]'s
//! job; this file only parses.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("SASL PLAIN message is not authzid NUL user NUL password")]
    Malformed,
    #[error("SASL PLAIN user name or password is empty")]
    Empty,
    #[error("SASL PLAIN authorization id {authzid:?} differs from user {user:?}")]
    AuthzId { user: String, authzid: String },
}

/// A parsed PLAIN message.
#[derive(PartialEq, Eq)]
pub struct PlainMessage<'a> {
    pub user: &'a str,
    pub password: &'a [u8],
}

impl std::fmt::Debug for PlainMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainMessage")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

pub fn parse(message: &[u8]) -> Result<PlainMessage<'_>, PlainError> {
    let mut parts = message.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    let user = std::str::from_utf8(user).map_err(|_| PlainError::Malformed)?;
    let authzid = std::str::from_utf8(authzid).map_err(|_| PlainError::Malformed)?;
    if user.is_empty() || password.is_empty() {
        return Err(PlainError::Empty);
    }
    if !authzid.is_empty() && authzid != user {
        return Err(PlainError::AuthzId {
            user: user.to_string(),
            authzid: authzid.to_string(),
        });
    }
    Ok(PlainMessage { user, password })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_authzid() {
        let m = parse(b"\0alice\0pw").unwrap();
        assert_eq!((m.user, m.password), ("alice", &b"pw"[..]));
        let m = parse(b"alice\0alice\0p\xffw").unwrap();
        assert_eq!((m.user, m.password), ("alice", &b"p\xffw"[..]));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(m) = parse(&data) {
                proptest::prop_assert!(!m.user.is_empty() && !m.password.is_empty());
            }
        }
    }

    #[test]
    fn garbled_messages_are_refused() {
        assert_eq!(parse(b"alice\0pw"), Err(PlainError::Malformed));
        assert_eq!(parse(b"\0a\0b\0c"), Err(PlainError::Malformed));
        assert_eq!(parse(b""), Err(PlainError::Malformed));
        assert_eq!(parse(b"\0\0pw"), Err(PlainError::Empty));
        assert_eq!(parse(b"\0alice\0"), Err(PlainError::Empty));
        assert_eq!(parse(b"\0\xff\0pw"), Err(PlainError::Malformed));
        assert!(matches!(
            parse(b"bob\0alice\0pw"),
            Err(PlainError::AuthzId { .. })
        ));
    }
}
