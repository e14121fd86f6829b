//! SASL authentication on the Kafka listener (KIP-43, KIP-152): PLAIN, SCRAM-SHA-256 and
//! SCRAM-SHA-512, checked against a credentials file ([`credentials`]).
//!
//! Authentication belongs to a connection, so each connection holds a [`Session`], a small
//! state machine the connection loop consults before it decodes a request:
//!
//! ```text
//! Start ──SaslHandshake(mech)──► Handshaken ──SaslAuthenticate──► Authenticated
//!                                     │  (SCRAM: client-first)         ▲
//!                                     └────────► Scram ──client-final──┘
//! ```
//!
//! - Before authentication only ApiVersions and SaslHandshake are admitted, and after the
//!   handshake only SaslAuthenticate; anything else closes the connection with a logged reason
//!   before its body is decoded, as Kafka does. Unauthenticated frames are also held to
//!   [`MAX_UNAUTHENTICATED_FRAME`] (Kafka's `sasl.server.max.receive.size`).
//! - A failed authentication is answered with SASL_AUTHENTICATION_FAILED and a message, then
//!   the connection is closed; a mechanism that is not enabled gets UNSUPPORTED_SASL_MECHANISM
//!   with the enabled list, then the connection is closed.
//! - Once authenticated (or when SASL is off), SaslHandshake and SaslAuthenticate reach
//!   [`super::dispatch`], which answers ILLEGAL_SASL_STATE as Kafka's request handler does.
//!   Re-authentication (KIP-368) is not offered: the session lifetime is 0, so clients never
//!   attempt it.
//! - SaslHandshake v1 is followed by SaslAuthenticate requests carrying the tokens (what
//!   librdkafka, kafka-python and the Java client send). After a v0 handshake (Kafka 0.10) the
//!   tokens travel as raw length-prefixed frames without a Kafka header, and a failure just
//!   closes the connection, as in Kafka. v0 must be advertised anyway: librdkafka only enables
//!   SCRAM and PLAIN when the broker's SaslHandshake range includes v0.
//!
//! The mechanisms ([`plain`], [`scram`]) and the credentials file do no I/O on the request path.

pub mod credentials;
pub mod plain;
pub mod scram;

use base64::prelude::{Engine, BASE64_STANDARD};
use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

use super::bounds::{from, Schema, Ty};
use super::request::{Body, Request};
use super::response::{self, EncodeError};
pub use credentials::Credentials;
use scram::{ScramHash, ScramServer};

/// SaslHandshakeRequest: the mechanism name. Never flexible.
pub const HANDSHAKE_SCHEMA: Schema = Schema {
    flexible_since: i16::MAX,
    fields: &[from(0, Ty::Str)],
};

/// SaslAuthenticateRequest: the mechanism's token (flexible from v2).
pub const AUTHENTICATE_SCHEMA: Schema = Schema {
    flexible_since: 2,
    fields: &[from(0, Ty::Bytes)],
};

/// Largest frame accepted before authentication, as Kafka's `sasl.server.max.receive.size`
/// default: SASL tokens are small, and an unauthenticated client must not make the broker
/// buffer `kafka.max_frame_bytes`.
pub const MAX_UNAUTHENTICATED_FRAME: usize = 512 * 1024;

/// A SASL mechanism Headwater implements, by its IANA name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    fn scram(self) -> Option<ScramHash> {
        match self {
            Mechanism::Plain => None,
            Mechanism::ScramSha256 => Some(ScramHash::Sha256),
            Mechanism::ScramSha512 => Some(ScramHash::Sha512),
        }
    }
}

/// What the listener authenticates against; shared by all connections.
#[derive(Debug)]
pub struct SaslConfig {
    /// Enabled mechanisms, in the order SaslHandshake lists them.
    pub mechanisms: Vec<Mechanism>,
    pub credentials: Credentials,
}

/// Where one connection stands.
#[derive(Debug)]
enum State {
    /// Waiting for SaslHandshake (ApiVersions is fine too).
    Start,
    /// Handshake done; the next request must be SaslAuthenticate (or a raw token after v0).
    Handshaken(Mechanism),
    /// Between SCRAM's server-first and client-final messages.
    Scram(Mechanism, Box<ScramServer>),
    /// Authenticated as this user, or SASL is off (`None`): every API is open.
    Open(Option<String>),
}

/// What the connection does after [`Session::handle`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send the answer in the output buffer and go on.
    Send,
    /// Send the answer in the output buffer, then close for this reason.
    SendThenClose(String),
    /// Close without an answer, for this reason (a failed raw-token exchange).
    Close(String),
}

/// One connection's authentication state.
#[derive(Debug)]
pub struct Session {
    state: State,
    /// The handshake was v0: tokens come as raw frames, not SaslAuthenticate requests.
    raw_tokens: bool,
}

impl Session {
    /// A new connection: closed until authenticated when `enabled`, else open.
    pub fn new(enabled: bool) -> Session {
        Session {
            state: if enabled {
                State::Start
            } else {
                State::Open(None)
            },
            raw_tokens: false,
        }
    }

    /// The authenticated user, if SASL is on and the connection has authenticated.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::Open(user) => user.as_deref(),
            _ => None,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Largest request frame this connection may send now.
    pub fn max_frame(&self, configured: usize) -> usize {
        if self.is_open() {
            configured
        } else {
            configured.min(MAX_UNAUTHENTICATED_FRAME)
        }
    }

    /// Whether a request with this API key may be decoded now; `Err` is the reason to close.
    pub fn admits(&self, key: i16) -> Result<(), String> {
        let allowed: &[ApiKey] = match &self.state {
            State::Open(_) => return Ok(()),
            State::Start => &[ApiKey::ApiVersions, ApiKey::SaslHandshake],
            State::Handshaken(_) | State::Scram(..) => &[ApiKey::SaslAuthenticate],
        };
        if allowed.iter().any(|api| *api as i16 == key) {
            return Ok(());
        }
        let name = ApiKey::try_from(key)
            .map(|api| format!("{api:?}"))
            .unwrap_or_else(|_| format!("API key {key}"));
        Err(match self.state {
            State::Start => format!("{name} request before SASL authentication"),
            _ => format!("{name} request during SASL authentication"),
        })
    }

    /// Whether the next frame is a raw SASL token (after a v0 handshake), not a request.
    pub fn expects_raw_token(&self) -> bool {
        self.raw_tokens && matches!(self.state, State::Handshaken(_) | State::Scram(..))
    }

    /// Handles a raw token frame (see [`Session::expects_raw_token`]); the answer, if any, is a
    /// raw length-prefixed token appended to `out`.
    pub fn raw_token(&mut self, config: &SaslConfig, token: &[u8], out: &mut BytesMut) -> Step {
        let state = std::mem::replace(&mut self.state, State::Start);
        let (mechanism, result) = match state {
            State::Handshaken(m) => (m, self.first_token(config, m, token)),
            State::Scram(m, server) => (m, self.scram_final(*server, token)),
            other => {
                self.state = other;
                return Step::Close("raw SASL token outside of a SASL exchange".into());
            }
        };
        match result {
            Ok(answer) => {
                out.extend_from_slice(&(answer.len() as u32).to_be_bytes());
                out.extend_from_slice(&answer);
                Step::Send
            }
            Err(reason) => {
                self.state = State::Start;
                Step::Close(format!(
                    "SASL {} authentication failed: {reason}",
                    mechanism.name()
                ))
            }
        }
    }

    /// Whether this session answers `api` itself instead of the dispatcher.
    pub fn intercepts(&self, api: ApiKey) -> bool {
        !self.is_open() && matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
    }

    /// Handles a SaslHandshake or SaslAuthenticate request (see [`Session::intercepts`]),
    /// appending the framed answer to `out`.
    pub fn handle(
        &mut self,
        config: &SaslConfig,
        request: Request,
        out: &mut BytesMut,
    ) -> Result<Step, EncodeError> {
        let (api, version) = (request.api, request.version);
        let correlation_id = request.header.correlation_id;
        let state = std::mem::replace(&mut self.state, State::Start);
        match (state, request.body) {
            (State::Start, Body::SaslHandshake(body)) => {
                self.raw_tokens = version == 0;
                let (answer, step) = self.handshake(config, &body);
                response::encode(out, api, version, correlation_id, &answer)?;
                Ok(step)
            }
            (State::Handshaken(mechanism), Body::SaslAuthenticate(body)) => {
                let result = self.first_token(config, mechanism, &body.auth_bytes);
                self.authenticate_answer(out, version, correlation_id, mechanism, result)
            }
            (State::Scram(mechanism, server), Body::SaslAuthenticate(body)) => {
                let result = self.scram_final(*server, &body.auth_bytes);
                self.authenticate_answer(out, version, correlation_id, mechanism, result)
            }
            (state, _) => {
                // `admits` lets nothing else through; answer as Kafka would if it did.
                let reason = format!("{api:?} request in SASL state {state:?}");
                self.state = state;
                let answer = illegal_state(api, &reason);
                match answer {
                    Illegal::Handshake(a) => {
                        response::encode(out, api, version, correlation_id, &a)?
                    }
                    Illegal::Authenticate(a) => {
                        response::encode(out, api, version, correlation_id, &a)?
                    }
                }
                Ok(Step::SendThenClose(reason))
            }
        }
    }

    fn handshake(
        &mut self,
        config: &SaslConfig,
        body: &SaslHandshakeRequest,
    ) -> (SaslHandshakeResponse, Step) {
        let mut answer = SaslHandshakeResponse::default();
        answer.mechanisms = config
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let wanted = body.mechanism.as_str();
        match config.mechanisms.iter().find(|m| m.name() == wanted) {
            Some(mechanism) => {
                self.state = State::Handshaken(*mechanism);
                (answer, Step::Send)
            }
            None => {
                answer.error_code = ResponseError::UnsupportedSaslMechanism.code();
                let reason = format!("SASL mechanism {wanted:?} is not enabled");
                (answer, Step::SendThenClose(reason))
            }
        }
    }

    /// The first SaslAuthenticate after the handshake: PLAIN's only token or SCRAM's
    /// client-first message. `Ok` carries the bytes to send back.
    fn first_token(
        &mut self,
        config: &SaslConfig,
        mechanism: Mechanism,
        token: &[u8],
    ) -> Result<Bytes, String> {
        let Some(hash) = mechanism.scram() else {
            let message = plain::parse(token).map_err(|e| e.to_string())?;
            let verified = crate::blocking::off_the_reactor(|| {
                config.credentials.verify(message.user, message.password)
            });
            if !verified {
                return Err(format!("invalid credentials for user {:?}", message.user));
            }
            self.state = State::Open(Some(message.user.to_string()));
            return Ok(Bytes::new());
        };
        let first = scram::parse_client_first(token).map_err(|e| e.to_string())?;
        let (credential, known) = config.credentials.scram(hash, &first.user);
        let mut nonce = [0u8; 18];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no system randomness for the SCRAM nonce".to_string())?;
        let (server, server_first) = ScramServer::start(
            hash,
            first,
            credential,
            known,
            &BASE64_STANDARD.encode(nonce),
        );
        self.state = State::Scram(mechanism, Box::new(server));
        Ok(Bytes::from(server_first))
    }

    /// SCRAM's client-final message: `Ok` carries the server-final message.
    fn scram_final(&mut self, server: ScramServer, token: &[u8]) -> Result<Bytes, String> {
        let (user, server_final) = server.finish(token).map_err(|e| e.to_string())?;
        self.state = State::Open(Some(user));
        Ok(Bytes::from(server_final))
    }

    fn authenticate_answer(
        &mut self,
        out: &mut BytesMut,
        version: i16,
        correlation_id: i32,
        mechanism: Mechanism,
        result: Result<Bytes, String>,
    ) -> Result<Step, EncodeError> {
        let mut answer = SaslAuthenticateResponse::default();
        let step = match result {
            Ok(token) => {
                answer.auth_bytes = token;
                Step::Send
            }
            Err(reason) => {
                // The client learns that it failed, not why (unknown user, wrong password and
                // a garbled message look alike); the log says why.
                answer.error_code = ResponseError::SaslAuthenticationFailed.code();
                answer.error_message = Some(StrBytes::from_string(format!(
                    "Authentication failed during authentication due to invalid credentials \
                     with SASL mechanism {}",
                    mechanism.name()
                )));
                self.state = State::Start;
                Step::SendThenClose(format!(
                    "SASL {} authentication failed: {reason}",
                    mechanism.name()
                ))
            }
        };
        response::encode(
            out,
            ApiKey::SaslAuthenticate,
            version,
            correlation_id,
            &answer,
        )?;
        Ok(step)
    }
}

/// An ILLEGAL_SASL_STATE answer to either SASL request.
pub enum Illegal {
    Handshake(SaslHandshakeResponse),
    Authenticate(SaslAuthenticateResponse),
}

/// The answer to a SASL request on a connection that is already open (authenticated, or SASL
/// is off), as Kafka's request handler gives it.
pub fn illegal_state(api: ApiKey, message: &str) -> Illegal {
    let code = ResponseError::IllegalSaslState.code();
    if api == ApiKey::SaslHandshake {
        let mut answer = SaslHandshakeResponse::default();
        answer.error_code = code;
        Illegal::Handshake(answer)
    } else {
        let mut answer = SaslAuthenticateResponse::default();
        answer.error_code = code;
        answer.error_message = Some(StrBytes::from_string(message.to_string()));
        Illegal::Authenticate(answer)
    }
}

#[cfg(test)]
mod tests;
