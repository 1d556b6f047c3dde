//! The function layer: a directory as a deterministic gzip-compressed tar.
//!
//! Entries are written in byte order of their paths, under a fixed prefix
//! (`kubeless/`), with modification time 0, owner `0:0`, no user or group
//! names, and modes normalised to `0755` (directories and executables) or
//! `0644`; the gzip header carries no time or name. So the same directory
//! content always gives the same layer digest, whoever builds it and when.
//! Symbolic links are kept as they are; other special files are skipped.

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

/// Tar `dir` under `prefix` (e.g. `kubeless`) and compress it.
pub fn from_dir(dir: &Path, prefix: &str) -> Result<Layer, BuildError> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let mut header = dir_header();
    tar.append_data(&mut header, format!("{prefix}/"), std::io::empty())
        .map_err(BuildError::io("write the layer entry for", dir))?;
    append_dir(&mut tar, dir, prefix)?;
    let raw = tar
        .into_inner()
        .map_err(BuildError::io("finish the layer of", dir))?;
    let diff_id = sha256_digest(&raw);
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
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

fn dir_header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    stamp(&mut h);
    h
}

fn stamp(h: &mut tar::Header) {
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
}

fn append_dir(tar: &mut tar::Builder<Vec<u8>>, dir: &Path, prefix: &str) -> Result<(), BuildError> {
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
                reason: "file names in a function layer must be UTF-8".into(),
            });
        };
        if EXCLUDED.contains(&name_str) {
            continue;
        }
        let path = dir.join(&name);
        let entry = format!("{prefix}/{name_str}");
        let meta = std::fs::symlink_metadata(&path).map_err(BuildError::io("read", &path))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            let mut h = dir_header();
            tar.append_data(&mut h, format!("{entry}/"), std::io::empty())
                .map_err(BuildError::io("write the layer entry for", &path))?;
            append_dir(tar, &path, &entry)?;
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
            use std::os::unix::fs::PermissionsExt;
            let exec = meta.permissions().mode() & 0o111 != 0;
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if exec { 0o755 } else { 0o644 });
            h.set_size(meta.len());
            stamp(&mut h);
            let f = std::fs::File::open(&path).map_err(BuildError::io("read", &path))?;
            tar.append_data(&mut h, &entry, f)
                .map_err(BuildError::io("write the layer entry for", &path))?;
        }
        // Sockets, FIFOs and devices have no place in a function layer.
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
}
