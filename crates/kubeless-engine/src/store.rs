//! The durable object store: the embedded twin of the Kubernetes API's etcd.
//!
//! Objects are kept as JSON under `<Kind>/<namespace>/<name>` in one redb
//! file. Every write is one ACID transaction committed before the call
//! returns (with fsync, except status: see below), so an object the API
//! acknowledged survives `kill -9`.
//! A store-wide counter gives each write a `resourceVersion`; `generation`
//! moves only when `spec` changes, so status writes never look like new work.
//! Subscribers are told the latest resource version through a watch channel
//! and re-read what they need (level-triggered, like a Kubernetes informer
//! resync), so a missed notification can never lose an update. Those that
//! want to act on one object at a time also get a [`Change`] per write
//! ([`Store::changes`]); when they fall behind (the channel is bounded)
//! they are told so and re-list.
//!
//! Status writes skip the fsync (redb's non-durable commits) unless the
//! last durable commit is more than [`STATUS_SYNC`] old: status is derived
//! state that the function workers write again after a restart, and an
//! fsync per status change was most of the cost of deploying many
//! functions. The next durable commit persists them; a crash may lose the
//! last second of status changes (and reuse their resource versions),
//! never an acknowledged create, replace or delete.
//!
//! The methods are synchronous (redb is); async callers run them with
//! `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kubeless_api::Kind;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RV_KEY: &str = "resource_version";

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("open the store at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("store transaction")]
    Db(#[source] Box<redb::Error>),
    #[error("stored object {key} is not valid JSON")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: Kind,
        namespace: String,
        name: String,
    },
    #[error("{kind} {namespace}/{name} already exists")]
    AlreadyExists {
        kind: Kind,
        namespace: String,
        name: String,
    },
    #[error(
        "{kind} {namespace}/{name} was changed by someone else (resourceVersion {given} is not the current {current}); read it again and retry"
    )]
    Conflict {
        kind: Kind,
        namespace: String,
        name: String,
        given: String,
        current: String,
    },
    #[error("object has no metadata.name")]
    NoName,
}

fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// How many [`Change`]s a slow subscriber may fall behind before it is
/// told to re-list.
const CHANGE_BACKLOG: usize = 4096;

/// Status writes within this long of the last durable commit skip fsync.
const STATUS_SYNC: std::time::Duration = std::time::Duration::from_secs(1);

/// What one committed write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub what: ChangeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created or replaced (metadata or spec may have changed).
    Written,
    /// Only the status changed.
    Status,
    Deleted,
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    changes: Arc<watch::Sender<u64>>,
    events: broadcast::Sender<Change>,
    last_sync: Arc<std::sync::Mutex<std::time::Instant>>,
}

fn key(kind: Kind, ns: &str, name: &str) -> String {
    format!("{}/{}/{}", kind.name(), ns, name)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl Store {
    /// Open (or create) the store file.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            source: Box::new(e.into()),
        })?;
        // Make sure both tables exist so readers never see "table missing".
        let tx = db.begin_write().map_err(|e| open_err(path, e))?;
        let rv = {
            tx.open_table(OBJECTS).map_err(|e| open_err(path, e))?;
            let meta = tx.open_table(META).map_err(|e| open_err(path, e))?;
            meta.get(RV_KEY)
                .map_err(|e| open_err(path, e))?
                .map(|g| g.value())
                .unwrap_or(0)
        };
        tx.commit().map_err(|e| open_err(path, e))?;
        let (tx, _) = watch::channel(rv);
        Ok(Store {
            db: Arc::new(db),
            changes: Arc::new(tx),
            events: broadcast::channel(CHANGE_BACKLOG).0,
            last_sync: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
        })
    }

    /// A receiver that changes whenever anything is written.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// One [`Change`] per committed write from now on. A receiver that
    /// falls more than [`CHANGE_BACKLOG`] behind gets `Lagged` and should
    /// re-list.
    pub fn changes(&self) -> broadcast::Receiver<Change> {
        self.events.subscribe()
    }

    /// Read one object.
    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Result<Option<Value>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let table = tx.open_table(OBJECTS).map_err(db)?;
        let k = key(kind, ns, name);
        match table.get(k.as_str()).map_err(db)? {
            Some(v) => Ok(Some(decode(&k, v.value())?)),
            None => Ok(None),
        }
    }

    /// List objects of a kind, in one namespace or all, sorted by namespace and name.
    pub fn list(&self, kind: Kind, ns: Option<&str>) -> Result<Vec<Value>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let table = tx.open_table(OBJECTS).map_err(db)?;
        let prefix = match ns {
            Some(ns) => format!("{}/{}/", kind.name(), ns),
            None => format!("{}/", kind.name()),
        };
        let mut out = Vec::new();
        for item in table.range(prefix.as_str()..).map_err(db)? {
            let (k, v) = item.map_err(db)?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Create an object; fails when the name is taken. The server fills
    /// uid, resourceVersion, generation and creationTimestamp; status is dropped.
    pub fn create(&self, kind: Kind, mut obj: Value) -> Result<Value, StoreError> {
        let ns = meta_str(&obj, "namespace").to_string();
        let name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            return Err(StoreError::NoName);
        }
        let k = key(kind, &ns, &name);
        let change = change(kind, &ns, &name, ChangeKind::Written);
        self.write(change, Fsync::Always, |objects, rv| {
            if objects.get(k.as_str()).map_err(db)?.is_some() {
                return Err(StoreError::AlreadyExists {
                    kind,
                    namespace: ns.clone(),
                    name: name.clone(),
                });
            }
            set_kind(&mut obj, kind);
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
            let meta = metadata_mut(&mut obj);
            meta.insert("uid".into(), json!(new_uid()));
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            meta.insert("generation".into(), json!(1));
            meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
            meta.remove("deletionTimestamp");
            put(objects, &k, &obj)?;
            Ok(obj.clone())
        })
    }

    /// Replace an object's metadata and spec, keeping its status. When the
    /// new object names a resourceVersion it must be the current one.
    pub fn replace(&self, kind: Kind, mut obj: Value) -> Result<Value, StoreError> {
        let ns = meta_str(&obj, "namespace").to_string();
        let name = meta_str(&obj, "name").to_string();
        let given_rv = meta_str(&obj, "resourceVersion").to_string();
        let k = key(kind, &ns, &name);
        let change = change(kind, &ns, &name, ChangeKind::Written);
        self.write(change, Fsync::Always, |objects, rv| {
            let current = match objects.get(k.as_str()).map_err(db)? {
                Some(v) => decode(&k, v.value())?,
                None => {
                    return Err(StoreError::NotFound {
                        kind,
                        namespace: ns.clone(),
                        name: name.clone(),
                    });
                }
            };
            let current_rv = meta_str(&current, "resourceVersion").to_string();
            if !given_rv.is_empty() && given_rv != current_rv {
                return Err(StoreError::Conflict {
                    kind,
                    namespace: ns.clone(),
                    name: name.clone(),
                    given: given_rv.clone(),
                    current: current_rv,
                });
            }
            set_kind(&mut obj, kind);
            let spec_changed =
                obj.get("spec") != current.get("spec") || obj.get("data") != current.get("data");
            let generation = current
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                + i64::from(spec_changed);
            if let Some(o) = obj.as_object_mut() {
                match current.get("status") {
                    Some(s) => o.insert("status".into(), s.clone()),
                    None => o.remove("status"),
                };
            }
            let meta = metadata_mut(&mut obj);
            for field in ["uid", "creationTimestamp"] {
                if let Some(v) = current.pointer(&format!("/metadata/{field}")) {
                    meta.insert(field.into(), v.clone());
                }
            }
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            meta.insert("generation".into(), json!(generation));
            put(objects, &k, &obj)?;
            Ok(obj.clone())
        })
    }

    /// Set an object's status. Returns `None` when the object is gone; does
    /// not write (or bump the version) when the status is unchanged.
    /// With `uid`, only the object with that uid is written (a status from
    /// a deleted object's worker never lands on a new one of the same name).
    pub fn update_status(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        uid: Option<&str>,
        status: Value,
    ) -> Result<Option<Value>, StoreError> {
        match self.get(kind, ns, name)? {
            None => return Ok(None),
            Some(cur) if uid.is_some_and(|u| meta_str(&cur, "uid") != u) => return Ok(None),
            Some(cur) if cur.get("status") == Some(&status) => return Ok(Some(cur)),
            Some(_) => {}
        }
        let k = key(kind, ns, name);
        let change = change(kind, ns, name, ChangeKind::Status);
        self.write(change, Fsync::Periodic, |objects, rv| {
            let mut obj = match objects.get(k.as_str()).map_err(db)? {
                Some(v) => decode(&k, v.value())?,
                None => return Ok(None),
            };
            if uid.is_some_and(|u| meta_str(&obj, "uid") != u) {
                return Ok(None);
            }
            if let Some(o) = obj.as_object_mut() {
                o.insert("status".into(), status.clone());
            }
            metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
            put(objects, &k, &obj)?;
            Ok(Some(obj))
        })
    }

    /// Delete an object, returning it.
    pub fn delete(&self, kind: Kind, ns: &str, name: &str) -> Result<Value, StoreError> {
        let k = key(kind, ns, name);
        let change = change(kind, ns, name, ChangeKind::Deleted);
        self.write(change, Fsync::Always, |objects, _rv| {
            let removed = objects.remove(k.as_str()).map_err(db)?;
            match removed {
                Some(v) => decode(&k, v.value()),
                None => Err(StoreError::NotFound {
                    kind,
                    namespace: ns.to_string(),
                    name: name.to_string(),
                }),
            }
        })
    }

    /// Run `f` in one write transaction with the next resource version;
    /// commit only when it succeeds (with fsync as `sync` says), then
    /// notify subscribers.
    fn write<T>(
        &self,
        change: Change,
        sync: Fsync,
        f: impl FnOnce(&mut redb::Table<'_, &'static str, &'static [u8]>, u64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut tx = self.db.begin_write().map_err(db)?;
        // Write transactions are serialised by redb, so holding this lock
        // until the commit adds no waiting.
        let mut last_sync = self.last_sync.lock().unwrap_or_else(|p| p.into_inner());
        let durable = sync == Fsync::Always || last_sync.elapsed() >= STATUS_SYNC;
        if !durable {
            tx.set_durability(Durability::None);
        }
        let (out, rv) = {
            let mut meta = tx.open_table(META).map_err(db)?;
            let rv = meta
                .get(RV_KEY)
                .map_err(db)?
                .map(|g| g.value())
                .unwrap_or(0)
                + 1;
            let mut objects = tx.open_table(OBJECTS).map_err(db)?;
            let out = f(&mut objects, rv)?;
            meta.insert(RV_KEY, rv).map_err(db)?;
            (out, rv)
        };
        tx.commit().map_err(db)?;
        if durable {
            *last_sync = std::time::Instant::now();
        }
        drop(last_sync);
        self.changes.send_replace(rv);
        // No subscriber is fine.
        let _ = self.events.send(change);
        Ok(out)
    }
}

/// When a write waits for fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fsync {
    Always,
    /// At most once per [`STATUS_SYNC`].
    Periodic,
}

fn change(kind: Kind, ns: &str, name: &str, what: ChangeKind) -> Change {
    Change {
        kind,
        namespace: ns.to_string(),
        name: name.to_string(),
        what,
    }
}

fn open_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        source: Box::new(e.into()),
    }
}

fn put(
    objects: &mut redb::Table<'_, &'static str, &'static [u8]>,
    key: &str,
    obj: &Value,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(obj).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        source: e,
    })?;
    objects.insert(key, bytes.as_slice()).map_err(db)?;
    Ok(())
}

fn decode(key: &str, bytes: &[u8]) -> Result<Value, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        source: e,
    })
}

fn set_kind(obj: &mut Value, kind: Kind) {
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), json!(kind.api_version()));
        o.insert("kind".into(), json!(kind.name()));
    }
}

fn metadata_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        // Unreachable: metadata was just made an object.
        None => unreachable!("metadata is an object"),
    }
}

fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn func(name: &str, handler: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"handler": handler}})
    }

    #[test]
    fn create_get_replace_delete_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.redb");
        let store = Store::open(&path).expect("open");
        let created = store
            .create(Kind::Function, func("a", "m.f"))
            .expect("create");
        assert_eq!(created["metadata"]["generation"], 1);
        assert_eq!(created["kind"], "Function");
        assert!(matches!(
            store.create(Kind::Function, func("a", "m.f")),
            Err(StoreError::AlreadyExists { .. })
        ));
        store
            .update_status(
                Kind::Function,
                "default",
                "a",
                None,
                json!({"phase": "Ready"}),
            )
            .expect("status");
        let mut next = func("a", "m.g");
        next["metadata"]["resourceVersion"] = json!("1");
        assert!(matches!(
            store.replace(Kind::Function, next.clone()),
            Err(StoreError::Conflict { .. })
        ));
        next["metadata"]["resourceVersion"] = json!("");
        let replaced = store.replace(Kind::Function, next).expect("replace");
        assert_eq!(replaced["metadata"]["generation"], 2);
        assert_eq!(
            replaced["status"]["phase"], "Ready",
            "status survives replace"
        );
        assert_eq!(replaced["metadata"]["uid"], created["metadata"]["uid"]);
        store
            .create(Kind::Function, func("b", "m.f"))
            .expect("create b");
        drop(store);

        let store = Store::open(&path).expect("reopen");
        let all = store.list(Kind::Function, Some("default")).expect("list");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0]["spec"]["handler"], "m.g");
        assert!(
            store
                .list(Kind::HTTPTrigger, None)
                .expect("list")
                .is_empty()
        );
        store
            .delete(Kind::Function, "default", "a")
            .expect("delete");
        assert!(
            store
                .get(Kind::Function, "default", "a")
                .expect("get")
                .is_none()
        );
        let rv = *store.subscribe().borrow();
        assert!(
            rv >= 5,
            "resource version keeps counting after reopen: {rv}"
        );
    }
}
