//! The build step of the compiled languages, run once per artifact (by the
//! embedded server's artifact cache, or a `compile` init container) as
//! `kubeless-runtime compile`:
//!
//! - **Go**: the code directory becomes the main module (the user's
//!   `go.mod`, or `module function` when there is none, as Kubeless
//!   required). The `github.com/kubeless/kubeless/pkg/functions` package
//!   handlers import is provided by a small embedded module wired in with a
//!   `replace` directive, so handlers build unchanged without the real
//!   Kubeless module and its Kubernetes dependencies. A generated `main`
//!   links the handler to the worker side of the host protocol; `go mod
//!   tidy` fetches what the code imports from the module proxy, and `go
//!   build` writes [`GO_WORKER`].
//! - **Java**: the dependencies of a non-empty `pom.xml` (except Kubeless's
//!   own `io.kubeless` artifacts, which are embedded here) are copied from
//!   Maven into [`JAVA_LIB`] with a generated pom, then `javac` compiles the
//!   embedded `io.kubeless` classes, the worker and every `.java` file of
//!   the function into [`JAVA_CLASSES`].
//!
//! Tool output goes to the inherited stdout/stderr, so the caller shows the
//! compiler's own messages (file and line relative to the code directory).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::Language;
use crate::error::Error;

/// The Go worker binary, relative to the code directory.
pub const GO_WORKER: &str = ".kubeless/go-worker";
/// Compiled Java classes, relative to the code directory.
pub const JAVA_CLASSES: &str = ".kubeless/java/classes";
/// Java dependency jars, relative to the code directory.
pub const JAVA_LIB: &str = ".kubeless/java/lib";
/// The Java worker's main class.
pub const JAVA_MAIN: &str = "io.kubeless.runtime.KubelessWorker";

/// Where the generated Go `main` package goes, inside the code directory
/// (a sub-package of the user's module, so it can import the handler).
const GO_MAIN_DIR: &str = "kubeless_worker_main";
const GO_SDK_DIR: &str = ".kubeless/go-sdk";
const GO_SDK_MODULE: &str = "github.com/kubeless/kubeless";

const GO_SDK: &[(&str, &str)] = &[
    ("go.mod", include_str!("../../../runtimes/go/sdk/go.mod")),
    (
        "pkg/functions/functions.go",
        include_str!("../../../runtimes/go/sdk/pkg/functions/functions.go"),
    ),
    (
        "pkg/worker/worker.go",
        include_str!("../../../runtimes/go/sdk/pkg/worker/worker.go"),
    ),
];

const JAVA_SDK: &[(&str, &str)] = &[
    (
        "io/kubeless/Event.java",
        include_str!("../../../runtimes/java/io/kubeless/Event.java"),
    ),
    (
        "io/kubeless/Context.java",
        include_str!("../../../runtimes/java/io/kubeless/Context.java"),
    ),
    (
        "io/kubeless/Response.java",
        include_str!("../../../runtimes/java/io/kubeless/Response.java"),
    ),
    (
        "io/kubeless/runtime/KubelessWorker.java",
        include_str!("../../../runtimes/java/io/kubeless/runtime/KubelessWorker.java"),
    ),
];

/// What `kubeless-runtime compile` builds, and with which tools.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    pub language: Language,
    /// The function's code directory (`KUBELESS_INSTALL_VOLUME`).
    pub code_dir: PathBuf,
    /// `MOD_NAME`.
    pub module: String,
    /// `FUNC_HANDLER`; the Go `main` calls it by name.
    pub handler: String,
    pub go: String,
    pub javac: String,
    pub mvn: String,
    /// A Maven repository that stands in for every other (`MAVEN_MIRROR_URL`,
    /// as builder images commonly read it): a cluster without internet
    /// access resolves pom.xml dependencies and Maven's plugins from it.
    pub maven_mirror: Option<String>,
}

/// The Go worker of a compiled function.
pub fn go_worker(code_dir: &Path) -> PathBuf {
    code_dir.join(GO_WORKER)
}

/// The `java` arguments that start the Java worker of a compiled function.
pub fn java_worker_args(code_dir: &Path) -> Vec<OsString> {
    let mut classpath = code_dir.join(JAVA_CLASSES).into_os_string();
    classpath.push(":");
    classpath.push(code_dir.join(JAVA_LIB).join("*"));
    vec![
        // One small heap per worker: the serial collector has the least
        // footprint, and a pool of workers gives the parallelism.
        "-XX:+UseSerialGC".into(),
        "-XX:TieredStopAtLevel=1".into(),
        "-cp".into(),
        classpath,
        JAVA_MAIN.into(),
    ]
}

/// The build output a compiled language needs and `code_dir` lacks.
pub fn missing_output(language: Language, code_dir: &Path) -> Option<PathBuf> {
    let needed = match language {
        Language::Go => code_dir.join(GO_WORKER),
        Language::Java => code_dir
            .join(JAVA_CLASSES)
            .join(JAVA_MAIN.replace('.', "/") + ".class"),
        _ => return None,
    };
    (!needed.is_file()).then_some(needed)
}

/// Builds the function in `opts.code_dir`.
pub fn compile(opts: &CompileOptions) -> Result<(), Error> {
    match opts.language {
        Language::Go => compile_go(opts),
        Language::Java => compile_java(opts),
        other => Err(Error::Compile {
            step: format!("compile {}", other.name()),
            reason: "only go and java functions are compiled".to_owned(),
        }),
    }
}

fn compile_go(opts: &CompileOptions) -> Result<(), Error> {
    let dir = &opts.code_dir;
    if !is_go_identifier(&opts.handler) {
        return Err(Error::Compile {
            step: "check the handler".to_owned(),
            reason: format!(
                "{:?} is not a Go function name (an exported function such as Handler)",
                opts.handler
            ),
        });
    }
    write_tree(&dir.join(GO_SDK_DIR), GO_SDK)?;

    // Kubeless removed an empty go.mod and required `module function`.
    let go_mod = dir.join("go.mod");
    let existing = std::fs::read_to_string(&go_mod).unwrap_or_default();
    let module_path = match module_path(&existing) {
        Some(path) => path,
        None => {
            write(&go_mod, "module function\n\ngo 1.21\n")?;
            "function".to_owned()
        }
    };
    let main = format!(
        "// Generated by kubeless-runtime: links the handler to the runtime host.\n\
         package main\n\n\
         import (\n\
         \tuserfunction {module_path:?}\n\
         \t\"{GO_SDK_MODULE}/pkg/worker\"\n\
         )\n\n\
         func main() {{\n\
         \tworker.Run(userfunction.{handler})\n\
         }}\n",
        handler = opts.handler
    );
    write(&dir.join(GO_MAIN_DIR).join("main.go"), &main)?;

    let go = |args: &[&str]| {
        let mut c = Command::new(&opts.go);
        c.args(args)
            .current_dir(dir)
            // A go directive newer than the installed toolchain fails with
            // a clear message instead of downloading another toolchain.
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-buildvcs=false -mod=mod");
        c
    };
    run(
        go(&[
            "mod",
            "edit",
            &format!("-require={GO_SDK_MODULE}@v0.0.0"),
            &format!("-replace={GO_SDK_MODULE}=./{GO_SDK_DIR}"),
        ]),
        "go mod edit",
    )?;
    run(go(&["mod", "tidy"]), "go mod tidy")?;
    run(
        go(&["build", "-o", GO_WORKER, &format!("./{GO_MAIN_DIR}")]),
        "go build",
    )
}

fn compile_java(opts: &CompileOptions) -> Result<(), Error> {
    let dir = &opts.code_dir;
    let java_dir = dir.join(".kubeless/java");
    let sdk = java_dir.join("sdk");
    write_tree(&sdk, JAVA_SDK)?;
    let lib = dir.join(JAVA_LIB);
    std::fs::create_dir_all(&lib).map_err(|source| Error::PrepareRuntimeDir {
        path: lib.clone(),
        source,
    })?;

    let pom = std::fs::read_to_string(dir.join("pom.xml")).unwrap_or_default();
    if !pom.trim().is_empty() {
        let generated = java_dir.join("pom.xml");
        write(&generated, &dependency_pom(&pom))?;
        let mut mvn = Command::new(&opts.mvn);
        mvn.current_dir(&java_dir);
        if let Some(url) = opts.maven_mirror.as_deref().filter(|u| !u.is_empty()) {
            write(&java_dir.join("settings.xml"), &maven_settings(url))?;
            mvn.args(["-s", "settings.xml"]);
        }
        mvn.args([
            "-B",
            "-q",
            "-f",
            "pom.xml",
            "-Dstyle.color=never",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            "-DoutputDirectory=lib",
        ]);
        run(mvn, "mvn dependency:copy-dependencies")?;
    }

    let mut sources = Vec::new();
    collect_java(dir, dir, &mut sources);
    sources.sort();
    let mut javac = Command::new(&opts.javac);
    javac
        .current_dir(dir)
        .args(["-encoding", "UTF-8", "-nowarn", "-d", JAVA_CLASSES, "-cp"])
        .arg(format!("{JAVA_LIB}/*"));
    for (path, _) in JAVA_SDK {
        javac.arg(Path::new(".kubeless/java/sdk").join(path));
    }
    javac.args(&sources);
    run(javac, "javac")
}

/// The `module` path of a go.mod, if it declares one.
fn module_path(go_mod: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("module")?;
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        let path = rest
            .split("//")
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        (!path.is_empty()).then(|| path.to_owned())
    })
}

fn is_go_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// A pom that only copies the dependencies of the user's pom: a Kubeless
/// pom names a parent (`io.kubeless:kubeless`) and a `params` artifact that
/// exist in no public repository, so the user's pom cannot be built as is.
/// `properties` and `repositories` are kept for versions and mirrors.
pub fn dependency_pom(user_pom: &str) -> String {
    let mut pom = user_pom.to_owned();
    for section in ["dependencyManagement", "build", "profiles", "parent"] {
        pom = remove_sections(&pom, section);
    }
    let dependencies: Vec<&str> = elements(&pom, "dependency")
        .into_iter()
        .filter(|d| {
            elements(d, "groupId")
                .first()
                .is_none_or(|g| inner(g, "groupId").trim() != "io.kubeless")
        })
        .collect();
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <project xmlns=\"http://maven.apache.org/POM/4.0.0\">\n\
         \x20 <modelVersion>4.0.0</modelVersion>\n\
         \x20 <groupId>io.kubeless</groupId>\n\
         \x20 <artifactId>function-dependencies</artifactId>\n\
         \x20 <version>1.0</version>\n\
         \x20 <packaging>pom</packaging>\n",
    );
    for keep in ["properties", "repositories"] {
        if let Some(section) = elements(&pom, keep).first() {
            out.push_str("  ");
            out.push_str(section);
            out.push('\n');
        }
    }
    out.push_str("  <dependencies>\n");
    for d in dependencies {
        out.push_str("    ");
        out.push_str(d);
        out.push('\n');
    }
    out.push_str("  </dependencies>\n</project>\n");
    out
}

/// Maven settings that send every repository request to `url`.
pub fn maven_settings(url: &str) -> String {
    let url = url
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<settings xmlns=\"http://maven.apache.org/SETTINGS/1.0.0\">\n\
         \x20 <mirrors>\n\
         \x20   <mirror>\n\
         \x20     <id>kubeless-mirror</id>\n\
         \x20     <mirrorOf>*</mirrorOf>\n\
         \x20     <url>{url}</url>\n\
         \x20   </mirror>\n\
         \x20 </mirrors>\n\
         </settings>\n"
    )
}

/// Every `<tag>...</tag>` element of `xml`, outermost first, not nested.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    let mut offset = 0;
    while let Some(start) = rest.find(&open) {
        let Some(len) = rest[start..].find(&close) else {
            break;
        };
        let end = start + len + close.len();
        out.push(&xml[offset + start..offset + end]);
        offset += end;
        rest = &xml[offset..];
    }
    out
}

fn inner<'a>(element: &'a str, tag: &str) -> &'a str {
    element
        .strip_prefix(&format!("<{tag}>"))
        .and_then(|e| e.strip_suffix(&format!("</{tag}>")))
        .unwrap_or("")
}

fn remove_sections(xml: &str, tag: &str) -> String {
    let mut out = xml.to_owned();
    for section in elements(xml, tag) {
        out = out.replacen(section, "", 1);
    }
    out
}

/// Every `.java` file under `dir`, relative to `root`, skipping the
/// build's own directory and hidden directories.
fn collect_java(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if path.is_dir() {
            if !hidden {
                collect_java(root, &path, out);
            }
        } else if path.extension().is_some_and(|e| e == "java")
            && let Ok(rel) = path.strip_prefix(root)
        {
            out.push(rel.to_path_buf());
        }
    }
}

fn write_tree(root: &Path, files: &[(&str, &str)]) -> Result<(), Error> {
    for (path, text) in files {
        write(&root.join(path), text)?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    let io = |source| Error::PrepareRuntimeDir {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

fn run(mut command: Command, step: &str) -> Result<(), Error> {
    let status = command.status().map_err(|e| Error::Compile {
        step: step.to_owned(),
        reason: format!("cannot start {:?}: {e}", command.get_program()),
    })?;
    if status.success() {
        return Ok(());
    }
    Err(Error::Compile {
        step: step.to_owned(),
        reason: status.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maven_settings_mirror_every_repository() {
        let s = maven_settings("http://10.250.0.1:8080/maven?a=1&b=<2>");
        assert!(s.contains("<mirrorOf>*</mirrorOf>"), "{s}");
        assert!(
            s.contains("<url>http://10.250.0.1:8080/maven?a=1&amp;b=&lt;2&gt;</url>"),
            "{s}"
        );
    }

    #[test]
    fn go_module_path() {
        assert_eq!(
            module_path("// x\nmodule function\n\ngo 1.14\n").as_deref(),
            Some("function")
        );
        assert_eq!(
            module_path("module \"example.com/fn\" // c\n").as_deref(),
            Some("example.com/fn")
        );
        assert_eq!(module_path("go 1.14\n"), None);
        assert_eq!(module_path("modulefoo\n"), None);
    }

    #[test]
    fn kubeless_pom_keeps_only_public_dependencies() {
        let pom = r#"<project>
  <parent><groupId>io.kubeless</groupId><artifactId>kubeless</artifactId></parent>
  <properties><v>3.14.0</v></properties>
  <dependencies>
    <dependency><groupId>io.kubeless</groupId><artifactId>params</artifactId></dependency>
    <dependency><groupId>org.apache.commons</groupId><artifactId>commons-lang3</artifactId><version>${v}</version></dependency>
  </dependencies>
  <build><plugins><plugin><dependencies><dependency><groupId>x</groupId></dependency></dependencies></plugin></plugins></build>
</project>"#;
        let out = dependency_pom(pom);
        assert!(out.contains("commons-lang3"), "{out}");
        assert!(
            out.contains("<properties><v>3.14.0</v></properties>"),
            "{out}"
        );
        assert!(!out.contains("params"), "{out}");
        assert!(!out.contains("<groupId>x</groupId>"), "{out}");
        assert!(!out.contains("<parent>"), "{out}");
    }

    #[test]
    fn missing_outputs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(missing_output(Language::Go, dir.path()).is_some());
        assert!(missing_output(Language::Java, dir.path()).is_some());
        assert!(missing_output(Language::Ruby, dir.path()).is_none());
        assert!(is_go_identifier("Handler") && !is_go_identifier("a.b"));
    }
}
