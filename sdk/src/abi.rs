//! The names and numbers of ABI version 1: the contract between the broker and a plugin module.
//!
//! `sdk/ABI.md` is the prose version of this file; both change together, and any change that an
//! old plugin or an old broker could notice needs a new [`ABI_VERSION`].

/// The ABI version this crate implements and the broker accepts.
pub const ABI_VERSION: u32 = 1;

/// Custom section that declares the ABI version: exactly four bytes, the version as a
/// little-endian `u32`. The broker reads it before compiling the module.
pub const ABI_SECTION: &str = "headwater:abi";

/// Exported linear memory; the only memory the host reads or writes.
pub const EXPORT_MEMORY: &str = "memory";
/// `hw_alloc(len: i32) -> i32`: a buffer of `len` bytes for the host to write the next input
/// into, or 0 if the guest cannot allocate it.
pub const EXPORT_ALLOC: &str = "hw_alloc";
/// `hw_init(ptr: i32, len: i32) -> i64`: the plugin config (CBOR map) is at `ptr..ptr+len`.
/// Returns 0 on success, else a packed pointer/length of a UTF-8 error message.
pub const EXPORT_INIT: &str = "hw_init";
/// `hw_process(ptr: i32, len: i32) -> i64`: a CBOR batch is at `ptr..ptr+len`. Returns the packed
/// pointer/length of the CBOR output.
pub const EXPORT_PROCESS: &str = "hw_process";

/// Module of the only import a plugin may have.
pub const IMPORT_MODULE: &str = "headwater";
/// `log(level: i32, ptr: i32, len: i32)`: a UTF-8 message for the broker's log.
pub const IMPORT_LOG: &str = "log";

/// Packs a guest pointer and length into the `i64` (as `u64`) that `hw_init`/`hw_process`
/// return: pointer in the high 32 bits, length in the low 32 bits.
pub const fn pack(ptr: u32, len: u32) -> u64 {
    ((ptr as u64) << 32) | len as u64
}

/// The inverse of [`pack`]: `(ptr, len)`.
pub const fn unpack(packed: u64) -> (u32, u32) {
    ((packed >> 32) as u32, packed as u32)
}

/// Severity of a message sent through the `log` import. Values outside 0..=4 are logged as trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

impl Level {
    /// The level of a raw value received from a guest.
    pub fn from_raw(raw: i32) -> Level {
        match raw {
            0 => Level::Error,
            1 => Level::Warn,
            2 => Level::Info,
            3 => Level::Debug,
            _ => Level::Trace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_the_full_u32_range() {
        for (p, l) in [(0, 0), (1, 2), (u32::MAX, 7), (0x8000_0000, u32::MAX)] {
            assert_eq!(unpack(pack(p, l)), (p, l));
        }
    }
}
