//! `HW_BENCH_SCALE`: one knob that makes every bench run longer or shorter.

/// `n` times `HW_BENCH_SCALE` (default 1.0), at least 1.
pub fn scale(n: usize) -> usize {
    let s: f64 = std::env::var("HW_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    ((n as f64) * s).max(1.0) as usize
}
