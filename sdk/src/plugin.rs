//! The trait a plugin implements. [`export_plugin!`](crate::export_plugin) turns an
//! implementation into the ABI exports.

use alloc::string::String;

use crate::config::Config;
use crate::record::{Batch, Output};

/// A Headwater plugin.
///
/// One instance lives in one WebAssembly instance: the broker calls `init` once, then `process`
/// for every batch, one call at a time. State kept in `self` survives between batches, until the
/// broker restarts the instance after a failure (trap, timeout, bad output), which calls `init`
/// again on a fresh instance. (`Send` only because the state lives in a static; a plugin never
/// runs on two threads.)
pub trait Plugin: Sized + Send + 'static {
    /// Builds the plugin from its config; an `Err` message refuses the config and stops the
    /// broker from starting with it.
    fn init(config: &Config) -> Result<Self, String>;

    /// Turns a batch into the records to keep plus per-record errors. The output may borrow
    /// from the batch (passing records through copies nothing).
    fn process<'a>(&mut self, batch: Batch<'a>) -> Output<'a>;
}
