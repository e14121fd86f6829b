//! The byte streams an MQTT connection runs on, and which of them can be parked.
//!
//! A quiet publish-only connection on plain TCP is *parked* ([`super::parking`]): its socket
//! leaves tokio's reactor for one shared epoll set and its task ends, so it holds only its state
//! until the client sends something. That is what [`Link::detach`] and [`Link::reattach`] do.
//! TLS and WebSocket streams keep protocol state around the socket, and a QUIC stream has no
//! socket of its own, so they are never parked (the defaults).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A stream an MQTT connection can be served on.
pub trait Link: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Takes the socket out of the runtime's reactor and gives its descriptor, for a parked
    /// wait; `Ok(None)` when this kind of stream is never parked.
    fn detach(&mut self) -> io::Result<Option<RawFd>> {
        Ok(None)
    }

    /// Puts a detached socket back in the reactor; called inside the runtime.
    fn reattach(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A plain TCP connection, which can be parked.
pub enum TcpLink {
    /// Registered with the reactor: readable and writable.
    Live(TcpStream),
    /// Out of the reactor (still non-blocking), waiting in the parking's epoll set.
    Parked(std::net::TcpStream),
    /// Leaving the reactor failed: the socket is gone, every read and write fails.
    Lost,
}

impl TcpLink {
    fn live(&mut self) -> io::Result<&mut TcpStream> {
        match self {
            TcpLink::Live(s) => Ok(s),
            TcpLink::Parked(_) => Err(io::Error::other("connection is parked")),
            TcpLink::Lost => Err(io::Error::other(
                "connection's socket was lost when parking",
            )),
        }
    }
}

impl Link for TcpLink {
    fn detach(&mut self) -> io::Result<Option<RawFd>> {
        match std::mem::replace(self, TcpLink::Lost) {
            TcpLink::Live(stream) => {
                let parked = stream.into_std()?;
                let fd = parked.as_raw_fd();
                *self = TcpLink::Parked(parked);
                Ok(Some(fd))
            }
            other => {
                *self = other;
                Ok(None)
            }
        }
    }

    fn reattach(&mut self) -> io::Result<()> {
        match std::mem::replace(self, TcpLink::Lost) {
            TcpLink::Parked(parked) => {
                *self = TcpLink::Live(TcpStream::from_std(parked)?);
                Ok(())
            }
            other => {
                *self = other;
                Ok(())
            }
        }
    }
}

impl AsyncRead for TcpLink {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().live()?).poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpLink {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().live()?).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().live()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().live()?).poll_shutdown(cx)
    }
}

type Tls<S> = tokio_rustls::server::TlsStream<S>;
type Ws<S> = super::websocket::WsStream<S>;

impl Link for Tls<TcpStream> {}
impl Link for Ws<TcpStream> {}
impl Link for Ws<Tls<TcpStream>> {}
impl Link for tokio::io::Join<quinn::RecvStream, quinn::SendStream> {}
