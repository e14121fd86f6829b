//! One Kafka connection: read a frame, decode it, handle it, write the answer, repeat.
//!
//! Requests are handled in arrival order and answered in that order (Kafka's rule). A produce
//! is answered once its appends are durable, but the loop does not wait for that before it
//! reads on: up to [`super::pipeline::MAX_IN_FLIGHT`] produces may wait for their commits
//! together (see [`super::pipeline`]), while any other request first waits for the answers
//! before it. The read buffer grows by at most [`READ_CHUNK`] per read towards the frame's
//! declared length, which [`frame::decode`] has already checked against `kafka.max_frame_bytes`.
//!
//! Any error ends only this connection, with a warning naming the peer and the reason; a peer
//! that simply goes away is logged at debug level. At shutdown an idle connection closes at
//! once; a busy one finishes its request (a waiting fetch returns early), sends the answers of
//! the produces in flight, and then closes.
//!
//! The loop is generic over the stream, so plain TCP and TLS connections share it. It holds
//! the connection's SASL [`Session`]: before a frame is decoded its API key is checked against
//! the session (an unauthenticated client gets nothing but ApiVersions and the SASL exchange),
//! and SASL requests are answered by the session, not the dispatcher.
//!
//! Idle timeout (`kafka.idle_timeout_ms`, Kafka's `connections.max.idle.ms`): the clock starts
//! when the connection opens and restarts after each answered request; it runs only while the
//! loop waits for bytes, so a long-poll fetch being served is never idle, and a client that
//! trickles a frame byte by byte without completing it is.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dispatch::{self, dispatch, Reply};
use super::frame::{self, FrameError, Progress};
use super::pipeline::Pipeline;
use super::request::{self, RequestError};
use super::response::{self, EncodeError};
use super::sasl::{Session, Step};
use super::{api_versions, KafkaContext};

/// Most bytes read ahead of a frame's known end at once.
pub const READ_CHUNK: usize = 64 * 1024;
/// Buffers grown beyond this by one large request or answer are given back once it is done,
/// so an idle connection does not keep a multi-megabyte allocation.
const KEEP_CAPACITY: usize = 256 * 1024;

/// The two ends of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client, for logs.
    pub peer: SocketAddr,
    /// Where the client reached us: the address Metadata advertises unless configured.
    pub local: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("connection closed in the middle of a frame ({0} bytes buffered)")]
    Truncated(usize),
    #[error("{0}")]
    Refused(String),
    #[error("no request for {0} ms (kafka.idle_timeout_ms)")]
    Idle(u128),
}

impl ConnectionError {
    /// A peer that went away is routine; everything else deserves a warning.
    fn is_disconnect(&self) -> bool {
        matches!(self, ConnectionError::Io(e) if matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
        ))
    }
}

/// Serves one connection (TCP or TLS) until the peer closes it, an error, or shutdown.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    info: ConnInfo,
    ctx: KafkaContext,
    shutdown: CancellationToken,
) {
    let mut session = Session::new(ctx.security.sasl.is_some());
    let result = serve_requests(stream, info, &ctx, &mut session, &shutdown).await;
    let user = session.user().unwrap_or_default();
    match result {
        Ok(()) => tracing::debug!(peer = %info.peer, user, "Kafka connection closed"),
        Err(e @ ConnectionError::Idle(_)) => {
            tracing::debug!(peer = %info.peer, user, reason = %e, "closing idle Kafka connection")
        }
        Err(e) if e.is_disconnect() => {
            tracing::debug!(peer = %info.peer, user, error = %e, "Kafka client went away")
        }
        Err(e) => {
            tracing::warn!(peer = %info.peer, user, reason = %e, "closing Kafka connection")
        }
    }
}

async fn serve_requests<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    info: ConnInfo,
    ctx: &KafkaContext,
    session: &mut Session,
    shutdown: &CancellationToken,
) -> Result<(), ConnectionError> {
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::new();
    let mut produces = Pipeline::new(ctx.max_frame_bytes);
    let idle = ctx.security.idle_timeout;
    let mut idle_since = Instant::now();
    loop {
        if shutdown.is_cancelled() {
            return drain(&mut produces, &mut stream, None).await;
        }
        match frame::decode(&mut buf, session.max_frame(ctx.max_frame_bytes))? {
            Progress::Frame(frame) => {
                // Everything but a produce waits for the answers before it; a produce waits
                // only for room in the pipeline.
                let is_produce = frame.first_chunk::<2>().map(|k| i16::from_be_bytes(*k))
                    == Some(ApiKey::Produce as i16);
                let room = is_produce.then_some(frame.len());
                drain(&mut produces, &mut stream, room).await?;
                let frame_len = frame.len();
                out.clear();
                if session.expects_raw_token() {
                    let Some(sasl) = ctx.security.sasl.as_deref() else {
                        return Err(ConnectionError::Refused("SASL state without SASL".into()));
                    };
                    match session.raw_token(sasl, &frame, &mut out) {
                        Step::Send => {
                            send(&mut stream, &out).await?;
                            idle_since = Instant::now();
                            continue;
                        }
                        Step::SendThenClose(reason) | Step::Close(reason) => {
                            return Err(ConnectionError::Refused(reason))
                        }
                    }
                }
                if let Some(key) = frame.first_chunk::<2>() {
                    session
                        .admits(i16::from_be_bytes(*key))
                        .map_err(ConnectionError::Refused)?;
                }
                let reply = match request::decode(frame) {
                    Ok(request) if session.intercepts(request.api) => {
                        let Some(sasl) = ctx.security.sasl.as_deref() else {
                            // A session only intercepts when SASL is configured.
                            return Err(ConnectionError::Refused("SASL state without SASL".into()));
                        };
                        match session.handle(sasl, request, &mut out)? {
                            Step::Send => Reply::Send,
                            Step::SendThenClose(reason) => {
                                send(&mut stream, &out).await?;
                                return Err(ConnectionError::Refused(reason));
                            }
                            Step::Close(reason) => return Err(ConnectionError::Refused(reason)),
                        }
                    }
                    Ok(request) => match dispatch::start_produce(ctx, request).await {
                        Ok(mut pending) => {
                            // Only a lone produce is committed by this task when it waits;
                            // behind another, the writer commits it while we read on.
                            if !produces.is_empty() {
                                pending.commit_in_background();
                            }
                            produces.push(pending, frame_len);
                            idle_since = Instant::now();
                            continue;
                        }
                        Err(request) => dispatch(ctx, &info, request, &mut out, shutdown).await?,
                    },
                    Err(RequestError::UnsupportedVersion {
                        api: ApiKey::ApiVersions,
                        version,
                        correlation_id,
                        ..
                    }) => {
                        tracing::debug!(peer = %info.peer, version, "ApiVersions version not supported; answering in v0");
                        let answer = api_versions::unsupported_version();
                        response::encode(
                            &mut out,
                            ApiKey::ApiVersions,
                            0,
                            correlation_id,
                            &answer,
                        )?;
                        Reply::Send
                    }
                    Err(e) => return Err(e.into()),
                };
                deliver(&mut stream, reply, &out).await?;
                idle_since = Instant::now();
                if out.capacity() > KEEP_CAPACITY {
                    out = BytesMut::new();
                }
                if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
                    buf = BytesMut::with_capacity(4096);
                }
            }
            Progress::NeedMore(missing) => {
                buf.reserve(missing.min(READ_CHUNK));
                // Waiting for our own commits is not idleness.
                let idle_limit = idle.filter(|_| produces.is_empty());
                let idle_deadline = async {
                    match idle_limit {
                        Some(limit) => tokio::time::sleep_until(idle_since + limit).await,
                        None => std::future::pending().await,
                    }
                };
                let read = tokio::select! {
                    read = stream.read_buf(&mut buf) => read?,
                    Some((reply, answer)) = produces.next_answer() => {
                        deliver(&mut stream, reply?, &answer).await?;
                        idle_since = Instant::now();
                        continue;
                    }
                    _ = shutdown.cancelled() => return drain(&mut produces, &mut stream, None).await,
                    _ = idle_deadline => {
                        let ms = idle.map(|d| d.as_millis()).unwrap_or_default();
                        return Err(ConnectionError::Idle(ms));
                    }
                };
                if read == 0 {
                    drain(&mut produces, &mut stream, None).await?;
                    return if buf.is_empty() {
                        Ok(())
                    } else {
                        Err(ConnectionError::Truncated(buf.len()))
                    };
                }
            }
        }
    }
}

/// Sends the answers of in-flight produces, oldest first, until a produce of `room` bytes fits
/// (`None`: until none is left).
async fn drain<S: AsyncWrite + Unpin>(
    produces: &mut Pipeline,
    stream: &mut S,
    room: Option<usize>,
) -> Result<(), ConnectionError> {
    while !(produces.is_empty() || room.is_some_and(|len| produces.has_room(len))) {
        if let Some((reply, answer)) = produces.next_answer().await {
            deliver(stream, reply?, &answer).await?;
        }
    }
    Ok(())
}

/// Does what a handled request's [`Reply`] says with its answer in `out`.
async fn deliver<S: AsyncWrite + Unpin>(
    stream: &mut S,
    reply: Reply,
    out: &[u8],
) -> Result<(), ConnectionError> {
    match reply {
        Reply::Send => Ok(send(stream, out).await?),
        Reply::Silent => Ok(()),
        Reply::Close(reason) => Err(ConnectionError::Refused(reason)),
    }
}

/// Writes an answer out; TLS buffers what it is given, so it needs the flush (a no-op on TCP).
async fn send<S: AsyncWrite + Unpin>(stream: &mut S, out: &[u8]) -> io::Result<()> {
    stream.write_all(out).await?;
    stream.flush().await
}
