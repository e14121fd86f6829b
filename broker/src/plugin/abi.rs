//! Checks that a module speaks ABI v1 before the broker spends time compiling it or runs any of
//! its code.
//!
//! The version check reads the `headwater:abi` custom section with wasmparser, on the raw bytes:
//! a module built for another ABI version (or not for Headwater at all) is refused with a
//! message that says so, instead of failing later with a confusing missing-export or type error.
//! After compilation the imports and exports are checked against the ABI too, for the same
//! reason.

use headwater_sdk::abi;
use wasmparser::{Encoding, Parser, Payload};
use wasmtime::{ExternType, Module, ValType};

/// Refuses a module whose memory starts above `cap` bytes, before compiling it (a pooled engine
/// would refuse to compile it anyway, with a message about its pool).
pub(crate) fn check_initial_memory(bytes: &[u8], cap: usize) -> Result<(), String> {
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::MemorySection(memories) =
            payload.map_err(|e| format!("not a valid WebAssembly module: {e}"))?
        {
            for memory in memories {
                let memory = memory.map_err(|e| format!("not a valid WebAssembly module: {e}"))?;
                let initial = memory
                    .initial
                    .saturating_mul(1 << memory.page_size_log2.unwrap_or(16));
                if initial > cap as u64 {
                    return Err(format!(
                        "its initial memory exceeds the cap of {cap} bytes ({initial} bytes)"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Reads the declared ABI version and refuses anything but [`abi::ABI_VERSION`].
pub(crate) fn check_version(bytes: &[u8]) -> Result<(), String> {
    let mut declared: Option<&[u8]> = None;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("not a valid WebAssembly module: {e}"))? {
            Payload::Version {
                encoding: Encoding::Component,
                ..
            } => {
                return Err("is a WebAssembly component; Headwater plugins are core modules".into())
            }
            Payload::CustomSection(section) if section.name() == abi::ABI_SECTION => {
                if declared.is_some() {
                    return Err(format!(
                        "has more than one `{}` custom section",
                        abi::ABI_SECTION
                    ));
                }
                declared = Some(section.data());
            }
            _ => {}
        }
    }
    let Some(data) = declared else {
        return Err(format!(
            "has no `{}` custom section, so it was not built as a Headwater plugin \
             (Rust plugins get it from headwater_sdk::export_plugin!; see sdk/ABI.md)",
            abi::ABI_SECTION
        ));
    };
    let version: [u8; 4] = data.try_into().map_err(|_| {
        format!(
            "has a malformed `{}` section: {} bytes, expected 4 (a little-endian u32)",
            abi::ABI_SECTION,
            data.len()
        )
    })?;
    match u32::from_le_bytes(version) {
        abi::ABI_VERSION => Ok(()),
        v => Err(format!(
            "declares Headwater plugin ABI version {v}; this broker supports version {}",
            abi::ABI_VERSION
        )),
    }
}

/// Refuses a compiled module whose imports or exports do not match the ABI.
pub(crate) fn check_module(module: &Module) -> Result<(), String> {
    for import in module.imports() {
        let allowed = import.module() == abi::IMPORT_MODULE && import.name() == abi::IMPORT_LOG;
        if !allowed {
            return Err(format!(
                "imports `{}.{}`, but a plugin may only import `{}.{}` (no WASI or other host \
                 functions are provided)",
                import.module(),
                import.name(),
                abi::IMPORT_MODULE,
                abi::IMPORT_LOG
            ));
        }
        expect_func(
            &import.ty(),
            &[ValType::I32, ValType::I32, ValType::I32],
            &[],
            "the `log` import",
        )?;
    }
    let export = |name: &str| {
        module
            .get_export(name)
            .ok_or_else(|| format!("does not export `{name}` (required by ABI v1)"))
    };
    if !matches!(export(abi::EXPORT_MEMORY)?, ExternType::Memory(_)) {
        return Err(format!(
            "exports `{}`, but not as a memory",
            abi::EXPORT_MEMORY
        ));
    }
    expect_func(
        &export(abi::EXPORT_ALLOC)?,
        &[ValType::I32],
        &[ValType::I32],
        "export `hw_alloc`",
    )?;
    for name in [abi::EXPORT_INIT, abi::EXPORT_PROCESS] {
        expect_func(
            &export(name)?,
            &[ValType::I32, ValType::I32],
            &[ValType::I64],
            &format!("export `{name}`"),
        )?;
    }
    Ok(())
}

fn expect_func(
    ty: &ExternType,
    params: &[ValType],
    results: &[ValType],
    what: &str,
) -> Result<(), String> {
    let ExternType::Func(f) = ty else {
        return Err(format!("{what} is not a function"));
    };
    let same = |got: &mut dyn ExactSizeIterator<Item = ValType>, want: &[ValType]| {
        got.len() == want.len() && got.zip(want).all(|(g, w)| ValType::eq(&g, w))
    };
    if same(&mut f.params(), params) && same(&mut f.results(), results) {
        return Ok(());
    }
    let show = |v: &[ValType]| {
        v.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(format!(
        "{what} has the wrong type: expected ({}) -> ({})",
        show(params),
        show(results)
    ))
}
