//! One loaded plugin: the compiled module, the workers that own its live instances (one per
//! configured `instances`), the failure policy, and the counters.
//!
//! Each worker is an actor: it alone touches its `Store`, takes batches from a bounded queue (so
//! a slow plugin slows its producers instead of piling up memory) and runs them one at a time,
//! never on the async runtime's reactor: on its own thread, or on the thread of the caller
//! waiting for the batch when the worker is free ([`super::turns`]). A batch is queued on the
//! worker with the fewest batches waiting, so with several instances batches run side by side
//! (the caller's order holds: a caller waits for its batch before it sends the next). The
//! failure policy lives here, shared by the workers:
//! - a trap, timeout or bad output fails that batch only: its records become dead letters and the
//!   instance is thrown away, so the next batch starts from a fresh one (no corrupted state
//!   carries over);
//! - after `max_consecutive_failures` failed batches in a row the plugin is disabled: from then
//!   on its records go straight to the dead-letter topic with "plugin disabled", so nothing is
//!   lost while an operator looks into it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use headwater_sdk::OutEntry;
use tokio::sync::{mpsc, oneshot};
use wasmtime::{InstancePre, Module};

use super::abi;
use super::convert::{self, Decoded, SourceBatch};
use super::dead_letter::{dead_letter, Origin};
use super::engine::{PluginEngine, MAX_INSTANCES};
use super::instance::{CallError, Instance, Settings};
use super::linker::{linker, HostState};
use super::stats::PluginStats;
use super::turns::{Turns, TurnsHandle};
use super::PluginError;
use crate::config::{Attach, PluginSection};
use crate::log::NewRecord;

/// Batches waiting for one plugin; senders wait when it is full.
const JOB_QUEUE: usize = 64;
/// Bounds of the encoded size of one call's input, so a large produce request is split into calls
/// the plugin has room for. In between, a quarter of the memory the instance has left after
/// `hw_init` (its stack and static data included): room for the input, the decoded records, the
/// output and the allocator's slack.
const MIN_CALL_INPUT_BYTES: usize = 64 * 1024;
const MAX_CALL_INPUT_BYTES: usize = 16 * 1024 * 1024;

/// What one plugin made of the records of one request.
#[derive(Default)]
pub(crate) struct PluginOutput {
    /// Records kept in the source topic, in output order (input for the next plugin of the
    /// chain). Their offsets are unknown again: outputs need not map to inputs.
    pub kept: Vec<NewRecord>,
    /// Records routed to another topic, in output order.
    pub routed: Vec<(String, NewRecord)>,
    /// Dead letters, for the plugin's dead-letter topic.
    pub dead: Vec<NewRecord>,
    /// The plugin's state after these records (`None`: it keeps none).
    pub state: Option<Vec<u8>>,
    /// For a state the worker holds ([`StateIn::Held`]) that these records changed: the state
    /// before them (the new one is `state`), for the caller to store the new one with the
    /// records, or to put the old one back if they do not reach the log.
    pub held_before: Option<Option<Vec<u8>>>,
    /// Whether the module returned a state (`None`: no call succeeded).
    pub returned_state: Option<bool>,
}

/// Where the plugin state of a batch comes from (ABI.md, "State").
pub(crate) enum StateIn {
    /// The worker keeps it in memory, per topic (ingest plugins).
    Held,
    /// The caller keeps it and gets the new one back in [`PluginOutput::state`] (upstream
    /// plugins, whose state is committed with the replication cursor).
    Given(Option<Vec<u8>>),
}

pub(super) struct Job {
    topic: String,
    records: SourceBatch,
    state: StateIn,
    reply: oneshot::Sender<PluginOutput>,
}

/// What the worker's queue carries: batches, and module swaps between them. One queue keeps the
/// order: batches queued before a swap run on the old module, batches after it on the new one.
pub(super) enum Work {
    Batch(Job),
    Swap(Box<Prepared>, oneshot::Sender<()>),
}

/// A module checked, compiled and started (its `hw_init` accepted the config): ready to run.
pub(super) struct Prepared {
    pre: InstancePre<HostState>,
    /// The CBOR config, kept to initialise fresh instances.
    config: Vec<u8>,
    settings: Settings,
    /// `None` after a failure (or once disabled): the next batch starts a fresh instance.
    instance: Option<Instance>,
    max_input_bytes: usize,
}

impl Prepared {
    /// Blocking: compiles the module and runs its `hw_init`.
    fn new(
        engine: &PluginEngine,
        section: &PluginSection,
        name: &Arc<str>,
        bytes: &[u8],
    ) -> Result<Prepared, PluginError> {
        let module_err = |reason: String| PluginError::Module {
            plugin: section.name.clone(),
            path: section.module.display().to_string(),
            reason,
        };
        abi::check_version(bytes).map_err(module_err)?;
        let max_memory_bytes = usize::try_from(section.max_memory_bytes).unwrap_or(usize::MAX);
        abi::check_initial_memory(bytes, max_memory_bytes).map_err(module_err)?;
        let module = Module::new(engine.engine(), bytes)
            .map_err(|e| module_err(format!("does not compile: {e:#}")))?;
        abi::check_module(&module).map_err(module_err)?;
        let pre = linker(engine.engine())?
            .instantiate_pre(&module)
            .map_err(|e| module_err(format!("cannot be linked: {e:#}")))?;
        let settings = Settings {
            timeout_ms: section.timeout_ms,
            max_memory_bytes,
        };
        let config = convert::config_to_cbor(&section.config);
        let instance = Instance::start(&pre, name.clone(), settings, &config).map_err(|e| {
            PluginError::Start {
                plugin: section.name.clone(),
                reason: e.to_string(),
            }
        })?;
        let free = settings
            .max_memory_bytes
            .saturating_sub(instance.memory_size());
        let max_input_bytes = (free / 4).clamp(MIN_CALL_INPUT_BYTES, MAX_CALL_INPUT_BYTES);
        Ok(Prepared {
            pre,
            config,
            settings,
            instance: Some(instance),
            max_input_bytes,
        })
    }

    /// Blocking: [`Prepared::new`], and a started copy for each further instance of the
    /// plugin (the module is compiled once).
    fn for_instances(
        engine: &PluginEngine,
        section: &PluginSection,
        name: &Arc<str>,
        bytes: &[u8],
    ) -> Result<Vec<Prepared>, PluginError> {
        let first = Prepared::new(engine, section, name, bytes)?;
        let mut all = Vec::with_capacity(section.instances as usize);
        for _ in 1..section.instances {
            let instance = Instance::start(&first.pre, name.clone(), first.settings, &first.config)
                .map_err(|e| PluginError::Start {
                    plugin: section.name.clone(),
                    reason: e.to_string(),
                })?;
            all.push(Prepared {
                pre: first.pre.clone(),
                config: first.config.clone(),
                instance: Some(instance),
                ..first
            });
        }
        all.insert(0, first);
        Ok(all)
    }
}

/// A loaded plugin. Dropping it (and every clone of its `Arc`) stops its worker threads.
pub struct Plugin {
    name: Arc<str>,
    section: PluginSection,
    engine: PluginEngine,
    stats: Arc<PluginStats>,
    /// One per instance.
    lanes: Vec<Lane>,
    /// Taken shared to queue a batch, alone by a module swap: every instance changes module at
    /// the same point of the order batches were queued in.
    dispatch: tokio::sync::RwLock<()>,
    /// Failed batches in a row, over every instance.
    failures: Arc<AtomicU32>,
    /// Held through a reload.
    reloading: tokio::sync::Mutex<()>,
    /// Topics whose last batch that ran returned no state: their batches need not take the
    /// topic's turn one at a time (see `IngestPlugins::turn`). Per topic, as the state is; empty
    /// again from a module swap.
    stateless: Mutex<HashSet<String>>,
    /// The turns of the ingest topics this plugin runs for (set once by `IngestPlugins`), in
    /// topic name order: a module swap takes them all.
    topic_turns: OnceLock<Vec<TopicTurn>>,
    /// The states the workers hold, shared with them (see [`HeldStates`]).
    held: HeldStates,
}

/// One instance's queue and the worker that runs it.
struct Lane {
    jobs: mpsc::Sender<Work>,
    /// Who runs the queued work: the worker thread, or a caller when the worker is free.
    /// After `jobs`: dropped once the queue has no sender, it wakes the thread to end.
    turns: TurnsHandle,
    /// Batches queued here whose callers wait for them: a batch goes where the fewest wait.
    waiting: AtomicUsize,
}

/// Counts a caller's batch in [`Lane::waiting`] until the caller has its answer (or gives up).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    /// Counts a batch on the first of the least busy open lanes (with one batch at a time,
    /// always the same instance). Callers choosing at once each count on the lane they saw, or
    /// choose again: they spread instead of all taking the lane that looked free.
    fn on_least_busy(lanes: &'a [Lane]) -> Option<(&'a Lane, Waiting<'a>)> {
        loop {
            let (lane, seen) = (lanes.iter())
                .filter(|lane| !lane.jobs.is_closed())
                .map(|lane| (lane, lane.waiting.load(Ordering::Relaxed)))
                .min_by_key(|(_, waiting)| *waiting)?;
            let counted = (lane.waiting).compare_exchange(
                seen,
                seen + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            if counted.is_ok() {
                return Some((lane, Waiting(&lane.waiting)));
            }
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Plugin state per topic, for batches whose state the worker keeps ([`StateIn::Held`]); kept
/// across instance restarts and module swaps. Behind its own lock, held only to read or write
/// an entry (never while a batch runs), so callers can put a state back or restore one
/// without waiting for the plugin.
#[derive(Default, Clone)]
pub(crate) struct HeldStates(Arc<Mutex<HashMap<String, Vec<u8>>>>);

impl HeldStates {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        // Each operation leaves the map whole: a panic cannot break it.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, topic: &str) -> Option<Vec<u8>> {
        self.map().get(topic).cloned()
    }

    /// Sets (or with `None` drops) the state held for `topic`.
    fn set(&self, topic: &str, state: Option<Vec<u8>>) {
        put(&mut self.map(), topic, state);
    }

    /// [`HeldStates::set`] to `state` if the current one is `expected`; whether it was.
    fn replace_if(&self, topic: &str, expected: &Option<Vec<u8>>, state: Option<Vec<u8>>) -> bool {
        let mut map = self.map();
        let current = map.get(topic) == expected.as_ref();
        if current {
            put(&mut map, topic, state);
        }
        current
    }
}

fn put(map: &mut HashMap<String, Vec<u8>>, topic: &str, state: Option<Vec<u8>>) {
    match state {
        Some(state) => map.insert(topic.to_string(), state),
        None => map.remove(topic),
    };
}

/// A topic's turn to run its ingest chain: shared by batches of chains known to be stateless,
/// exclusive otherwise (see `IngestPlugins::turn`).
pub(crate) type TopicTurn = Arc<tokio::sync::RwLock<()>>;

impl Plugin {
    /// Reads, checks, compiles and starts the plugin of `section`. Blocking (compilation and
    /// `hw_init` run here): call it at startup or from `spawn_blocking`.
    pub fn load(engine: &PluginEngine, section: &PluginSection) -> Result<Plugin, PluginError> {
        Plugin::from_bytes(engine, section, &read_module(section)?)
    }

    /// Like [`Plugin::load`], with the module's bytes at hand.
    pub fn from_bytes(
        engine: &PluginEngine,
        section: &PluginSection,
        bytes: &[u8],
    ) -> Result<Plugin, PluginError> {
        check_section(section).map_err(|reason| PluginError::Invalid {
            plugin: section.name.clone(),
            reason,
        })?;
        let name: Arc<str> = Arc::from(section.name.as_str());
        let prepared = Prepared::for_instances(engine, section, &name, bytes)?;
        let stats = Arc::new(PluginStats::default());
        let held = HeldStates::default();
        let failures = Arc::new(AtomicU32::new(0));
        let several = prepared.len() > 1;
        let mut lanes = Vec::with_capacity(prepared.len());
        for (index, module) in prepared.into_iter().enumerate() {
            let worker = Worker {
                name: name.clone(),
                module,
                held: held.clone(),
                max_failures: section.max_consecutive_failures,
                failures: failures.clone(),
                stats: stats.clone(),
            };
            let (jobs, queue) = mpsc::channel(JOB_QUEUE);
            let thread = match several {
                true => format!("plugin-{}-{index}", section.name),
                false => format!("plugin-{}", section.name),
            };
            let turns = Turns::start(worker, queue, thread)
                .map_err(|e| PluginError::Engine(format!("cannot start a plugin thread: {e}")))?;
            lanes.push(Lane {
                jobs,
                turns,
                waiting: AtomicUsize::new(0),
            });
        }
        tracing::info!(plugin = %name, module = %section.module.display(), topics = ?section.topics, instances = lanes.len(), "plugin loaded");
        Ok(Plugin {
            name,
            section: section.clone(),
            engine: engine.clone(),
            stats,
            lanes,
            dispatch: tokio::sync::RwLock::new(()),
            failures,
            reloading: tokio::sync::Mutex::new(()),
            stateless: Mutex::default(),
            topic_turns: OnceLock::new(),
            held,
        })
    }

    /// Replaces the module with the one now at the configured path (same config and limits).
    /// The new module is compiled and initialised first, so a module that does not load leaves
    /// the running one in place; then it takes over between two batches: every batch runs whole
    /// on one module, none is lost or run twice, and no batch queued after the swap runs on the
    /// old module. A disabled plugin is enabled again.
    pub async fn reload(self: &Arc<Self>) -> Result<(), PluginError> {
        // One reload at a time: the engine's pool has room for one new set of instances.
        let _reloading = self.reloading.lock().await;
        let plugin = self.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let bytes = read_module(&plugin.section)?;
            Prepared::for_instances(&plugin.engine, &plugin.section, &plugin.name, &bytes)
        })
        .await
        .map_err(|e| PluginError::Engine(format!("plugin loader panicked: {e}")))??;
        self.swap(prepared).await
    }

    async fn swap(&self, prepared: Vec<Prepared>) -> Result<(), PluginError> {
        let stopped = || PluginError::Stopped {
            plugin: self.name.to_string(),
        };
        // The new module is not known to be stateless: cleared first, so that batches arriving
        // meanwhile wait alone; again once no batch of this plugin's topics runs (a batch that
        // shared its turn re-checks after it got it, see `IngestPlugins::turn`).
        self.stateless_topics().clear();
        let mut all_turns = Vec::new();
        for turn in self.topic_turns.get().into_iter().flatten() {
            all_turns.push(turn.clone().write_owned().await);
        }
        self.stateless_topics().clear();
        // Batches queued before this run on the old module, those queued after it (on any
        // instance) on the new one. A worker stopped by a panic gets no batches: skipped.
        let dispatch = self.dispatch.write().await;
        let mut swapped = Vec::with_capacity(self.lanes.len());
        for (lane, prepared) in self.lanes.iter().zip(prepared) {
            let (done, answer) = oneshot::channel();
            let swap = Work::Swap(Box::new(prepared), done);
            if lane.jobs.send(swap).await.is_ok() {
                lane.turns.wake_thread();
                swapped.push(answer);
            }
        }
        let mut live = 0;
        for answer in swapped {
            live += usize::from(answer.await.is_ok());
        }
        if live == 0 {
            return Err(stopped());
        }
        // Every batch of the old module has run: the new one starts with a clean record.
        self.failures.store(0, Ordering::Relaxed);
        self.stats.disabled.store(false, Ordering::Relaxed);
        PluginStats::add(&self.stats.reloads, 1);
        drop(dispatch);
        drop(all_turns);
        tracing::info!(plugin = %self.name, module = %self.section.module.display(), "plugin module replaced");
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the current module returned no state from its last batch of `topic`.
    pub(crate) fn is_stateless(&self, topic: &str) -> bool {
        self.stateless_topics().contains(topic)
    }

    fn stateless_topics(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // Holds no invariant a panic could break.
        self.stateless.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The turns of the ingest topics this plugin runs for, sorted by topic name.
    pub(crate) fn set_topic_turns(&self, turns: Vec<TopicTurn>) {
        let _ = self.topic_turns.set(turns);
    }

    pub fn attach(&self) -> Attach {
        self.section.attach
    }

    /// Where the module is read from, at load and at every reload.
    pub fn module_path(&self) -> &std::path::Path {
        &self.section.module
    }

    pub fn topics(&self) -> &[String] {
        &self.section.topics
    }

    pub fn dead_letter_topic(&self) -> &str {
        &self.section.dead_letter_topic
    }

    pub fn stats(&self) -> &PluginStats {
        &self.stats
    }

    /// Gives the worker the state it held for `topic` before a restart. Call before the
    /// plugin's first batch of `topic`.
    pub(crate) fn restore_held(&self, topic: &str, state: Vec<u8>) {
        self.held.set(topic, Some(state));
    }

    /// Drops the state held for `topic` (the topic was deleted).
    pub(crate) fn forget_held(&self, topic: &str) {
        self.held.set(topic, None);
    }

    /// Puts back the state held for `topic` before a batch (`before`) whose records did not
    /// reach the log, if the state is still the one that batch left (`after`). Returns whether
    /// it did: a later batch may have run meanwhile, its state built on this one.
    pub(crate) fn roll_back_held(
        &self,
        topic: &str,
        after: &Option<Vec<u8>>,
        before: Option<Vec<u8>>,
    ) -> bool {
        self.held.replace_if(topic, after, before)
    }

    pub fn is_disabled(&self) -> bool {
        self.stats.disabled.load(Ordering::Relaxed)
    }

    /// Runs the plugin on records of `topic`. Plugin failures are not errors here (they come
    /// back as dead letters); an error means the plugin stopped after a panic in the broker's own
    /// code (see `turns`).
    pub(crate) async fn process(
        &self,
        topic: &str,
        records: SourceBatch,
        state: StateIn,
    ) -> Result<PluginOutput, PluginError> {
        let stopped = || PluginError::Stopped {
            plugin: self.name.to_string(),
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            topic: topic.to_string(),
            records,
            state,
            reply,
        };
        let (lane, waiting) = {
            let _dispatch = self.dispatch.read().await;
            let (lane, waiting) = Waiting::on_least_busy(&self.lanes).ok_or_else(stopped)?;
            lane.jobs
                .send(Work::Batch(job))
                .await
                .map_err(|_| stopped())?;
            (lane, waiting)
        };
        lane.turns.run_or_wake(|| !answer.is_empty());
        let output = answer.await.map_err(|_| stopped())?;
        drop(waiting);
        match output.returned_state {
            // Checked first: no allocation per batch once the topic is known.
            Some(false) if !self.is_stateless(topic) => {
                self.stateless_topics().insert(topic.to_string());
            }
            Some(true) => {
                self.stateless_topics().remove(topic);
            }
            _ => {}
        }
        Ok(output)
    }
}

/// What starting a fresh instance costs (as the worker does after a failed batch): for the
/// plugin benchmark.
#[derive(Debug, Clone, Copy)]
pub struct StartCost {
    /// Compiling the module and checking its imports and exports (what loading a plugin or a
    /// hot reload costs before the first instance).
    pub compile: std::time::Duration,
    /// Mean time of one restart: the previous instance dropped, a new one instantiated and
    /// initialised (`hw_init`).
    pub per_start: std::time::Duration,
    /// The instantiation alone (store, instance, exports), within `per_start`.
    pub instantiate: std::time::Duration,
    /// Linear memory of one instance right after `hw_init`.
    pub linear_memory_bytes: usize,
}

/// Compiles `bytes` for `section` once with `engine` and restarts an instance `restarts` times
/// in a row; then keeps `alive` instances at once while `while_alive` runs (so a caller can
/// read the process's memory meanwhile).
pub fn measure_starts(
    engine: &PluginEngine,
    section: &PluginSection,
    bytes: &[u8],
    (restarts, alive): (usize, usize),
    while_alive: impl FnOnce(),
) -> Result<StartCost, PluginError> {
    let name: Arc<str> = Arc::from(section.name.as_str());
    let compiling = Instant::now();
    let prepared = Prepared::new(engine, section, &name, bytes)?;
    let compile = compiling.elapsed();
    let failed = |e: CallError| PluginError::Start {
        plugin: section.name.clone(),
        reason: e.to_string(),
    };
    let start = || {
        Instance::start(
            &prepared.pre,
            name.clone(),
            prepared.settings,
            &prepared.config,
        )
    };
    let mut current = Some(start().map_err(failed)?);
    let mut instantiating = std::time::Duration::ZERO;
    let started = Instant::now();
    for _ in 0..restarts.max(1) {
        drop(current.take());
        let before = Instant::now();
        let mut instance = Instance::instantiate(&prepared.pre, name.clone(), prepared.settings)
            .map_err(failed)?;
        instantiating += before.elapsed();
        instance.init(&prepared.config).map_err(failed)?;
        current = Some(instance);
    }
    let n = restarts.max(1) as u32;
    let per_start = started.elapsed() / n;
    let linear_memory_bytes = current.as_ref().map_or(0, Instance::memory_size);
    drop(current);
    let live = (0..alive)
        .map(|_| start().map_err(failed))
        .collect::<Result<Vec<_>, _>>()?;
    while_alive();
    drop(live);
    Ok(StartCost {
        compile,
        per_start,
        instantiate: instantiating / n,
        linear_memory_bytes,
    })
}

fn read_module(section: &PluginSection) -> Result<Vec<u8>, PluginError> {
    std::fs::read(&section.module).map_err(|source| PluginError::Read {
        plugin: section.name.clone(),
        path: section.module.display().to_string(),
        source,
    })
}

/// Longest plugin name: it is part of the meta keys its states are stored under (with a topic
/// name of up to 249 bytes), and LMDB keys hold at most 511 bytes.
const MAX_NAME_BYTES: usize = 200;

fn check_section(section: &PluginSection) -> Result<(), String> {
    if section.name.is_empty() || section.name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "a plugin name must have 1 to {MAX_NAME_BYTES} bytes, not {}",
            section.name.len()
        ));
    }
    crate::log::validate_topic_name(&section.dead_letter_topic)
        .map_err(|e| format!("dead_letter_topic: {e}"))?;
    if section.topics.contains(&section.dead_letter_topic) {
        return Err(format!(
            "dead_letter_topic {:?} is also one of its topics; failed records would loop",
            section.dead_letter_topic
        ));
    }
    if section.timeout_ms == 0 {
        return Err("timeout_ms must be > 0".into());
    }
    if !(1..=MAX_INSTANCES).contains(&section.instances) {
        return Err(format!(
            "instances must be 1 to {MAX_INSTANCES}, not {}",
            section.instances
        ));
    }
    Ok(())
}

/// The plugin's worker: owns the instance and applies the failure policy; run by its thread or
/// by a waiting caller (see `turns`).
pub(super) struct Worker {
    name: Arc<str>,
    module: Prepared,
    /// Plugin state per topic, for batches whose state the worker keeps ([`StateIn::Held`]).
    held: HeldStates,
    /// 0 never disables.
    max_failures: u32,
    /// Failed batches in a row, shared by the plugin's workers.
    failures: Arc<AtomicU32>,
    /// Also holds whether the plugin is disabled (for every worker).
    stats: Arc<PluginStats>,
}

impl Worker {
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Runs one batch (answering its caller) or swaps the module in.
    pub(super) fn run(&mut self, work: Work) {
        match work {
            Work::Batch(job) => {
                let output = self.handle(&job.topic, job.records, job.state);
                // The requester may have given up (its client went away); nothing to do.
                let _ = job.reply.send(output);
            }
            Work::Swap(prepared, done) => {
                // The failure record is reset by the plugin once every worker has swapped.
                self.module = *prepared;
                let _ = done.send(());
            }
        }
    }

    fn handle(&mut self, topic: &str, records: SourceBatch, state: StateIn) -> PluginOutput {
        PluginStats::add(&self.stats.records_in, records.records.len());
        let held_before = match state {
            StateIn::Held => Some(self.held.get(topic)),
            StateIn::Given(_) => None,
        };
        let mut out = PluginOutput {
            state: match state {
                StateIn::Held => held_before.clone().flatten(),
                StateIn::Given(state) => state,
            },
            ..PluginOutput::default()
        };
        for (batch, encoded_len) in split(topic, records, self.module.max_input_bytes) {
            self.run_batch(topic, batch, encoded_len, &mut out);
        }
        if let Some(before) = held_before.filter(|before| *before != out.state) {
            // Changed meanwhile only in a rare race: a failed batch's caller put its state back
            // (this batch ran on the state it left), or a batch that ran beside this one on
            // another instance returned a state first (batches run side by side only while the
            // plugin returns none). The held state stays as the other left it.
            if self.held.replace_if(topic, &before, out.state.clone()) {
                out.held_before = Some(before);
            } else {
                tracing::warn!(
                    plugin = &*self.name, topic,
                    "the plugin's state changed while a batch ran; that batch's new state is dropped"
                );
            }
        }
        out
    }

    /// Runs one call; on success the plugin's new state replaces `out.state`, on failure the
    /// state stays what it was before the call.
    /// `records_len`: the records' encoded size ([`convert::encoded_size`]).
    fn run_batch(
        &mut self,
        topic: &str,
        input: SourceBatch,
        records_len: usize,
        out: &mut PluginOutput,
    ) {
        if self.stats.disabled.load(Ordering::Relaxed) {
            self.module.instance = None;
            self.dead_letter_all(topic, input, "plugin disabled", out);
            return;
        }
        let started = Instant::now();
        let result = self.call(topic, &input, records_len, out.state.as_deref());
        self.stats.record_call(started.elapsed());
        match result {
            Ok(mut decoded) => {
                let returned = decoded.state.is_some();
                out.returned_state = Some(out.returned_state.unwrap_or(false) || returned);
                self.failures.store(0, Ordering::Relaxed);
                out.state = decoded.state.take();
                self.accept(topic, input, decoded, out);
            }
            Err(error) => self.fail(topic, input, error, out),
        }
    }

    fn call(
        &mut self,
        topic: &str,
        input: &SourceBatch,
        records_len: usize,
        state: Option<&[u8]>,
    ) -> Result<Decoded, CallError> {
        let m = &mut self.module;
        let instance = match m.instance.take() {
            Some(instance) => instance,
            None => {
                PluginStats::add(&self.stats.restarts, 1);
                Instance::start(&m.pre, self.name.clone(), m.settings, &m.config)?
            }
        };
        let instance = m.instance.insert(instance);
        let records = input.records.len();
        let len = convert::input_len(records, records_len, state);
        let output =
            instance.process(len, |buf| convert::encode_input(topic, input, state, buf))?;
        convert::decode_output(output, records)
    }

    fn accept(
        &mut self,
        topic: &str,
        mut input: SourceBatch,
        decoded: Decoded,
        out: &mut PluginOutput,
    ) {
        let (inputs, kept) = (input.records.len(), decoded.kept.len());
        PluginStats::add(&self.stats.records_out, kept);
        // Uses of each input still to come: the last one takes the record (leaving a default
        // in its place), earlier ones (a record kept twice, or kept and reported failed) clone.
        let mut uses = vec![0u32; inputs];
        for k in &decoded.kept {
            if let OutEntry::Input(index) = *k {
                uses[index as usize] += 1;
            }
        }
        let mut failed = 0;
        let mut reported = vec![false; if decoded.errors.is_empty() { 0 } else { inputs }];
        for (index, message) in decoded.errors {
            // Indexes were checked against the batch; a repeated index dead-letters once.
            if std::mem::replace(&mut reported[index], true) {
                continue;
            }
            let r = match uses[index] {
                0 => std::mem::take(&mut input.records[index]),
                _ => input.records[index].clone(),
            };
            let letter = self.dead_letter(topic, &input, index, r, &message);
            out.dead.push(letter);
            failed += 1;
        }
        PluginStats::add(
            &self.stats.records_dropped,
            inputs.saturating_sub(kept + failed),
        );
        let mut records = input.records;
        if kept_in_order(&decoded.kept) && out.kept.is_empty() {
            // A filter or pass-through: move the kept records to the front, in place.
            for (to, k) in decoded.kept.iter().enumerate() {
                // A record kept where it is (every one, for a pass-through) needs no move.
                if let OutEntry::Input(from) = *k {
                    if from as usize != to {
                        records.swap(to, from as usize);
                    }
                }
            }
            records.truncate(kept);
            out.kept = records;
            return;
        }
        out.kept.reserve(kept);
        let mut written = decoded.written;
        for k in decoded.kept {
            let record = match k {
                OutEntry::Written(i) => match std::mem::take(&mut written[i as usize]) {
                    (Some(target), record) if target != topic => {
                        out.routed.push((target, record));
                        continue;
                    }
                    (_, record) => record,
                },
                OutEntry::Input(index) => {
                    let index = index as usize;
                    uses[index] -= 1;
                    match uses[index] {
                        0 => std::mem::take(&mut records[index]),
                        _ => records[index].clone(),
                    }
                }
            };
            out.kept.push(record);
        }
    }

    fn fail(&mut self, topic: &str, input: SourceBatch, error: CallError, out: &mut PluginOutput) {
        // A failure the plugin reported itself leaves it in a known state; anything else
        // (trap, timeout, garbage) may have corrupted it, so start afresh next time. A batch
        // the broker could not pass is not the plugin's failure: it never ran on it.
        let counts = match error {
            CallError::Failed(_) => true,
            CallError::Host(_) => false,
            _ => {
                self.module.instance = None;
                true
            }
        };
        let failures = match counts {
            true => self.failures.fetch_add(1, Ordering::Relaxed) + 1,
            false => self.failures.load(Ordering::Relaxed),
        };
        PluginStats::add(&self.stats.failed_batches, 1);
        let message = error.to_string();
        tracing::warn!(
            plugin = &*self.name,
            topic,
            records = input.records.len(),
            error = %message,
            "plugin failed a batch; its records go to the dead-letter topic"
        );
        let disable = self.max_failures > 0 && failures >= self.max_failures;
        if disable && !self.stats.disabled.swap(true, Ordering::Relaxed) {
            self.module.instance = None;
            tracing::error!(
                plugin = &*self.name,
                "plugin disabled after {failures} failed batches in a row; its records now go \
                 to the dead-letter topic"
            );
        }
        self.dead_letter_all(topic, input, &message, out);
    }

    fn dead_letter_all(
        &self,
        topic: &str,
        mut input: SourceBatch,
        error: &str,
        out: &mut PluginOutput,
    ) {
        out.dead.reserve(input.records.len());
        let records = std::mem::take(&mut input.records);
        for (index, r) in records.into_iter().enumerate() {
            out.dead
                .push(self.dead_letter(topic, &input, index, r, error));
        }
    }

    /// The dead letter for `record`, record `index` of `input`.
    fn dead_letter(
        &self,
        topic: &str,
        input: &SourceBatch,
        index: usize,
        record: NewRecord,
        error: &str,
    ) -> NewRecord {
        PluginStats::add(&self.stats.records_failed, 1);
        let origin = Origin {
            plugin: &self.name,
            topic,
            partition: input.partition,
            offset: input.offset(index),
        };
        dead_letter(record, &origin, error)
    }
}

/// Whether every kept record is an input record, each once, in input order.
fn kept_in_order(kept: &[OutEntry]) -> bool {
    let mut next = 0;
    kept.iter().all(|k| match *k {
        OutEntry::Input(index) if index >= next => {
            next = index + 1;
            true
        }
        _ => false,
    })
}

/// Splits records of `topic` into calls of at most `max_bytes` of encoded records (a larger
/// record goes alone), each with its records' encoded size.
fn split(topic: &str, input: SourceBatch, max_bytes: usize) -> Vec<(SourceBatch, usize)> {
    let size_of = |index| convert::encoded_size(topic, &input, index);
    let total = (0..input.records.len()).map(size_of).sum();
    // The common case, one call: the records stay where they are.
    if !input.records.is_empty() && total <= max_bytes {
        return vec![(input, total)];
    }
    let sizes: Vec<usize> = (0..input.records.len()).map(size_of).collect();
    let SourceBatch {
        partition,
        offsets,
        records,
    } = input;
    let part = |records, offsets| SourceBatch {
        partition,
        offsets,
        records,
    };
    let mut batches = Vec::new();
    let (mut current, mut current_offsets, mut size) = (Vec::new(), Vec::new(), 0);
    for (index, (r, s)) in records.into_iter().zip(sizes).enumerate() {
        if !current.is_empty() && size + s > max_bytes {
            let offsets = std::mem::take(&mut current_offsets);
            batches.push((part(std::mem::take(&mut current), offsets), size));
            size = 0;
        }
        size += s;
        current.push(r);
        current_offsets.extend(offsets.get(index));
    }
    if !current.is_empty() {
        batches.push((part(current, current_offsets), size));
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn split_respects_the_budget_and_keeps_order() {
        let records: Vec<NewRecord> = (0..10u8)
            .map(|i| NewRecord {
                timestamp: i as i64,
                key: None,
                value: Some(Bytes::from(vec![i; 100])),
                headers: vec![],
            })
            .collect();
        let input = SourceBatch {
            partition: Some(3),
            offsets: (100..110).collect(),
            records,
        };
        let batches = split("t", input, 300);
        assert!(batches
            .iter()
            .all(|(b, _)| !b.records.is_empty() && b.records.len() <= 2));
        for (batch, size) in &batches {
            let sizes = (0..batch.records.len()).map(|i| convert::encoded_size("t", batch, i));
            assert_eq!(*size, sizes.sum::<usize>());
            assert!(*size <= 300);
            assert_eq!(batch.partition, Some(3));
            // Each record keeps its own offset.
            for (r, offset) in batch.records.iter().zip(&batch.offsets) {
                assert_eq!(*offset, 100 + r.timestamp);
            }
            assert_eq!(batch.offsets.len(), batch.records.len());
        }
        let order: Vec<i64> = batches
            .iter()
            .flat_map(|(b, _)| &b.records)
            .map(|r| r.timestamp)
            .collect();
        assert_eq!(order, (0..10).collect::<Vec<_>>());
        assert!(split("t", SourceBatch::default(), 300).is_empty());
    }
}
