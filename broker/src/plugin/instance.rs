//! One live instance of a plugin module: its own [`Store`] (so dropping it frees everything the
//! guest did), the ABI exports, and the two calls the broker makes.
//!
//! Every value the guest hands back is untrusted: the pointer from `hw_alloc`, the packed
//! pointer/length from `hw_init`/`hw_process`. They are bounds-checked against the current
//! memory size and the output cap before anything is allocated or copied, and memory is only
//! touched through `Memory::write` and bounds-checked slices of `Memory::data`.

use std::sync::Arc;

use headwater_sdk::abi;
use wasmtime::{InstancePre, Memory, Store, Trap, TypedFunc};

use super::engine::PluginEngine;
use super::linker::HostState;

/// Largest output read back from a plugin, whatever its memory cap.
pub(crate) const MAX_OUTPUT_BYTES: usize = 64 * 1024 * 1024;
/// Longest init error message read back.
const MAX_INIT_MESSAGE_BYTES: usize = 4096;
/// Instantiation and `hw_init` may take longer than a batch (tables, lookups), but not forever.
const MIN_INIT_TIMEOUT_MS: u64 = 1000;

/// What bounds one instance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub timeout_ms: u64,
    pub max_memory_bytes: usize,
}

/// Why a call into the plugin failed. All of these fail the batch (never the broker).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("reached its memory cap of {cap} bytes, then {trap}")]
    MemoryCap { cap: usize, trap: String },
    /// Wasmtime's trap message ("wasm trap: ...").
    #[error("{0}")]
    Trap(String),
    #[error("bad output: {0}")]
    BadOutput(String),
    #[error("failed the batch: {0}")]
    Failed(String),
    #[error("cannot start an instance: {0}")]
    Start(String),
    #[error("refused its config: {0}")]
    InitRefused(String),
    /// The broker could not hand the batch over; the guest did not run on it.
    #[error("the broker could not pass the batch: {0}")]
    Host(String),
}

/// The two exports that take an input.
#[derive(Clone, Copy)]
enum Export {
    Init,
    Process,
}

pub(crate) struct Instance {
    store: Store<HostState>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    init: TypedFunc<(i32, i32), i64>,
    process: TypedFunc<(i32, i32), i64>,
    settings: Settings,
}

impl Instance {
    /// Instantiates the module and runs `hw_init` with the CBOR config.
    pub fn start(
        pre: &InstancePre<HostState>,
        plugin: Arc<str>,
        settings: Settings,
        config: &[u8],
    ) -> Result<Instance, CallError> {
        let mut instance = Instance::instantiate(pre, plugin, settings)?;
        instance.init(config)?;
        Ok(instance)
    }

    /// The first half of [`Instance::start`]: a fresh instance, not initialised yet.
    pub fn instantiate(
        pre: &InstancePre<HostState>,
        plugin: Arc<str>,
        settings: Settings,
    ) -> Result<Instance, CallError> {
        let engine = pre.module().engine();
        let mut store = Store::new(engine, HostState::new(plugin, settings.max_memory_bytes));
        store.limiter(|s| &mut s.limiter);
        let init_timeout = settings.timeout_ms.max(MIN_INIT_TIMEOUT_MS);
        store.set_epoch_deadline(PluginEngine::deadline_ticks(init_timeout));
        let instance = pre.instantiate(&mut store).map_err(|e| {
            if store.data().limiter.refused {
                CallError::Start(format!(
                    "its initial memory exceeds the cap of {} bytes",
                    settings.max_memory_bytes
                ))
            } else {
                CallError::Start(format!("{e:#}"))
            }
        })?;
        let start_err = |e: wasmtime::Error| CallError::Start(format!("{e:#}"));
        let memory = instance
            .get_memory(&mut store, abi::EXPORT_MEMORY)
            .ok_or_else(|| CallError::Start("no memory export".into()))?;
        let alloc = instance
            .get_typed_func(&mut store, abi::EXPORT_ALLOC)
            .map_err(start_err)?;
        let init = instance
            .get_typed_func(&mut store, abi::EXPORT_INIT)
            .map_err(start_err)?;
        let process = instance
            .get_typed_func(&mut store, abi::EXPORT_PROCESS)
            .map_err(start_err)?;
        Ok(Instance {
            store,
            memory,
            alloc,
            init,
            process,
            settings,
        })
    }

    /// The second half of [`Instance::start`]: `hw_init` with the CBOR config.
    pub fn init(&mut self, config: &[u8]) -> Result<(), CallError> {
        let init_timeout = self.settings.timeout_ms.max(MIN_INIT_TIMEOUT_MS);
        let copy = |buf: &mut [u8]| {
            buf.copy_from_slice(config);
            true
        };
        let packed = self.call(Export::Init, config.len(), copy, init_timeout)?;
        if packed != 0 {
            let message = self.read(packed, MAX_INIT_MESSAGE_BYTES)?;
            return Err(CallError::InitRefused(
                String::from_utf8_lossy(&message).into_owned(),
            ));
        }
        Ok(())
    }

    /// Current size of the instance's linear memory.
    pub fn memory_size(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    /// Runs `hw_process` on a batch of `len` bytes, which `write` puts into the guest's input
    /// buffer (false: it could not, see [`Instance::call`]), and returns a copy of the encoded
    /// output.
    pub fn process(
        &mut self,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> bool,
    ) -> Result<Vec<u8>, CallError> {
        let packed = self.call(Export::Process, len, write, self.settings.timeout_ms)?;
        let cap = MAX_OUTPUT_BYTES.min(self.settings.max_memory_bytes);
        self.read(packed, cap)
    }

    /// Has `write` fill a guest buffer of `len` bytes and calls `func` on it, within
    /// `timeout_ms`. Writing in place spares a copy of every batch; `write` returning false
    /// (the input did not fill the buffer exactly) fails the call.
    fn call(
        &mut self,
        export: Export,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> bool,
        timeout_ms: u64,
    ) -> Result<u64, CallError> {
        self.store.data_mut().begin_call();
        self.store
            .set_epoch_deadline(PluginEngine::deadline_ticks(timeout_ms));
        let len = u32::try_from(len)
            .map_err(|_| CallError::Host(format!("input of {len} bytes is too large")))?;
        // Pointers and lengths cross as i32 but are unsigned 32-bit values.
        let ptr = self
            .alloc
            .call(&mut self.store, len as i32)
            .map_err(|e| self.classify(e, timeout_ms))? as u32;
        if ptr == 0 && len > 0 {
            return Err(self.alloc_failed(len));
        }
        let start = ptr as usize;
        let end = start.checked_add(len as usize);
        let memory = self.memory.data_mut(&mut self.store);
        let buf = end.and_then(|end| memory.get_mut(start..end));
        let buf = buf.ok_or_else(|| {
            CallError::BadOutput(format!(
                "hw_alloc returned {ptr:#x}, but {len} bytes there lie outside its memory"
            ))
        })?;
        if !write(buf) {
            return Err(CallError::Host(format!(
                "its encoding did not take the {len} bytes computed for it (a broker bug)"
            )));
        }
        // The deadline bounds the guest's call alone (ABI.md), not the encoding before it.
        self.store
            .set_epoch_deadline(PluginEngine::deadline_ticks(timeout_ms));
        // Borrowed, not cloned: cloning a `TypedFunc` takes its type's registry reference.
        let func = match export {
            Export::Init => &self.init,
            Export::Process => &self.process,
        };
        let result = func.call(&mut self.store, (ptr as i32, len as i32));
        self.report_dropped_logs();
        result
            .map(|packed| packed as u64)
            .map_err(|e| self.classify(e, timeout_ms))
    }

    /// Copies out the `(ptr, len)` packed in `packed`, refusing anything out of bounds or
    /// longer than `cap`.
    fn read(&mut self, packed: u64, cap: usize) -> Result<Vec<u8>, CallError> {
        let (ptr, len) = abi::unpack(packed);
        let (ptr, len) = (ptr as usize, len as usize);
        if len > cap {
            return Err(CallError::BadOutput(format!(
                "output of {len} bytes exceeds the limit of {cap} bytes"
            )));
        }
        let size = self.memory.data_size(&self.store);
        if ptr.checked_add(len).is_none_or(|end| end > size) {
            return Err(CallError::BadOutput(format!(
                "output at {ptr:#x} ({len} bytes) lies outside the plugin's {size}-byte memory"
            )));
        }
        // In bounds (checked above); copied without zeroing a buffer first.
        Ok(self.memory.data(&self.store)[ptr..ptr + len].to_vec())
    }

    fn alloc_failed(&self, len: u32) -> CallError {
        let cap = self.settings.max_memory_bytes;
        if self.store.data().limiter.refused {
            CallError::MemoryCap {
                cap,
                trap: format!("hw_alloc could not allocate {len} bytes for the input"),
            }
        } else {
            CallError::Failed(format!(
                "hw_alloc could not allocate {len} bytes for the input"
            ))
        }
    }

    /// Maps a wasmtime error (not a `std::error::Error`) to what the operator should read.
    fn classify(&self, e: wasmtime::Error, timeout_ms: u64) -> CallError {
        let refused = self.store.data().limiter.refused;
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::Timeout(timeout_ms),
            Some(trap) if refused => CallError::MemoryCap {
                cap: self.settings.max_memory_bytes,
                trap: trap.to_string(),
            },
            Some(trap) => CallError::Trap(trap.to_string()),
            None => CallError::Trap(format!("wasm error: {e:#}")),
        }
    }

    fn report_dropped_logs(&self) {
        let state = self.store.data();
        if state.logs_dropped > 0 {
            tracing::warn!(
                plugin = &*state.plugin,
                dropped = state.logs_dropped,
                "plugin log messages dropped (at most {} per call, unreadable ones skipped)",
                super::linker::MAX_LOGS_PER_CALL
            );
        }
    }
}
