//! Safe unpacking of function archives (`+zip`, `+compressedtar`).
//!
//! Archives come from users, so every entry is checked before anything is
//! written:
//! - paths must be relative and free of `..` (absolute paths, drive
//!   prefixes and parent components are refused, not rewritten);
//! - symbolic and hard links must have a relative target without `..`, so
//!   they can only point inside the destination;
//! - device files, FIFOs and other special entries are refused;
//! - the number of entries and the total unpacked bytes are capped by
//!   [`UnpackLimits`], counted while streaming, so a decompression bomb
//!   stops at the limit instead of filling the disk.
//!
//! Compressed tars are recognised by their magic bytes (gzip, bzip2, xz or
//! plain tar), like `tar xf` does, not by their name. Executable bits of
//! regular files are kept; ownership and timestamps are not.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

/// Caps applied while unpacking one archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Total bytes of file content written (default 512 MiB).
    pub max_total_bytes: u64,
    /// Number of archive entries, directories included (default 100 000).
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_total_bytes: 512 * 1024 * 1024,
            max_entries: 100_000,
        }
    }
}

/// Why an archive was refused or could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Entry path is absolute or contains `..`.
    #[error("archive entry {path:?} points outside the function directory")]
    UnsafePath { path: String },
    /// Link whose target could leave the destination.
    #[error("archive entry {path:?} links to {target:?}, outside the function directory")]
    UnsafeLink { path: String, target: String },
    /// Device, FIFO or another entry type that has no place in function code.
    #[error("archive entry {path:?} is a {kind}, which is not allowed in function archives")]
    UnsupportedEntry { path: String, kind: String },
    /// More content than [`UnpackLimits::max_total_bytes`].
    #[error("archive unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    /// More entries than [`UnpackLimits::max_entries`].
    #[error("archive has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    /// Not gzip, bzip2, xz nor an uncompressed tar.
    #[error("compressed tar is neither gzip, bzip2, xz nor a plain tar archive")]
    UnknownCompression,
    /// The zip archive is malformed.
    #[error("read zip archive")]
    Zip {
        #[source]
        source: zip::result::ZipError,
    },
    /// The tar stream is malformed or truncated.
    #[error("read tar archive")]
    Tar {
        #[source]
        source: io::Error,
    },
    /// The xz stream is malformed.
    #[error("decompress xz data: {message}")]
    Xz { message: String },
    /// Writing into the destination failed.
    #[error("write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Running totals checked against the limits.
struct Budget {
    limits: UnpackLimits,
    bytes: u64,
    entries: u64,
}

impl Budget {
    fn new(limits: &UnpackLimits) -> Self {
        Budget {
            limits: *limits,
            bytes: 0,
            entries: 0,
        }
    }

    fn count_entry(&mut self) -> Result<(), UnpackError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(UnpackError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    fn remaining(&self) -> u64 {
        self.limits.max_total_bytes.saturating_sub(self.bytes)
    }
}

/// Check an entry path and return it relative to the destination. `.`
/// components are dropped; an empty result (the archive root) is `None`.
fn safe_relative(raw: &str) -> Result<Option<PathBuf>, UnpackError> {
    let unsafe_path = || UnpackError::UnsafePath {
        path: raw.to_string(),
    };
    if raw.contains('\0') {
        return Err(unsafe_path());
    }
    // Archives written on Windows may use backslashes as separators.
    let normalised = raw.replace('\\', "/");
    let mut out = PathBuf::new();
    for component in Path::new(&normalised).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_path());
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// A link target is acceptable when it is relative and never climbs.
fn check_link_target(path: &str, target: &str) -> Result<(), UnpackError> {
    match safe_relative(target) {
        Ok(Some(_)) => Ok(()),
        _ => Err(UnpackError::UnsafeLink {
            path: path.to_string(),
            target: target.to_string(),
        }),
    }
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn create_parent(path: &Path) -> Result<(), UnpackError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(write_err(parent))?;
    }
    Ok(())
}

/// Stream `reader` into a new file at `path`, charging the budget as bytes
/// arrive. `read_error` classifies failures of the reader itself.
fn write_file(
    path: &Path,
    reader: &mut dyn Read,
    mode: Option<u32>,
    budget: &mut Budget,
    read_error: fn(io::Error) -> UnpackError,
) -> Result<(), UnpackError> {
    create_parent(path)?;
    // A previous entry of the same name (or a link) is replaced, as
    // `unzip -o` and `tar x` do; removing first avoids writing through a link.
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => fs::remove_file(path).map_err(write_err(path))?,
        _ => {}
    }
    let mut file = File::create(path).map_err(write_err(path))?;
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        if n as u64 > budget.remaining() {
            return Err(UnpackError::TooLarge {
                limit: budget.limits.max_total_bytes,
            });
        }
        budget.bytes += n as u64;
        file.write_all(&buf[..n]).map_err(write_err(path))?;
    }
    file.flush().map_err(write_err(path))?;
    set_mode(path, mode)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: Option<u32>) -> Result<(), UnpackError> {
    use std::os::unix::fs::PermissionsExt;
    // Keep the executable bits, always let the owner read and write, never
    // make files group- or world-writable.
    let mode = mode.map_or(0o644, |m| (m & 0o755) | 0o600);
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(write_err(path))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: Option<u32>) -> Result<(), UnpackError> {
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &str, path: &Path) -> Result<(), UnpackError> {
    create_parent(path)?;
    if fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir()) {
        fs::remove_file(path).map_err(write_err(path))?;
    }
    std::os::unix::fs::symlink(target, path).map_err(write_err(path))
}

#[cfg(not(unix))]
fn make_symlink(target: &str, path: &Path) -> Result<(), UnpackError> {
    Err(UnpackError::UnsupportedEntry {
        path: format!("{} -> {target}", path.display()),
        kind: "symbolic link".to_string(),
    })
}

/// Unpack a zip archive into `dest` (`unzip -o <file> -d <dest>`).
/// Returns the files and links written, relative to `dest`.
pub fn unpack_zip(
    bytes: &[u8],
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<Vec<PathBuf>, UnpackError> {
    let zip_err = |source| UnpackError::Zip { source };
    let mut archive = zip::ZipArchive::new(io::Cursor::new(bytes)).map_err(zip_err)?;
    let mut budget = Budget::new(limits);
    if archive.len() as u64 > limits.max_entries {
        return Err(UnpackError::TooManyEntries {
            limit: limits.max_entries,
        });
    }
    let mut written = Vec::new();
    for index in 0..archive.len() {
        budget.count_entry()?;
        let mut entry = archive.by_index(index).map_err(zip_err)?;
        let name = entry.name().map_err(zip_err)?.into_owned();
        let Some(relative) = safe_relative(&name)? else {
            continue;
        };
        let path = dest.join(&relative);
        if entry.is_dir() {
            fs::create_dir_all(&path).map_err(write_err(&path))?;
        } else if entry.is_symlink() {
            let mut target = String::new();
            // Link targets are short; anything longer is not a path.
            (&mut entry)
                .take(4096)
                .read_to_string(&mut target)
                .map_err(|e| zip_err(e.into()))?;
            check_link_target(&name, &target)?;
            make_symlink(&target, &path)?;
            written.push(relative);
        } else {
            let mode = entry.unix_mode();
            write_file(&path, &mut entry, mode, &mut budget, |e| UnpackError::Zip {
                source: e.into(),
            })?;
            written.push(relative);
        }
    }
    Ok(written)
}

/// Compression of a tar stream, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Gzip,
    Bzip2,
    Xz,
    None,
}

fn detect_compression(bytes: &[u8]) -> Option<Compression> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if bytes.starts_with(b"BZh") {
        Some(Compression::Bzip2)
    } else if bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(Compression::Xz)
    } else if bytes.get(257..262) == Some(b"ustar") {
        Some(Compression::None)
    } else {
        None
    }
}

/// Unpack a (gzip, bzip2, xz or un-) compressed tar into `dest`
/// (`tar xf <file> -C <dest>`). Returns the files and links written,
/// relative to `dest`.
pub fn unpack_compressed_tar(
    bytes: &[u8],
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<Vec<PathBuf>, UnpackError> {
    match detect_compression(bytes).ok_or(UnpackError::UnknownCompression)? {
        Compression::Gzip => unpack_tar(flate2::read::MultiGzDecoder::new(bytes), dest, limits),
        Compression::Bzip2 => unpack_tar(bzip2_rs::DecoderReader::new(bytes), dest, limits),
        Compression::None => unpack_tar(bytes, dest, limits),
        Compression::Xz => unpack_xz_tar(bytes, dest, limits),
    }
}

/// The xz decoder only writes into a `Write`, so it runs on a helper thread
/// feeding a pipe that the tar reader consumes: memory stays bounded and the
/// limits still apply while streaming. When the tar reader stops (done or
/// refused), the pipe closes and the decoder stops with a broken pipe
/// (Rust programs ignore SIGPIPE, so this is an error, not a signal).
fn unpack_xz_tar(
    bytes: &[u8],
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<Vec<PathBuf>, UnpackError> {
    let (reader, mut writer) = io::pipe().map_err(|source| UnpackError::Tar { source })?;
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            let mut input = BufReader::new(bytes);
            lzma_rs::xz_decompress(&mut input, &mut writer)
        });
        let unpacked = unpack_tar(reader, dest, limits);
        let decoded = decoder.join();
        match (unpacked, decoded) {
            (Ok(files), Ok(Ok(()))) => Ok(files),
            // A corrupt xz stream shows up in tar as a truncated archive; the
            // decoder's own error says more. A broken pipe only means tar
            // stopped reading first (after refusing an entry).
            (Ok(_), Ok(Err(e))) => Err(UnpackError::Xz {
                message: e.to_string(),
            }),
            (Err(UnpackError::Tar { .. }), Ok(Err(e))) if !is_broken_pipe(&e) => {
                Err(UnpackError::Xz {
                    message: e.to_string(),
                })
            }
            (Err(e), _) => Err(e),
            (Ok(_), Err(_)) => Err(UnpackError::Xz {
                message: "the decoder stopped unexpectedly".to_string(),
            }),
        }
    })
}

fn is_broken_pipe(e: &lzma_rs::error::Error) -> bool {
    matches!(e, lzma_rs::error::Error::IoError(io) if io.kind() == io::ErrorKind::BrokenPipe)
}

fn unpack_tar<R: Read>(
    reader: R,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<Vec<PathBuf>, UnpackError> {
    // Headers and padding also cost bytes; cap the raw tar stream too so
    // that oversized metadata (long names, pax records) cannot grow without
    // bound. Generous: 2 KiB of header per entry on top of the content.
    let stream_cap = limits
        .max_total_bytes
        .saturating_add(limits.max_entries.saturating_mul(2048))
        .saturating_add(1024 * 1024);
    let mut archive = tar::Archive::new(reader.take(stream_cap));
    let result = unpack_tar_entries(&mut archive, dest, limits);
    let mut rest = archive.into_inner();
    // Read what follows the end-of-archive marker, as `tar` does, so a
    // truncated or corrupt compressed stream is reported, not ignored.
    let result = result.and_then(|files| {
        io::copy(&mut rest, &mut io::sink())
            .map(|_| files)
            .map_err(|source| UnpackError::Tar { source })
    });
    match result {
        // The stream cap shows up as a truncated archive.
        Err(UnpackError::Tar { .. }) if rest.limit() == 0 => Err(UnpackError::TooLarge {
            limit: limits.max_total_bytes,
        }),
        other => other,
    }
}

fn unpack_tar_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<Vec<PathBuf>, UnpackError> {
    use tar::EntryType;
    let tar_err = |source| UnpackError::Tar { source };
    let mut budget = Budget::new(limits);
    let mut written = Vec::new();
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let kind = entry.header().entry_type();
        // Global pax headers describe the archive, not a file.
        if kind == EntryType::XGlobalHeader {
            continue;
        }
        budget.count_entry()?;
        let name = entry
            .path()
            .map_err(tar_err)?
            .to_string_lossy()
            .into_owned();
        let relative = safe_relative(&name)?;
        let link_target = || -> Result<String, UnpackError> {
            Ok(entry
                .link_name()
                .map_err(tar_err)?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default())
        };
        match kind {
            EntryType::Directory => {
                if let Some(relative) = relative {
                    let path = dest.join(relative);
                    fs::create_dir_all(&path).map_err(write_err(&path))?;
                }
            }
            EntryType::Regular | EntryType::Continuous => {
                let Some(relative) = relative else {
                    return Err(UnpackError::UnsafePath { path: name });
                };
                let path = dest.join(&relative);
                let mode = entry.header().mode().ok();
                write_file(&path, &mut entry, mode, &mut budget, |source| {
                    UnpackError::Tar { source }
                })?;
                written.push(relative);
            }
            EntryType::Symlink => {
                let target = link_target()?;
                check_link_target(&name, &target)?;
                let Some(relative) = relative else {
                    return Err(UnpackError::UnsafePath { path: name });
                };
                make_symlink(&target, &dest.join(&relative))?;
                written.push(relative);
            }
            EntryType::Link => {
                // Hard link targets are archive paths, relative to the root.
                let target = link_target()?;
                check_link_target(&name, &target)?;
                let Some(relative) = relative else {
                    return Err(UnpackError::UnsafePath { path: name });
                };
                let path = dest.join(&relative);
                let original = dest.join(&target);
                create_parent(&path)?;
                if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
                    fs::remove_file(&path).map_err(write_err(&path))?;
                }
                fs::hard_link(&original, &path).map_err(write_err(&path))?;
                written.push(relative);
            }
            other => {
                let kind = match other {
                    EntryType::Char => "character device",
                    EntryType::Block => "block device",
                    EntryType::Fifo => "FIFO",
                    EntryType::GNUSparse => "sparse file",
                    _ => "special file",
                };
                return Err(UnpackError::UnsupportedEntry {
                    path: name,
                    kind: kind.to_string(),
                });
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn small() -> UnpackLimits {
        UnpackLimits {
            max_total_bytes: 1024,
            max_entries: 10,
        }
    }

    /// A sandbox: `root/dest` is where archives go; anything appearing in
    /// `root` besides `dest` was written outside.
    struct Sandbox {
        root: tempfile::TempDir,
    }

    impl Sandbox {
        fn new() -> Self {
            let root = tempfile::tempdir().unwrap();
            fs::create_dir(root.path().join("dest")).unwrap();
            Sandbox { root }
        }
        fn dest(&self) -> PathBuf {
            self.root.path().join("dest")
        }
        fn assert_nothing_outside(&self) {
            let names: Vec<_> = fs::read_dir(self.root.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert_eq!(names, vec!["dest".to_string()]);
        }
    }

    fn zip_with(entries: &[(&str, &[u8], Option<u32>)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data, mode) in entries {
            let mut opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            if let Some(mode) = mode {
                opts = opts.unix_permissions(*mode);
            }
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// Raw tar header with an arbitrary (possibly hostile) name.
    fn tar_header(name: &str, kind: tar::EntryType, size: u64, link: Option<&str>) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        if let Some(link) = link {
            let raw = &mut h.as_old_mut().linkname;
            raw[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        h
    }

    fn tar_with(entries: &[(tar::Header, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (h, data) in entries {
            b.append(h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn xz(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        lzma_rs::xz_compress(&mut Cursor::new(bytes), &mut out).unwrap();
        out
    }

    fn good_tar() -> Vec<u8> {
        let mut exe = tar_header("bin/run.sh", tar::EntryType::Regular, 9, None);
        exe.set_mode(0o755);
        exe.set_cksum();
        tar_with(&[
            (tar_header("./", tar::EntryType::Directory, 0, None), b""),
            (
                tar_header("./hello.py", tar::EntryType::Regular, 5, None),
                b"hello",
            ),
            (exe, b"#!/bin/sh"),
            (
                tar_header("link.py", tar::EntryType::Symlink, 0, Some("hello.py")),
                b"",
            ),
            (
                tar_header("hard.py", tar::EntryType::Link, 0, Some("hello.py")),
                b"",
            ),
        ])
    }

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn zip_unpacks_with_modes() {
        let s = Sandbox::new();
        let bytes = zip_with(&[
            ("hello.py", b"hello", None),
            ("dir/run.sh", b"#!/bin/sh", Some(0o755)),
        ]);
        let files = unpack_zip(&bytes, &s.dest(), &UnpackLimits::default()).unwrap();
        assert_eq!(
            files,
            vec![PathBuf::from("hello.py"), PathBuf::from("dir/run.sh")]
        );
        assert_eq!(fs::read(s.dest().join("hello.py")).unwrap(), b"hello");
        #[cfg(unix)]
        assert_eq!(mode_of(&s.dest().join("dir/run.sh")), 0o755);
        s.assert_nothing_outside();
    }

    #[test]
    fn zip_refuses_parent_dir() {
        let s = Sandbox::new();
        let bytes = zip_with(&[("ok.py", b"ok", None), ("../evil", b"evil", None)]);
        let err = unpack_zip(&bytes, &s.dest(), &UnpackLimits::default()).unwrap_err();
        assert!(matches!(err, UnpackError::UnsafePath { .. }), "{err}");
        s.assert_nothing_outside();
        assert!(!s.root.path().join("evil").exists());
    }

    #[test]
    fn zip_refuses_absolute_and_symlinks_out() {
        let s = Sandbox::new();
        let bytes = zip_with(&[("/abs", b"x", None)]);
        assert!(matches!(
            unpack_zip(&bytes, &s.dest(), &UnpackLimits::default()),
            Err(UnpackError::UnsafePath { .. })
        ));
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.add_symlink("etc", "/etc", zip::write::SimpleFileOptions::default())
            .unwrap();
        let bytes = w.finish().unwrap().into_inner();
        assert!(matches!(
            unpack_zip(&bytes, &s.dest(), &UnpackLimits::default()),
            Err(UnpackError::UnsafeLink { .. })
        ));
        assert!(fs::symlink_metadata(s.dest().join("etc")).is_err());
        s.assert_nothing_outside();
    }

    #[test]
    fn zip_bomb_stops_at_limit() {
        let s = Sandbox::new();
        let big = vec![0_u8; 1024 * 1024];
        let bytes = zip_with(&[("bomb", &big, None)]);
        assert!(bytes.len() < 8 * 1024, "deflate should squeeze zeros");
        let err = unpack_zip(&bytes, &s.dest(), &small()).unwrap_err();
        assert!(
            matches!(err, UnpackError::TooLarge { limit: 1024 }),
            "{err}"
        );
        let written = fs::metadata(s.dest().join("bomb")).map_or(0, |m| m.len());
        assert!(written <= 1024);
    }

    #[test]
    fn zip_too_many_entries() {
        let s = Sandbox::new();
        let names: Vec<String> = (0..11).map(|i| format!("f{i}")).collect();
        let entries: Vec<(&str, &[u8], Option<u32>)> = names
            .iter()
            .map(|n| (n.as_str(), &b"x"[..], None))
            .collect();
        let err = unpack_zip(&zip_with(&entries), &s.dest(), &small()).unwrap_err();
        assert!(matches!(err, UnpackError::TooManyEntries { limit: 10 }));
    }

    #[test]
    fn tar_gz_unpacks_links_and_modes() {
        let s = Sandbox::new();
        let files =
            unpack_compressed_tar(&gzip(&good_tar()), &s.dest(), &UnpackLimits::default()).unwrap();
        assert_eq!(files.len(), 4);
        assert_eq!(fs::read(s.dest().join("link.py")).unwrap(), b"hello");
        assert_eq!(fs::read(s.dest().join("hard.py")).unwrap(), b"hello");
        #[cfg(unix)]
        {
            assert_eq!(mode_of(&s.dest().join("bin/run.sh")), 0o755);
            assert_eq!(mode_of(&s.dest().join("hello.py")), 0o644);
        }
        s.assert_nothing_outside();
    }

    #[test]
    fn tar_xz_and_plain_tar_unpack() {
        for bytes in [xz(&good_tar()), good_tar()] {
            let s = Sandbox::new();
            unpack_compressed_tar(&bytes, &s.dest(), &UnpackLimits::default()).unwrap();
            assert_eq!(fs::read(s.dest().join("hello.py")).unwrap(), b"hello");
        }
    }

    #[test]
    fn tar_bz2_unpacks() {
        // Made with `tar cjf` from a python function and its requirements.
        let bytes = include_bytes!("../../tests/fixtures/hello.tar.bz2");
        let s = Sandbox::new();
        let files = unpack_compressed_tar(bytes, &s.dest(), &UnpackLimits::default()).unwrap();
        assert_eq!(
            files,
            vec![PathBuf::from("hello.py"), PathBuf::from("requirements.txt")]
        );
        assert_eq!(
            fs::read_to_string(s.dest().join("requirements.txt")).unwrap(),
            "requests\n"
        );
        #[cfg(unix)]
        assert_eq!(mode_of(&s.dest().join("hello.py")), 0o755);
    }

    #[test]
    fn tar_detects_by_magic_and_refuses_garbage() {
        let s = Sandbox::new();
        assert!(matches!(
            unpack_compressed_tar(b"definitely not a tar", &s.dest(), &small()),
            Err(UnpackError::UnknownCompression)
        ));
        // Valid magic, truncated body.
        for mut broken in [xz(&good_tar()), gzip(&good_tar())] {
            broken.truncate(broken.len() - 8);
            let s = Sandbox::new();
            let err = unpack_compressed_tar(&broken, &s.dest(), &UnpackLimits::default());
            assert!(err.is_err());
        }
    }

    #[test]
    fn tar_refuses_absolute_path() {
        let s = Sandbox::new();
        let bytes = gzip(&tar_with(&[(
            tar_header("/etc/x", tar::EntryType::Regular, 1, None),
            b"x",
        )]));
        let err = unpack_compressed_tar(&bytes, &s.dest(), &small()).unwrap_err();
        assert!(matches!(err, UnpackError::UnsafePath { .. }), "{err}");
        s.assert_nothing_outside();
        assert!(fs::read_dir(s.dest()).unwrap().next().is_none());
    }

    #[test]
    fn tar_refuses_parent_dir() {
        let s = Sandbox::new();
        let bytes = tar_with(&[(
            tar_header("a/../../evil", tar::EntryType::Regular, 1, None),
            b"x",
        )]);
        let err = unpack_compressed_tar(&bytes, &s.dest(), &small()).unwrap_err();
        assert!(matches!(err, UnpackError::UnsafePath { .. }), "{err}");
        s.assert_nothing_outside();
    }

    #[test]
    fn tar_refuses_escaping_links() {
        for (kind, target) in [
            (tar::EntryType::Symlink, "/etc"),
            (tar::EntryType::Symlink, "../outside"),
            (tar::EntryType::Link, "/etc/passwd"),
            (tar::EntryType::Link, "../x"),
        ] {
            let s = Sandbox::new();
            // A link followed by a write through it: neither may happen.
            let bytes = gzip(&tar_with(&[
                (tar_header("etc", kind, 0, Some(target)), b""),
                (tar_header("etc/x", tar::EntryType::Regular, 1, None), b"x"),
            ]));
            let err = unpack_compressed_tar(&bytes, &s.dest(), &small()).unwrap_err();
            assert!(matches!(err, UnpackError::UnsafeLink { .. }), "{err}");
            assert!(fs::symlink_metadata(s.dest().join("etc")).is_err());
            s.assert_nothing_outside();
        }
    }

    #[test]
    fn tar_refuses_devices() {
        let s = Sandbox::new();
        let bytes = tar_with(&[(tar_header("null", tar::EntryType::Char, 0, None), b"")]);
        let err = unpack_compressed_tar(&bytes, &s.dest(), &small()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "archive entry \"null\" is a character device, which is not allowed in function archives"
        );
    }

    #[test]
    fn tar_bomb_stops_at_limit() {
        let s = Sandbox::new();
        let big = vec![0_u8; 64 * 1024];
        let tar = tar_with(&[(
            tar_header("bomb", tar::EntryType::Regular, big.len() as u64, None),
            &big,
        )]);
        for bytes in [gzip(&tar), xz(&tar)] {
            let err = unpack_compressed_tar(&bytes, &s.dest(), &small()).unwrap_err();
            assert!(
                matches!(err, UnpackError::TooLarge { limit: 1024 }),
                "{err}"
            );
            assert!(fs::metadata(s.dest().join("bomb")).unwrap().len() <= 1024);
        }
        s.assert_nothing_outside();
    }

    #[test]
    fn tar_too_many_entries() {
        let s = Sandbox::new();
        let entries: Vec<(tar::Header, &[u8])> = (0..11)
            .map(|i| {
                (
                    tar_header(&format!("d{i}/"), tar::EntryType::Directory, 0, None),
                    &b""[..],
                )
            })
            .collect();
        let err = unpack_compressed_tar(&tar_with(&entries), &s.dest(), &small()).unwrap_err();
        assert!(matches!(err, UnpackError::TooManyEntries { limit: 10 }));
    }

    #[test]
    fn safe_relative_rules() {
        assert_eq!(
            safe_relative("./a/./b").unwrap(),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(safe_relative("./").unwrap(), None);
        assert_eq!(safe_relative("a\\b").unwrap(), Some(PathBuf::from("a/b")));
        for bad in ["../a", "a/../../b", "/a", "a\\..\\..\\b", "a\0b"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }
}
