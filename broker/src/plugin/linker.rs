//! What a plugin can import: `headwater.log`, and nothing else.
//!
//! The log function reads the message with `Memory::read` (bounds-checked, never a raw pointer),
//! caps its length and the number of messages per call, and tags each line with the plugin's
//! name. A bad pointer drops the message rather than trapping: logging is best effort.

use std::sync::Arc;

use headwater_sdk::abi::{self, Level};
use wasmtime::{Caller, Engine, Extern, Linker};

use super::limits::MemoryCap;
use super::PluginError;

/// Longest message kept; the rest is cut.
pub(crate) const MAX_LOG_BYTES: usize = 4096;
/// Messages accepted per call into the plugin; further ones are counted and dropped.
pub(crate) const MAX_LOGS_PER_CALL: u32 = 64;

/// The data of one plugin store.
pub(crate) struct HostState {
    pub plugin: Arc<str>,
    pub limiter: MemoryCap,
    /// Messages the plugin may still log during the current call.
    pub logs_left: u32,
    /// Messages dropped during the current call (over budget or unreadable).
    pub logs_dropped: u32,
}

impl HostState {
    pub fn new(plugin: Arc<str>, max_memory_bytes: usize) -> HostState {
        HostState {
            plugin,
            limiter: MemoryCap::new(max_memory_bytes),
            logs_left: MAX_LOGS_PER_CALL,
            logs_dropped: 0,
        }
    }

    /// Resets the per-call budgets.
    pub fn begin_call(&mut self) {
        self.limiter.refused = false;
        self.logs_left = MAX_LOGS_PER_CALL;
        self.logs_dropped = 0;
    }
}

pub(crate) fn linker(engine: &Engine) -> Result<Linker<HostState>, PluginError> {
    let mut linker = Linker::new(engine);
    linker
        .func_wrap(abi::IMPORT_MODULE, abi::IMPORT_LOG, log)
        .map_err(|e| PluginError::Engine(format!("cannot define the log import: {e:#}")))?;
    Ok(linker)
}

fn log(mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) {
    let state = caller.data_mut();
    if state.logs_left == 0 {
        state.logs_dropped += 1;
        return;
    }
    state.logs_left -= 1;
    let Some(Extern::Memory(memory)) = caller.get_export(abi::EXPORT_MEMORY) else {
        caller.data_mut().logs_dropped += 1;
        return;
    };
    // Guest pointers and lengths are unsigned 32-bit values carried in i32s.
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let mut buf = vec![0u8; len.min(MAX_LOG_BYTES)];
    if memory.read(&caller, ptr, &mut buf).is_err() {
        caller.data_mut().logs_dropped += 1;
        return;
    }
    let message = String::from_utf8_lossy(&buf);
    let plugin = &*caller.data().plugin;
    match Level::from_raw(level) {
        Level::Error => tracing::error!(plugin, "{message}"),
        Level::Warn => tracing::warn!(plugin, "{message}"),
        Level::Info => tracing::info!(plugin, "{message}"),
        Level::Debug => tracing::debug!(plugin, "{message}"),
        Level::Trace => tracing::trace!(plugin, "{message}"),
    }
}
