//! MQTT over WebSocket (MQTT 5.0 §6, 3.1.1 §6): the HTTP upgrade, then a byte stream.
//!
//! The upgrade answers with the `mqtt` subprotocol when the client offers it; a client that
//! offers only other subprotocols is refused (HTTP 400), one that offers none is served, as
//! most brokers do. After the upgrade [`WsStream`] turns the message stream into
//! `AsyncRead`/`AsyncWrite`, so [`super::serve_connection`] serves it unchanged: binary frames
//! carry MQTT bytes with no alignment to packets (a packet may span frames, a frame may hold
//! several), a text frame is a protocol error that ends the connection, pings are answered by
//! tungstenite, and a close frame is the end of the stream.
//!
//! Memory per connection stays bounded: an incoming message or frame larger than
//! `mqtt.max_packet_bytes` plus [`FRAME_SLACK`] ends the connection before it is buffered;
//! tungstenite's read buffer is [`READ_BUFFER`] instead of its 128 KiB default, writes are not
//! buffered a second time (the connection already holds its output) and go out in frames of at
//! most [`MAX_OUT_FRAME`].

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// The WebSocket subprotocol of MQTT.
pub const SUBPROTOCOL: &str = "mqtt";
/// Allowance over `mqtt.max_packet_bytes` for one frame or message: a client may put the end of
/// one packet and the start of the next in the same frame.
pub const FRAME_SLACK: usize = 4 * 1024;
/// Tungstenite's read buffer per connection (allocated up front).
pub const READ_BUFFER: usize = 8 * 1024;
/// Largest binary frame the broker sends.
pub const MAX_OUT_FRAME: usize = 64 * 1024;

/// Performs the server side of the upgrade on `stream`.
pub async fn accept<S>(stream: S, max_packet_bytes: usize) -> Result<WsStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limit = max_packet_bytes.saturating_add(FRAME_SLACK);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, choose_subprotocol, Some(config))
            .await?;
    Ok(WsStream::new(ws))
}

/// The upgrade callback: picks `mqtt` among the offered subprotocols (§6: the client must offer
/// it; the server answers with it).
#[allow(clippy::result_large_err)] // the signature is tungstenite's callback
fn choose_subprotocol(
    request: &Request,
    mut response: Response,
) -> Result<Response, ErrorResponse> {
    let offered: Vec<&str> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(response);
    }
    if offered.iter().any(|p| p.eq_ignore_ascii_case(SUBPROTOCOL)) {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
        return Ok(response);
    }
    let mut refusal = ErrorResponse::new(Some(format!(
        "this endpoint speaks the {SUBPROTOCOL:?} subprotocol only\n"
    )));
    *refusal.status_mut() = StatusCode::BAD_REQUEST;
    Err(refusal)
}

/// A WebSocket carrying MQTT bytes, as a byte stream.
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// Payload of the last binary message not yet read.
    pending: Bytes,
    /// A close frame or the end of the stream was seen: reads return EOF.
    eof: bool,
}

impl<S> WsStream<S> {
    pub fn new(ws: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            ws,
            pending: Bytes::new(),
            eof: false,
        }
    }
}

fn ws_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, format!("websocket: {other}")),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                // Answered by tungstenite on the next read or write; nothing for MQTT.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => self.eof = true,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "websocket text frame: MQTT travels in binary frames only",
                    )))
                }
                Some(Err(e)) => return Poll::Ready(Err(ws_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut ws = Pin::new(&mut self.ws);
        ready!(ws.as_mut().poll_ready(cx)).map_err(ws_error)?;
        let n = buf.len().min(MAX_OUT_FRAME);
        ws.start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(ws_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(ws_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(ws_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The result is tungstenite's handshake callback type, whose error is a whole response.
    #[allow(clippy::result_large_err)]
    fn offer(protocols: &[&str]) -> Result<Response, ErrorResponse> {
        let mut request = Request::builder().uri("/mqtt");
        for p in protocols {
            request = request.header(header::SEC_WEBSOCKET_PROTOCOL, *p);
        }
        choose_subprotocol(&request.body(()).unwrap(), Response::new(()))
    }

    fn chosen(r: &Response) -> Option<&str> {
        r.headers()
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
    }

    #[test]
    fn mqtt_is_chosen_when_offered_and_only_then() {
        assert_eq!(chosen(&offer(&["mqtt"]).unwrap()), Some("mqtt"));
        assert_eq!(chosen(&offer(&["mqttv3.1, MQTT"]).unwrap()), Some("mqtt"));
        assert_eq!(chosen(&offer(&["chat", "mqtt"]).unwrap()), Some("mqtt"));
        assert_eq!(chosen(&offer(&[]).unwrap()), None);
        let refused = offer(&["chat, superchat"]).unwrap_err();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }
}
