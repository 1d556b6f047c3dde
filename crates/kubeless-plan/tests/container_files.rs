//! The container build files (`Dockerfile` for the project image,
//! `runtimes/<language>/Dockerfile` for the runtime images) cannot be built
//! here (no container daemon), so this keeps them honest instead: every
//! runtime image that [`RuntimeImages::defaults`] names has a build file
//! that names the same image, builds the binary the images need from a
//! package that exists, with the Rust of rust-toolchain.toml, puts it where
//! the controller's rendering expects it, and copies only paths that exist.
//!
//! What each image holds is listed once, in `deploy/images/*.packages`,
//! which the build files install and `scripts/k8s-images.sh` copies from a
//! Debian machine: the build files must read their lists, and the script
//! must know every image.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kubeless_plan::images::{IMAGE_REPOSITORY, RuntimeImages};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// One instruction: keyword (upper case) and its arguments, continuation
/// lines joined, comments dropped.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

struct Dockerfile {
    path: String,
    header: String,
    instructions: Vec<Instruction>,
}

impl Dockerfile {
    fn load(path: &str) -> Dockerfile {
        let text = read(path);
        let header = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let mut instructions = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
                continue;
            }
            match t.strip_suffix('\\') {
                Some(part) => {
                    current.push_str(part);
                    current.push(' ');
                }
                None => {
                    current.push_str(t);
                    let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                    instructions.push(Instruction {
                        keyword: keyword.to_ascii_uppercase(),
                        args: args.split_whitespace().collect::<Vec<_>>().join(" "),
                    });
                    current.clear();
                }
            }
        }
        assert!(current.is_empty(), "{path}: unfinished continuation line");
        Dockerfile {
            path: path.to_string(),
            header,
            instructions,
        }
    }

    fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|i| i.keyword == keyword)
            .map(|i| i.args.as_str())
            .collect()
    }

    /// The instructions of the last stage (what the image is).
    fn final_stage(&self) -> &[Instruction] {
        let start = self
            .instructions
            .iter()
            .rposition(|i| i.keyword == "FROM")
            .unwrap_or_else(|| panic!("{}: no FROM", self.path));
        &self.instructions[start..]
    }

    fn final_has(&self, keyword: &str, args: &str) -> bool {
        self.final_stage()
            .iter()
            .any(|i| i.keyword == keyword && i.args == args)
    }

    /// Sources of `COPY` without `--from` exist in the build context (the
    /// repository root) and are not excluded by .dockerignore.
    fn check_context_copies(&self, ignored: &[String]) {
        for args in self.all("COPY") {
            if args.starts_with("--from") {
                continue;
            }
            let words: Vec<&str> = args.split(' ').collect();
            for src in &words[..words.len() - 1] {
                assert!(
                    root().join(src).exists(),
                    "{}: COPY source {src} does not exist",
                    self.path
                );
                assert!(
                    !ignored.iter().any(|i| src.trim_end_matches('/') == i),
                    "{}: COPY source {src} is in .dockerignore",
                    self.path
                );
            }
        }
    }
}

/// The final stage of every image: the Debian release whose packages
/// `deploy/images/*.packages` name.
const DEBIAN_RELEASE: &str = "bookworm";
const FINAL_BASE: &str = "debian:bookworm-slim";

/// The package names of `deploy/images/<name>.packages` (lines starting
/// with `/` name paths, comments start with `#`).
fn package_list(name: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in read(&format!("deploy/images/{name}.packages")).lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('/') {
            continue;
        }
        assert!(
            line.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c)),
            "deploy/images/{name}.packages: {line:?} is not a Debian package name"
        );
        out.insert(line.to_string());
    }
    out
}

impl Dockerfile {
    /// The packages the final stage installs: it copies `base.packages`
    /// and `<name>.packages` and installs their package names with
    /// apt-get (paths are made by the installation itself).
    fn installed_lists(&self, name: &str) -> BTreeSet<String> {
        let lists = format!("deploy/images/base.packages deploy/images/{name}.packages");
        assert!(
            self.final_has("COPY", &format!("{lists} /tmp/packages/")),
            "{}: COPY {lists} /tmp/packages/",
            self.path
        );
        assert!(
            self.final_stage().iter().any(|i| i.keyword == "RUN"
                && i.args.contains(
                    "apt-get install -y --no-install-recommends $(sed -e 's/#.*//' -e '/^\\//d' /tmp/packages/*)"
                )),
            "{}: installs the listed packages",
            self.path
        );
        let mut all = package_list("base");
        all.extend(package_list(name));
        all
    }
}

/// `channel` of rust-toolchain.toml.
fn rust_channel() -> String {
    read("rust-toolchain.toml")
        .lines()
        .find_map(|l| {
            let v = l.trim().strip_prefix("channel")?.trim().strip_prefix('=')?;
            Some(v.trim().trim_matches('"').to_string())
        })
        .expect("rust-toolchain.toml names a channel")
}

fn dockerignore() -> Vec<String> {
    read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

/// The `[[bin]]` names of a crate.
fn bin_names(krate: &str) -> Vec<String> {
    let text = read(&format!("crates/{krate}/Cargo.toml"));
    let mut out = Vec::new();
    let mut in_bin = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_bin = t == "[[bin]]";
        } else if in_bin && let Some(v) = t.strip_prefix("name") {
            out.push(
                v.trim()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('"')
                    .to_string(),
            );
        }
    }
    out
}

/// Languages and versions of the default runtime images, from the image
/// names (`<repo>/runtime-<language>:<version>`).
fn runtime_images() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in RuntimeImages::defaults().runtimes {
        for v in &r.versions {
            for phase in &v.images {
                let rest = phase
                    .image
                    .strip_prefix(&format!("{IMAGE_REPOSITORY}/runtime-"))
                    .unwrap_or_else(|| panic!("unexpected image {}", phase.image));
                let (language, tag) = rest.split_once(':').expect("tagged");
                assert_eq!(tag, v.version, "{} is tagged with the version", phase.image);
                out.entry(language.to_string())
                    .or_default()
                    .insert(tag.to_string());
            }
        }
    }
    out
}

#[test]
fn project_image_build_file() {
    let d = Dockerfile::load("Dockerfile");
    assert!(
        d.header
            .contains(&format!("{IMAGE_REPOSITORY}/kubeless:<version>")),
        "Dockerfile names the image {IMAGE_REPOSITORY}/kubeless:<version>"
    );
    let froms = d.all("FROM");
    assert_eq!(froms.len(), 2, "a build stage and the image: {froms:?}");
    assert!(
        froms[0].starts_with(&format!("rust:{}-", rust_channel()))
            && froms[0].ends_with(" AS build"),
        "the build stage uses the pinned Rust: {}",
        froms[0]
    );
    assert!(bin_names("kubeless-cli").contains(&"kubeless".to_string()));
    assert!(
        d.all("RUN")
            .contains(&"cargo build --release --locked -p kubeless-cli"),
        "builds the kubeless binary"
    );
    assert!(d.final_has(
        "COPY",
        "--from=build /src/target/release/kubeless /usr/local/bin/kubeless"
    ));
    // The binary links against the final stage's glibc: one Debian release.
    assert_eq!(froms[1], FINAL_BASE);
    assert!(
        froms[0].contains(&format!("-{DEBIAN_RELEASE} ")),
        "the build stage is on {DEBIAN_RELEASE}: {}",
        froms[0]
    );
    // The prepare init container's tools: `tar xf` of a
    // `.tar.bz2`/`.tar.xz` (compressedtar) runs bzip2/xz.
    let packages = d.installed_lists("kubeless");
    for tool in [
        "dash",
        "coreutils",
        "tar",
        "gzip",
        "bzip2",
        "xz-utils",
        "unzip",
        "curl",
        "ca-certificates",
    ] {
        assert!(packages.contains(tool), "kubeless image lists {tool}");
    }
    assert!(d.final_has("USER", "1000"));
    assert!(d.final_has("ENTRYPOINT", r#"["/usr/local/bin/kubeless"]"#));
    d.check_context_copies(&dockerignore());
}

#[test]
fn runtime_image_build_files() {
    let channel = rust_channel();
    let ignored = dockerignore();
    assert!(bin_names("kubeless-runtime").contains(&"kubeless-runtime".to_string()));
    let images = runtime_images();
    assert_eq!(
        images.keys().map(String::as_str).collect::<Vec<_>>(),
        ["go", "java", "nodejs", "php", "python", "ruby"]
    );
    for (language, versions) in &images {
        let path = format!("runtimes/{language}/Dockerfile");
        let d = Dockerfile::load(&path);
        assert!(
            d.header
                .contains(&format!("{IMAGE_REPOSITORY}/runtime-{language}:<VERSION>")),
            "{path} names its image"
        );
        // The default version is one the catalogue has.
        let default = d.instructions[0]
            .args
            .strip_prefix("VERSION=")
            .filter(|_| d.instructions[0].keyword == "ARG")
            .unwrap_or_else(|| panic!("{path} starts with ARG VERSION=<default>"));
        assert!(
            versions.contains(default),
            "{path}: {default} not in {versions:?}"
        );
        let froms = d.all("FROM");
        assert_eq!(froms[0], format!("rust:{channel}-alpine AS host"), "{path}");
        assert_eq!(froms[froms.len() - 1], FINAL_BASE, "{path}");
        // A stage between them (Go's toolchain) is named and copied from.
        for stage in &froms[1..froms.len() - 1] {
            let (_, name) = stage
                .split_once(" AS ")
                .unwrap_or_else(|| panic!("{path}: unnamed stage {stage}"));
            assert!(
                d.all("COPY")
                    .iter()
                    .any(|c| c.starts_with(&format!("--from={name} "))),
                "{path}: stage {name} is not used"
            );
        }
        // The image is the version of the Debian packages (or of the Go
        // release): the build refuses another VERSION.
        assert!(d.final_has("ARG", "VERSION"), "{path}");
        assert!(
            d.final_stage()
                .iter()
                .any(|i| i.keyword == "RUN" && i.args.contains("\"$VERSION\"")),
            "{path}: the image checks its toolchain's version against VERSION"
        );
        let packages = d.installed_lists(&format!("runtime-{language}"));
        for needed in ["dash", "coreutils", "ca-certificates"] {
            assert!(packages.contains(needed), "{path}: lists {needed}");
        }
        assert!(
            d.all("RUN")
                .contains(&"cargo build --release --locked -p kubeless-runtime"),
            "{path} builds the runtime host"
        );
        assert!(
            d.final_has(
                "COPY",
                "--from=host /src/target/release/kubeless-runtime /usr/local/bin/kubeless-runtime"
            ),
            "{path}: the host at /usr/local/bin/kubeless-runtime"
        );
        let env = d
            .final_stage()
            .iter()
            .find(|i| i.keyword == "ENV")
            .unwrap_or_else(|| panic!("{path}: no ENV"));
        let words: Vec<&str> = env.args.split(' ').collect();
        for want in [
            format!("KUBELESS_RUNTIME_LANGUAGE={language}"),
            "HOME=/tmp".to_string(),
        ] {
            assert!(words.contains(&want.as_str()), "{path}: {}", env.args);
        }
        // scripts/k8s-images.sh reads the values as written.
        assert!(
            words.iter().all(|w| w.contains('=') && !w.contains('$')),
            "{path}: ENV NAME=VALUE pairs without variables: {}",
            env.args
        );
        assert!(
            words.iter().any(|w| w.starts_with("PATH=")),
            "{path}: ENV sets PATH"
        );
        assert!(d.final_has("WORKDIR", "/kubeless"), "{path}");
        assert!(d.final_has("USER", "1000"), "{path}");
        assert!(
            d.final_has("ENTRYPOINT", r#"["/usr/local/bin/kubeless-runtime"]"#),
            "{path}"
        );
        d.check_context_copies(&ignored);
    }
    // No build file for a language the catalogue does not have.
    for entry in std::fs::read_dir(root().join("runtimes")).expect("runtimes/") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().to_string();
        if entry.path().join("Dockerfile").exists() {
            assert!(
                images.contains_key(&name),
                "runtimes/{name}/Dockerfile is stale"
            );
        }
    }
    // The context holds the sources the host embeds.
    for needed in ["crates", "runtimes", "Cargo.toml", "Cargo.lock"] {
        assert!(
            !ignored.iter().any(|i| i == needed),
            ".dockerignore drops {needed}"
        );
    }
    assert!(
        ignored.iter().any(|i| i == "target"),
        ".dockerignore keeps target/ out"
    );
    // scripts/k8s-images.sh builds every image from the same lists.
    let script = read("scripts/k8s-images.sh");
    let all = script
        .lines()
        .find_map(|l| l.strip_prefix("ALL_IMAGES=("))
        .and_then(|l| l.strip_suffix(')'))
        .expect("scripts/k8s-images.sh: ALL_IMAGES=(...)");
    let mut want = vec!["kubeless".to_string()];
    want.extend(images.keys().map(|l| format!("runtime-{l}")));
    want.push("pause".to_string());
    let mut got: Vec<String> = all.split(' ').map(str::to_string).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "scripts/k8s-images.sh ALL_IMAGES");
    for entry in std::fs::read_dir(root().join("deploy/images")).expect("deploy/images/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        if let Some(image) = name.strip_suffix(".packages") {
            assert!(
                image == "base" || got.iter().any(|g| g == image),
                "deploy/images/{name} is no image's list"
            );
        }
    }
}
