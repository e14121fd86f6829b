//! Routes a decoded request to its handler and encodes the answer.

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use tokio_util::sync::CancellationToken;

use super::admin;
use super::connection::ConnInfo;
use super::group;
use super::init_producer_id;
use super::request::{Body, Request};
use super::response::{self, EncodeError};
use super::{api_versions, fetch, list_offsets, metadata, produce, sasl, KafkaContext};

/// What the connection does once a request is handled.
pub enum Reply {
    /// The answer is in the output buffer.
    Send,
    /// Nothing to send (produce with `acks = 0`).
    Silent,
    /// Close the connection for this reason.
    Close(String),
}

/// A produce whose appends are queued with the log writer (see [`start_produce`]).
pub struct PendingProduce {
    started: produce::Started,
    version: i16,
    correlation_id: i32,
}

impl PendingProduce {
    /// Has the log writer commit this produce's appends while the connection reads on (see
    /// [`crate::log::AppendTicket::commit_in_background`]).
    pub fn commit_in_background(&mut self) {
        self.started.commit_in_background();
    }

    /// Waits until the produce's appends are durable and appends its framed answer to `out`.
    pub async fn answer(self, out: &mut BytesMut) -> Result<Reply, EncodeError> {
        match self.started.finish().await {
            produce::Outcome::Respond(answer) => {
                response::encode(
                    out,
                    ApiKey::Produce,
                    self.version,
                    self.correlation_id,
                    &answer,
                )?;
                Ok(Reply::Send)
            }
            produce::Outcome::Silent => Ok(Reply::Silent),
            produce::Outcome::Close(reason) => Ok(Reply::Close(reason)),
        }
    }
}

/// Queues a produce request's appends and returns without waiting for them to be durable;
/// any other request is given back.
pub async fn start_produce(
    ctx: &KafkaContext,
    request: Request,
) -> Result<PendingProduce, Request> {
    let Request {
        api,
        version,
        header,
        body,
    } = request;
    match body {
        Body::Produce(body) => Ok(PendingProduce {
            started: produce::start(ctx, body).await,
            version,
            correlation_id: header.correlation_id,
        }),
        body => Err(Request {
            api,
            version,
            header,
            body,
        }),
    }
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
        Body::Produce(body) => {
            let started = produce::start(ctx, body).await;
            return PendingProduce {
                started,
                version,
                correlation_id,
            }
            .answer(out)
            .await;
        }
        Body::Fetch(body) => {
            let answer = fetch::handle(ctx, body, version, shutdown).await;
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::ListOffsets(body) => {
            let answer = list_offsets::handle(ctx, body, version);
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::FindCoordinator(body) => {
            let answer = group::find_coordinator::handle(body, version, ctx.advertised(conn.local));
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::JoinGroup(body) => {
            let client_id = request.header.client_id.as_deref().unwrap_or_default();
            let host = conn.peer.ip().to_canonical().to_string();
            let answer =
                group::join_group::handle(&ctx.groups, body, version, client_id, &host, shutdown)
                    .await;
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::SyncGroup(body) => {
            let answer = group::sync_group::handle(&ctx.groups, body, shutdown).await;
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::Heartbeat(body) => {
            let answer = group::heartbeat::handle(&ctx.groups, body);
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::LeaveGroup(body) => {
            let answer = group::leave_group::handle(&ctx.groups, body, version);
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::OffsetCommit(body) => {
            let answer = group::offset_commit::handle(&ctx.groups, ctx.log(), body).await;
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::OffsetFetch(body) => {
            let answer = group::offset_fetch::handle(&ctx.groups, body, version);
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::ListGroups(body) => {
            let answer = group::list_groups::handle(&ctx.groups, body);
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::DescribeGroups(body) => {
            let answer = group::describe_groups::handle(&ctx.groups, body);
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::CreateTopics(body) => {
            let answer = admin::create_topics::handle(ctx, body).await;
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::DeleteTopics(body) => {
            let answer = admin::delete_topics::handle(ctx, body).await;
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::DeleteRecords(body) => {
            let answer = admin::delete_records::handle(ctx, body).await;
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::DescribeConfigs(body) => {
            let answer = admin::describe_configs::handle(ctx, body, version);
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::AlterConfigs(body) => {
            let answer = admin::alter_configs::handle(ctx, body).await;
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::CreatePartitions(body) => {
            let answer = admin::create_partitions::handle(ctx, body).await;
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::IncrementalAlterConfigs(body) => {
            let answer = admin::incremental_alter_configs::handle(ctx, body).await;
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::InitProducerId(body) => {
            let answer = init_producer_id::handle(ctx.log(), body).await;
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::DescribeCluster(body) => {
            let answer = admin::describe_cluster::handle(body, version, ctx.advertised(conn.local));
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::DeleteGroups(body) => {
            let answer = group::delete_groups::handle(&ctx.groups, body).await;
            response::encode(out, api, version, correlation_id, &answer)?
        }
        Body::OffsetForLeaderEpoch(body) => {
            let answer = group::offset_for_leader_epoch::handle(ctx.log(), body);
            response::encode(out, api, version, correlation_id, &answer)?
        }
        // Before authentication the connection's SASL session answers these; here the
        // connection is already authenticated or SASL is off, and Kafka answers the same.
        Body::SaslHandshake(_) | Body::SaslAuthenticate(_) => {
            let message = "SASL request on a connection that is already authenticated or \
                           has SASL disabled";
            match sasl::illegal_state(api, message) {
                sasl::Illegal::Handshake(a) => {
                    response::encode(out, api, version, correlation_id, &a)?
                }
                sasl::Illegal::Authenticate(a) => {
                    response::encode(out, api, version, correlation_id, &a)?
                }
            }
        }
    }
    Ok(Reply::Send)
}
