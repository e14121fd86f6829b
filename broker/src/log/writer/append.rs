//! Staging a partition append in the group's transaction, behind the idempotent producers'
//! sequence checks.

use std::sync::Arc;

use bytes::Bytes;

use super::{Appended, Staged};
use crate::log::batch::{self, BatchHeader};
use crate::log::producers::{self, Judged, Plan, ProducerClaim, Producers};
use crate::log::store::{batch_key, Store};
use crate::log::{LogError, PartitionHandle};

/// What staging an append came to.
pub(super) enum AppendOutcome {
    /// Written (not yet committed) at these offsets.
    Appended(Appended),
    /// Every batch is an idempotent producer's retry of one already written there.
    Repeat(Appended),
    /// Refused by the idempotent producers' sequence checks; nothing was written.
    Refused(LogError),
}

/// Stages one partition append: the sequence checks of idempotent producers first (all
/// batches, before anything is written, so a refusal leaves nothing half-applied), then the
/// batches and their producers' state, in the group's transaction. `Err` is a store failure.
pub(super) fn stage_append(
    store: &Store,
    wtxn: &mut heed::RwTxn,
    staged: &mut Staged,
    (producers, staged_producers, now_ms): (&Producers, &mut producers::Staging, i64),
    partition: Arc<PartitionHandle>,
    (batches, claim): (Vec<(BatchHeader, Bytes)>, Option<ProducerClaim>),
) -> Result<AppendOutcome, LogError> {
    let current = staged
        .get(&partition.id)
        .map_or_else(|| partition.state(), |(_, state)| *state);
    let items: Vec<Judged> = match claim {
        Some(claim) => vec![Judged {
            producer: Some(claim),
            offsets: batches.iter().map(|(h, _)| h.offset_count() as i64).sum(),
        }],
        None => batches.iter().map(|(h, _)| Judged::batch(h)).collect(),
    };
    let entries = match producers.plan(
        staged_producers,
        partition.id,
        current.next_offset,
        &items,
        now_ms,
    ) {
        Ok(Plan::Append(entries)) => entries,
        Ok(Plan::Duplicate {
            base_offset,
            last_offset,
        }) => {
            return Ok(AppendOutcome::Repeat(Appended {
                base_offset,
                last_offset,
                log_start: current.log_start,
            }))
        }
        Err((producer_id, reason)) => {
            return Ok(AppendOutcome::Refused(LogError::Sequence {
                topic: partition.topic.to_string(),
                partition: partition.index as i32,
                producer_id,
                reason,
            }))
        }
    };
    producers.stage_entries(store, wtxn, staged_producers, partition.id, entries)?;
    let entry = staged
        .entry(partition.id)
        .or_insert_with(|| (partition.clone(), partition.state()));
    let state = &mut entry.1;
    let base_offset = state.next_offset;
    let mut scratch = Vec::new();
    for (header, bytes) in batches {
        scratch.clear();
        scratch.extend_from_slice(&bytes);
        batch::set_base_offset(&mut scratch, state.next_offset);
        let key = batch_key(partition.id, state.next_offset);
        store.log.put(wtxn, &key, &scratch)?;
        state.next_offset += header.offset_count() as i64;
        state.bytes += scratch.len() as u64;
    }
    Ok(AppendOutcome::Appended(Appended {
        base_offset,
        last_offset: state.next_offset - 1,
        log_start: state.log_start,
    }))
}
