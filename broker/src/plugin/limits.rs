//! The memory cap of one instance, as a wasmtime [`ResourceLimiter`].
//!
//! A `memory.grow` past the cap is refused the standard way (the instruction returns -1), so a
//! well-behaved plugin can handle it; a Rust plugin aborts, which traps. Either way the broker's
//! memory is safe. The limiter remembers that it refused, so the error reported for the batch can
//! say "memory cap reached" instead of only "unreachable executed".

use wasmtime::{ResourceLimiter, Result};

/// Tables are sized in elements (a pointer each); this many is far more than any plugin needs.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Tables per module (instances, memories: one each).
pub(crate) const MAX_TABLES: usize = 4;

pub(crate) struct MemoryCap {
    /// Most bytes of linear memory the instance may have.
    pub max_bytes: usize,
    /// Set when a grow was refused; cleared by the caller before each call.
    pub refused: bool,
}

impl MemoryCap {
    pub fn new(max_bytes: usize) -> MemoryCap {
        MemoryCap {
            max_bytes,
            refused: false,
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool> {
        let allow = desired <= self.max_bytes && maximum.is_none_or(|m| desired <= m);
        self.refused |= !allow;
        Ok(allow)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|m| desired <= m))
    }

    // One module per store: one instance, one memory (the ABI's), a few tables.
    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}
