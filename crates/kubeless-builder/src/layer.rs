//! Layers: a directory as a deterministic gzip-compressed tar.
//!
//! Entries are written in byte order of their paths, with modification
//! time 0, owner `0:0` and no user or group names; the gzip header carries
//! no time or name. So the same directory content always gives the same
//! layer digest, whoever builds it and when. Symbolic links are kept as
//! they are; hard links become separate files; other special files are
//! skipped.
//!
//! Two shapes:
//! - [`from_dir`], the function layer: the directory under a fixed prefix
//!   (`kubeless/`), modes normalised to `0755` (directories and
//!   executables) or `0644`, the artifact cache's bookkeeping left out;
//! - [`from_root`], a whole root filesystem (an image with no base,
//!   `kubeless push-rootfs`): entries at the top level (`etc/passwd`),
//!   permission bits kept (a `1777` `/tmp`, a `0700` directory) except the
//!   set-user-ID and set-group-ID bits, which an image assembled from
//!   copied files never needs; compressed faster and a little less
//!   tightly, being large.

use std::path::Path;

use bytes::Bytes;
use flate2::{Compression, GzBuilder};

use crate::{BuildError, sha256_digest};

/// Files left out of the layer (bookkeeping of the artifact cache).
pub const EXCLUDED: &[&str] = &[".kubeless-artifact"];

/// A built layer.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The compressed blob.
    pub blob: Bytes,
    /// `sha256:` of the compressed blob.
    pub digest: String,
    /// `sha256:` of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

/// How entries are written and compressed.
#[derive(Debug, Clone, Copy)]
struct Style {
    /// Keep permission bits (less set-ID bits) instead of `0755`/`0644`.
    keep_modes: bool,
    /// Names left out, at any depth.
    excluded: &'static [&'static str],
    /// gzip level (1 fastest, 9 smallest).
    level: u32,
}

const FUNCTION_LAYER: Style = Style {
    keep_modes: false,
    excluded: EXCLUDED,
    level: 6,
};

/// Level 1: a root filesystem is hundreds of MB, rebuilt whenever a
/// binary in it changes, and mostly pulled from a registry next door.
/// Measured on the images of `scripts/k8s-images.sh` (1.2 GB unpacked, a
/// debug build): 183 s instead of about 340 s at level 6, for 543 MB
/// instead of 459 MB.
const ROOT_LAYER: Style = Style {
    keep_modes: true,
    excluded: &[],
    level: 1,
};

/// Permission bits a root layer keeps: everything but set-user-ID and
/// set-group-ID.
const ROOT_MODE_MASK: u32 = 0o1777;

/// Tar `dir` under `prefix` (e.g. `kubeless`) and compress it.
pub fn from_dir(dir: &Path, prefix: &str) -> Result<Layer, BuildError> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let mut header = dir_header(0o755);
    tar.append_data(&mut header, format!("{prefix}/"), std::io::empty())
        .map_err(BuildError::io("write the layer entry for", dir))?;
    append_dir(&mut tar, dir, prefix, FUNCTION_LAYER)?;
    finish(tar, dir, FUNCTION_LAYER)
}

/// Tar a root filesystem (`dir` is `/`) and compress it.
pub fn from_root(dir: &Path) -> Result<Layer, BuildError> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    append_dir(&mut tar, dir, "", ROOT_LAYER)?;
    finish(tar, dir, ROOT_LAYER)
}

fn finish(tar: tar::Builder<Vec<u8>>, dir: &Path, style: Style) -> Result<Layer, BuildError> {
    let raw = tar
        .into_inner()
        .map_err(BuildError::io("finish the layer of", dir))?;
    let diff_id = sha256_digest(&raw);
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::new(style.level));
    std::io::Write::write_all(&mut gz, &raw)
        .map_err(BuildError::io("compress the layer of", dir))?;
    let blob = gz
        .finish()
        .map_err(BuildError::io("compress the layer of", dir))?;
    Ok(Layer {
        digest: sha256_digest(&blob),
        blob: Bytes::from(blob),
        diff_id,
    })
}

fn dir_header(mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(mode);
    h.set_size(0);
    stamp(&mut h);
    h
}

fn stamp(h: &mut tar::Header) {
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
}

fn append_dir(
    tar: &mut tar::Builder<Vec<u8>>,
    dir: &Path,
    prefix: &str,
    style: Style,
) -> Result<(), BuildError> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(BuildError::io("read", dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(BuildError::io("read", dir))?;
    names.sort();
    for name in names {
        let Some(name_str) = name.to_str() else {
            return Err(BuildError::UnsafeEntry {
                entry: name.to_string_lossy().to_string(),
                reason: "file names in a layer must be UTF-8".into(),
            });
        };
        if style.excluded.contains(&name_str) {
            continue;
        }
        let path = dir.join(&name);
        let entry = if prefix.is_empty() {
            name_str.to_string()
        } else {
            format!("{prefix}/{name_str}")
        };
        let meta = std::fs::symlink_metadata(&path).map_err(BuildError::io("read", &path))?;
        let ft = meta.file_type();
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if ft.is_dir() {
            let mut h = dir_header(if style.keep_modes {
                mode & ROOT_MODE_MASK
            } else {
                0o755
            });
            tar.append_data(&mut h, format!("{entry}/"), std::io::empty())
                .map_err(BuildError::io("write the layer entry for", &path))?;
            append_dir(tar, &path, &entry, style)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(BuildError::io("read", &path))?;
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            stamp(&mut h);
            tar.append_link(&mut h, &entry, &target)
                .map_err(BuildError::io("write the layer entry for", &path))?;
        } else if ft.is_file() {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if style.keep_modes {
                mode & ROOT_MODE_MASK
            } else if mode & 0o111 != 0 {
                0o755
            } else {
                0o644
            });
            h.set_size(meta.len());
            stamp(&mut h);
            let f = std::fs::File::open(&path).map_err(BuildError::io("read", &path))?;
            tar.append_data(&mut h, &entry, f)
                .map_err(BuildError::io("write the layer entry for", &path))?;
        }
        // Sockets, FIFOs and devices have no place in a layer: a container
        // runtime makes /dev itself.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(layer: &Layer) -> Vec<(String, u32, u64)> {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&layer.blob[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(crate::sha256_digest(&raw), layer.diff_id);
        let mut a = tar::Archive::new(&raw[..]);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().to_string(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn same_content_same_digest_sorted_and_stamped() {
        let make = |order: &[&str]| {
            let d = tempfile::tempdir().unwrap();
            for n in order {
                std::fs::write(d.path().join(n), n).unwrap();
            }
            std::fs::create_dir(d.path().join("sub")).unwrap();
            std::fs::write(d.path().join("sub/x.py"), "x").unwrap();
            std::fs::write(d.path().join(".kubeless-artifact"), "key").unwrap();
            std::os::unix::fs::symlink("b.py", d.path().join("link")).unwrap();
            d
        };
        let a = make(&["b.py", "a.py"]);
        // A different time stamp must not change the digest.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = make(&["a.py", "b.py"]);
        let la = from_dir(a.path(), "kubeless").unwrap();
        let lb = from_dir(b.path(), "kubeless").unwrap();
        assert_eq!(la.digest, lb.digest);
        let names: Vec<_> = entries(&la).into_iter().collect();
        let paths: Vec<_> = names.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "kubeless/",
                "kubeless/a.py",
                "kubeless/b.py",
                "kubeless/link",
                "kubeless/sub/",
                "kubeless/sub/x.py"
            ]
        );
        assert!(names.iter().all(|(_, _, mtime)| *mtime == 0));
        std::fs::write(b.path().join("a.py"), "changed").unwrap();
        assert_ne!(from_dir(b.path(), "kubeless").unwrap().digest, la.digest);
    }

    #[test]
    fn root_layer_keeps_modes_but_not_set_id_bits() {
        use std::os::unix::fs::PermissionsExt;
        let make = || {
            let d = tempfile::tempdir().unwrap();
            let p = d.path();
            std::fs::create_dir_all(p.join("usr/bin")).unwrap();
            std::fs::write(p.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p.join("usr/bin/tool"), PermissionsExt::from_mode(0o4755))
                .unwrap();
            std::fs::create_dir(p.join("tmp")).unwrap();
            std::fs::set_permissions(p.join("tmp"), PermissionsExt::from_mode(0o1777)).unwrap();
            std::fs::write(p.join("secret"), "x").unwrap();
            std::fs::set_permissions(p.join("secret"), PermissionsExt::from_mode(0o600)).unwrap();
            // Not excluded here: only the function layer leaves it out.
            std::fs::write(p.join(".kubeless-artifact"), "k").unwrap();
            std::os::unix::fs::symlink("usr/bin", p.join("bin")).unwrap();
            d
        };
        let a = make();
        let layer = from_root(a.path()).unwrap();
        let got = entries(&layer);
        let modes: Vec<(&str, u32)> = got.iter().map(|(p, m, _)| (p.as_str(), *m)).collect();
        assert_eq!(
            modes,
            [
                (".kubeless-artifact", 0o644),
                ("bin", 0o777),
                ("secret", 0o600),
                ("tmp/", 0o1777),
                ("usr/", 0o755),
                ("usr/bin/", 0o755),
                ("usr/bin/tool", 0o755),
            ]
        );
        assert!(got.iter().all(|(_, _, mtime)| *mtime == 0));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(from_root(make().path()).unwrap().digest, layer.digest);
    }
}
