//! Write Headwater plugins in Rust.
//!
//! A Headwater plugin is a core WebAssembly module that the broker calls with a batch of
//! records and that answers with the records to keep. This crate holds the one definition of
//! that contract (ABI version 1, described in `ABI.md` next to this crate) for both sides: the
//! broker encodes batches with the same types a plugin decodes them with.
//!
//! A plugin implements [`Plugin`] and calls [`export_plugin!`] once:
//!
//! ```
//! use headwater_sdk::{Batch, Config, Output, Plugin};
//!
//! /// Drops records with an empty value.
//! struct NonEmpty;
//!
//! impl Plugin for NonEmpty {
//!     fn init(config: &Config) -> Result<Self, String> {
//!         config.deny_unknown(&[])?;
//!         Ok(NonEmpty)
//!     }
//!
//!     fn process<'a>(&mut self, batch: Batch<'a>) -> Output<'a> {
//!         batch.filter(|r| !r.value_bytes().is_empty())
//!     }
//! }
//!
//! headwater_sdk::export_plugin!(NonEmpty);
//! ```
//!
//! Build it as a `cdylib` for `wasm32-unknown-unknown`. The macro generates the exports
//! (`hw_alloc`, `hw_init`, `hw_process`) and the `headwater:abi` custom section, so the plugin
//! itself needs no `unsafe` code. Log through [`log`]; the module imports nothing else (no WASI).
//!
//! The crate is `no_std` (with `alloc`) so the same types serve small `no_std` guests and the
//! broker; feature `std` adds a panic hook that forwards panic messages to the broker's log.

#![no_std]

extern crate alloc;

pub mod abi;
pub mod config;
mod encode;
mod fast;
mod guest;
mod kept;
pub mod log;
mod plugin;
pub mod record;
mod stateful;
pub mod wire;

pub use config::{Config, ConfigError, Value};
/// The CBOR crate the SDK speaks, for [`Aggregate::State`] types (`#[derive(Encode, Decode)]`
/// needs its `derive` feature in the plugin's own `minicbor` dependency of the same version).
pub use minicbor;
pub use minicbor::decode::Error as DecodeError;
pub use plugin::Plugin;
pub use record::{Batch, DecodedOutput, Header, OutEntry, OutRecord, Output, Record, RecordError};
pub use stateful::{Aggregate, Stateful};

/// Used by [`export_plugin!`]; not a stable API.
#[doc(hidden)]
pub mod __rt {
    pub use crate::guest::{Slot, State};
}

#[cfg(test)]
mod proptests;
