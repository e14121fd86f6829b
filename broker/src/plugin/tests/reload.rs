//! Hot reload: a new module takes over between two batches; one that does not load leaves the
//! running one in place; a reload brings a disabled plugin back.

use std::sync::Arc;

use super::hostile::{keep_one, load, Wat};
use super::instances::{counting, spinning};
use super::*;
use crate::plugin::Plugin;

/// The single value a batch's output holds (the test modules keep exactly one record).
async fn answer(plugins: &IngestPlugins) -> String {
    let out = run(plugins, "t", &["in"]).await;
    let (kept, dead) = split_output(&out, "t");
    assert!(dead.is_empty() && out.dead_letters().is_empty());
    assert_eq!(kept.len(), 1, "exactly one record per batch");
    values(&kept)[0].to_string()
}

fn plugin(plugins: &IngestPlugins) -> Arc<Plugin> {
    plugins.plugins()[0].clone()
}

#[tokio::test]
async fn a_reload_swaps_the_module_between_batches() {
    reload_between_batches(1).await;
}

// Multi-threaded: batches run on their callers' threads when the worker is free and on its
// thread when not, with the swap queued among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_module_between_batches_run_by_their_callers() {
    reload_between_batches(1).await;
}

// Every instance takes the new module at the same point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_every_instance_between_batches() {
    reload_between_batches(3).await;
}

async fn reload_between_batches(instances: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_module(dir.path(), "p", &Wat::returning(&keep_one("old")).build());
    let mut s = section("p", &path, &["t"]);
    s.instances = instances;
    // The new module spins: a busy machine must not time it out.
    s.timeout_ms = 30_000;
    let plugins = Arc::new(load(vec![s]));
    assert_eq!(answer(&plugins).await, "old");
    let batches = |n: usize| -> Vec<_> {
        (0..n)
            .map(|_| {
                let plugins = plugins.clone();
                tokio::spawn(async move { answer(&plugins).await })
            })
            .collect()
    };

    // Batches in flight while the module is replaced: each runs whole on one module, once.
    let in_flight = batches(40);
    // The new module answers `new-N` on its instance's Nth call and takes a while per batch,
    // so that the batches after the reload run side by side and every instance runs some.
    let new = spinning(counting("new-0"), 10_000_000);
    write_module(dir.path(), "p", &new.build());
    plugin(&plugins).reload().await.unwrap();
    let mut firsts = 0;
    for task in batches(20) {
        let value = task.await.unwrap();
        assert!(
            value.starts_with("new-"),
            "after the reload returns: {value}"
        );
        firsts += usize::from(value == "new-1");
    }
    for task in in_flight {
        let value = task.await.unwrap();
        assert!(value == "old" || value.starts_with("new-"), "{value}");
        firsts += usize::from(value == "new-1");
    }
    assert_eq!(
        firsts, instances as usize,
        "every instance ran the new module (each answers new-1 once)"
    );
    let stats = plugin(&plugins).stats().snapshot();
    assert_eq!(stats.reloads, 1);
    assert_eq!(stats.calls, 61, "every batch ran exactly once");
    assert_eq!((stats.records_in, stats.records_out), (61, 61));
}

#[tokio::test]
async fn a_module_that_does_not_load_leaves_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_module(dir.path(), "p", &Wat::returning(&keep_one("good")).build());
    let plugins = load(vec![section("p", &path, &["t"])]);

    write_module(dir.path(), "p", b"\0asm garbage");
    let err = plugin(&plugins).reload().await.unwrap_err().to_string();
    assert!(err.contains("plugin p: module"), "{err}");
    let mut no_abi = Wat::returning(&keep_one("bad"));
    no_abi.abi = None;
    write_module(dir.path(), "p", &no_abi.build());
    let err = plugin(&plugins).reload().await.unwrap_err().to_string();
    assert!(
        err.contains("has no `headwater:abi` custom section"),
        "{err}"
    );
    let mut refuses = Wat::returning(&keep_one("bad"));
    refuses.init = "(i64.const 1)".into(); // hw_init answers with an (empty) message: refused
    write_module(dir.path(), "p", &refuses.build());
    let err = plugin(&plugins).reload().await.unwrap_err().to_string();
    assert!(err.contains("refused its config"), "{err}");
    std::fs::remove_file(&path).unwrap();
    let err = plugin(&plugins).reload().await.unwrap_err().to_string();
    assert!(err.contains("cannot read module"), "{err}");

    assert_eq!(answer(&plugins).await, "good");
    assert_eq!(plugin(&plugins).stats().snapshot().reloads, 0);
}

#[tokio::test]
async fn a_reload_brings_a_disabled_plugin_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_module(dir.path(), "p", &Wat::new("unreachable").build());
    let mut s = section("p", &path, &["t"]);
    s.max_consecutive_failures = 2;
    let plugins = load(vec![s]);
    for _ in 0..3 {
        let out = run(&plugins, "t", &["in"]).await;
        assert_eq!(split_output(&out, "dead-letters").1.len(), 1);
    }
    assert!(plugin(&plugins).is_disabled());

    write_module(dir.path(), "p", &Wat::returning(&keep_one("fixed")).build());
    plugin(&plugins).reload().await.unwrap();
    assert!(!plugin(&plugins).is_disabled());
    assert_eq!(answer(&plugins).await, "fixed");
}
