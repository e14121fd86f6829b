//! Admin API for plugins: list them with their counters, and reload one's module in place.
//!
//! A reload reads the module again from the path in the config: the API never accepts module
//! bytes, so it can only swap in what the operator put on the gateway's disk.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use crate::config::Attach;
use crate::metrics::MetricSources;
use crate::plugin::Plugin;

#[derive(Serialize)]
pub struct PluginInfo {
    name: String,
    attach: &'static str,
    module: String,
    topics: Vec<String>,
    dead_letter_topic: String,
    disabled: bool,
    calls: u64,
    failed_batches: u64,
    records_in: u64,
    records_out: u64,
    records_dropped: u64,
    records_failed: u64,
    busy_seconds: f64,
    restarts: u64,
    reloads: u64,
}

impl PluginInfo {
    fn of(plugin: &Plugin) -> PluginInfo {
        let s = plugin.stats().snapshot();
        PluginInfo {
            name: plugin.name().to_string(),
            attach: match plugin.attach() {
                Attach::Ingest => "ingest",
                Attach::Upstream => "upstream",
            },
            module: plugin.module_path().display().to_string(),
            topics: plugin.topics().to_vec(),
            dead_letter_topic: plugin.dead_letter_topic().to_string(),
            disabled: s.disabled,
            calls: s.calls,
            failed_batches: s.failed_batches,
            records_in: s.records_in,
            records_out: s.records_out,
            records_dropped: s.records_dropped,
            records_failed: s.records_failed,
            busy_seconds: s.busy_nanos as f64 / 1e9,
            restarts: s.restarts,
            reloads: s.reloads,
        }
    }
}

pub async fn list(State(sources): State<MetricSources>) -> Json<Vec<PluginInfo>> {
    Json(sources.plugins.iter().map(|p| PluginInfo::of(p)).collect())
}

#[derive(Serialize)]
pub struct ReloadAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    reloaded: Option<PluginInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `POST /plugins/{name}/reload`: 200 with the plugin once the new module serves; 404 for an
/// unknown name; 422 with the reason when the new module does not load (the old one keeps
/// running).
pub async fn reload(
    State(sources): State<MetricSources>,
    Path(name): Path<String>,
) -> (StatusCode, Json<ReloadAnswer>) {
    let answer = |status, reloaded, error| (status, Json(ReloadAnswer { reloaded, error }));
    let Some(plugin) = sources.plugins.iter().find(|p| p.name() == name) else {
        let error = format!("no plugin named {name:?}");
        return answer(StatusCode::NOT_FOUND, None, Some(error));
    };
    match plugin.reload().await {
        Ok(()) => answer(StatusCode::OK, Some(PluginInfo::of(plugin)), None),
        Err(e) => {
            tracing::warn!(plugin = %name, error = %e, "plugin reload refused; the running module stays");
            answer(StatusCode::UNPROCESSABLE_ENTITY, None, Some(e.to_string()))
        }
    }
}
