//! The reconciler: keeps one function worker ([`crate::function`]) per
//! stored Function, level-triggered.
//!
//! At start (which is how functions come back after a restart) it lists the
//! Functions and diffs them against the running workers: new ones get a
//! worker, changed ones get their new spec through a watch channel, removed
//! ones (or ones re-created with a new uid) are cancelled. After that it
//! follows the store's per-write [`Change`](crate::store::Change)s and re-reads only the Function
//! a write touched; status writes (every function worker's own) are
//! skipped without a read. Listing everything on every write made a deploy
//! cost O(number of functions). If it falls behind the change channel it
//! lists everything again, so a missed change is never lost.
//! Shutdown cancels every worker and waits for them, bounded by the
//! instances' stop grace.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kubeless_api::{Function, Kind};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::store::ChangeKind;

struct Worker {
    uid: String,
    tx: watch::Sender<Function>,
    cancel: CancellationToken,
}

fn normalized(mut f: Function) -> Function {
    f.status = None;
    f.metadata.resource_version.clear();
    f
}

/// Reconcile until `shutdown`.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    // Subscribed before the first list, so no write falls between the two.
    let mut changes = ctx.store.changes();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut relist = true;
    loop {
        if relist {
            relist = false;
            let store = ctx.store.clone();
            match tokio::task::spawn_blocking(move || store.list(Kind::Function, None)).await {
                Ok(Ok(items)) => sync(&ctx, &mut workers, &mut tasks, items),
                Ok(Err(e)) => tracing::error!(error = %e, "could not list functions"),
                Err(e) => tracing::error!(error = %e, "listing functions was interrupted"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            change = changes.recv() => match change {
                Ok(c) if c.kind != Kind::Function || c.what == ChangeKind::Status => {}
                Ok(c) => {
                    let store = ctx.store.clone();
                    let (ns, name) = (c.namespace, c.name);
                    let key = format!("{ns}/{name}");
                    match tokio::task::spawn_blocking(move || store.get(Kind::Function, &ns, &name)).await {
                        Ok(Ok(item)) => sync_one(&ctx, &mut workers, &mut tasks, key, item),
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "could not read a changed function");
                            relist = true;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "reading a changed function was interrupted");
                            relist = true;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => relist = true,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    for w in workers.values() {
        w.cancel.cancel();
    }
    let bound = crate::instance::STOP_GRACE + Duration::from_secs(5);
    if tokio::time::timeout(bound, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!("some functions did not stop in time");
    }
}

/// Full diff: every stored Function against every worker.
fn sync(
    ctx: &Arc<Ctx>,
    workers: &mut HashMap<String, Worker>,
    tasks: &mut JoinSet<()>,
    items: Vec<serde_json::Value>,
) {
    let mut seen = std::collections::HashSet::new();
    for item in items {
        let Some(f) = parse(item) else { continue };
        let key = format!("{}/{}", f.metadata.namespace, f.metadata.name);
        seen.insert(key.clone());
        want(ctx, workers, tasks, key, f);
    }
    let gone: Vec<String> = workers
        .keys()
        .filter(|k| !seen.contains(*k))
        .cloned()
        .collect();
    for key in gone {
        forget(ctx, workers, &key);
    }
}

/// One Function changed: `item` is what the store holds now (`None` when it
/// was deleted).
fn sync_one(
    ctx: &Arc<Ctx>,
    workers: &mut HashMap<String, Worker>,
    tasks: &mut JoinSet<()>,
    key: String,
    item: Option<serde_json::Value>,
) {
    match item.and_then(parse) {
        Some(f) => want(ctx, workers, tasks, key, f),
        None => forget(ctx, workers, &key),
    }
}

fn parse(item: serde_json::Value) -> Option<Function> {
    match serde_json::from_value::<Function>(item) {
        Ok(f) => Some(normalized(f)),
        Err(e) => {
            tracing::warn!(error = %e, "skipping a stored function that does not parse");
            None
        }
    }
}

/// Make the worker for `key` run `f`: start one, hand it the new spec, or
/// replace it when the Function was re-created (new uid).
fn want(
    ctx: &Arc<Ctx>,
    workers: &mut HashMap<String, Worker>,
    tasks: &mut JoinSet<()>,
    key: String,
    f: Function,
) {
    match workers.get(&key) {
        Some(w) if w.uid == f.metadata.uid => {
            if *w.tx.borrow() != f {
                w.tx.send_replace(f);
            }
        }
        _ => {
            if let Some(old) = workers.remove(&key) {
                old.cancel.cancel();
            }
            let (tx, rx) = watch::channel(f.clone());
            let cancel = CancellationToken::new();
            tasks.spawn(crate::function::run(ctx.clone(), rx, cancel.clone()));
            workers.insert(
                key,
                Worker {
                    uid: f.metadata.uid.clone(),
                    tx,
                    cancel,
                },
            );
        }
    }
}

/// Stop the worker of a deleted Function and drop its log. Its route goes
/// first: the gateway answers 404 at once instead of forwarding to
/// instances that are already stopping (a 502) until the worker is done.
fn forget(ctx: &Arc<Ctx>, workers: &mut HashMap<String, Worker>, key: &str) {
    if let Some(w) = workers.remove(key) {
        if let Some((ns, name)) = key.split_once('/') {
            ctx.routes.remove(ns, name, &w.uid);
            ctx.logs.remove(ns, name);
        }
        w.cancel.cancel();
    }
}
