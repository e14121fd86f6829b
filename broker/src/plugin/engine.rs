//! The one wasmtime [`Engine`] shared by every plugin, and the ticker that bounds CPU time.
//!
//! CPU is bounded by epoch interruption rather than fuel: compiled code only checks a counter at
//! function entries and loop back-edges (cheap), and a background thread advances the counter
//! every [`EPOCH_TICK`]. Each call sets its deadline in ticks, so a plugin stuck in a loop traps
//! within one tick after its timeout. Fuel would count instructions exactly, but costs more per
//! instruction and does not bound wall-clock time spent in host calls anyway.

use std::time::Duration;

use wasmtime::{Config, Engine};

use super::PluginError;

/// How often the epoch advances: the resolution of plugin timeouts.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine plus its ticker thread. The thread holds only a weak reference and stops once the
/// engine (held by this value and by every compiled module and store) is gone.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
}

impl PluginEngine {
    pub fn new() -> Result<PluginEngine, PluginError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // ABI v1 pointers are 32-bit (also wasmtime's default, stated here because it matters).
        config.wasm_memory64(false);
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
