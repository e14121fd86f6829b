//! Decodes CBOR record values (the compact binary payloads of constrained sensors) into JSON
//! text, so that consumers downstream of the edge read plain JSON.
//!
//! Config (the `config` table of the `[[plugins]]` entry):
//! - `bytes` (text, default `"base64"`): how CBOR byte strings are written, `"base64"` (RFC 4648,
//!   standard alphabet, padded) or `"hex"` (lowercase).
//! - `set_content_type` (boolean, default `true`): replace any `content-type` header (matched
//!   ignoring case) of a converted record with `content-type: application/json`.
//!
//! The value of a converted record is replaced by UTF-8 JSON; key, timestamp and other headers
//! stay. A value that is not exactly one well-formed CBOR item, or holds something JSON cannot
//! say (the mapping is in `convert.rs`), is reported as a per-record error: the broker sends it
//! to the plugin's dead-letter topic with the reason. A tombstone (no value) is kept unchanged.

#![forbid(unsafe_code)]

mod binary;
mod convert;

use headwater_sdk::{Batch, Config, OutRecord, Output, Plugin, Record};

use binary::BytesAs;
use convert::to_json;

/// The header `set_content_type` sets on converted records (replacing any of another case)...
pub const CONTENT_TYPE: &str = "content-type";
/// ...and its value.
pub const APPLICATION_JSON: &[u8] = b"application/json";

pub struct CborToJson {
    bytes_as: BytesAs,
    set_content_type: bool,
}

impl CborToJson {
    fn convert<'a>(&self, record: Record<'a>) -> Result<OutRecord<'a>, convert::Error> {
        let Some(value) = record.value.as_deref() else {
            return Ok(record.keep());
        };
        let json = to_json(value, self.bytes_as)?;
        let mut out = record.keep().with_value(json);
        if self.set_content_type {
            out.headers
                .retain(|h| !h.name.eq_ignore_ascii_case(CONTENT_TYPE));
            out = out.with_header(CONTENT_TYPE, APPLICATION_JSON);
        }
        Ok(out)
    }
}

impl Plugin for CborToJson {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["bytes", "set_content_type"])?;
        let bytes_as = match config.string("bytes")? {
            None => BytesAs::Base64,
            Some(name) => BytesAs::from_name(name).ok_or_else(|| {
                format!("config key `bytes` must be \"base64\" or \"hex\", found {name:?}")
            })?,
        };
        Ok(CborToJson {
            bytes_as,
            set_content_type: config.boolean("set_content_type")?.unwrap_or(true),
        })
    }

    fn process<'a>(&mut self, batch: Batch<'a>) -> Output<'a> {
        batch.try_filter_map(|r| self.convert(r).map(Some))
    }
}

headwater_sdk::export_plugin!(CborToJson);

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests;
