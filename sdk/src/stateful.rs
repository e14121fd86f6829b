//! Plugins whose state the host keeps: an [`Aggregate`] gets its typed state with every batch
//! and changes it in place; [`Stateful`] turns it into a [`Plugin`] that reads the state from the
//! batch and hands it back, CBOR-encoded, with the output.
//!
//! For upstream plugins the host commits that state in the same transaction as the replication
//! cursor, so after a crash or a failed upstream produce the plugin sees again exactly the state
//! that matches the records it is given: a downsampler or a counter neither skips nor counts
//! twice. For ingest plugins the host stores it in the transaction that appends the batch's
//! records, so after a restart the plugin resumes from the state of the last durable batch.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use minicbor::{Decode, Encode};

use crate::config::Config;
use crate::plugin::Plugin;
use crate::record::{Batch, Output};

/// A plugin with host-kept state: `process` gets the state that goes with this batch's topic
/// and partition (the default for the first batch) and leaves it as it should be after it.
pub trait Aggregate: Sized + Send + 'static {
    type State: Default + Encode<()> + for<'b> Decode<'b, ()>;

    fn init(config: &Config) -> Result<Self, String>;

    fn process<'a>(&mut self, state: &mut Self::State, batch: Batch<'a>) -> Output<'a>;
}

/// An [`Aggregate`] as a [`Plugin`]: `export_plugin!(Stateful<MyAggregate>)`.
pub struct Stateful<A>(A);

impl<A: Aggregate> Plugin for Stateful<A> {
    fn init(config: &Config) -> Result<Self, String> {
        A::init(config).map(Stateful)
    }

    fn process<'a>(&mut self, mut batch: Batch<'a>) -> Output<'a> {
        let mut state = match batch.state.take() {
            None => A::State::default(),
            Some(bytes) => match minicbor::decode(&bytes) {
                Ok(state) => state,
                Err(e) => {
                    // State from another version of the plugin (after a reload, say): start
                    // afresh rather than fail every batch from now on.
                    crate::log::warn(&alloc::format!(
                        "the saved state does not decode ({e}); starting from the default"
                    ));
                    A::State::default()
                }
            },
        };
        let mut output = self.0.process(&mut state, batch);
        let mut bytes = Vec::new();
        crate::wire::encode_into(&state, &mut bytes);
        output.state = Some(Cow::Owned(bytes));
        output
    }
}
