//! The ingest path of a topic with an ingest plugin chain: the chain runs on the request's
//! records, then what it kept, routed and dead-lettered is queued with the log.
//!
//! A request returns once its appends are queued ([`Submitted::Chained`]), so a connection
//! goes on with its next request while this one is committed, as it does without plugins: the
//! next request's chain runs meanwhile and its appends queue behind these, in order. Two kinds
//! of request finish before they return instead:
//! - one that changed a plugin's state: if its append fails, the state goes back to what it was
//!   before it, which is only right while no later request has run on it (states are put back
//!   by compare-and-set, see `HeldChanges::roll_back`);
//! - an idempotent producer's: its sequence check before the chain knows only committed
//!   requests (see [`super::claims`]).

use std::sync::Arc;

use bytes::Bytes;

use super::{Ingest, IngestError, Submitted};
use crate::log::producers::ProducerClaim;
use crate::log::{
    self, AppendTicket, Appended, BatchHeader, LogError, MetaUpdate, NewRecord, PartitionHandle,
};
use crate::plugin::{ChainOutput, HeldChanges, Turn};

/// A chain's output queued with the log, to be durable: see [`ChainedAppend::outcome`].
pub struct ChainedAppend {
    /// The source topic's append (with the producer's claim and the plugins' states), unless
    /// there was nothing to write there.
    source: Option<AppendTicket>,
    /// Records routed to other topics, and dead letters.
    others: Vec<AppendTicket>,
    /// The plugins' states the request changed: kept once the source append is durable, put
    /// back if it fails.
    held: HeldChanges,
    /// With nothing to write in the source topic: the ack's position, the partition's end when
    /// the request was queued (read then, so that acks follow the order of the requests).
    empty_at: Appended,
}

impl ChainedAppend {
    /// Queued; or finished first when the request changed a plugin's state (see the module
    /// docs).
    pub(super) async fn submitted(self) -> Submitted {
        match self.held.is_empty() {
            true => Submitted::Chained(self),
            false => Submitted::Finished(self.outcome().await),
        }
    }

    /// See [`AppendTicket::commit_in_background`].
    pub fn commit_in_background(&mut self) {
        self.source
            .iter_mut()
            .chain(self.others.iter_mut())
            .for_each(AppendTicket::commit_in_background);
    }

    /// Where the source topic's records landed once everything is durable, or why not.
    pub async fn outcome(mut self) -> Result<Appended, IngestError> {
        let outcome = self.durable().await;
        if outcome.is_err() {
            // The producer gets an error and may send the records again: the plugins must see
            // them as new (unless the states were stored before the error).
            std::mem::take(&mut self.held).roll_back();
        }
        outcome
    }

    async fn durable(&mut self) -> Result<Appended, IngestError> {
        let appended = match self.source.take() {
            Some(ticket) => Some(ticket.durable().await?),
            None => None,
        };
        self.held.keep();
        for ticket in self.others.drain(..) {
            ticket.durable().await?;
        }
        Ok(appended.unwrap_or(self.empty_at))
    }
}

impl Ingest {
    /// Kafka produce to a topic with a chain: returns once the chain's output is queued, except
    /// for an idempotent producer's request, which is finished first.
    pub(super) async fn produce_via_plugins(
        &self,
        topic: &str,
        handle: Arc<PartitionHandle>,
        batches: Vec<(BatchHeader, Bytes)>,
    ) -> Result<Submitted, IngestError> {
        let partition = handle.index as i32;
        // The chain's output is re-encoded without the producer's id, so an idempotent
        // producer's sequence range is claimed for it instead; a retry of a request already
        // written is answered from the log without running the plugins (and their side effects
        // on other topics) again.
        let headers: Vec<&BatchHeader> = batches.iter().map(|(h, _)| h).collect();
        let claim = ProducerClaim::of_request(&headers).map_err(|reason| LogError::Sequence {
            topic: topic.to_string(),
            partition,
            producer_id: headers.first().map_or(-1, |h| h.producer_id),
            reason,
        })?;
        // A retry overlapping its original waits for it, then finds it here (see `claims`).
        let _claimed = match claim {
            Some(claim) => Some(self.claims.lock(handle.id, claim.producer_id).await),
            None => None,
        };
        if let Some(claim) = claim {
            if let Some(original) = self.log.check_claim(&handle, claim)? {
                return Ok(Submitted::Finished(Ok(original)));
            }
        }
        let mut records = Vec::new();
        for (_, bytes) in &batches {
            records.extend(log::batch::decode(bytes)?.into_iter().map(|r| NewRecord {
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
            }));
        }
        let chained = self
            .chain_and_queue(topic, Some(handle), records, claim, None)
            .await?;
        Ok(match claim {
            Some(_) => Submitted::Finished(chained.outcome().await),
            None => chained.submitted().await,
        })
    }

    /// Runs `topic`'s chain on `records` and queues its output with the log (`partition`: the
    /// producer's choice for the records kept in `topic`, else by key).
    pub(super) async fn chain_and_queue(
        &self,
        topic: &str,
        partition: Option<Arc<PartitionHandle>>,
        records: Vec<NewRecord>,
        claim: Option<ProducerClaim>,
        meta: Option<MetaUpdate>,
    ) -> Result<ChainedAppend, IngestError> {
        // The topic's turn (see `IngestPlugins::turn`): a batch that changed the plugins' states
        // keeps it until its appends are queued, so the states reach the log in the order the
        // plugins produced them.
        let mut turn = self.plugins.turn(topic).await;
        let mut output = self
            .plugins
            .run(topic, records)
            .await
            .map_err(|e| IngestError::Plugin(e.to_string()))?;
        let held = output.take_held_changes();
        if held.is_empty() {
            turn = None;
        }
        // The changed states ride with the records kept for the source topic: after a crash
        // the plugins resume from the states of the last batch that is durable.
        let meta = MetaUpdate::with_entries(meta, held.entries());
        // On an error the changes are dropped before they were queued, which puts the states
        // back (see `HeldChanges`).
        self.queue_output(topic, partition, output, (claim, meta), (&mut turn, held))
            .await
    }

    /// Queues what an ingest chain made of a request: records kept for other topics and dead
    /// letters first, then the source topic's (with the producer's claim and `meta`), so that
    /// a crash in between leaves no state stored without the records it goes with. Releases
    /// `turn` once everything is queued (and marks `held` queued).
    async fn queue_output(
        &self,
        topic: &str,
        partition: Option<Arc<PartitionHandle>>,
        output: ChainOutput,
        (claim, meta): (Option<ProducerClaim>, Option<MetaUpdate>),
        (turn, mut held): (&mut Option<Turn>, HeldChanges),
    ) -> Result<ChainedAppend, IngestError> {
        // Partitions first (a new topic is created on the way, which commits): records kept
        // for the source topic go where the producer asked; rerouted ones and dead letters go
        // to the partition of their first record's key in their topic.
        let mut routed = Vec::new();
        let mut source = Vec::new();
        for (target, records) in output.by_topic() {
            if target == topic {
                source = records;
            } else if !records.is_empty() {
                let handle = self.partition_for_key(&target, records.first()).await?;
                routed.push((handle, records));
            }
        }
        let source_handle = match partition {
            Some(p) => p,
            None => self.partition_for_key(topic, source.first()).await?,
        };
        let mut others = Vec::new();
        for (handle, records) in &routed {
            others.push(self.log.submit_append(handle, records, None, None).await?);
        }
        // Nothing kept for the source topic: the producer's next request follows this one's
        // sequence, so the claim is recorded even with nothing to write, and the metadata is
        // written all the same. An empty append rather than a bare metadata write: if the
        // topic is deleted meanwhile, it is refused instead of leaving states behind.
        let wanted = !source.is_empty() || claim.is_some() || meta.is_some();
        let source_ticket = match wanted {
            true => Some(
                self.log
                    .submit_append(&source_handle, &source, claim, meta)
                    .await?,
            ),
            false => None,
        };
        held.mark_queued();
        drop(turn.take());
        // Everything dropped by the plugins (and nothing to write): acked with the partition's
        // end, as Kafka does for an empty append.
        let end = source_handle.high_watermark();
        let empty_at = Appended {
            base_offset: end,
            last_offset: end - 1,
            log_start: source_handle.log_start(),
        };
        Ok(ChainedAppend {
            source: source_ticket,
            others,
            held,
            empty_at,
        })
    }
}
