//! Secrets for functions: the embedded twin of Kubernetes secret volumes.
//!
//! A Function that mounts secret `S` at `/S` (what `--secrets S` writes)
//! gets the secret's keys as files `<root>/S/<key>` (mode 0600) in its
//! instance's private scratch directory; the host is told the root in
//! `KUBELESS_SECRETS_ROOT`. Secret values never go to the log.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use kubeless_api::{Kind, Secret};
use kubeless_plan::SecretMount;

use crate::store::Store;

/// Writes secret files for instances.
#[derive(Clone)]
pub struct SecretFiles {
    store: Store,
}

impl SecretFiles {
    pub fn new(store: Store) -> SecretFiles {
        SecretFiles { store }
    }

    /// Write every mounted secret under `root`; `None` when there are none.
    pub async fn materialize(
        &self,
        ns: &str,
        mounts: &[SecretMount],
        root: &Path,
    ) -> Result<Option<PathBuf>, String> {
        if mounts.is_empty() {
            return Ok(None);
        }
        let store = self.store.clone();
        let ns = ns.to_string();
        let mounts = mounts.to_vec();
        let root = root.to_path_buf();
        tokio::task::spawn_blocking(move || write_all(&store, &ns, &mounts, &root))
            .await
            .map_err(|e| format!("write secrets: {e}"))?
    }
}

fn write_all(
    store: &Store,
    ns: &str,
    mounts: &[SecretMount],
    root: &Path,
) -> Result<Option<PathBuf>, String> {
    for m in mounts {
        let obj = store
            .get(Kind::Secret, ns, &m.secret)
            .map_err(|e| format!("read secret {}: {e}", m.secret))?
            .ok_or_else(|| {
                format!(
                    "secret \"{}\" not found in namespace {ns}; create it with 'kubeless secret create {} --from-literal key=value'",
                    m.secret, m.secret
                )
            })?;
        let secret: Secret = serde_json::from_value(obj)
            .map_err(|e| format!("secret {} is malformed: {e}", m.secret))?;
        let rel: PathBuf = Path::new(&m.mount_path)
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        let dir = root.join(rel);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let _ = std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700));
        for (key, value) in &secret.data {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .map_err(|e| format!("secret {} key {key} is not base64: {e}", m.secret))?;
            if key.contains('/') || key == ".." || key == "." {
                return Err(format!("secret {} has an invalid key {key:?}", m.secret));
            }
            let path = dir.join(key);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            std::io::Write::write_all(&mut f, &bytes)
                .map_err(|e| format!("write {}: {e}", path.display()))?;
        }
    }
    Ok(Some(root.to_path_buf()))
}
