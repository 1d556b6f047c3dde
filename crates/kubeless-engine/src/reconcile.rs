//! The reconciler: keeps one function worker ([`crate::function`]) per
//! stored Function, level-triggered.
//!
//! On every store change (and once at start, which is how functions come
//! back after a restart) it lists the Functions and diffs them against the
//! running workers: new ones get a worker, changed ones get their new spec
//! through a watch channel, removed ones (or ones re-created with a new uid)
//! are cancelled. Status-only writes compare equal and cost nothing.
//! Shutdown cancels every worker and waits for them, bounded by the
//! instances' stop grace.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kubeless_api::{Function, Kind};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Ctx;

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
    let mut changes = ctx.store.subscribe();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut tasks = JoinSet::new();
    loop {
        changes.borrow_and_update();
        let store = ctx.store.clone();
        match tokio::task::spawn_blocking(move || store.list(Kind::Function, None)).await {
            Ok(Ok(items)) => sync(&ctx, &mut workers, &mut tasks, items),
            Ok(Err(e)) => tracing::error!(error = %e, "could not list functions"),
            Err(e) => tracing::error!(error = %e, "listing functions was interrupted"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = changes.changed() => if r.is_err() { break },
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

fn sync(
    ctx: &Arc<Ctx>,
    workers: &mut HashMap<String, Worker>,
    tasks: &mut JoinSet<()>,
    items: Vec<serde_json::Value>,
) {
    let mut seen = std::collections::HashSet::new();
    for item in items {
        let f: Function = match serde_json::from_value(item) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a stored function that does not parse");
                continue;
            }
        };
        let f = normalized(f);
        let key = format!("{}/{}", f.metadata.namespace, f.metadata.name);
        seen.insert(key.clone());
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
    workers.retain(|key, w| {
        if seen.contains(key) {
            return true;
        }
        w.cancel.cancel();
        if let Some((ns, name)) = key.split_once('/') {
            ctx.logs.remove(ns, name);
        }
        false
    });
}
