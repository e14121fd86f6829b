//! Encoding a response frame: length prefix, response header, body.

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Encodable;

use super::frame::{self, FrameError};

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("could not encode the {api:?} v{version} response: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Appends one framed response to `out`.
///
/// The header version follows the request's API and version (ApiVersions always uses header
/// v0, so that a client that does not know the broker's versions yet can read it).
pub fn encode(
    out: &mut BytesMut,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &impl Encodable,
) -> Result<(), EncodeError> {
    let failed = |e: anyhow::Error| EncodeError::Encode {
        api,
        version,
        reason: format!("{e:#}"),
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api.response_header_version(version);
    let size = header.compute_size(header_version).map_err(failed)?
        + body.compute_size(version).map_err(failed)?;
    out.reserve(frame::PREFIX_LEN + size);
    let at = frame::start(out);
    header.encode(out, header_version).map_err(failed)?;
    body.encode(out, version).map_err(failed)?;
    frame::finish(out, at)?;
    Ok(())
}
