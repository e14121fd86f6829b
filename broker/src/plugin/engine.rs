//! The one wasmtime [`Engine`] shared by every plugin, and the ticker that bounds CPU time.
//!
//! CPU is bounded by epoch interruption rather than fuel: compiled code only checks a counter at
//! function entries and loop back-edges (cheap), and a background thread advances the counter
//! every [`EPOCH_TICK`]. Each call sets its deadline in ticks, so a plugin stuck in a loop traps
//! within one tick after its timeout. Fuel would count instructions exactly, but costs more per
//! instruction and does not bound wall-clock time spent in host calls anyway.
//!
//! The checks are not free: json-range through the runner took 313 ns per record without epoch
//! interruption against 391–396 with it (tests/benches/plugins.rs, an experiment build). Guests
//! that make fewer calls pay fewer entry checks, hence the example plugins' inlining flag
//! (plugins/.cargo/config.toml).

use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits::{MAX_TABLES, MAX_TABLE_ELEMENTS};
use super::PluginError;
use crate::config::PluginSection;

/// Most stack a guest may use in one call.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// How often the epoch advances: the resolution of plugin timeouts.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Pool slots per plugin instance: the live one and the one a reload is starting (a plugin
/// reloads one at a time); plus one spare per plugin.
const SLOTS_PER_INSTANCE: u32 = 2;
/// The most instances a plugin may have (`instances`; checked with a clear message when the
/// plugin loads, after the pool is sized with this bound).
pub const MAX_INSTANCES: u32 = 64;
/// Pages of a slot's memory kept mapped between instances: a Rust guest touches a few pages
/// around its 1 MiB stack top (stack, data, heap); more would only be reset for nothing.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;
/// The most a 32-bit linear memory can hold (saturating on a 32-bit host).
const MAX_32_BIT_MEMORY: usize = if usize::BITS > 32 {
    u32::MAX as usize + 1
} else {
    usize::MAX
};

/// The engine plus its ticker thread. The thread holds only a weak reference and stops once the
/// engine (held by this value and by every compiled module and store) is gone.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
}

impl PluginEngine {
    /// An engine that allocates each instance's memory when it starts.
    pub fn new() -> Result<PluginEngine, PluginError> {
        PluginEngine::with_config(Self::config())
    }

    /// An engine for the plugins of `sections`: instances come from a pool sized for them
    /// (see [`PluginEngine::pooled`]).
    pub fn for_plugins(sections: &[PluginSection]) -> Result<PluginEngine, PluginError> {
        let max_memory = sections.iter().map(|s| s.max_memory_bytes).max();
        let max_memory = usize::try_from(max_memory.unwrap_or(0)).unwrap_or(usize::MAX);
        let slots = sections.iter().fold(0u32, |slots, s| {
            let per_plugin = s.instances.clamp(1, MAX_INSTANCES) * SLOTS_PER_INSTANCE + 1;
            slots.saturating_add(per_plugin)
        });
        PluginEngine::pooled(slots, max_memory)
    }

    /// An engine whose instances come from a pool of `slots` slots of up to
    /// `max_memory_bytes` of linear memory each. A slot keeps the pages its last instance
    /// touched, and the kernel's pagemap scan (Linux 6.7+) finds the few it dirtied, so a fresh
    /// instance (after a failed batch) starts without page faults or clearing its memory:
    /// ~12 us instead of ~30 here. Where the scan is missing, resetting kept pages would cost
    /// more than it saves, so the engine allocates on demand instead.
    pub fn pooled(slots: u32, max_memory_bytes: usize) -> Result<PluginEngine, PluginError> {
        if !PoolingAllocationConfig::is_pagemap_scan_available() {
            tracing::info!("no pagemap scan in this kernel: plugin instances allocated on demand");
            return PluginEngine::new();
        }
        let mut pool = PoolingAllocationConfig::new();
        let tables = MAX_TABLES as u32;
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots.saturating_mul(tables))
            .total_component_instances(0)
            .max_memories_per_module(1)
            .max_tables_per_module(tables)
            .table_elements(MAX_TABLE_ELEMENTS)
            // Whatever a plugin's cap says, its memory cannot grow past 4 GiB.
            .max_memory_size(max_memory_bytes.min(MAX_32_BIT_MEMORY))
            .pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(64 << 10);
        let mut config = Self::config();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        PluginEngine::with_config(config)
    }

    fn config() -> Config {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // A guest may now run on a runtime worker's stack, below the caller's own frames (see
        // `turns`), not only near the top of its plugin thread: its stack is capped explicitly
        // (wasmtime's default, stated because the broker sizes its threads' stacks from it:
        // `cli::RUNTIME_STACK`), so deep recursion traps instead of reaching a guard page.
        config.max_wasm_stack(MAX_WASM_STACK);
        // ABI v1 pointers are 32-bit (also wasmtime's default, stated here because it matters).
        config.wasm_memory64(false);
        config
    }

    fn with_config(config: Config) -> Result<PluginEngine, PluginError> {
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(PluginEngine { engine })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Epoch ticks to allow for a call that may take `timeout_ms`. The current tick may be about
    /// to end, hence one extra: a call gets between `timeout_ms` and one tick more.
    pub fn deadline_ticks(timeout_ms: u64) -> u64 {
        let tick = EPOCH_TICK.as_millis() as u64;
        timeout_ms.div_ceil(tick).max(1) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_and_add_a_tick() {
        assert_eq!(PluginEngine::deadline_ticks(100), 11);
        assert_eq!(PluginEngine::deadline_ticks(101), 12);
        assert_eq!(PluginEngine::deadline_ticks(1), 2);
    }
}
