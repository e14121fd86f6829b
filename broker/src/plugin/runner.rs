//! One loaded plugin: the compiled module, a worker thread that owns the live instance, the
//! failure policy, and the counters.
//!
//! The worker is an actor: it alone touches the `Store`, takes batches from a bounded queue (so a
//! slow plugin slows its producers instead of piling up memory) and runs them one at a time on
//! its own thread, never on the async runtime. The failure policy lives here:
//! - a trap, timeout or bad output fails that batch only: its records become dead letters and the
//!   instance is thrown away, so the next batch starts from a fresh one (no corrupted state
//!   carries over);
//! - after `max_consecutive_failures` failed batches in a row the plugin is disabled: from then
//!   on its records go straight to the dead-letter topic with "plugin disabled", so nothing is
//!   lost while an operator looks into it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use wasmtime::{InstancePre, Module};

use super::abi;
use super::convert::{self, Decoded, SourceRecord};
use super::dead_letter::{dead_letter, Origin};
use super::engine::PluginEngine;
use super::instance::{CallError, Instance, Settings};
use super::linker::{linker, HostState};
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

/// Counters of one plugin, for metrics. Updated by the worker, read by anyone.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Calls into `hw_process`.
    pub calls: AtomicU64,
    /// Calls that failed as a whole (trap, timeout, bad output, plugin-reported failure).
    pub failed_batches: AtomicU64,
    pub records_in: AtomicU64,
    /// Records the plugin kept (in any topic).
    pub records_out: AtomicU64,
    /// Records sent to the dead-letter topic.
    pub records_failed: AtomicU64,
    /// Wall-clock time spent in calls, encoding and decoding included.
    pub busy_nanos: AtomicU64,
    /// Fresh instances started after a failure.
    pub restarts: AtomicU64,
    pub disabled: AtomicBool,
}

/// A point-in-time copy of [`PluginStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub calls: u64,
    pub failed_batches: u64,
    pub records_in: u64,
    pub records_out: u64,
    pub records_failed: u64,
    pub busy_nanos: u64,
    pub restarts: u64,
    pub disabled: bool,
}

impl PluginStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            calls: get(&self.calls),
            failed_batches: get(&self.failed_batches),
            records_in: get(&self.records_in),
            records_out: get(&self.records_out),
            records_failed: get(&self.records_failed),
            busy_nanos: get(&self.busy_nanos),
            restarts: get(&self.restarts),
            disabled: self.disabled.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// What one plugin made of the records of one request.
#[derive(Default)]
pub(crate) struct PluginOutput {
    /// Kept records and their target topic (`None`: the source topic), in output order.
    pub kept: Vec<(Option<String>, NewRecord)>,
    /// Dead letters, for the plugin's dead-letter topic.
    pub dead: Vec<NewRecord>,
}

struct Job {
    topic: String,
    records: Vec<SourceRecord>,
    reply: oneshot::Sender<PluginOutput>,
}

/// A loaded plugin. Dropping it (and every clone of its `Arc`) stops its worker thread.
pub struct Plugin {
    name: Arc<str>,
    attach: Attach,
    topics: Vec<String>,
    dead_letter_topic: String,
    stats: Arc<PluginStats>,
    jobs: mpsc::Sender<Job>,
}

impl Plugin {
    /// Reads, checks, compiles and starts the plugin of `section`. Blocking (compilation and
    /// `hw_init` run here): call it at startup or from `spawn_blocking`.
    pub fn load(engine: &PluginEngine, section: &PluginSection) -> Result<Plugin, PluginError> {
        let bytes = std::fs::read(&section.module).map_err(|source| PluginError::Read {
            plugin: section.name.clone(),
            path: section.module.display().to_string(),
            source,
        })?;
        Plugin::from_bytes(engine, section, &bytes)
    }

    /// Like [`Plugin::load`], with the module's bytes at hand.
    pub fn from_bytes(
        engine: &PluginEngine,
        section: &PluginSection,
        bytes: &[u8],
    ) -> Result<Plugin, PluginError> {
        let name: Arc<str> = Arc::from(section.name.as_str());
        let invalid = |reason: String| PluginError::Invalid {
            plugin: section.name.clone(),
            reason,
        };
        check_section(section).map_err(invalid)?;
        let module_err = |reason: String| PluginError::Module {
            plugin: section.name.clone(),
            path: section.module.display().to_string(),
            reason,
        };
        abi::check_version(bytes).map_err(module_err)?;
        let module = Module::new(engine.engine(), bytes)
            .map_err(|e| module_err(format!("does not compile: {e:#}")))?;
        abi::check_module(&module).map_err(module_err)?;
        let pre = linker(engine.engine())?
            .instantiate_pre(&module)
            .map_err(|e| module_err(format!("cannot be linked: {e:#}")))?;
        let settings = Settings {
            timeout_ms: section.timeout_ms,
            max_memory_bytes: usize::try_from(section.max_memory_bytes).unwrap_or(usize::MAX),
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
        let stats = Arc::new(PluginStats::default());
        let worker = Worker {
            name: name.clone(),
            pre,
            config,
            settings,
            instance: Some(instance),
            max_failures: section.max_consecutive_failures,
            failures: 0,
            disabled: false,
            max_input_bytes,
            stats: stats.clone(),
        };
        let (jobs, queue) = mpsc::channel(JOB_QUEUE);
        std::thread::Builder::new()
            .name(format!("plugin-{}", section.name))
            .spawn(move || worker.run(queue))
            .map_err(|e| PluginError::Engine(format!("cannot start a plugin thread: {e}")))?;
        tracing::info!(plugin = %name, module = %section.module.display(), topics = ?section.topics, "plugin loaded");
        Ok(Plugin {
            name,
            attach: section.attach,
            topics: section.topics.clone(),
            dead_letter_topic: section.dead_letter_topic.clone(),
            stats,
            jobs,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn attach(&self) -> Attach {
        self.attach
    }

    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    pub fn dead_letter_topic(&self) -> &str {
        &self.dead_letter_topic
    }

    pub fn stats(&self) -> &PluginStats {
        &self.stats
    }

    pub fn is_disabled(&self) -> bool {
        self.stats.disabled.load(Ordering::Relaxed)
    }

    /// Runs the plugin on records of `topic`. Plugin failures are not errors here (they come
    /// back as dead letters); an error means the worker thread is gone, which only a bug in the
    /// broker can cause.
    pub(crate) async fn process(
        &self,
        topic: &str,
        records: Vec<SourceRecord>,
    ) -> Result<PluginOutput, PluginError> {
        let stopped = || PluginError::Stopped {
            plugin: self.name.to_string(),
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            topic: topic.to_string(),
            records,
            reply,
        };
        self.jobs.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }
}

fn check_section(section: &PluginSection) -> Result<(), String> {
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
    Ok(())
}

/// The plugin's own thread: owns the instance and applies the failure policy.
struct Worker {
    name: Arc<str>,
    pre: InstancePre<HostState>,
    /// The CBOR config, kept to initialise fresh instances.
    config: Vec<u8>,
    settings: Settings,
    /// `None` after a failure (or once disabled): the next batch starts a fresh instance.
    instance: Option<Instance>,
    /// 0 never disables.
    max_failures: u32,
    /// Failed batches in a row.
    failures: u32,
    disabled: bool,
    max_input_bytes: usize,
    stats: Arc<PluginStats>,
}

impl Worker {
    fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(job) = jobs.blocking_recv() {
            let output = self.handle(&job.topic, job.records);
            // The requester may have given up (its client went away); nothing to do then.
            let _ = job.reply.send(output);
        }
    }

    fn handle(&mut self, topic: &str, records: Vec<SourceRecord>) -> PluginOutput {
        PluginStats::add(&self.stats.records_in, records.len());
        let mut out = PluginOutput::default();
        for batch in split(records, self.max_input_bytes) {
            self.run_batch(topic, batch, &mut out);
        }
        out
    }

    fn run_batch(&mut self, topic: &str, records: Vec<SourceRecord>, out: &mut PluginOutput) {
        if self.disabled {
            self.dead_letter_all(topic, records, "plugin disabled", out);
            return;
        }
        let started = Instant::now();
        let result = self.call(topic, &records);
        PluginStats::add(&self.stats.calls, 1);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
        match result {
            Ok(decoded) => {
                self.failures = 0;
                self.accept(topic, records, decoded, out);
            }
            Err(error) => self.fail(topic, records, error, out),
        }
    }

    fn call(&mut self, topic: &str, records: &[SourceRecord]) -> Result<Decoded, CallError> {
        let instance = match self.instance.take() {
            Some(instance) => instance,
            None => {
                PluginStats::add(&self.stats.restarts, 1);
                Instance::start(&self.pre, self.name.clone(), self.settings, &self.config)?
            }
        };
        let instance = self.instance.insert(instance);
        let input = convert::encode_input(topic, records);
        let output = instance.process(&input)?;
        convert::decode_output(output, records.len())
    }

    fn accept(
        &mut self,
        topic: &str,
        records: Vec<SourceRecord>,
        decoded: Decoded,
        out: &mut PluginOutput,
    ) {
        PluginStats::add(&self.stats.records_out, decoded.kept.len());
        out.kept.extend(decoded.kept);
        if decoded.errors.is_empty() {
            return;
        }
        let mut records: Vec<Option<SourceRecord>> = records.into_iter().map(Some).collect();
        for (index, message) in decoded.errors {
            // Indexes were checked against the batch; a repeated index dead-letters once.
            if let Some(r) = records.get_mut(index).and_then(Option::take) {
                out.dead.push(self.dead_letter(topic, r, &message));
            }
        }
    }

    fn fail(
        &mut self,
        topic: &str,
        records: Vec<SourceRecord>,
        error: CallError,
        out: &mut PluginOutput,
    ) {
        // A failure the plugin reported itself leaves it in a known state; anything else
        // (trap, timeout, garbage) may have corrupted it, so start afresh next time.
        if !matches!(error, CallError::Failed(_)) {
            self.instance = None;
        }
        self.failures += 1;
        PluginStats::add(&self.stats.failed_batches, 1);
        let message = error.to_string();
        tracing::warn!(
            plugin = &*self.name,
            topic,
            records = records.len(),
            error = %message,
            "plugin failed a batch; its records go to the dead-letter topic"
        );
        if self.max_failures > 0 && self.failures >= self.max_failures && !self.disabled {
            self.disabled = true;
            self.instance = None;
            self.stats.disabled.store(true, Ordering::Relaxed);
            tracing::error!(
                plugin = &*self.name,
                "plugin disabled after {} failed batches in a row; its records now go to the \
                 dead-letter topic",
                self.failures
            );
        }
        self.dead_letter_all(topic, records, &message, out);
    }

    fn dead_letter_all(
        &self,
        topic: &str,
        records: Vec<SourceRecord>,
        error: &str,
        out: &mut PluginOutput,
    ) {
        out.dead.reserve(records.len());
        for r in records {
            out.dead.push(self.dead_letter(topic, r, error));
        }
    }

    fn dead_letter(&self, topic: &str, r: SourceRecord, error: &str) -> NewRecord {
        PluginStats::add(&self.stats.records_failed, 1);
        let origin = Origin {
            plugin: &self.name,
            topic,
            partition: r.partition,
            offset: r.offset,
        };
        dead_letter(r.record, &origin, error)
    }
}

/// Splits records into calls of at most about `max_bytes` encoded (a larger record goes alone).
fn split(records: Vec<SourceRecord>, max_bytes: usize) -> Vec<Vec<SourceRecord>> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for r in records {
        let s = convert::estimated_size(&r.record);
        if !current.is_empty() && size + s > max_bytes {
            batches.push(std::mem::take(&mut current));
            size = 0;
        }
        size += s;
        current.push(r);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn split_respects_the_budget_and_keeps_order() {
        let records: Vec<SourceRecord> = (0..10u8)
            .map(|i| {
                SourceRecord::from(NewRecord {
                    timestamp: i as i64,
                    key: None,
                    value: Some(Bytes::from(vec![i; 100])),
                    headers: vec![],
                })
            })
            .collect();
        let batches = split(records, 300);
        assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 2));
        let order: Vec<i64> = batches
            .iter()
            .flatten()
            .map(|r| r.record.timestamp)
            .collect();
        assert_eq!(order, (0..10).collect::<Vec<_>>());
        assert!(split(Vec::new(), 300).is_empty());
    }
}
