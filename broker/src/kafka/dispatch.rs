//! Routes a decoded request to its handler and encodes the answer.

use bytes::BytesMut;
use tokio_util::sync::CancellationToken;

use super::connection::ConnInfo;
use super::request::{Body, Request};
use super::response::{self, EncodeError};
use super::{api_versions, fetch, list_offsets, metadata, produce, KafkaContext};

/// What the connection does once a request is handled.
pub enum Reply {
    /// The answer is in the output buffer.
    Send,
    /// Nothing to send (produce with `acks = 0`).
    Silent,
    /// Close the connection for this reason.
    Close(String),
}

/// Handles one request, appending its framed answer to `out`.
pub async fn dispatch(
    ctx: &KafkaContext,
    conn: &ConnInfo,
    request: Request,
    out: &mut BytesMut,
    shutdown: &CancellationToken,
) -> Result<Reply, EncodeError> {
    let (api, version) = (request.api, request.version);
    let correlation_id = request.header.correlation_id;
    match request.body {
        Body::ApiVersions(_) => {
            response::encode(out, api, version, correlation_id, &api_versions::handle())?
        }
        Body::Metadata(body) => {
            let answer = metadata::handle(ctx, body, version, ctx.advertised(conn.local)).await;
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::Produce(body) => match produce::handle(ctx, body).await {
            produce::Outcome::Respond(answer) => {
                response::encode(out, api, version, correlation_id, &answer)?
            }
            produce::Outcome::Silent => return Ok(Reply::Silent),
            produce::Outcome::Close(reason) => return Ok(Reply::Close(reason)),
        },
        Body::Fetch(body) => {
            let answer = fetch::handle(ctx, body, version, shutdown).await;
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::ListOffsets(body) => {
            let answer = list_offsets::handle(ctx, body, version);
            response::encode(out, api, version, correlation_id, &answer)?
        }
    }
    Ok(Reply::Send)
}
