//! One Kafka connection: read a frame, decode it, handle it, write the answer, repeat.
//!
//! Requests are handled one at a time in arrival order, so answers go out in order (Kafka's
//! rule) and a connection holds at most one request frame plus one read chunk and one answer.
//! The buffer grows by at most [`READ_CHUNK`] per read towards the frame's declared length,
//! which [`frame::decode`] has already checked against `kafka.max_frame_bytes`.
//!
//! Any error ends only this connection, with a warning naming the peer and the reason; a peer
//! that simply goes away is logged at debug level. At shutdown an idle connection closes at
//! once; a busy one finishes its request (a waiting fetch returns early) and then closes.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::dispatch::{dispatch, Reply};
use super::frame::{self, FrameError, Progress};
use super::request::{self, RequestError};
use super::response::{self, EncodeError};
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

/// Serves one connection until the peer closes it, an error, or shutdown.
pub async fn serve(
    stream: TcpStream,
    info: ConnInfo,
    ctx: KafkaContext,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    match serve_requests(stream, info, &ctx, &shutdown).await {
        Ok(()) => tracing::debug!(peer = %info.peer, "Kafka connection closed"),
        Err(e) if e.is_disconnect() => {
            tracing::debug!(peer = %info.peer, error = %e, "Kafka client went away")
        }
        Err(e) => tracing::warn!(peer = %info.peer, reason = %e, "closing Kafka connection"),
    }
}

async fn serve_requests(
    mut stream: TcpStream,
    info: ConnInfo,
    ctx: &KafkaContext,
    shutdown: &CancellationToken,
) -> Result<(), ConnectionError> {
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::new();
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        match frame::decode(&mut buf, ctx.max_frame_bytes)? {
            Progress::Frame(frame) => {
                out.clear();
                let reply = match request::decode(frame) {
                    Ok(request) => dispatch(ctx, &info, request, &mut out, shutdown).await?,
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
                match reply {
                    Reply::Send => stream.write_all(&out).await?,
                    Reply::Silent => {}
                    Reply::Close(reason) => return Err(ConnectionError::Refused(reason)),
                }
                if out.capacity() > KEEP_CAPACITY {
                    out = BytesMut::new();
                }
                if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
                    buf = BytesMut::with_capacity(4096);
                }
            }
            Progress::NeedMore(missing) => {
                buf.reserve(missing.min(READ_CHUNK));
                let read = tokio::select! {
                    read = stream.read_buf(&mut buf) => read?,
                    _ = shutdown.cancelled() => return Ok(()),
                };
                if read == 0 {
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
