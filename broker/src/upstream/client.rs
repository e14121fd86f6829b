//! A minimal Kafka client connection: framing, correlation ids, version negotiation and timeouts.
//!
//! Headwater forwards upstream with its own client on the `kafka-protocol` codec rather than
//! librdkafka (DESIGN §5): the broker stays pure Rust for ARM cross-builds, and stored batches are
//! forwarded without a second encoding layer.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response we accept; a bigger length prefix means a broken or hostile peer.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const CLIENT_ID: &str = "headwater-upstream";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("I/O with {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr} sent a bad response: {reason}")]
    Protocol { addr: String, reason: String },
    #[error("{addr} supports no version of {api:?} that Headwater speaks")]
    Unsupported { addr: String, api: ApiKey },
}

/// One connection to one broker.
pub struct Connection {
    addr: String,
    stream: TcpStream,
    correlation_id: i32,
    timeout: Duration,
    /// Version ranges the broker announced in ApiVersions.
    versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    /// Connects and negotiates API versions.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Connection, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout {
                addr: addr.to_string(),
                timeout,
            })?
            .map_err(|e| ClientError::Connect {
                addr: addr.to_string(),
                source: e,
            })?;
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            addr: addr.to_string(),
            stream,
            correlation_id: 0,
            timeout,
            versions: HashMap::new(),
        };
        // v0 is understood by every broker, whatever it supports.
        let response: ApiVersionsResponse = conn.send(&ApiVersionsRequest::default(), 0).await?;
        if response.error_code != 0 {
            return Err(conn.protocol(format!("ApiVersions error {}", response.error_code)));
        }
        conn.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(conn)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The highest version of `R` both sides speak.
    pub fn version_for<R: Request>(&self) -> Result<i16, ClientError> {
        let ours = R::VERSIONS;
        let api = ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions);
        let (min, max) =
            self.versions
                .get(&R::KEY)
                .copied()
                .ok_or_else(|| ClientError::Unsupported {
                    addr: self.addr.clone(),
                    api,
                })?;
        let version = ours.max.min(max);
        if version < ours.min.max(min) {
            return Err(ClientError::Unsupported {
                addr: self.addr.clone(),
                api,
            });
        }
        Ok(version)
    }

    /// Sends a request at the negotiated version and waits for its response.
    pub async fn request<R: Request>(&mut self, request: &R) -> Result<R::Response, ClientError> {
        let version = self.version_for::<R>()?;
        self.send(request, version).await
    }

    async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut body = BytesMut::new();
        body.put_i32(0);
        header
            .encode(&mut body, R::header_version(version))
            .map_err(|e| self.protocol(format!("encoding request header: {e}")))?;
        request
            .encode(&mut body, version)
            .map_err(|e| self.protocol(format!("encoding request: {e}")))?;
        let len = (body.len() - 4) as i32;
        body[0..4].copy_from_slice(&len.to_be_bytes());

        let timeout = self.timeout;
        let addr = self.addr.clone();
        let frame = tokio::time::timeout(timeout, async {
            self.stream.write_all(&body).await?;
            let len = self.stream.read_i32().await?;
            if len < 0 || len as usize > MAX_RESPONSE_BYTES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("response length {len} out of range"),
                ));
            }
            let mut frame = vec![0u8; len as usize];
            self.stream.read_exact(&mut frame).await?;
            Ok(Bytes::from(frame))
        })
        .await
        .map_err(|_| ClientError::Timeout {
            addr: addr.clone(),
            timeout,
        })?
        .map_err(|e| ClientError::Io { addr, source: e })?;

        let mut frame = frame;
        let header_version =
            <R::Response as kafka_protocol::protocol::HeaderVersion>::header_version(version);
        let header = kafka_protocol::messages::ResponseHeader::decode(&mut frame, header_version)
            .map_err(|e| self.protocol(format!("decoding response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(self.protocol(format!(
                "correlation id {} answers request {correlation_id}",
                header.correlation_id
            )));
        }
        let response = R::Response::decode(&mut frame, version)
            .map_err(|e| self.protocol(format!("decoding response: {e}")))?;
        if frame.has_remaining() {
            tracing::debug!(bytes = frame.remaining(), "response had trailing bytes");
        }
        Ok(response)
    }

    fn protocol(&self, reason: String) -> ClientError {
        ClientError::Protocol {
            addr: self.addr.clone(),
            reason,
        }
    }
}
