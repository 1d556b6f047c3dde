//! Function code as Kubeless stores it in `spec.function`, and as the
//! `prepare` init container writes it out.
//!
//! Encoding ([`encode_file`], [`encode_url`]) mirrors the Kubeless CLI: the
//! content type is `text` or `base64` by UTF-8 validity (or `url`), plus a
//! `+zip` / `+compressedtar` suffix taken from the file name, and the
//! checksum is `sha256:<hex>` of the raw bytes.
//!
//! Decoding goes in two steps: [`decode_inline`] turns `text`/`base64`
//! content into raw bytes (a `url` type has to be downloaded by the caller
//! first), then [`materialize`] verifies the checksum and writes the code
//! into a directory exactly like the Kubeless `prepare` container does:
//! archives are unpacked (see [`archive`] for the safety rules), single
//! files are written as `<module><suffix>`, and the dependency file is
//! copied next to them unless the archive carries its own (`+deps`).

pub mod archive;

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::types::FunctionSpec;

pub use archive::UnpackLimits;

/// Why function content could not be decoded, verified or written.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The content type is not a combination Kubeless understands.
    #[error("Unable to prepare function of type {content_type}: Unknown format")]
    UnknownFormat { content_type: String },
    /// The checksum does not start with `sha256:` (or is malformed).
    #[error("Unable to verify checksum {checksum}: Unknown format")]
    UnknownChecksumFormat { checksum: String },
    /// The bytes do not hash to the declared checksum.
    #[error("checksum mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    /// `url` content: the caller has to download the bytes first.
    #[error("function content is the URL {url:?}; download it before decoding")]
    NeedsFetch { url: String },
    /// `base64` content that is not valid base64.
    #[error("decode the base64 function content")]
    Base64 {
        #[source]
        source: base64::DecodeError,
    },
    /// A single-file function needs the module part of the handler as its file name.
    #[error("handler {handler:?} has no module part to name the function file after")]
    MissingModule { handler: String },
    /// A file name that would land outside the destination directory.
    #[error("refusing to write {path:?}: the path leaves the function directory")]
    UnsafePath { path: String },
    /// An archive could not be unpacked (or was refused).
    #[error("unpack the function archive")]
    Unpack {
        #[source]
        source: archive::UnpackError,
    },
    /// Writing into the destination directory failed.
    #[error("write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<archive::UnpackError> for ContentError {
    fn from(source: archive::UnpackError) -> Self {
        ContentError::Unpack { source }
    }
}

/// `spec.function-content-type`, `spec.function` and `spec.checksum` as the
/// Kubeless CLI computes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub content_type: String,
    pub function: String,
    pub checksum: String,
}

/// File name suffixes that make the CLI append `+compressedtar`.
const COMPRESSED_TAR_SUFFIXES: [&str; 9] = [
    ".tar.gz", ".taz", ".tgz", ".tar.bz2", ".tb2", ".tbz", ".tbz2", ".tz2", ".tar.xz",
];

/// The `+zip` / `+compressedtar` suffix the CLI derives from a file name
/// (case-sensitive, as in Kubeless).
fn archive_suffix(name: &str) -> &'static str {
    if name.ends_with(".zip") {
        "+zip"
    } else if COMPRESSED_TAR_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        "+compressedtar"
    } else {
        ""
    }
}

/// `sha256:<lowercase hex>` of `bytes`.
pub fn sha256_checksum(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Encode a local file the way `kubeless function deploy --from-file` does.
///
/// Valid UTF-8 becomes `text`, anything else `base64`; the archive suffix
/// comes from `file_name`. Only the exact type `text` is stored verbatim:
/// every other type (including the odd `text+zip` the CLI produces for a
/// UTF-8 file named `.zip`) is stored as padded standard base64.
pub fn encode_file(file_name: &str, bytes: &[u8]) -> Encoded {
    let base = if std::str::from_utf8(bytes).is_ok() {
        "text"
    } else {
        "base64"
    };
    let content_type = format!("{base}{}", archive_suffix(file_name));
    let function = match std::str::from_utf8(bytes) {
        Ok(text) if content_type == "text" => text.to_string(),
        _ => base64::engine::general_purpose::STANDARD.encode(bytes),
    };
    Encoded {
        content_type,
        function,
        checksum: sha256_checksum(bytes),
    }
}

/// Encode an `http(s)://` source: the content is the URL itself, the
/// checksum is that of the `downloaded` bytes, and the archive suffix is
/// taken from the URL with everything after the first `?` removed.
pub fn encode_url(url: &str, downloaded: &[u8]) -> Encoded {
    let path = url.split_once('?').map_or(url, |(before, _)| before);
    Encoded {
        content_type: format!("url{}", archive_suffix(path)),
        function: url.to_string(),
        checksum: sha256_checksum(downloaded),
    }
}

/// How `spec.function` is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Base {
    #[default]
    Text,
    Base64,
    Url,
}

/// Which archive, if any, the decoded bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Archive {
    #[default]
    None,
    Zip,
    CompressedTar,
}

/// A parsed `function-content-type`: a base, then optionally an archive
/// kind and `deps`, in any order (`url+zip+deps`, `base64+deps+zip`).
/// The empty string means `text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentType {
    pub base: Base,
    pub archive: Archive,
    /// The archive carries the dependency file itself.
    pub deps: bool,
}

impl ContentType {
    /// Whether the code is written as a single `<module><suffix>` file.
    pub fn is_single_file(&self) -> bool {
        self.archive == Archive::None
    }
}

impl FromStr for ContentType {
    type Err = ContentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || ContentError::UnknownFormat {
            content_type: s.to_string(),
        };
        if s.is_empty() {
            return Ok(ContentType::default());
        }
        let mut parts = s.split('+');
        let base = match parts.next() {
            Some("text") => Base::Text,
            Some("base64") => Base::Base64,
            Some("url") => Base::Url,
            _ => return Err(unknown()),
        };
        let mut ct = ContentType {
            base,
            ..ContentType::default()
        };
        for part in parts {
            match part {
                "zip" if ct.archive == Archive::None => ct.archive = Archive::Zip,
                "compressedtar" if ct.archive == Archive::None => {
                    ct.archive = Archive::CompressedTar
                }
                "deps" if !ct.deps => ct.deps = true,
                _ => return Err(unknown()),
            }
        }
        Ok(ct)
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.base {
            Base::Text => "text",
            Base::Base64 => "base64",
            Base::Url => "url",
        })?;
        match self.archive {
            Archive::None => {}
            Archive::Zip => f.write_str("+zip")?,
            Archive::CompressedTar => f.write_str("+compressedtar")?,
        }
        if self.deps {
            f.write_str("+deps")?;
        }
        Ok(())
    }
}

/// Raw function bytes decoded from an inline (`text`/`base64`) spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub content_type: ContentType,
    pub bytes: Vec<u8>,
}

/// Decode `spec.function` for the inline content types.
///
/// `text` yields the text bytes; `base64` (and `text+zip` /
/// `text+compressedtar`, which the CLI stores base64-encoded because an
/// archive cannot be text) yields the decoded bytes. Whitespace inside
/// base64 is ignored, as `base64 -d` does. A `url` type returns
/// [`ContentError::NeedsFetch`]: download the URL, then pass the bytes to
/// [`materialize`].
pub fn decode_inline(spec: &FunctionSpec) -> Result<Decoded, ContentError> {
    let content_type: ContentType = spec.function_content_type.parse()?;
    let bytes = match (content_type.base, content_type.archive) {
        (Base::Url, _) => {
            return Err(ContentError::NeedsFetch {
                url: spec.function.clone(),
            });
        }
        (Base::Text, Archive::None) => spec.function.as_bytes().to_vec(),
        (Base::Base64, _) | (Base::Text, _) => decode_base64(&spec.function)?,
    };
    Ok(Decoded {
        content_type,
        bytes,
    })
}

fn decode_base64(text: &str) -> Result<Vec<u8>, ContentError> {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(compact)
        .map_err(|source| ContentError::Base64 { source })
}

/// Check `bytes` against a `spec.checksum`. The empty checksum means "no
/// verification" (deprecated in Kubeless, still accepted).
pub fn verify_checksum(checksum: &str, bytes: &[u8]) -> Result<(), ContentError> {
    if checksum.is_empty() {
        return Ok(());
    }
    let Some(expected) = checksum.strip_prefix("sha256:") else {
        return Err(ContentError::UnknownChecksumFormat {
            checksum: checksum.to_string(),
        });
    };
    let actual = sha256_hex(bytes);
    if expected.eq_ignore_ascii_case(&actual) {
        Ok(())
    } else {
        Err(ContentError::ChecksumMismatch {
            expected: checksum.to_string(),
            actual: format!("sha256:{actual}"),
        })
    }
}

/// What [`materialize`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Materialized {
    /// Files and links written, relative to the destination directory, in
    /// the order they were written (directories are not listed).
    pub files: Vec<PathBuf>,
    /// Whether a non-empty dependency file (`<dest>/<depName>`) exists, so
    /// the dependency installation step has something to install.
    pub has_deps: bool,
}

/// Write a function's code into `dest` exactly like the Kubeless `prepare`
/// init container.
///
/// `raw_bytes` are the decoded content ([`decode_inline`]) or, for `url`
/// types, the downloaded bytes. They are first checked against
/// `spec.checksum` (as `sha256sum -c` does in Kubeless). Then:
/// - `+zip` / `+compressedtar`: the archive is unpacked into `dest` under
///   `limits` (see [`archive`]);
/// - otherwise the bytes are written to `<module><runtime_file_suffix>`,
///   where module is the part of `spec.handler` before the dot;
/// - when the runtime has a dependency file name and the content type has
///   no `+deps`, a non-empty `spec.deps` is written to `<dest>/<depName>`
///   (Kubeless also copied an empty one, which breaks Node.js module loading).
///
/// `dest` is created if missing. Nothing is ever written outside it.
pub fn materialize(
    spec: &FunctionSpec,
    raw_bytes: &[u8],
    runtime_file_suffix: &str,
    dep_file_name: Option<&str>,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<Materialized, ContentError> {
    let content_type: ContentType = spec.function_content_type.parse()?;
    verify_checksum(&spec.checksum, raw_bytes)?;
    std::fs::create_dir_all(dest).map_err(|source| ContentError::Write {
        path: dest.to_path_buf(),
        source,
    })?;

    let mut files = match content_type.archive {
        Archive::Zip => archive::unpack_zip(raw_bytes, dest, limits)?,
        Archive::CompressedTar => archive::unpack_compressed_tar(raw_bytes, dest, limits)?,
        Archive::None => {
            let module = spec.handler.split('.').next().unwrap_or_default();
            if module.is_empty() {
                return Err(ContentError::MissingModule {
                    handler: spec.handler.clone(),
                });
            }
            let name = format!("{module}{runtime_file_suffix}");
            write_plain_file(dest, &name, raw_bytes)?;
            vec![PathBuf::from(name)]
        }
    };

    let dep_name = dep_file_name.filter(|name| !name.is_empty());
    // Kubeless copied the dependency file even when empty; an empty
    // package.json makes Node.js refuse to load the module, so an empty
    // `spec.deps` writes nothing.
    if let Some(dep_name) = dep_name
        && !content_type.deps
        && !spec.deps.is_empty()
    {
        write_plain_file(dest, dep_name, spec.deps.as_bytes())?;
        files.push(PathBuf::from(dep_name));
    }
    let has_deps = match dep_name {
        Some(dep_name) => std::fs::metadata(dest.join(dep_name))
            .map(|meta| meta.is_file() && meta.len() > 0)
            .unwrap_or(false),
        None => false,
    };
    Ok(Materialized { files, has_deps })
}

/// Write a single file directly under `dest`; `name` must be one plain
/// path component.
fn write_plain_file(dest: &Path, name: &str, bytes: &[u8]) -> Result<(), ContentError> {
    let mut components = Path::new(name).components();
    let plain = matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(_)), None)
    );
    if !plain || name.contains('\\') {
        return Err(ContentError::UnsafePath {
            path: name.to_string(),
        });
    }
    let path = dest.join(name);
    std::fs::write(&path, bytes).map_err(|source| ContentError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_SHA: &str =
        "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

    fn ct(s: &str) -> ContentType {
        s.parse().unwrap()
    }

    #[test]
    fn checksum_is_sha256_of_raw_bytes() {
        assert_eq!(sha256_checksum(b"hello world"), HELLO_SHA);
    }

    #[test]
    fn encode_text_file() {
        let e = encode_file("helloget.py", b"def foo():\n  return 'hi'\n");
        assert_eq!(e.content_type, "text");
        assert_eq!(e.function, "def foo():\n  return 'hi'\n");
        assert_eq!(e.checksum, sha256_checksum(b"def foo():\n  return 'hi'\n"));
    }

    #[test]
    fn encode_binary_and_archives() {
        let bin = [0xff_u8, 0xfe, 0x00, 0x01];
        let e = encode_file("f.bin", &bin);
        assert_eq!(e.content_type, "base64");
        assert_eq!(e.function, "//4AAQ==");
        assert_eq!(e.checksum, sha256_checksum(&bin));
        assert_eq!(encode_file("f.zip", &bin).content_type, "base64+zip");
        for name in [
            "f.tar.gz",
            "f.taz",
            "f.tgz",
            "f.tar.bz2",
            "f.tb2",
            "f.tbz",
            "f.tbz2",
            "f.tz2",
            "f.tar.xz",
        ] {
            assert_eq!(encode_file(name, &bin).content_type, "base64+compressedtar");
        }
        assert_eq!(encode_file("f.ZIP", &bin).content_type, "base64");
        assert_eq!(encode_file("f.tar", &bin).content_type, "base64");
    }

    #[test]
    fn encode_text_named_zip_is_base64_stored() {
        let e = encode_file("odd.zip", b"hello world");
        assert_eq!(e.content_type, "text+zip");
        assert_eq!(e.function, "aGVsbG8gd29ybGQ=");
        assert_eq!(e.checksum, HELLO_SHA);
    }

    #[test]
    fn encode_urls() {
        let e = encode_url("https://example.com/f.py", b"hello world");
        assert_eq!(e.content_type, "url");
        assert_eq!(e.function, "https://example.com/f.py");
        assert_eq!(e.checksum, HELLO_SHA);
        assert_eq!(
            encode_url("http://h/a.zip?token=1", b"").content_type,
            "url+zip"
        );
        assert_eq!(
            encode_url("http://h/a.tgz?x=y.zip", b"").content_type,
            "url+compressedtar"
        );
        assert_eq!(encode_url("http://h/a.py?f=a.zip", b"").content_type, "url");
    }

    #[test]
    fn parse_content_types() {
        assert_eq!(ct(""), ContentType::default());
        assert_eq!(ct("text"), ContentType::default());
        assert_eq!(
            ct("base64+zip"),
            ContentType {
                base: Base::Base64,
                archive: Archive::Zip,
                deps: false
            }
        );
        assert_eq!(
            ct("url+compressedtar"),
            ContentType {
                base: Base::Url,
                archive: Archive::CompressedTar,
                deps: false
            }
        );
        let deps = ContentType {
            base: Base::Url,
            archive: Archive::Zip,
            deps: true,
        };
        assert_eq!(ct("url+zip+deps"), deps);
        assert_eq!(ct("url+deps+zip"), deps);
        assert_eq!(deps.to_string(), "url+zip+deps");
        for s in ["base64", "url", "text+zip", "base64+compressedtar+deps"] {
            assert_eq!(ct(s).to_string(), s);
        }
    }

    #[test]
    fn unknown_content_types_are_refused() {
        for s in [
            "binary",
            "zip+base64",
            "text+rar",
            "base64+zip+compressedtar",
            "text++zip",
            "TEXT",
            "text+deps+deps",
        ] {
            let err = s.parse::<ContentType>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("Unable to prepare function of type {s}: Unknown format")
            );
        }
    }

    fn spec(content_type: &str, function: &str) -> FunctionSpec {
        FunctionSpec {
            handler: "hello.foo".into(),
            function: function.into(),
            function_content_type: content_type.into(),
            ..FunctionSpec::default()
        }
    }

    #[test]
    fn decode_inline_text_and_base64() {
        let d = decode_inline(&spec("", "hello world")).unwrap();
        assert_eq!(d.bytes, b"hello world");
        let d = decode_inline(&spec("base64", "aGVsbG8g\nd29ybGQ=\n")).unwrap();
        assert_eq!(d.bytes, b"hello world");
        let d = decode_inline(&spec("text+zip", "aGVsbG8gd29ybGQ=")).unwrap();
        assert_eq!(d.bytes, b"hello world");
        assert_eq!(d.content_type.archive, Archive::Zip);
        assert!(matches!(
            decode_inline(&spec("base64", "!!!")),
            Err(ContentError::Base64 { .. })
        ));
    }

    #[test]
    fn decode_inline_url_needs_fetch() {
        let err = decode_inline(&spec("url+zip", "https://h/f.zip")).unwrap_err();
        assert!(matches!(&err, ContentError::NeedsFetch { url } if url == "https://h/f.zip"));
    }

    #[test]
    fn checksums_verify() {
        verify_checksum("", b"anything").unwrap();
        verify_checksum(HELLO_SHA, b"hello world").unwrap();
        verify_checksum(
            &HELLO_SHA.to_uppercase().replace("SHA256", "sha256"),
            b"hello world",
        )
        .unwrap();
        let err = verify_checksum("md5:abc", b"x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unable to verify checksum md5:abc: Unknown format"
        );
        let err = verify_checksum(HELLO_SHA, b"hello").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(HELLO_SHA), "{msg}");
        assert!(msg.contains(&sha256_checksum(b"hello")), "{msg}");
    }

    #[test]
    fn materialize_single_file_with_deps() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec("text", "print('hi')");
        s.checksum = sha256_checksum(b"print('hi')");
        s.deps = "requests\n".into();
        let m = materialize(
            &s,
            b"print('hi')",
            ".py",
            Some("requirements.txt"),
            dir.path(),
            &UnpackLimits::default(),
        )
        .unwrap();
        assert_eq!(
            m.files,
            vec![PathBuf::from("hello.py"), PathBuf::from("requirements.txt")]
        );
        assert!(m.has_deps);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hello.py")).unwrap(),
            "print('hi')"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("requirements.txt")).unwrap(),
            "requests\n"
        );
    }

    #[test]
    fn materialize_skips_empty_deps_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec("url", "https://h/hello.js");
        let m = materialize(
            &s,
            b"module.exports = {}",
            ".js",
            Some("package.json"),
            dir.path(),
            &UnpackLimits::default(),
        )
        .unwrap();
        assert!(!m.has_deps);
        assert!(!dir.path().join("package.json").exists());
        assert!(dir.path().join("hello.js").is_file());
    }

    #[test]
    fn materialize_zip_with_deps_inside() {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        for (name, data) in [("hello.py", "print(1)"), ("requirements.txt", "flask\n")] {
            w.start_file(name, opts).unwrap();
            std::io::Write::write_all(&mut w, data.as_bytes()).unwrap();
        }
        let bytes = w.finish().unwrap().into_inner();
        let encoded = encode_file("f.zip", &bytes);
        assert_eq!(encoded.content_type, "base64+zip");
        let mut s = spec("base64+zip+deps", &encoded.function);
        s.checksum = encoded.checksum;
        s.deps = "ignored".into();
        let decoded = decode_inline(&s).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let m = materialize(
            &s,
            &decoded.bytes,
            ".py",
            Some("requirements.txt"),
            dir.path(),
            &UnpackLimits::default(),
        )
        .unwrap();
        assert!(m.has_deps);
        assert_eq!(
            m.files,
            vec![PathBuf::from("hello.py"), PathBuf::from("requirements.txt")]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("requirements.txt")).unwrap(),
            "flask\n"
        );

        // Without +deps the spec's deps overwrite the archive's copy.
        s.function_content_type = "base64+zip".into();
        let m = materialize(
            &s,
            &decoded.bytes,
            ".py",
            Some("requirements.txt"),
            dir.path(),
            &UnpackLimits::default(),
        )
        .unwrap();
        assert!(m.has_deps);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("requirements.txt")).unwrap(),
            "ignored"
        );
    }

    #[test]
    fn materialize_refuses_checksum_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec("text", "x");
        s.checksum = HELLO_SHA.into();
        let err =
            materialize(&s, b"x", ".py", None, dir.path(), &UnpackLimits::default()).unwrap_err();
        assert!(matches!(err, ContentError::ChecksumMismatch { .. }));
        assert!(!dir.path().join("hello.py").exists());
    }

    #[test]
    fn materialize_refuses_module_outside_dest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec("text", "x");
        s.handler = "../evil.foo".into();
        // "../evil.foo" splits at the first dot: module is empty.
        assert!(matches!(
            materialize(&s, b"x", ".py", None, dir.path(), &UnpackLimits::default()),
            Err(ContentError::MissingModule { .. })
        ));
        s.handler = "a/b.foo".into();
        assert!(matches!(
            materialize(&s, b"x", ".py", None, dir.path(), &UnpackLimits::default()),
            Err(ContentError::UnsafePath { .. })
        ));
    }
}
