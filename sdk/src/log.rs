//! Logging from a plugin through the host's `headwater.log` import.
//!
//! Messages land in the broker's log with the plugin's name attached. The host caps the length of
//! a message and the number of messages per call, so logging inside a hot loop costs the plugin
//! time but cannot flood the broker. Outside WebAssembly (unit tests of a plugin's logic on the
//! build machine) these functions do nothing.

pub use crate::abi::Level;

#[cfg(target_arch = "wasm32")]
mod host {
    #[link(wasm_import_module = "headwater")]
    unsafe extern "C" {
        #[link_name = "log"]
        pub fn log(level: i32, ptr: *const u8, len: usize);
    }
}

/// Sends `message` to the broker's log at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the host reads `len` bytes at `ptr` through its bounds-checked memory accessors
    // during the call and keeps no reference to them; the slice is valid for that long.
    unsafe {
        host::log(level as i32, message.as_ptr(), message.len())
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}

pub fn error(message: &str) {
    log(Level::Error, message)
}

pub fn warn(message: &str) {
    log(Level::Warn, message)
}

pub fn info(message: &str) {
    log(Level::Info, message)
}

pub fn debug(message: &str) {
    log(Level::Debug, message)
}
