//! Per-plugin figures as `/metrics` shows them.

use super::hostile::{keep_one, load, Wat};
use super::*;
use crate::log::{Log, LogOptions};
use crate::metrics::{render, MetricSources};

fn value_of(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line_start} missing from:\n{text}"))
}

#[tokio::test]
async fn metrics_show_each_plugins_calls_records_and_batch_times() {
    let dir = tempfile::tempdir().unwrap();
    let keeps_one = write_module(dir.path(), "one", &Wat::returning(&keep_one("x")).build());
    let traps = write_module(dir.path(), "trap", &Wat::new("unreachable").build());
    let plugins = load(vec![
        section("filter", &keeps_one, &["a"]),
        section("broken", &traps, &["b"]),
    ]);
    run(&plugins, "a", &["1", "2", "3"]).await;
    run(&plugins, "a", &["4"]).await;
    run(&plugins, "b", &["5", "6"]).await;

    let log = Log::open(&LogOptions::for_tests(&dir.path().join("log"), 64 << 20)).unwrap();
    let text = render(&MetricSources {
        log: log.clone(),
        upstream_lag: None,
        plugins: plugins.plugins().to_vec(),
        mqtt: None,
    });
    let filter = r#"{plugin="filter",attach="ingest"}"#;
    let broken = r#"{plugin="broken",attach="ingest"}"#;
    let get = |name: &str, labels: &str| value_of(&text, &format!("headwater_{name}{labels}"));
    assert_eq!(get("plugin_calls_total", filter), 2.0);
    assert_eq!(get("plugin_records_in_total", filter), 4.0);
    assert_eq!(get("plugin_records_out_total", filter), 2.0);
    assert_eq!(get("plugin_records_dropped_total", filter), 2.0);
    assert_eq!(get("plugin_records_failed_total", filter), 0.0);
    assert_eq!(get("plugin_failed_batches_total", broken), 1.0);
    assert_eq!(get("plugin_records_failed_total", broken), 2.0);
    assert_eq!(get("plugin_records_dropped_total", broken), 0.0);
    assert_eq!(get("plugin_disabled", broken), 0.0);
    assert_eq!(get("plugin_batch_seconds_count", filter), 2.0);
    let inf = r#"{le="+Inf",plugin="filter",attach="ingest"}"#;
    assert_eq!(get("plugin_batch_seconds_bucket", inf), 2.0);
    assert!(get("plugin_batch_seconds_sum", filter) > 0.0);
    // One declaration per family, however many plugins.
    assert_eq!(
        text.matches("# TYPE headwater_plugin_calls counter")
            .count(),
        1,
        "{text}"
    );
    log.close().await;
}
