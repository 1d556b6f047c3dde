//! Memory limits for function instances, enforced with cgroups where the
//! machine lets this process write them (v1 `memory` controller or v2
//! `memory.max`). Where neither is writable the limit is only exported as
//! `FUNC_MEMORY_LIMIT`, and the server says so once at start.

use std::path::PathBuf;

use std::ffi::OsString;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    V1,
    V2,
}

/// Where instance cgroups are made, if anywhere.
#[derive(Debug, Clone, Default)]
pub struct MemoryLimits {
    base: Option<(PathBuf, Flavor)>,
}

/// Joins the cgroup named by `$0`, then execs the program (`$@`): a runtime
/// host process (whose workers then start inside the limit) or one worker
/// of a host the server runs in process, inside the limit from its first
/// byte.
const JOIN_AND_EXEC: &str = r#"echo $$ > "$0/cgroup.procs" && exec "$@""#;

impl MemoryLimits {
    /// Find a writable memory cgroup hierarchy.
    pub async fn detect() -> MemoryLimits {
        let v1 = PathBuf::from("/sys/fs/cgroup/memory");
        if v1.join("memory.limit_in_bytes").exists() {
            let base = v1.join("kubeless");
            if tokio::fs::create_dir_all(&base).await.is_ok() {
                return MemoryLimits {
                    base: Some((base, Flavor::V1)),
                };
            }
        }
        let v2 = PathBuf::from("/sys/fs/cgroup");
        let controllers = tokio::fs::read_to_string(v2.join("cgroup.controllers"))
            .await
            .unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            let base = v2.join("kubeless");
            if tokio::fs::create_dir_all(&base).await.is_ok()
                && tokio::fs::write(v2.join("cgroup.subtree_control"), "+memory")
                    .await
                    .is_ok()
                && tokio::fs::write(base.join("cgroup.subtree_control"), "+memory")
                    .await
                    .is_ok()
            {
                return MemoryLimits {
                    base: Some((base, Flavor::V2)),
                };
            }
        }
        MemoryLimits { base: None }
    }

    /// Whether limits are enforced on this machine.
    pub fn enforced(&self) -> bool {
        self.base.is_some()
    }

    /// The command line prefix that starts a program inside the cgroup
    /// `name`, limited to `bytes` (created on first use), or `None` when
    /// there is no limit or no cgroup support. The caller appends the
    /// program and its arguments.
    pub async fn wrapper(&self, name: &str, bytes: Option<u64>) -> Option<Vec<OsString>> {
        let (base, flavor) = self.base.as_ref()?;
        let bytes = bytes?;
        let dir = base.join(name);
        if let Err(e) = tokio::fs::create_dir_all(&dir).await {
            tracing::warn!(cgroup = %dir.display(), error = %e, "cannot create a memory cgroup; the limit is not enforced");
            return None;
        }
        let file = match flavor {
            Flavor::V1 => "memory.limit_in_bytes",
            Flavor::V2 => "memory.max",
        };
        if let Err(e) = tokio::fs::write(dir.join(file), bytes.to_string()).await {
            tracing::warn!(cgroup = %dir.display(), error = %e, "cannot set a memory limit; the limit is not enforced");
            return None;
        }
        Some(vec![
            "sh".into(),
            "-c".into(),
            JOIN_AND_EXEC.into(),
            dir.into_os_string(),
        ])
    }

    /// Remove an instance's cgroup once its processes are gone.
    pub async fn release(&self, name: &str) {
        if let Some((base, _)) = &self.base {
            let _ = tokio::fs::remove_dir(base.join(name)).await;
        }
    }
}
