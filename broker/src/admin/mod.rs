//! The HTTP side: `/healthz` (liveness), `/metrics` (Prometheus), and the admin API (JSON):
//! `/topics`, `/plugins`, `POST /plugins/{name}/reload`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{render, MetricSources};

mod plugins;

/// Serves HTTP on `listener` until `shutdown`.
pub async fn run(listener: TcpListener, sources: MetricSources, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/topics", get(topics))
        .route("/plugins", get(plugins::list))
        .route("/plugins/{name}/reload", post(plugins::reload))
        .with_state(sources);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "HTTP listener failed");
    }
}

async fn metrics(State(sources): State<MetricSources>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render(&sources),
    )
}

#[derive(Serialize)]
struct PartitionInfo {
    partition: u32,
    log_start_offset: i64,
    log_end_offset: i64,
    bytes: u64,
}

#[derive(Serialize)]
struct TopicInfo {
    name: String,
    partitions: Vec<PartitionInfo>,
}

async fn topics(State(sources): State<MetricSources>) -> Json<Vec<TopicInfo>> {
    Json(
        sources
            .log
            .topics()
            .iter()
            .map(|t| TopicInfo {
                name: t.name.to_string(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| {
                        let s = p.state();
                        PartitionInfo {
                            partition: p.index,
                            log_start_offset: s.log_start,
                            log_end_offset: s.next_offset,
                            bytes: s.bytes,
                        }
                    })
                    .collect(),
            })
            .collect(),
    )
}
