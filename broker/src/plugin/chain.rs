//! Chains: the plugins of one topic, run in config order.
//!
//! Each plugin gets the records the previous one kept in the source topic. Records a plugin
//! routes to another topic leave the chain there (they are not run through that topic's chain,
//! which keeps routing free of loops); dead letters of every plugin are collected under that
//! plugin's dead-letter topic. [`IngestPlugins`] holds the chains of `attach = "ingest"` plugins,
//! [`UpstreamPlugins`] those of `attach = "upstream"` plugins; both share [`Chains`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use super::convert::SourceBatch;
use super::engine::PluginEngine;
use super::held_state;
use super::runner::{Plugin, StateIn, TopicTurn};
use super::PluginError;
use crate::config::{Attach, PluginSection};
use crate::log::{Log, NewRecord, StoredRecord};

/// Records grouped by the topic they go to.
pub type ByTopic = Vec<(String, Vec<NewRecord>)>;

/// What a chain made of a batch.
#[derive(Debug, Default)]
pub struct ChainOutput {
    /// Kept records per target topic, the source topic first, then rerouted topics in the order
    /// they first appeared.
    kept: Vec<(String, Vec<NewRecord>)>,
    /// Dead letters per dead-letter topic.
    dead_letters: Vec<(String, Vec<NewRecord>)>,
    /// Ingest chains: the states the plugins' workers hold for this topic that these records
    /// changed, to be stored with them (see [`ChainOutput::take_held_changes`]).
    held: Vec<HeldChange>,
}

/// The states the plugins' workers hold for one topic that one batch changed: what to store
/// with its records, or to put back if they do not reach the log.
#[derive(Debug, Default)]
pub struct HeldChanges {
    topic: String,
    changes: Vec<HeldChange>,
    /// The append that stores the new states is queued with the log: if its caller goes
    /// away, it commits anyway, so dropping the changes keeps them.
    queued: bool,
}

/// One plugin's state before a batch and after it (`None`: no state).
struct HeldChange {
    plugin: Arc<Plugin>,
    before: Option<Vec<u8>>,
    after: Option<Vec<u8>>,
}

impl std::fmt::Debug for HeldChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldChange")
            .field("plugin", &self.plugin.name())
            .finish_non_exhaustive()
    }
}

impl HeldChanges {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The meta entries that store the new states, for the transaction that appends the
    /// batch's records.
    pub fn entries(&self) -> Vec<(String, Option<Vec<u8>>)> {
        let changed = self.changes.iter();
        held_state::entries(
            &self.topic,
            changed.map(|c| (c.plugin.name().to_string(), c.after.clone())),
        )
    }

    /// The append that stores the new states is queued: from now on dropping the changes
    /// keeps them (it commits even if its caller goes away); [`HeldChanges::roll_back`] still
    /// puts the old ones back.
    pub fn mark_queued(&mut self) {
        self.queued = true;
    }

    /// The batch's records are in the log, with the new states: keep them (a later
    /// [`HeldChanges::roll_back`] does nothing).
    pub fn keep(&mut self) {
        self.changes.clear();
    }

    /// The batch's records did not reach the log: each plugin gets its state from before the
    /// batch back, unless a later batch already ran on the new one (then its effect stays in
    /// the state, which is logged). Dropping the changes before their append is queued does
    /// the same (a caller that gave up half-way: its producer saw no answer).
    pub fn roll_back(mut self) {
        self.put_back();
    }

    fn put_back(&mut self) {
        for HeldChange {
            plugin,
            before,
            after,
        } in self.changes.drain(..).rev()
        {
            if !plugin.roll_back_held(&self.topic, &after, before) {
                tracing::warn!(
                    plugin = plugin.name(), topic = %self.topic,
                    "a failed batch's effect stays in the plugin's state: a later batch already \
                     ran on it"
                );
            }
        }
    }
}

impl Drop for HeldChanges {
    fn drop(&mut self) {
        if !self.queued {
            self.put_back();
        }
    }
}

impl ChainOutput {
    fn new(source: &str) -> ChainOutput {
        ChainOutput {
            kept: vec![(source.to_string(), Vec::new())],
            dead_letters: Vec::new(),
            held: Vec::new(),
        }
    }

    /// The held states these records changed (ingest chains), to be stored with them. Taken,
    /// they must be kept or rolled back: dropped, they roll back. (Left in the output, the
    /// plugins keep the new states.)
    pub fn take_held_changes(&mut self) -> HeldChanges {
        HeldChanges {
            topic: self
                .kept
                .first()
                .map(|(t, _)| t.clone())
                .unwrap_or_default(),
            changes: std::mem::take(&mut self.held),
            queued: false,
        }
    }

    /// Kept records, then dead letters, each under the topic they go to.
    pub fn by_topic(self) -> Vec<(String, Vec<NewRecord>)> {
        let mut all = self.kept;
        all.extend(self.dead_letters);
        all
    }

    /// Kept records and dead letters, each per topic, taken apart.
    pub fn into_parts(self) -> (ByTopic, ByTopic) {
        (self.kept, self.dead_letters)
    }

    /// Kept records per target topic, the source topic first (possibly empty).
    pub fn kept(&self) -> &[(String, Vec<NewRecord>)] {
        &self.kept
    }

    /// Dead letters per dead-letter topic.
    pub fn dead_letters(&self) -> &[(String, Vec<NewRecord>)] {
        &self.dead_letters
    }

    fn push_kept(&mut self, topic: String, record: NewRecord) {
        match self.kept.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, existing)) => existing.push(record),
            None => self.kept.push((topic, vec![record])),
        }
    }

    fn push(list: &mut Vec<(String, Vec<NewRecord>)>, topic: &str, records: Vec<NewRecord>) {
        if records.is_empty() {
            return;
        }
        match list.iter_mut().find(|(t, _)| t == topic) {
            Some((_, existing)) => existing.extend(records),
            None => list.push((topic.to_string(), records)),
        }
    }
}

/// Plugin states of one topic and partition, by plugin name (plugins without state absent).
pub type PluginStates = BTreeMap<String, Vec<u8>>;

/// The chains of one attach point, by topic.
#[derive(Default)]
pub(crate) struct Chains {
    by_topic: HashMap<String, Vec<Arc<Plugin>>>,
    plugins: Vec<Arc<Plugin>>,
}

impl Chains {
    /// Loads the plugins of `sections` that attach at `attach`.
    fn load(
        engine: &PluginEngine,
        sections: &[PluginSection],
        attach: Attach,
    ) -> Result<Chains, PluginError> {
        let mut chains = Chains::default();
        for section in sections.iter().filter(|s| s.attach == attach) {
            let plugin = Arc::new(Plugin::load(engine, section)?);
            for topic in &section.topics {
                chains
                    .by_topic
                    .entry(topic.clone())
                    .or_default()
                    .push(plugin.clone());
            }
            chains.plugins.push(plugin);
        }
        Ok(chains)
    }

    fn has_plugins(&self, topic: &str) -> bool {
        self.by_topic.contains_key(topic)
    }

    /// Runs `topic`'s chain. With `states`, each plugin's state comes from there (by plugin
    /// name) and its new state goes back there; without, the plugins' workers keep it.
    async fn run(
        &self,
        topic: &str,
        input: SourceBatch,
        mut states: Option<&mut PluginStates>,
    ) -> Result<ChainOutput, PluginError> {
        let mut out = ChainOutput::new(topic);
        // The held states changed so far: put back if this run ends early (an error, or its
        // caller going away between two plugins).
        let mut held = out.take_held_changes();
        let partition = input.partition;
        let mut current = input;
        for plugin in self.by_topic.get(topic).into_iter().flatten() {
            if current.records.is_empty() {
                break;
            }
            let state = match &states {
                Some(states) => StateIn::Given(states.get(plugin.name()).cloned()),
                None => StateIn::Held,
            };
            let result = match plugin
                .process(topic, std::mem::take(&mut current), state)
                .await
            {
                Ok(result) => result,
                Err(e) => {
                    held.roll_back();
                    return Err(e);
                }
            };
            match states.as_deref_mut() {
                Some(states) => {
                    match result.state {
                        Some(state) => states.insert(plugin.name().to_string(), state),
                        None => states.remove(plugin.name()),
                    };
                }
                None => {
                    if let Some(before) = result.held_before {
                        held.changes.push(HeldChange {
                            plugin: plugin.clone(),
                            before,
                            after: result.state,
                        });
                    }
                }
            }
            // Kept in the source topic: the input of the next plugin (no offsets: outputs need
            // not map to inputs).
            current = SourceBatch {
                partition,
                offsets: Vec::new(),
                records: result.kept,
            };
            for (target, record) in result.routed {
                out.push_kept(target, record);
            }
            ChainOutput::push(
                &mut out.dead_letters,
                plugin.dead_letter_topic(),
                result.dead,
            );
        }
        if let Some((_, source)) = out.kept.first_mut() {
            *source = current.records;
        }
        out.held = std::mem::take(&mut held.changes);
        Ok(out)
    }
}

/// Loads every plugin of the config with one engine: the ingest chains and the upstream chains.
/// Blocking (compiles modules and runs their `hw_init`): call at startup.
pub fn load(sections: &[PluginSection]) -> Result<(IngestPlugins, UpstreamPlugins), PluginError> {
    if sections.is_empty() {
        return Ok((IngestPlugins::default(), UpstreamPlugins::default()));
    }
    let engine = PluginEngine::for_plugins(sections)?;
    Ok((
        IngestPlugins::new(Chains::load(&engine, sections, Attach::Ingest)?),
        UpstreamPlugins {
            chains: Chains::load(&engine, sections, Attach::Upstream)?,
        },
    ))
}

/// A batch's turn to run its topic's chain: see [`IngestPlugins::turn`].
pub enum Turn {
    Shared(tokio::sync::OwnedRwLockReadGuard<()>),
    Alone(tokio::sync::OwnedRwLockWriteGuard<()>),
}

/// The ingest plugin chains of every topic: run before records are appended.
#[derive(Default)]
pub struct IngestPlugins {
    chains: Chains,
    /// Per topic with a chain: its turn (see [`IngestPlugins::turn`]).
    order: HashMap<String, TopicTurn>,
}

impl IngestPlugins {
    /// Loads the `attach = "ingest"` plugins of `sections`. Blocking; prefer [`load`] when the
    /// upstream plugins are needed too (one engine for both).
    pub fn from_config(sections: &[PluginSection]) -> Result<IngestPlugins, PluginError> {
        if !sections.iter().any(|s| s.attach == Attach::Ingest) {
            return Ok(IngestPlugins::default());
        }
        let engine = PluginEngine::for_plugins(sections)?;
        Ok(IngestPlugins::new(Chains::load(
            &engine,
            sections,
            Attach::Ingest,
        )?))
    }

    fn new(chains: Chains) -> IngestPlugins {
        let order: HashMap<String, TopicTurn> = chains
            .by_topic
            .keys()
            .map(|topic| (topic.clone(), TopicTurn::default()))
            .collect();
        for plugin in &chains.plugins {
            let mut topics: Vec<&String> = plugin.topics().iter().collect();
            topics.sort();
            topics.dedup();
            let turns = topics.iter().filter_map(|t| order.get(*t).cloned());
            plugin.set_topic_turns(turns.collect());
        }
        IngestPlugins { chains, order }
    }

    /// Waits for `topic`'s turn to run its chain (`None`: no chain). Batches of a chain whose
    /// plugins are all known to keep no state for the topic share it; any other batch has it
    /// alone, for the chain's run and, when its output
    /// [changed held states](ChainOutput::take_held_changes),
    /// until the appends that store them are queued with the log: the states reach the log in
    /// the order the plugins produced them. A module swap waits for every batch of its topics
    /// (see `Plugin::swap`), so a new module never runs a batch that shares the turn before it
    /// has shown that it keeps no state.
    pub async fn turn(&self, topic: &str) -> Option<Turn> {
        let turn = self.order.get(topic)?.clone();
        let chain = self.chains.by_topic.get(topic)?;
        let stateless = || chain.iter().all(|p| p.is_stateless(topic));
        if stateless() {
            let shared = turn.clone().read_owned().await;
            // A module swap may have come first (it clears the flags while it has the turn).
            if stateless() {
                return Some(Turn::Shared(shared));
            }
        }
        Some(Turn::Alone(turn.write_owned().await))
    }

    /// Runs `deletion` of `topic` (which deletes the states stored for it) with the topic's
    /// turn held alone, so that no batch of its chain runs or queues its appends meanwhile;
    /// once it succeeded, drops the states the plugins hold for the topic too: a topic created
    /// again under the same name starts afresh.
    pub async fn forget_topic<E>(
        &self,
        topic: &str,
        deletion: impl Future<Output = Result<(), E>>,
    ) -> Result<(), E> {
        let _alone = match self.order.get(topic) {
            Some(turn) => Some(turn.clone().write_owned().await),
            None => None,
        };
        deletion.await?;
        for plugin in self.chains.by_topic.get(topic).into_iter().flatten() {
            plugin.forget_held(topic);
        }
        Ok(())
    }

    /// Gives the plugins the states stored with the log's records before a restart (see
    /// [`held_state`](super::held_state)). Call before the first batch.
    pub fn restore_held_states(&self, log: &Log) -> Result<usize, PluginError> {
        let stored = held_state::load(log).map_err(PluginError::StoredStates)?;
        let mut restored = 0;
        for (topic, plugin, state) in stored {
            let mut chain = self.chains.by_topic.get(&topic).into_iter().flatten();
            if let Some(p) = chain.find(|p| p.name() == plugin) {
                p.restore_held(&topic, state);
                restored += 1;
            }
        }
        Ok(restored)
    }

    pub fn has_plugins(&self, topic: &str) -> bool {
        self.chains.has_plugins(topic)
    }

    /// Runs `topic`'s chain. Plugin failures come back as dead letters in the output; an error
    /// means the records were not processed at all (nothing was kept or dead-lettered).
    pub async fn run(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
    ) -> Result<ChainOutput, PluginError> {
        self.chains
            .run(topic, SourceBatch::new(records), None)
            .await
    }

    /// Every loaded plugin, for metrics.
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.chains.plugins
    }
}

/// The upstream plugin chains: run by the replicator on records read from the local log, so
/// partition and offset are known (and land in dead-letter headers).
#[derive(Default)]
pub struct UpstreamPlugins {
    chains: Chains,
}

impl UpstreamPlugins {
    /// Loads the `attach = "upstream"` plugins of `sections`. Blocking.
    pub fn from_config(sections: &[PluginSection]) -> Result<UpstreamPlugins, PluginError> {
        if !sections.iter().any(|s| s.attach == Attach::Upstream) {
            return Ok(UpstreamPlugins::default());
        }
        let engine = PluginEngine::for_plugins(sections)?;
        Ok(UpstreamPlugins {
            chains: Chains::load(&engine, sections, Attach::Upstream)?,
        })
    }

    pub fn has_plugins(&self, topic: &str) -> bool {
        self.chains.has_plugins(topic)
    }

    /// Runs `topic`'s chain on records read from one partition. Kept records of the source
    /// topic are what to forward; dead letters belong in the local log. `states` holds the
    /// plugins' states for this partition as committed, and comes back as they are after these
    /// records: the caller commits it with the cursor.
    pub async fn run(
        &self,
        topic: &str,
        partition: i32,
        records: Vec<StoredRecord>,
        states: &mut PluginStates,
    ) -> Result<ChainOutput, PluginError> {
        let offsets = records.iter().map(|r| r.offset).collect();
        let records = records
            .into_iter()
            .map(|r| NewRecord {
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
            })
            .collect();
        let input = SourceBatch {
            partition: Some(partition),
            offsets,
            records,
        };
        self.chains.run(topic, input, Some(states)).await
    }

    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.chains.plugins
    }
}
