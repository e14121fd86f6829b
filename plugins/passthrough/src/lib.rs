//! Returns every record unchanged. What it measures is the boundary itself: encoding a batch,
//! copying it into the instance, decoding it there, encoding it back and copying it out. Records
//! pass through as borrowed slices, so the guest copies no payload.

#![forbid(unsafe_code)]

use headwater_sdk::{Batch, Config, Output, Plugin, Record};

pub struct Passthrough;

impl Plugin for Passthrough {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&[])?;
        Ok(Passthrough)
    }

    fn process<'a>(&mut self, batch: Batch<'a>) -> Output<'a> {
        batch.map(Record::keep)
    }
}

headwater_sdk::export_plugin!(Passthrough);
