//! Bench knobs: `HW_BENCH_SCALE`, one knob that makes every bench run longer or shorter, and
//! the per-bench part selectors (`HW_KAFKA_BENCH`, `HW_MQTT_BENCH`, `HW_PLUGIN_BENCH`).

/// `n` times `HW_BENCH_SCALE` (default 1.0), at least 1.
pub fn scale(n: usize) -> usize {
    let s: f64 = std::env::var("HW_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    ((n as f64) * s).max(1.0) as usize
}

/// Whether the comma-separated list in environment variable `var` (default: everything) names
/// `part`: how each bench runs only some of its parts.
pub fn wanted(var: &str, part: &str) -> bool {
    std::env::var(var).map_or(true, |v| v.split(',').any(|p| p.trim() == part))
}
