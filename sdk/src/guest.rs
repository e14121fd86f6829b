//! The guest side of the ABI, generated into a plugin by [`export_plugin!`](crate::export_plugin).
//!
//! Buffer ownership (see `ABI.md`): `hw_alloc` hands out the guest's *input* buffer, which the
//! guest keeps and reuses; the host writes one input into it and passes it back to `hw_init` or
//! `hw_process`. The *output* buffer also belongs to the guest and stays valid until the host
//! next calls into the guest, which is why the host copies it out right after the call. Nothing
//! is freed by the host, so the ABI needs no `free` export.
//!
//! The plugin value and both buffers live in one static [`State`]. A static needs `Sync`; the
//! [`Slot`] below provides it with a busy flag, so even a multi-threaded wasm build (which the
//! broker does not run) could not observe two calls inside the state at once.

use alloc::string::ToString;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::abi::pack;
use crate::config::Config;
use crate::kept::Inputs;
use crate::plugin::Plugin;
use crate::record::Output;
use crate::wire;

/// A value with exclusive access through a busy flag.
pub struct Slot<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `with` hands out `&mut T` only while it holds the busy flag, which it takes with an
// atomic swap, so at most one thread ever accesses the value; sending that access across threads
// needs `T: Send`.
unsafe impl<T: Send> Sync for Slot<T> {}

struct Release<'a>(&'a AtomicBool);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl<T> Slot<T> {
    pub const fn new(value: T) -> Slot<T> {
        Slot {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` with exclusive access, or returns `None` if a call is already inside (re-entry).
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if self.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        let _release = Release(&self.busy);
        // SAFETY: we hold the busy flag (set above, cleared when `_release` drops, even on
        // unwind), so no other reference to the value exists.
        let value = unsafe { &mut *self.value.get() };
        Some(f(value))
    }
}

struct Inner<P> {
    plugin: Option<P>,
    /// The buffer `hw_alloc` last returned; reused across calls, at its largest length.
    input: Vec<u8>,
    /// Bytes the last `hw_alloc` lent (0 once a call has taken them): the most the next
    /// `hw_init`/`hw_process` may pass, so stale bytes of an earlier batch are never read.
    lent: usize,
    /// The last output; valid until the next call into the guest.
    output: Vec<u8>,
    /// The identities of the current batch's records, to name kept ones by index.
    inputs: Inputs,
}

/// Everything a plugin module keeps between calls.
pub struct State<P> {
    inner: Slot<Inner<P>>,
}

/// The address of a guest buffer as the host sees it. Only meaningful on wasm32, where pointers
/// are 32 bits; the exports that use it are only generated there.
fn addr(p: *const u8) -> u32 {
    p as usize as u32
}

impl<P: Plugin> State<P> {
    pub const fn new() -> State<P> {
        State {
            inner: Slot::new(Inner {
                plugin: None,
                input: Vec::new(),
                lent: 0,
                output: Vec::new(),
                inputs: Inputs::new(),
            }),
        }
    }

    /// `hw_alloc`: 0 if the buffer cannot be allocated (the host then fails the batch).
    pub fn alloc(&self, len: u32) -> u32 {
        self.inner
            .with(|inner| {
                // The host overwrites the bytes it asked for, so the buffer keeps its largest
                // length between calls and only growth is zeroed (safe code cannot hand out
                // uninitialised bytes): no memset of the whole batch per call.
                let (len, have) = (len as usize, inner.input.len());
                if len > have {
                    if inner.input.try_reserve_exact(len - have).is_err() {
                        return 0;
                    }
                    inner.input.resize(len, 0);
                }
                inner.lent = len;
                addr(inner.input.as_ptr())
            })
            .unwrap_or(0)
    }

    /// `hw_init`: 0, or the packed location of an error message.
    pub fn init(&self, ptr: u32, len: u32) -> u64 {
        self.inner
            .with(|inner| match take_input(inner, ptr, len) {
                Ok((input, len)) => {
                    let result = init_from::<P>(inner, &input[..len]);
                    inner.input = input;
                    result
                }
                Err(message) => {
                    error_into(&mut inner.output, message);
                    location(&inner.output)
                }
            })
            // Re-entry cannot happen (the host never calls the guest from inside a call); if it
            // did, an unreadable location makes the host refuse the init instead of trusting it.
            .unwrap_or(u64::MAX)
    }

    /// `hw_process`: the packed location of the CBOR output.
    pub fn process(&self, ptr: u32, len: u32) -> u64 {
        self.inner
            .with(|inner| {
                match take_input(inner, ptr, len) {
                    Ok((input, len)) => {
                        process_from(inner, &input[..len]);
                        inner.input = input;
                    }
                    Err(message) => {
                        inner.output.clear();
                        wire::encode_output(&Output::failed(message), &mut inner.output);
                    }
                }
                location(&inner.output)
            })
            .unwrap_or(0)
    }

    /// Runs `hw_init` logic on a config without going through guest memory (tests).
    pub fn init_bytes(&self, config: &[u8]) -> Result<(), alloc::string::String> {
        self.inner
            .with(|inner| match init_from::<P>(inner, config) {
                0 => Ok(()),
                _ => Err(alloc::string::String::from_utf8_lossy(&inner.output).into_owned()),
            })
            .unwrap_or_else(|| Err("re-entrant call".to_string()))
    }

    /// Runs `hw_process` logic on an encoded batch without going through guest memory (tests).
    pub fn process_bytes(&self, batch: &[u8]) -> Vec<u8> {
        self.inner
            .with(|inner| {
                process_from(inner, batch);
                inner.output.clone()
            })
            .unwrap_or_default()
    }
}

impl<P: Plugin> Default for State<P> {
    fn default() -> Self {
        State::new()
    }
}

/// The input buffer and the length of the input in it, if `ptr`/`len` describe (a prefix of)
/// the buffer `hw_alloc` returned. The caller puts the buffer back for the next `hw_alloc`.
fn take_input<P>(
    inner: &mut Inner<P>,
    ptr: u32,
    len: u32,
) -> Result<(Vec<u8>, usize), &'static str> {
    let lent = core::mem::take(&mut inner.lent);
    if addr(inner.input.as_ptr()) != ptr || len as usize > lent {
        return Err("the host passed a buffer that hw_alloc did not return");
    }
    Ok((core::mem::take(&mut inner.input), len as usize))
}

fn location(buf: &[u8]) -> u64 {
    pack(addr(buf.as_ptr()), buf.len() as u32)
}

fn error_into(output: &mut Vec<u8>, message: &str) {
    output.clear();
    output.extend_from_slice(message.as_bytes());
}

fn init_from<P: Plugin>(inner: &mut Inner<P>, config: &[u8]) -> u64 {
    #[cfg(feature = "std")]
    install_panic_hook();
    let result = Config::from_cbor(config)
        .map_err(|e| alloc::format!("cannot decode the config: {e}"))
        .and_then(|c| P::init(&c));
    match result {
        Ok(plugin) => {
            inner.plugin = Some(plugin);
            0
        }
        Err(message) => {
            inner.plugin = None;
            let message = if message.is_empty() {
                "init failed"
            } else {
                &message
            };
            error_into(&mut inner.output, message);
            location(&inner.output)
        }
    }
}

fn process_from<P: Plugin>(inner: &mut Inner<P>, input: &[u8]) {
    inner.output.clear();
    let plugin = match &mut inner.plugin {
        Some(plugin) => plugin,
        None => {
            let failed = Output::failed("process called before a successful init");
            return wire::encode_output(&failed, &mut inner.output);
        }
    };
    match wire::decode_input_noting(input, &mut inner.inputs) {
        Err(e) => {
            let failed = Output::failed(alloc::format!("cannot decode the batch: {e}"));
            wire::encode_output(&failed, &mut inner.output);
        }
        Ok(input) if input.keeps_by_index => {
            let output = plugin.process(input.batch);
            wire::encode_output_keeping(&output, &mut inner.inputs, &mut inner.output);
        }
        Ok(input) => wire::encode_output(&plugin.process(input.batch), &mut inner.output),
    }
}

#[cfg(feature = "std")]
fn install_panic_hook() {
    extern crate std;
    std::panic::set_hook(std::boxed::Box::new(|info| {
        crate::log::error(&alloc::format!("plugin panicked: {info}"));
    }));
}

/// Generates a plugin module's exports and ABI section from a [`Plugin`] implementation:
///
/// ```ignore
/// struct Upper;
/// impl headwater_sdk::Plugin for Upper { /* init, process */ }
/// headwater_sdk::export_plugin!(Upper);
/// ```
///
/// The items are only generated when compiling for wasm32, so the same crate still builds (and
/// its logic can be unit-tested) on the build machine.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            static STATE: $crate::__rt::State<$plugin> = $crate::__rt::State::new();

            // The ABI version, read by the broker before it compiles the module. The section
            // name must equal `headwater_sdk::abi::ABI_SECTION` (attributes need a literal).
            #[unsafe(link_section = "headwater:abi")]
            #[used]
            static ABI_VERSION: [u8; 4] = $crate::abi::ABI_VERSION.to_le_bytes();

            #[unsafe(export_name = "hw_alloc")]
            extern "C" fn hw_alloc(len: u32) -> u32 {
                STATE.alloc(len)
            }

            #[unsafe(export_name = "hw_init")]
            extern "C" fn hw_init(ptr: u32, len: u32) -> u64 {
                STATE.init(ptr, len)
            }

            #[unsafe(export_name = "hw_process")]
            extern "C" fn hw_process(ptr: u32, len: u32) -> u64 {
                STATE.process(ptr, len)
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Batch, OutEntry, Record};
    use alloc::borrow::Cow;
    use alloc::string::String;
    use alloc::vec;

    /// Keeps records whose value is longer than `min_len`.
    struct MinLen {
        min_len: usize,
    }

    impl Plugin for MinLen {
        fn init(config: &Config) -> Result<Self, String> {
            config.deny_unknown(&["min_len"])?;
            let min_len = config.require_integer("min_len")?;
            Ok(MinLen {
                min_len: min_len as usize,
            })
        }

        fn process<'a>(&mut self, batch: Batch<'a>) -> Output<'a> {
            batch.filter(|r| r.value_bytes().len() > self.min_len)
        }
    }

    fn record(v: &[u8]) -> Record<'_> {
        Record {
            topic: Cow::Borrowed("t"),
            partition: Some(0),
            offset: Some(7),
            timestamp: 3,
            key: None,
            value: Some(Cow::Borrowed(v)),
            headers: vec![],
        }
    }

    #[test]
    fn state_runs_init_and_process_like_the_exports() {
        let state = State::<MinLen>::new();
        let mut batch = Vec::new();
        wire::encode_batch(
            &Batch::new(vec![record(b"ab"), record(b"abcd")]),
            &mut batch,
        );

        let out = state.process_bytes(&batch);
        let out = wire::decode_output(&out).unwrap();
        assert!(out.failure.unwrap().contains("before a successful init"));

        let mut bad = Config::new();
        bad.insert("min", crate::config::Value::Int(1));
        let err = state.init_bytes(&bad.to_cbor()).unwrap_err();
        assert!(err.contains("unknown config key `min`"), "{err}");

        let mut good = Config::new();
        good.insert("min_len", crate::config::Value::Int(3));
        state.init_bytes(&good.to_cbor()).unwrap();
        let out = state.process_bytes(&batch);
        let out = wire::decode_output(&out).unwrap();
        // Kept unchanged: named by its index in the batch.
        assert_eq!(out.entries, vec![OutEntry::Input(1)]);
        assert!(out.written.is_empty());
        let inputs = wire::decode_batch(&batch).unwrap().records;
        let out = out.resolve(&inputs).unwrap();
        assert_eq!(out.records[0].value.as_deref(), Some(&b"abcd"[..]));

        let out = state.process_bytes(b"\xff\x00");
        let out = wire::decode_output(&out).unwrap();
        assert!(out.failure.unwrap().contains("cannot decode the batch"));
    }

    #[test]
    fn an_input_is_taken_once_and_no_longer_than_lent() {
        let state = State::<MinLen>::new();
        let ptr = state.alloc(8);
        assert_ne!(ptr, 0);
        let take = |len| {
            state.inner.with(|inner| match take_input(inner, ptr, len) {
                // Given back, as a call does once it is done with it.
                Ok((input, len)) => {
                    inner.input = input;
                    Ok(len)
                }
                Err(e) => Err(e),
            })
        };
        assert_eq!(take(8), Some(Ok(8)));
        // Taken: a second call without `hw_alloc` would read the last batch again.
        assert!(take(8).unwrap().is_err());
        // The buffer keeps its 8 bytes, but only 4 were lent this time.
        assert_eq!(state.alloc(4), ptr);
        assert!(take(8).unwrap().is_err());
        assert_eq!(state.alloc(4), ptr);
        assert_eq!(take(4), Some(Ok(4)));
    }

    #[test]
    fn slot_refuses_reentry() {
        let slot = Slot::new(1);
        let inner = slot.with(|_| slot.with(|v| *v));
        assert_eq!(inner, Some(None));
        assert_eq!(slot.with(|v| *v), Some(1));
    }
}
