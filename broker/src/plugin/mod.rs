//! The WebAssembly plugin host (DESIGN.md §4).
//!
//! A plugin is a core WebAssembly module speaking ABI v1 (`sdk/ABI.md`; the types live in
//! `headwater-sdk`, shared with the guests). The host is built from small parts:
//! - `abi`: the version in the `headwater:abi` section is checked before compiling, the
//!   imports and exports after;
//! - `engine`: one wasmtime engine with epoch interruption, advanced by a ticker thread, which
//!   bounds the CPU time of every call;
//! - `linker` and `limits`: the only import (`headwater.log`) and the memory cap;
//! - `instance`: one store per live instance, bounds-checked copies in and out of its memory;
//! - `runner`: a worker per plugin instance (an actor owning it; `instances` of them, each batch
//!   to the least busy) with the failure policy (dead letters, restart after a trap, disable
//!   after repeated failures) and module swaps between batches (hot reload); `turns`: who runs
//!   a worker, its own thread or a waiting caller when free;
//! - `stats`: the counters behind the per-plugin metrics;
//! - `chain`: the plugins of a topic in config order, for ingest and for upstream.
//!
//! The sandbox promise: a plugin sees only the batches it is given. It has no WASI, no files, no
//! network, a memory cap, and a deadline per call; whatever it does (loop, trap, exhaust memory,
//! return garbage) fails that batch only, and the records of a failed batch go to the plugin's
//! dead-letter topic instead of being lost.

mod abi;
mod chain;
mod convert;
mod dead_letter;
mod engine;
mod held_state;
mod instance;
mod limits;
mod linker;
mod runner;
mod stats;
mod turns;

#[cfg(test)]
mod tests;

pub use chain::{
    load, ChainOutput, HeldChanges, IngestPlugins, PluginStates, Turn, UpstreamPlugins,
};
pub use convert::SourceBatch;
pub use dead_letter::{
    HEADER_ERROR, HEADER_PLUGIN, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION, HEADER_SOURCE_TOPIC,
};
pub use engine::{PluginEngine, EPOCH_TICK, MAX_WASM_STACK};
pub use runner::{measure_starts, Plugin, StartCost};
pub use stats::{PluginStats, StatsSnapshot, BATCH_SECONDS_BUCKETS};

/// Loading a plugin failed, or (rarely) the host itself did.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {plugin}: cannot read module {path}: {source}")]
    Read {
        plugin: String,
        path: String,
        source: std::io::Error,
    },
    #[error("plugin {plugin}: module {path} {reason}")]
    Module {
        plugin: String,
        path: String,
        reason: String,
    },
    #[error("plugin {plugin}: {reason}")]
    Invalid { plugin: String, reason: String },
    #[error("plugin {plugin}: {reason}")]
    Start { plugin: String, reason: String },
    #[error("plugin {plugin}: its worker thread stopped")]
    Stopped { plugin: String },
    #[error("plugin engine: {0}")]
    Engine(String),
    #[error("reading the ingest plugins' stored states: {0}")]
    StoredStates(crate::log::LogError),
}
