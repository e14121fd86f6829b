//! The per-connection state machine driven with decoded requests, as the connection loop does.

use std::path::Path;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::credentials::{Credentials, CredentialsFile, UserEntry};
use super::scram::{self, ScramHash};
use super::*;

fn config(mechanisms: &[Mechanism]) -> SaslConfig {
    let mut file = CredentialsFile::default();
    file.users.insert(
        "alice".into(),
        credentials::new_entry("wonderland", 4096).unwrap(),
    );
    file.users.insert(
        "dev".into(),
        UserEntry {
            password: Some("devpw".into()),
            ..UserEntry::default()
        },
    );
    SaslConfig {
        mechanisms: mechanisms.to_vec(),
        credentials: Credentials::from_file(Path::new("test"), file).unwrap(),
    }
}

fn request(body: Body, version: i16) -> Request {
    let api = match body {
        Body::SaslHandshake(_) => ApiKey::SaslHandshake,
        _ => ApiKey::SaslAuthenticate,
    };
    Request {
        api,
        version,
        header: RequestHeader::default().with_correlation_id(9),
        body,
    }
}

fn handshake(session: &mut Session, config: &SaslConfig, name: &str) -> (i16, Step) {
    let mut body = SaslHandshakeRequest::default();
    body.mechanism = StrBytes::from_string(name.to_string());
    let mut out = BytesMut::new();
    let step = session
        .handle(config, request(Body::SaslHandshake(body), 1), &mut out)
        .unwrap();
    let mut buf = out.freeze();
    buf.advance(4);
    ResponseHeader::decode(&mut buf, 0).unwrap();
    let answer = SaslHandshakeResponse::decode(&mut buf, 1).unwrap();
    assert_eq!(
        answer
            .mechanisms
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>(),
        config
            .mechanisms
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
    );
    (answer.error_code, step)
}

fn authenticate(
    session: &mut Session,
    config: &SaslConfig,
    token: &[u8],
) -> (SaslAuthenticateResponse, Step) {
    let mut body = SaslAuthenticateRequest::default();
    body.auth_bytes = Bytes::copy_from_slice(token);
    let mut out = BytesMut::new();
    let step = session
        .handle(config, request(Body::SaslAuthenticate(body), 2), &mut out)
        .unwrap();
    let mut buf = out.freeze();
    buf.advance(4);
    ResponseHeader::decode(&mut buf, 1).unwrap();
    (SaslAuthenticateResponse::decode(&mut buf, 2).unwrap(), step)
}

fn failed(step: &Step) -> bool {
    matches!(step, Step::SendThenClose(_))
}

#[test]
fn gate_admits_only_the_sasl_exchange_before_authentication() {
    let config = config(&[Mechanism::Plain]);
    let mut session = Session::new(true);
    assert!(session.admits(ApiKey::ApiVersions as i16).is_ok());
    assert!(session.admits(ApiKey::SaslHandshake as i16).is_ok());
    for refused in [ApiKey::Metadata, ApiKey::Produce, ApiKey::SaslAuthenticate] {
        let reason = session.admits(refused as i16).unwrap_err();
        assert!(reason.contains("before SASL authentication"), "{reason}");
    }
    assert!(session.admits(999).is_err());
    assert_eq!(session.max_frame(1 << 24), MAX_UNAUTHENTICATED_FRAME);

    assert_eq!(handshake(&mut session, &config, "PLAIN"), (0, Step::Send));
    assert!(session.admits(ApiKey::SaslAuthenticate as i16).is_ok());
    assert!(session.admits(ApiKey::ApiVersions as i16).is_err());
    assert!(session.admits(ApiKey::Metadata as i16).is_err());

    let (answer, step) = authenticate(&mut session, &config, b"\0alice\0wonderland");
    assert_eq!((answer.error_code, step), (0, Step::Send));
    assert_eq!(session.user(), Some("alice"));
    assert!(session.admits(ApiKey::Produce as i16).is_ok());
    assert!(!session.intercepts(ApiKey::SaslHandshake));
    assert_eq!(session.max_frame(1 << 24), 1 << 24);

    let open = Session::new(false);
    assert!(open.admits(ApiKey::Produce as i16).is_ok());
    assert_eq!(open.user(), None);
}

#[test]
fn unsupported_mechanism_lists_the_enabled_ones_and_closes() {
    let config = config(&[Mechanism::ScramSha512]);
    let mut session = Session::new(true);
    let (code, step) = handshake(&mut session, &config, "PLAIN");
    assert_eq!(code, ResponseError::UnsupportedSaslMechanism.code());
    assert!(failed(&step));
    assert!(!session.is_open());
}

#[test]
fn plain_wrong_password_unknown_user_and_garbage_fail_alike() {
    let config = config(&[Mechanism::Plain]);
    for token in [
        &b"\0alice\0wonderlanD"[..],
        b"\0mallory\0wonderland",
        b"\0dev\0devpw2",
        b"garbage",
        b"carol\0alice\0wonderland",
    ] {
        let mut session = Session::new(true);
        handshake(&mut session, &config, "PLAIN");
        let (answer, step) = authenticate(&mut session, &config, token);
        assert_eq!(
            answer.error_code,
            ResponseError::SaslAuthenticationFailed.code()
        );
        assert_eq!(
            answer.error_message.as_deref(),
            Some(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism PLAIN"
            )
        );
        assert!(failed(&step), "{token:?}");
        assert!(!session.is_open());
    }
    let mut session = Session::new(true);
    handshake(&mut session, &config, "PLAIN");
    let (answer, _) = authenticate(&mut session, &config, b"dev\0dev\0devpw");
    assert_eq!(answer.error_code, 0);
    assert_eq!(session.user(), Some("dev"));
}

/// Runs a SCRAM exchange through the session; `Ok` holds whether the server-final message
/// proved the server knew the keys.
fn scram_exchange(
    config: &SaslConfig,
    mechanism: Mechanism,
    user: &str,
    password: &str,
) -> Result<bool, String> {
    let hash = mechanism.scram().unwrap();
    let mut session = Session::new(true);
    assert_eq!(handshake(&mut session, config, mechanism.name()).0, 0);
    let bare = format!("n={user},r=clientnonce123");
    let (first, step) = authenticate(&mut session, config, format!("n,,{bare}").as_bytes());
    assert_eq!((first.error_code, step), (0, Step::Send));
    let server_first = String::from_utf8(first.auth_bytes.to_vec()).unwrap();
    assert!(server_first.starts_with("r=clientnonce123"));
    let (client_final, expected) =
        scram::client_final(hash, password.as_bytes(), &bare, &server_first);
    let (last, step) = authenticate(&mut session, config, client_final.as_bytes());
    if last.error_code != 0 {
        assert!(failed(&step));
        assert!(!session.is_open());
        return Err(last.error_message.unwrap().to_string());
    }
    assert_eq!(session.user(), Some(user));
    Ok(last.auth_bytes == expected.as_bytes())
}

#[test]
fn scram_sha256_and_sha512_through_the_session() {
    let config = config(&[Mechanism::ScramSha256, Mechanism::ScramSha512]);
    for mechanism in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
        assert_eq!(
            scram_exchange(&config, mechanism, "alice", "wonderland"),
            Ok(true)
        );
        assert_eq!(scram_exchange(&config, mechanism, "dev", "devpw"), Ok(true));
        let wrong = scram_exchange(&config, mechanism, "alice", "wonderlanD").unwrap_err();
        let unknown = scram_exchange(&config, mechanism, "nobody", "wonderland").unwrap_err();
        assert_eq!(
            wrong, unknown,
            "an unknown user must look like a wrong password"
        );
    }
}

#[test]
fn unknown_user_gets_a_stable_salt_like_a_known_one() {
    let config = config(&[Mechanism::ScramSha256]);
    let server_first = |user: &str| {
        let mut session = Session::new(true);
        handshake(&mut session, &config, "SCRAM-SHA-256");
        let (first, _) = authenticate(
            &mut session,
            &config,
            format!("n,,n={user},r=abc").as_bytes(),
        );
        let text = String::from_utf8(first.auth_bytes.to_vec()).unwrap();
        text.split(',').skip(1).collect::<Vec<_>>().join(",")
    };
    assert_eq!(server_first("ghost"), server_first("ghost"));
    assert_eq!(server_first("alice"), server_first("alice"));
    assert!(server_first("ghost").ends_with(",i=4096"));
}

#[test]
fn garbled_scram_messages_fail_and_close() {
    let config = config(&[Mechanism::ScramSha256]);
    for first in [&b"p=tls-unique,,n=alice,r=x"[..], b"", b"n,,n=alice"] {
        let mut session = Session::new(true);
        handshake(&mut session, &config, "SCRAM-SHA-256");
        let (answer, step) = authenticate(&mut session, &config, first);
        assert_eq!(
            answer.error_code,
            ResponseError::SaslAuthenticationFailed.code()
        );
        assert!(failed(&step));
    }
    let mut session = Session::new(true);
    handshake(&mut session, &config, "SCRAM-SHA-256");
    authenticate(&mut session, &config, b"n,,n=alice,r=abc");
    let (answer, step) = authenticate(&mut session, &config, b"c=biws,r=abc,p=AAAA");
    assert_eq!(
        answer.error_code,
        ResponseError::SaslAuthenticationFailed.code()
    );
    assert!(failed(&step));
}

#[test]
fn sasl_requests_out_of_order_are_illegal_state() {
    let config = config(&[Mechanism::Plain]);
    let mut session = Session::new(true);
    // SaslAuthenticate before the handshake (the gate would close first; the session agrees).
    let (answer, step) = authenticate(&mut session, &config, b"\0alice\0wonderland");
    assert_eq!(answer.error_code, ResponseError::IllegalSaslState.code());
    assert!(failed(&step));
    // A second handshake in the middle of the exchange.
    handshake(&mut session, &config, "PLAIN");
    let mut body = SaslHandshakeRequest::default();
    body.mechanism = StrBytes::from_static_str("PLAIN");
    let mut out = BytesMut::new();
    let step = session
        .handle(&config, request(Body::SaslHandshake(body), 1), &mut out)
        .unwrap();
    assert!(failed(&step));
}

#[test]
fn v0_handshake_switches_to_raw_tokens() {
    let config = config(&[Mechanism::Plain, Mechanism::ScramSha256]);
    let v0_handshake = |session: &mut Session, name: &str| {
        let mut body = SaslHandshakeRequest::default();
        body.mechanism = StrBytes::from_string(name.to_string());
        let mut out = BytesMut::new();
        let step = session
            .handle(&config, request(Body::SaslHandshake(body), 0), &mut out)
            .unwrap();
        assert_eq!(step, Step::Send);
        assert!(session.expects_raw_token());
    };

    let mut session = Session::new(true);
    v0_handshake(&mut session, "PLAIN");
    let mut out = BytesMut::new();
    assert_eq!(
        session.raw_token(&config, b"\0alice\0wonderland", &mut out),
        Step::Send
    );
    assert_eq!(&out[..], &[0, 0, 0, 0]);
    assert_eq!(session.user(), Some("alice"));
    assert!(!session.expects_raw_token());

    let mut session = Session::new(true);
    v0_handshake(&mut session, "PLAIN");
    let mut out = BytesMut::new();
    assert!(matches!(
        session.raw_token(&config, b"\0alice\0nope", &mut out),
        Step::Close(_)
    ));
    assert!(out.is_empty() && !session.is_open());

    let mut session = Session::new(true);
    v0_handshake(&mut session, "SCRAM-SHA-256");
    let mut out = BytesMut::new();
    assert_eq!(
        session.raw_token(&config, b"n,,n=alice,r=xyz", &mut out),
        Step::Send
    );
    let server_first = String::from_utf8(out[4..].to_vec()).unwrap();
    let (client_final, expected) = scram::client_final(
        ScramHash::Sha256,
        b"wonderland",
        "n=alice,r=xyz",
        &server_first,
    );
    let mut out = BytesMut::new();
    assert_eq!(
        session.raw_token(&config, client_final.as_bytes(), &mut out),
        Step::Send
    );
    assert_eq!(&out[4..], expected.as_bytes());
    assert_eq!(session.user(), Some("alice"));
}

#[test]
fn sasl_requests_on_an_open_connection_get_illegal_sasl_state() {
    let code = ResponseError::IllegalSaslState.code();
    match illegal_state(ApiKey::SaslHandshake, "x") {
        Illegal::Handshake(a) => assert_eq!(a.error_code, code),
        Illegal::Authenticate(_) => panic!("wrong answer type"),
    }
    match illegal_state(ApiKey::SaslAuthenticate, "already authenticated") {
        Illegal::Authenticate(a) => {
            assert_eq!(a.error_code, code);
            assert_eq!(a.error_message.as_deref(), Some("already authenticated"));
        }
        Illegal::Handshake(_) => panic!("wrong answer type"),
    }
    // An open session hands them to the dispatcher, which answers with `illegal_state`.
    let open = Session::new(false);
    assert!(!open.intercepts(ApiKey::SaslHandshake));
    assert!(!open.intercepts(ApiKey::SaslAuthenticate));
}
