//! Apply image layers to a directory, safely, the way a container runtime
//! builds a root filesystem, so an image can be run under a sandbox without
//! one.
//!
//! Layers come from a registry, so nothing in them is trusted:
//! - entry paths must be relative and free of `..`; absolute paths and
//!   parent components are refused, not rewritten;
//! - nothing is ever written through a symbolic link that points out of the
//!   root: when a parent directory of an entry is a link (Debian's
//!   `lib -> usr/lib`), it is resolved inside the root, as if the root were
//!   `/` (`..` stops at the root, absolute targets start at it), with at
//!   most 40 links followed;
//! - symbolic links are created as they are when absolute (they mean a
//!   path inside the image once the image root is `/`), and refused when a
//!   relative target climbs above the root;
//! - hard links must name a regular file already unpacked inside the root;
//! - device nodes and FIFOs are skipped (they cannot be created without
//!   privileges and a function image has no use for them); set-user-ID,
//!   set-group-ID and sticky bits are dropped;
//! - whiteouts (`.wh.<name>` deletes `<name>` from lower layers,
//!   `.wh..wh..opq` empties its directory) are applied before the layer's
//!   own entries, as the OCI layer specification says;
//! - the number of entries and the bytes written are capped across all
//!   layers ([`UnpackLimits`]), counted while streaming.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::BuildError;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const MAX_LINK_HOPS: u32 = 40;

/// Caps for one image, across its layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    pub max_total_bytes: u64,
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_total_bytes: 8 * 1024 * 1024 * 1024,
            max_entries: 1_000_000,
        }
    }
}

/// What has been written so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub bytes: u64,
    pub entries: u64,
}

/// Apply one layer blob (gzip-compressed or plain tar) on top of `root`.
pub fn apply_layer(
    root: &Path,
    blob: &[u8],
    digest: &str,
    limits: &UnpackLimits,
    usage: &mut Usage,
) -> Result<(), BuildError> {
    let read_err = |source: io::Error| BuildError::LayerRead {
        digest: digest.to_string(),
        source,
    };
    let open = || -> Box<dyn Read + '_> {
        if blob.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(blob))
        } else {
            Box::new(blob)
        }
    };
    if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(read_err(io::Error::other(
            "zstd-compressed layers are not supported; push the image with gzip layers",
        )));
    }
    // Pass 1: whiteouts, against the lower layers only.
    let mut archive = tar::Archive::new(open());
    for entry in archive.entries().map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let raw = entry.path_bytes().into_owned();
        let Some(comps) = entry_components(&raw)? else {
            continue;
        };
        let Some((last, parents)) = comps.split_last() else {
            continue;
        };
        let name = last.as_bytes();
        if !name.starts_with(WHITEOUT.as_bytes()) {
            continue;
        }
        let Some(dir) = resolve_dir(root, parents, false, &raw)? else {
            continue;
        };
        if name == OPAQUE.as_bytes() {
            if let Ok(children) = fs::read_dir(&dir) {
                for child in children.flatten() {
                    remove_any(&child.path())?;
                }
            }
        } else {
            let target = &name[WHITEOUT.len()..];
            if target.is_empty() || target == b"." || target == b".." {
                return Err(unsafe_entry(&raw, "whiteout of an invalid name"));
            }
            remove_any(&dir.join(OsStr::from_bytes(target)))?;
        }
    }
    // Pass 2: the layer's own entries.
    let mut archive = tar::Archive::new(open());
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        usage.entries += 1;
        if usage.entries > limits.max_entries {
            return Err(BuildError::TooLarge {
                what: format!("the image (entries, at layer {digest})"),
                limit: limits.max_entries,
            });
        }
        let raw = entry.path_bytes().into_owned();
        let Some(comps) = entry_components(&raw)? else {
            continue;
        };
        let Some((last, parents)) = comps.split_last() else {
            continue;
        };
        if last.as_bytes().starts_with(WHITEOUT.as_bytes()) {
            continue;
        }
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let Some(dir) = resolve_dir(root, parents, true, &raw)? else {
            continue;
        };
        let path = dir.join(last);
        let io_err = |action| BuildError::io(action, path.clone());
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_any(&path)?;
                        fs::create_dir(&path).map_err(io_err("create"))?;
                    }
                    Err(_) => fs::create_dir(&path).map_err(io_err("create"))?,
                }
                // Owner keeps write access so later layers can change it.
                fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(io_err("set permissions of"))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_any(&path)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io_err("create"))?;
                let room = limits.max_total_bytes.saturating_sub(usage.bytes);
                let n = io::copy(&mut (&mut entry).take(room.saturating_add(1)), &mut f)
                    .map_err(io_err("write"))?;
                if n > room {
                    return Err(BuildError::TooLarge {
                        what: "the image (unpacked)".into(),
                        limit: limits.max_total_bytes,
                    });
                }
                usage.bytes += n;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(io_err("set permissions of"))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .ok_or_else(|| unsafe_entry(&raw, "symbolic link without a target"))?;
                check_symlink_target(&raw, parents.len(), &target)?;
                remove_any(&path)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(io_err("create the link"))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .ok_or_else(|| unsafe_entry(&raw, "hard link without a target"))?;
                let tcomps = entry_components(&target)?
                    .ok_or_else(|| unsafe_entry(&raw, "hard link to the root"))?;
                let Some((tlast, tparents)) = tcomps.split_last() else {
                    return Err(unsafe_entry(&raw, "hard link to the root"));
                };
                let tdir = resolve_dir(root, tparents, false, &raw)?
                    .ok_or_else(|| unsafe_entry(&raw, "hard link to a file that does not exist"))?;
                let src = tdir.join(tlast);
                match fs::symlink_metadata(&src) {
                    Ok(m) if m.is_file() => {}
                    _ => {
                        return Err(unsafe_entry(
                            &raw,
                            "hard link to something that is not a regular file in the image",
                        ));
                    }
                }
                if src != path {
                    remove_any(&path)?;
                    fs::hard_link(&src, &path).map_err(io_err("create the link"))?;
                }
            }
            // Devices, FIFOs and metadata-only entries.
            _ => {}
        }
    }
    Ok(())
}

fn unsafe_entry(raw: &[u8], reason: &str) -> BuildError {
    BuildError::UnsafeEntry {
        entry: String::from_utf8_lossy(raw).to_string(),
        reason: reason.to_string(),
    }
}

/// Split an entry path into its components; `None` for the root itself.
fn entry_components(raw: &[u8]) -> Result<Option<Vec<OsString>>, BuildError> {
    if raw.starts_with(b"/") {
        return Err(unsafe_entry(raw, "absolute path"));
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry(raw, "path with '..'")),
            c => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// A relative symlink target must stay inside the root, counted from the
/// link's own directory (`depth` components below the root).
fn check_symlink_target(raw: &[u8], depth: usize, target: &[u8]) -> Result<(), BuildError> {
    if target.is_empty() {
        return Err(unsafe_entry(raw, "symbolic link with an empty target"));
    }
    if target.starts_with(b"/") {
        return Ok(());
    }
    let mut level = depth as i64;
    for c in target.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                level -= 1;
                if level < 0 {
                    return Err(unsafe_entry(
                        raw,
                        "symbolic link pointing outside the image",
                    ));
                }
            }
            _ => level += 1,
        }
    }
    Ok(())
}

/// The real directory for `parents` under `root`, following links inside
/// the root only. Missing directories are created when `create`, else
/// `None` is returned.
fn resolve_dir(
    root: &Path,
    parents: &[OsString],
    create: bool,
    raw: &[u8],
) -> Result<Option<PathBuf>, BuildError> {
    let mut current: Vec<OsString> = Vec::new();
    let mut pending: std::collections::VecDeque<OsString> = parents.iter().cloned().collect();
    let mut hops = 0;
    while let Some(comp) = pending.pop_front() {
        if comp == "." {
            continue;
        }
        if comp == ".." {
            current.pop();
            continue;
        }
        let here: PathBuf = current
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c))
            .join(&comp);
        match fs::symlink_metadata(&here) {
            Ok(m) if m.is_dir() => current.push(comp),
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(unsafe_entry(raw, "too many symbolic links in its path"));
                }
                let target =
                    fs::read_link(&here).map_err(BuildError::io("read the link", here.clone()))?;
                let bytes = target.as_os_str().as_bytes();
                if bytes.starts_with(b"/") {
                    current.clear();
                }
                let parts: Vec<OsString> = bytes
                    .split(|b| *b == b'/')
                    .filter(|c| !c.is_empty())
                    .map(|c| OsStr::from_bytes(c).to_os_string())
                    .collect();
                for p in parts.into_iter().rev() {
                    pending.push_front(p);
                }
            }
            Ok(_) => {
                return Err(unsafe_entry(
                    raw,
                    "a parent of this entry is not a directory",
                ));
            }
            Err(_) if create => {
                fs::create_dir(&here).map_err(BuildError::io("create", here.clone()))?;
                fs::set_permissions(&here, fs::Permissions::from_mode(0o755))
                    .map_err(BuildError::io("set permissions of", here.clone()))?;
                current.push(comp);
            }
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(
        current.iter().fold(root.to_path_buf(), |p, c| p.join(c)),
    ))
}

/// Remove a file, link or directory tree (never following links).
fn remove_any(path: &Path) -> Result<(), BuildError> {
    match fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => {
            make_writable(path);
            fs::remove_dir_all(path).map_err(BuildError::io("remove", path))
        }
        Ok(_) => fs::remove_file(path).map_err(BuildError::io("remove", path)),
    }
}

/// Directories unpacked read-only must become writable to be removed.
fn make_writable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    if let Ok(children) = fs::read_dir(dir) {
        for c in children.flatten() {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&c.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum E<'a> {
        Dir(&'a str),
        File(&'a str, &'a str),
        Sym(&'a str, &'a str),
        Hard(&'a str, &'a str),
        Raw(&'a [u8], tar::EntryType),
    }

    fn layer(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o755);
            h.set_mtime(0);
            match e {
                E::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, p, io::empty()).unwrap();
                }
                E::File(p, c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    b.append_data(&mut h, p, c.as_bytes()).unwrap();
                }
                E::Sym(p, t) | E::Hard(p, t) => {
                    h.set_entry_type(if matches!(e, E::Sym(..)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    h.set_size(0);
                    // Written raw so unsafe names reach the unpacker.
                    h.as_gnu_mut().unwrap().linkname[..t.len()].copy_from_slice(t.as_bytes());
                    h.as_gnu_mut().unwrap().name[..p.len()].copy_from_slice(p.as_bytes());
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
                E::Raw(p, kind) => {
                    h.set_entry_type(*kind);
                    h.set_size(1);
                    h.as_gnu_mut().unwrap().name[..p.len()].copy_from_slice(p);
                    h.set_cksum();
                    b.append(&h, &b"x"[..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn apply(root: &Path, entries: &[E<'_>]) -> Result<(), BuildError> {
        let mut usage = Usage::default();
        apply_layer(
            root,
            &layer(entries),
            "sha256:t",
            &UnpackLimits::default(),
            &mut usage,
        )
    }

    #[test]
    fn layers_stack_with_whiteouts_and_links_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        apply(
            root,
            &[
                E::Dir("usr/"),
                E::Dir("usr/lib/"),
                E::Sym("lib", "usr/lib"),
                E::File("usr/lib/a.so", "a"),
                E::File("etc/old", "old"),
                E::Dir("var/cache/"),
                E::File("var/cache/x", "x"),
                E::Sym("bin/python3", "/usr/bin/python3.11"),
            ],
        )
        .unwrap();
        apply(
            root,
            &[
                // Written through `lib -> usr/lib`, resolved inside the root.
                E::File("lib/b.so", "b"),
                E::Hard("usr/lib/c.so", "usr/lib/a.so"),
                E::File("etc/.wh.old", ""),
                E::File("var/cache/.wh..wh..opq", ""),
                E::File("var/cache/new", "n"),
                E::Raw(b"dev/null", tar::EntryType::Char),
            ],
        )
        .unwrap();
        assert_eq!(fs::read_to_string(root.join("usr/lib/b.so")).unwrap(), "b");
        assert_eq!(fs::read_to_string(root.join("usr/lib/c.so")).unwrap(), "a");
        assert!(!root.join("etc/old").exists());
        assert!(!root.join("var/cache/x").exists());
        assert!(root.join("var/cache/new").exists());
        assert!(!root.join("dev/null").exists());
        assert_eq!(
            fs::read_link(root.join("bin/python3")).unwrap(),
            Path::new("/usr/bin/python3.11")
        );
    }

    #[test]
    fn unsafe_entries_are_refused() {
        let cases: Vec<(Vec<E<'_>>, &str)> = vec![
            (vec![E::Raw(b"../escape", tar::EntryType::Regular)], "'..'"),
            (
                vec![E::Raw(b"a/../../escape", tar::EntryType::Regular)],
                "'..'",
            ),
            (
                vec![E::Raw(b"/etc/passwd", tar::EntryType::Regular)],
                "absolute",
            ),
            (vec![E::Sym("a/link", "../../outside")], "outside the image"),
            (vec![E::Hard("h", "/etc/passwd")], "absolute"),
            (vec![E::Hard("h", "missing")], "not a regular file"),
        ];
        for (entries, want) in cases {
            let d = tempfile::tempdir().unwrap();
            let e = apply(d.path(), &entries).unwrap_err().to_string();
            assert!(e.contains("refused") && e.contains(want), "{e}");
        }
    }

    #[test]
    fn links_out_of_the_root_are_never_written_through() {
        let outside = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        // An absolute link: inside the image it means /<outside path>.
        let target = outside.path().to_str().unwrap().to_string();
        apply(d.path(), &[E::Sym("evil", &target)]).unwrap();
        apply(d.path(), &[E::File("evil/owned", "x")]).unwrap();
        assert!(!outside.path().join("owned").exists());
        let resolved: PathBuf = d.path().join(target.trim_start_matches('/')).join("owned");
        assert!(resolved.exists());
    }

    #[test]
    fn limits_stop_bombs() {
        let d = tempfile::tempdir().unwrap();
        let mut usage = Usage::default();
        let limits = UnpackLimits {
            max_total_bytes: 3,
            max_entries: 10,
        };
        let e = apply_layer(
            d.path(),
            &layer(&[E::File("f", "12345")]),
            "sha256:t",
            &limits,
            &mut usage,
        )
        .unwrap_err();
        assert!(e.to_string().contains("larger than 3"), "{e}");
    }
}
