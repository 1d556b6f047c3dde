//! Kubernetes mode on a real node: the one-node cluster of
//! tools/k8s-harness/node-up.sh (kubelet, containerd, CNI bridge,
//! kube-proxy, CoreDNS, local registry) with the project's images built by
//! scripts/k8s-images.sh. `kubeless install` applies the real manifests,
//! controller-manager runs as a pod under its ServiceAccount, and functions
//! run in pods that the tests call through the API server's service proxy,
//! exactly as a user on a cluster would.
//!
//! Every test name starts with `real_node_`: scripts/test.sh runs the other
//! Kubernetes tests against the bare control plane with `--skip real_node_`
//! and these against the node. Without a cluster that has a Ready node the
//! tests are skipped, except when `REQUIRE_K8S_NODE=1` or `CI` is set: then
//! they fail.

mod k8s_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_support::eventually;
use k8s_support::node::{call_until, deploy, kubeless_ok, kubeless_try, run, setup, write};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

/// One function per language, as a user writes it.
struct Lang {
    name: &'static str,
    runtime: &'static str,
    handler: &'static str,
    file: &'static str,
    v1: &'static str,
    v2: &'static str,
}

const LANGS: &[Lang] = &[
    Lang {
        name: "hello-python",
        runtime: "python3.11",
        handler: "hello.hello",
        file: "hello.py",
        v1: "def hello(event, context):\n    return 'python v1 ' + event['data'].decode()\n",
        v2: "def hello(event, context):\n    return 'python v2 ' + event['data'].decode()\n",
    },
    Lang {
        name: "hello-nodejs",
        runtime: "nodejs20",
        handler: "hello.hello",
        file: "hello.js",
        v1: "module.exports = { hello: (event, context) => 'nodejs v1 ' + event.data };\n",
        v2: "module.exports = { hello: (event, context) => 'nodejs v2 ' + event.data };\n",
    },
    Lang {
        name: "hello-ruby",
        runtime: "ruby3.1",
        handler: "hello.hello",
        file: "hello.rb",
        v1: "def hello(event, context)\n  \"ruby v1 #{event[:data]}\"\nend\n",
        v2: "def hello(event, context)\n  \"ruby v2 #{event[:data]}\"\nend\n",
    },
    Lang {
        name: "hello-php",
        runtime: "php8.2",
        handler: "hello.hello",
        file: "hello.php",
        v1: "<?php\nfunction hello($event, $context) {\n  return 'php v1 ' . $event->data;\n}\n",
        v2: "<?php\nfunction hello($event, $context) {\n  return 'php v2 ' . $event->data;\n}\n",
    },
    Lang {
        name: "hello-go",
        runtime: "go1.26",
        handler: "hello.Hello",
        file: "hello.go",
        v1: "package kubeless\n\nimport \"github.com/kubeless/kubeless/pkg/functions\"\n\n\
             func Hello(event functions.Event, context functions.Context) (string, error) {\n\
             \treturn \"go v1 \" + event.Data, nil\n}\n",
        v2: "package kubeless\n\nimport \"github.com/kubeless/kubeless/pkg/functions\"\n\n\
             func Hello(event functions.Event, context functions.Context) (string, error) {\n\
             \treturn \"go v2 \" + event.Data, nil\n}\n",
    },
    Lang {
        name: "hello-java",
        runtime: "java17",
        handler: "Hello.hello",
        file: "Hello.java",
        v1: "package io.kubeless;\n\npublic class Hello {\n    public String hello(io.kubeless.Event event, \
             io.kubeless.Context context) {\n        return \"java v1 \" + event.Data;\n    }\n}\n",
        v2: "package io.kubeless;\n\npublic class Hello {\n    public String hello(io.kubeless.Event event, \
             io.kubeless.Context context) {\n        return \"java v2 \" + event.Data;\n    }\n}\n",
    },
];

/// Deploy, call, logs, describe, top, update and delete a function in each
/// of the six languages, every one in its own pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_functions_in_every_language() {
    let ns = "node-langs";
    let Some((c, dir)) = setup(ns).await else {
        return;
    };

    // deploy all six, then wait for each: the node starts them side by side
    let mut started = Vec::new();
    for l in LANGS {
        let v1 = write(dir.path(), &format!("v1-{}", l.file), l.v1);
        let code = dir.path().join(l.name);
        std::fs::create_dir_all(&code).expect("mkdir");
        let f = code.join(l.file);
        std::fs::copy(&v1, &f).expect("copy");
        started.push(Instant::now());
        deploy(
            ns,
            l.name,
            l.runtime,
            l.handler,
            &f,
            &["--env", "GREETING=hi", "--memory", "256Mi"],
        )
        .await;
    }
    for (l, t0) in LANGS.iter().zip(&started) {
        let lang = l
            .runtime
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        call_until(l.name, ns, "ping", &format!("{lang} v1 ping"), 300).await;
        eprintln!(
            "{}: deploy -> first answer {:.1}s",
            l.runtime,
            t0.elapsed().as_secs_f64()
        );
    }

    for l in LANGS {
        // the function's log has the access line of the calls
        let logs = kubeless_ok(&["function", "logs", l.name, "-n", ns]).await;
        assert!(
            logs.contains(" 200 "),
            "{}: no access log line in\n{logs}",
            l.name
        );
        let describe = kubeless_ok(&["function", "describe", l.name, "-n", ns]).await;
        assert!(
            describe.contains(l.runtime) && describe.contains(l.handler),
            "{describe}"
        );
        let ls = kubeless_ok(&["function", "ls", l.name, "-n", ns]).await;
        assert!(ls.contains("1/1 READY"), "{ls}");
    }
    let top = kubeless_ok(&["function", "top", "-n", ns]).await;
    for l in LANGS {
        assert!(top.contains(l.name), "{top}");
    }

    // an update rolls the pods and the new code answers
    for l in LANGS {
        let f = dir.path().join(l.name).join(l.file);
        std::fs::write(&f, l.v2).expect("write v2");
        kubeless_ok(&[
            "function",
            "update",
            l.name,
            "-n",
            ns,
            "--from-file",
            f.to_str().expect("utf-8"),
        ])
        .await;
    }
    for l in LANGS {
        let lang = l
            .runtime
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        let took = call_until(l.name, ns, "pong", &format!("{lang} v2 pong"), 300).await;
        eprintln!(
            "{}: update -> new code answers {:.1}s",
            l.runtime,
            took.as_secs_f64()
        );
    }

    // delete removes every child
    for l in LANGS {
        kubeless_ok(&["function", "delete", l.name, "-n", ns]).await;
    }
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), ns);
    let services: Api<Service> = Api::namespaced(c.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(c.clone(), ns);
    for l in LANGS {
        eventually(
            &format!("{}'s children to be deleted", l.name),
            120,
            || async {
                let d = deployments.get_opt(l.name).await.ok()?;
                let s = services.get_opt(l.name).await.ok()?;
                let m = config_maps.get_opt(l.name).await.ok()?;
                (d.is_none() && s.is_none() && m.is_none()).then_some(())
            },
        )
        .await;
    }
}

/// A package mirror on the node's address, for pods that cannot reach the
/// internet (as on an air-gapped cluster): a static HTTP server over files
/// the test fetched on the host with the ordinary clients (pip, npm, go).
/// It serves pip's `--find-links` page, npm registry documents and
/// tarballs, a Go module proxy, and plain files (code for `url` functions).
mod mirror {
    use std::collections::HashMap;
    use std::path::Path;
    use std::process::Command;
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// The node's address, reachable from every pod (node-up.sh).
    pub const NODE_IP: &str = "10.250.0.1";

    #[derive(Default)]
    pub struct Files(HashMap<String, (&'static str, Vec<u8>)>);

    impl Files {
        pub fn add(&mut self, path: &str, content_type: &'static str, body: Vec<u8>) {
            self.0.insert(path.to_string(), (content_type, body));
        }
    }

    /// A listener on NODE_IP and its base URL (`http://10.250.0.1:PORT`).
    pub async fn bind() -> (TcpListener, String) {
        let listener = TcpListener::bind((NODE_IP, 0))
            .await
            .expect("bind the mirror on the node address");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        (listener, base)
    }

    /// Serve `files` until the test's runtime ends.
    pub fn serve(listener: TcpListener, files: Files) {
        let files = Arc::new(files);
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let files = files.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut n = 0;
                    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                        match conn.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(m) => n += m,
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let mut parts = head.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_string();
                    let path = parts.next().unwrap_or_default();
                    let path = path.split('?').next().unwrap_or_default().to_string();
                    let (status, ctype, body) = match files.0.get(&path) {
                        Some((t, b)) => ("200 OK", *t, b.clone()),
                        None => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    if method != "HEAD" {
                        let _ = conn.write_all(&body).await;
                    }
                    let _ = conn.shutdown().await;
                });
            }
        });
    }

    fn run_ok(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A wheel from PyPI, served as pip's `--find-links` page at `/pypi/`.
    pub fn python(files: &mut Files, dir: &Path, requirement: &str) {
        let d = dir.join("pypi");
        std::fs::create_dir_all(&d).expect("mkdir");
        run_ok(Command::new("python3").args([
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            d.to_str().expect("utf-8"),
            requirement,
        ]));
        let mut page = String::from("<html><body>\n");
        for e in std::fs::read_dir(&d).expect("read pypi dir").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            page.push_str(&format!("<a href=\"{name}\">{name}</a>\n"));
            let body = std::fs::read(e.path()).expect("read wheel");
            files.add(&format!("/pypi/{name}"), "application/octet-stream", body);
        }
        page.push_str("</body></html>\n");
        // one page per project under /simple/ (PEP 503): links are relative
        let project = requirement
            .split("==")
            .next()
            .unwrap_or(requirement)
            .to_lowercase();
        let simple = page.replace("href=\"", "href=\"../../pypi/");
        files.add(
            &format!("/simple/{project}/"),
            "text/html",
            simple.into_bytes(),
        );
        files.add("/pypi/", "text/html", page.into_bytes());
    }

    /// A package from the npm registry (no dependencies of its own), served
    /// as a registry document and tarball under `/npm/`.
    pub fn npm(files: &mut Files, dir: &Path, base: &str, name: &str, version: &str) {
        let d = dir.join("npm");
        std::fs::create_dir_all(&d).expect("mkdir");
        let out = run_ok(
            Command::new("npm")
                .args([
                    "pack",
                    &format!("{name}@{version}"),
                    "--json",
                    "--pack-destination",
                ])
                .arg(&d),
        );
        let packed: serde_json::Value = serde_json::from_str(&out).expect("npm pack --json");
        let integrity = packed[0]["integrity"]
            .as_str()
            .expect("integrity")
            .to_string();
        let filename = packed[0]["filename"]
            .as_str()
            .expect("filename")
            .to_string();
        let tarball = std::fs::read(d.join(&filename)).expect("read tarball");
        let tar_path = format!("/npm/{name}/-/{name}-{version}.tgz");
        let doc = serde_json::json!({
            "name": name,
            "dist-tags": {"latest": version},
            "versions": {version: {
                "name": name,
                "version": version,
                "dist": {"tarball": format!("{base}{tar_path}"), "integrity": integrity},
            }},
        });
        files.add(
            &format!("/npm/{name}"),
            "application/json",
            doc.to_string().into_bytes(),
        );
        files.add(&tar_path, "application/octet-stream", tarball);
    }

    /// What Maven needs to build a Java function with `pom`: the runtime's
    /// own compile step run on the host into an empty local repository
    /// (plugins and dependencies from Maven Central), served as a Maven
    /// repository under `/maven/` (`MAVEN_MIRROR_URL`).
    pub fn maven(files: &mut Files, dir: &Path, runtime: &Path, code: &[(&str, &str)]) {
        let work = dir.join("maven-build");
        let repo = dir.join("maven-repo");
        std::fs::create_dir_all(&work).expect("mkdir");
        for (name, text) in code {
            std::fs::write(work.join(name), text).expect("write");
        }
        run_ok(
            Command::new(runtime)
                .args(["compile", "--language", "java", "--dir"])
                .arg(&work)
                .args(["--module", "Upper", "--handler", "shout"])
                .env(
                    "MAVEN_OPTS",
                    format!("-Dmaven.repo.local={}", repo.display()),
                ),
        );
        let mut stack = vec![repo.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read maven repo").flatten() {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let name = e.file_name().to_string_lossy().into_owned();
                if name == "_remote.repositories"
                    || name.ends_with(".lastUpdated")
                    || name == "resolver-status.properties"
                {
                    continue;
                }
                // a local repository keeps metadata per remote
                let served = if name.starts_with("maven-metadata-") && name.ends_with(".xml") {
                    "maven-metadata.xml".to_string()
                } else {
                    name
                };
                let rel = path
                    .parent()
                    .expect("parent")
                    .strip_prefix(&repo)
                    .expect("under the repository")
                    .to_string_lossy()
                    .into_owned();
                let body = std::fs::read(&path).expect("read");
                files.add(
                    &format!("/maven/{rel}/{served}"),
                    "application/octet-stream",
                    body,
                );
            }
        }
    }

    /// A module from the Go module proxy, served as a GOPROXY under `/go/`.
    pub fn go(files: &mut Files, dir: &Path, module: &str, version: &str) {
        let cache = dir.join("gomodcache");
        let out = run_ok(
            Command::new("go")
                .args(["mod", "download", "-json", &format!("{module}@{version}")])
                .env("GOMODCACHE", &cache)
                .env("GOFLAGS", "-modcacherw")
                .env("GOTOOLCHAIN", "local"),
        );
        let info: serde_json::Value = serde_json::from_str(&out).expect("go mod download -json");
        let at = format!("/go/{module}/@v/");
        files.add(
            &format!("{at}list"),
            "text/plain",
            format!("{version}\n").into_bytes(),
        );
        for (key, ext, ctype) in [
            ("Info", "info", "application/json"),
            ("GoMod", "mod", "text/plain"),
            ("Zip", "zip", "application/zip"),
        ] {
            let p = info[key].as_str().expect("download path");
            let body = std::fs::read(p).expect("read module file");
            files.add(&format!("{at}{version}.{ext}"), ctype, body);
        }
    }
}

// Kubeless's pom (its parent and `params` are provided by the runtime),
// shared with the embedded Java test.
const UPPER_JAVA: &str = include_str!("fixtures/java/Upper.java");
const POM_XML: &str = include_str!("fixtures/java/pom.xml");

/// Dependencies installed by the function's init containers from a package
/// mirror on the node (requirements.txt, package.json, go.mod, pom.xml),
/// with the variables a user sets for a private index: `PIP_INDEX_URL`,
/// Kubeless's `NPM_REGISTRY`, `GOPROXY`, `MAVEN_MIRROR_URL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_dependencies_from_a_package_mirror() {
    let ns = "node-deps";
    let Some((_, dir)) = setup(ns).await else {
        return;
    };

    let (listener, base) = mirror::bind().await;
    let mut files = mirror::Files::default();
    let fetch_dir = dir.path().join("mirror");
    {
        let (d, b) = (fetch_dir.clone(), base.clone());
        files = tokio::task::spawn_blocking(move || {
            mirror::python(&mut files, &d, "six==1.16.0");
            mirror::npm(&mut files, &d, &b, "is-number", "7.0.0");
            mirror::go(&mut files, &d, "github.com/google/uuid", "v1.6.0");
            let runtime = k8s_support::kubeless_bin().with_file_name("kubeless-runtime");
            mirror::maven(
                &mut files,
                &d,
                &runtime,
                &[("Upper.java", UPPER_JAVA), ("pom.xml", POM_XML)],
            );
            files
        })
        .await
        .expect("fetch the mirror's packages");
    }
    mirror::serve(listener, files);

    struct WithDeps {
        name: &'static str,
        runtime: &'static str,
        handler: &'static str,
        file: &'static str,
        code: &'static str,
        deps_file: &'static str,
        deps: &'static str,
        env: Vec<String>,
        want: &'static str,
    }
    let cases = [
        WithDeps {
            name: "deps-python",
            runtime: "python3.11",
            handler: "sixer.handler",
            file: "sixer.py",
            code: "import six\n\ndef handler(event, context):\n    return 'six ' + six.__version__\n",
            deps_file: "requirements.txt",
            deps: "six==1.16.0\n",
            env: vec![
                format!("PIP_INDEX_URL={base}/simple/"),
                format!("PIP_TRUSTED_HOST={}", mirror::NODE_IP),
            ],
            want: "six 1.16.0",
        },
        WithDeps {
            name: "deps-nodejs",
            runtime: "nodejs20",
            handler: "num.handler",
            file: "num.js",
            code: "const isNumber = require('is-number');\n\
                   module.exports = { handler: () => 'is-number ' + isNumber(5) };\n",
            deps_file: "package.json",
            deps: "{\"name\": \"num\", \"version\": \"1.0.0\", \"dependencies\": {\"is-number\": \"7.0.0\"}}\n",
            env: vec![format!("NPM_REGISTRY={base}/npm/")],
            want: "is-number true",
        },
        WithDeps {
            name: "deps-go",
            runtime: "go1.26",
            handler: "handler.Parse",
            file: "handler.go",
            code: "package kubeless\n\nimport (\n\t\"github.com/google/uuid\"\n\t\
                   \"github.com/kubeless/kubeless/pkg/functions\"\n)\n\n\
                   func Parse(event functions.Event, context functions.Context) (string, error) {\n\
                   \tid, err := uuid.Parse(\"6ba7b810-9dad-11d1-80b4-00c04fd430c8\")\n\
                   \tif err != nil {\n\t\treturn \"\", err\n\t}\n\
                   \treturn \"uuid version \" + id.Version().String(), nil\n}\n",
            deps_file: "go.mod",
            deps: "module function\n\ngo 1.21\n\nrequire github.com/google/uuid v1.6.0\n",
            env: vec![format!("GOPROXY={base}/go"), "GOSUMDB=off".to_string()],
            want: "uuid version VERSION_1",
        },
        WithDeps {
            name: "deps-java",
            runtime: "java17",
            handler: "Upper.shout",
            file: "Upper.java",
            code: UPPER_JAVA,
            deps_file: "pom.xml",
            deps: POM_XML,
            env: vec![format!("MAVEN_MIRROR_URL={base}/maven")],
            want: "HELLO java",
        },
    ];
    for w in &cases {
        let code = write(dir.path(), w.file, w.code);
        let deps = write(dir.path(), &format!("{}-{}", w.name, w.deps_file), w.deps);
        let mut args = vec![
            "function",
            "deploy",
            w.name,
            "-n",
            ns,
            "--runtime",
            w.runtime,
            "--handler",
            w.handler,
            "--from-file",
            code.to_str().expect("utf-8"),
            "--dependencies",
            deps.to_str().expect("utf-8"),
        ];
        for e in &w.env {
            args.extend(["--env", e.as_str()]);
        }
        kubeless_ok(&args).await;
    }
    for w in &cases {
        let took = call_until(w.name, ns, "x", w.want, 300).await;
        eprintln!(
            "{} with {}: deploy -> first answer {:.1}s",
            w.runtime,
            w.deps_file,
            took.as_secs_f64()
        );
    }
    for w in &cases {
        kubeless_ok(&["function", "delete", w.name, "-n", ns]).await;
    }
}

/// Kubeless's own example manifests applied with `kubectl apply -f`, one per
/// content type (text, base64, base64+zip, base64+compressedtar, url,
/// url+zip+deps), each on the runtime id it names (python3.8, nodejs14,
/// ruby2.6, php7.4, go1.14: the test cluster's images run every version of a
/// language on the machine's toolchain). The `url` manifests name files on
/// the internet: those two get the URL of the same code on the node's mirror
/// and its checksum; every other manifest is applied as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_kubeless_manifests_with_kubectl() {
    let ns = "node-manifests";
    let Some((_, dir)) = setup(ns).await else {
        return;
    };

    // the code the url manifests point at, served from the node's address
    let (listener, base) = mirror::bind().await;
    let hello_py = b"def handler(event, context):\n    return 'hello world'\n".to_vec();
    let go_zip = {
        use std::io::Write as _;
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("handler.go", opts).expect("zip");
        z.write_all(
            b"package kubeless\n\nimport \"github.com/kubeless/kubeless/pkg/functions\"\n\n\
              func Foo(event functions.Event, context functions.Context) (string, error) {\n\
              \treturn \"hello world\", nil\n}\n",
        )
        .expect("zip");
        z.start_file("go.mod", opts).expect("zip");
        z.write_all(b"module function\n\ngo 1.21\n").expect("zip");
        z.finish().expect("zip").into_inner()
    };
    let sha = |b: &[u8]| {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
    };
    let urls = [
        (
            "function-url.yaml",
            format!("{base}/code/hello.py"),
            sha(&hello_py),
        ),
        (
            "function-url-zip.yaml",
            format!("{base}/code/go-hello.zip"),
            sha(&go_zip),
        ),
    ];
    let mut files = mirror::Files::default();
    files.add("/code/hello.py", "text/x-python", hello_py);
    files.add("/code/go-hello.zip", "application/zip", go_zip);
    mirror::serve(listener, files);

    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kubeless");
    let mut names = Vec::new();
    for file in [
        "function-text.yaml",
        "function-base64.yaml",
        "function-base64-zip.yaml",
        "function-base64-compressedtar.yaml",
        "function-url.yaml",
        "function-url-zip.yaml",
    ] {
        let text = std::fs::read_to_string(Path::new(fixtures).join(file)).expect("fixture");
        let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
        if let Some((_, url, sum)) = urls.iter().find(|(f, _, _)| *f == file) {
            doc["spec"]["function"] = url.clone().into();
            doc["spec"]["checksum"] = sum.clone().into();
        }
        names.push(doc["metadata"]["name"].as_str().expect("name").to_string());
        let path = dir.path().join(file);
        std::fs::write(&path, serde_yaml::to_string(&doc).expect("yaml")).expect("write");
        let (ok, out, err) = run(Command::new("kubectl")
            .args(["apply", "-n", ns, "-f"])
            .arg(&path));
        assert!(ok, "kubectl apply -f {file}: {out}{err}");
    }
    for name in &names {
        let took = call_until(name, ns, "x", "hello world", 300).await;
        eprintln!(
            "{name}: kubectl apply -> first answer {:.1}s",
            took.as_secs_f64()
        );
    }
    let (ok, out, err) =
        run(Command::new("kubectl").args(["delete", "functions", "--all", "-n", ns]));
    assert!(ok, "{out}{err}");
}

/// What a function is given: a secret mounted at /<secret>, `--env`,
/// `--memory` as the container's cgroup limit, `--port`, and `--timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_secrets_env_memory_port_and_timeout() {
    let ns = "node-settings";
    let Some((c, dir)) = setup(ns).await else {
        return;
    };

    kubeless_ok(&[
        "secret",
        "create",
        "creds",
        "-n",
        ns,
        "--from-literal",
        "password=s3cr3t",
    ])
    .await;
    let info = write(
        dir.path(),
        "info.py",
        "import os\n\n\
         def limit():\n\
         \x20   for p in ('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'):\n\
         \x20       if os.path.exists(p):\n\
         \x20           return open(p).read().strip()\n\
         \x20   return 'none'\n\n\
         def handler(event, context):\n\
         \x20   return 'secret=%s env=%s memory=%s port=%s' % (\n\
         \x20       open('/creds/password').read(), os.environ.get('GREETING'), limit(),\n\
         \x20       os.environ.get('FUNC_PORT'))\n",
    );
    deploy(
        ns,
        "info",
        "python3.11",
        "info.handler",
        &info,
        &[
            "--secrets",
            "creds",
            "--env",
            "GREETING=hola",
            "--memory",
            "96Mi",
            "--port",
            "9090",
        ],
    )
    .await;
    let slow = write(
        dir.path(),
        "slow.py",
        "import time\n\ndef handler(event, context):\n    time.sleep(20)\n    return 'too late'\n",
    );
    deploy(
        ns,
        "slow",
        "python3.11",
        "slow.handler",
        &slow,
        &["--timeout", "2"],
    )
    .await;
    let want = format!(
        "secret=s3cr3t env=hola memory={} port=9090",
        96 * 1024 * 1024
    );
    call_until("info", ns, "x", &want, 180).await;
    let services: Api<Service> = Api::namespaced(c.clone(), ns);
    let svc = services.get("info").await.expect("service");
    let port = &svc.spec.expect("spec").ports.expect("ports")[0];
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9090)),
        "{port:?}"
    );

    // the timeout answers 408 after 2 s, not the handler's 20 s
    eventually("slow to be ready", 180, || async {
        let (ok, ls) = kubeless_try(&["function", "ls", "slow", "-n", ns]).await;
        (ok && ls.contains("1/1 READY")).then_some(())
    })
    .await;
    let t = Instant::now();
    let (ok, out) = kubeless_try(&["function", "call", "slow", "-n", ns, "--data", "x"]).await;
    assert!(!ok, "a call past the timeout fails: {out}");
    assert!(out.contains("408") || out.contains("imeout"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}

/// A cron trigger's CronJob runs in the cluster and its pod calls the
/// function on schedule (the function's log shows the cron event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_cron_trigger_calls_the_function() {
    let ns = "node-cron";
    let Some((_, dir)) = setup(ns).await else {
        return;
    };
    let tick = write(
        dir.path(),
        "tick.py",
        "def handler(event, context):\n    print('tick from', event['event-namespace'], flush=True)\n    return 'ok'\n",
    );
    deploy(ns, "tick", "python3.11", "tick.handler", &tick, &[]).await;
    call_until("tick", ns, "{}", "ok", 180).await;
    kubeless_ok(&[
        "trigger",
        "cronjob",
        "create",
        "every-minute",
        "-n",
        ns,
        "--function",
        "tick",
        "--schedule",
        "* * * * *",
    ])
    .await;
    let t = Instant::now();
    eventually("the cron job's call in the function log", 150, || async {
        let (ok, logs) = kubeless_try(&["function", "logs", "tick", "-n", ns]).await;
        (ok && logs.contains("tick from cronjobtrigger.kubeless.io")).then_some(())
    })
    .await;
    eprintln!(
        "cron trigger -> first scheduled call {:.1}s",
        t.elapsed().as_secs_f64()
    );
    kubeless_ok(&["trigger", "cronjob", "delete", "every-minute", "-n", ns]).await;
    kubeless_ok(&["function", "delete", "tick", "-n", ns]).await;
}

/// A broker process on the node's address, killed on drop; its data and
/// log live in the directory, removed after it.
struct NodeBroker(std::process::Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for NodeBroker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl NodeBroker {
    fn start(program: &Path, args: &[&str], addr: &str) -> NodeBroker {
        let dir = tempfile::tempdir().expect("broker dir");
        let log = std::fs::File::create(dir.path().join("broker.log")).expect("log");
        let child = Command::new(program)
            .args(args)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {addr}: {}",
                program.display(),
                std::fs::read_to_string(dir.path().join("broker.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        NodeBroker(child, dir)
    }
}

/// A Service without selector whose endpoint is a process on the node, so
/// that the in-cluster name (Kubeless's default broker addresses) leads to
/// it: `name.namespace:port` -> 10.250.0.1:target.
async fn service_to_node(c: &Client, ns: &str, name: &str, port: i32, target: i32) {
    let nss: Api<Namespace> = Api::all(c.clone());
    let _ = nss
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
        )
        .await;
    let pp = kube::api::PatchParams::apply("kubeless-e2e").force();
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "broker", "port": port, "targetPort": target}]}
    }))
    .expect("service");
    Api::<Service>::namespaced(c.clone(), ns)
        .patch(name, &pp, &kube::api::Patch::Apply(&svc))
        .await
        .expect("service");
    let ep: k8s_openapi::api::core::v1::Endpoints = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns},
        "subsets": [{"addresses": [{"ip": mirror::NODE_IP}],
                     "ports": [{"name": "broker", "port": target}]}]
    }))
    .expect("endpoints");
    Api::<k8s_openapi::api::core::v1::Endpoints>::namespaced(c.clone(), ns)
        .patch(name, &pp, &kube::api::Patch::Apply(&ep))
        .await
        .expect("endpoints");
}

/// Kafka and NATS triggers: brokers on the node behind Kubeless's default
/// in-cluster names (`kafka.kubeless:9092`, `nats.nats-io.svc.cluster.local`),
/// consumed by controller-manager in its pod, delivered to the function's
/// pods at least once; a message the function always fails goes to the
/// dead-letter topic/subject after the retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_kafka_and_nats_triggers_deliver_to_pods() {
    let ns = "node-events";
    let Some((c, dir)) = setup(ns).await else {
        return;
    };

    let cache = std::env::var_os("KUBELESS_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/kubeless-dev")))
        .expect("HOME");
    let tansu = cache.join("tansu-0.6.0/bin/tansu");
    assert!(
        tansu.is_file(),
        "{} is missing: run scripts/setup.sh (scripts/deps/kafka.sh builds it)",
        tansu.display()
    );
    let kafka_addr = format!("{}:19092", mirror::NODE_IP);
    let nats_addr = format!("{}:14222", mirror::NODE_IP);
    // the brokers' in-cluster names lead to the node, where nothing listens yet
    service_to_node(&c, "kubeless", "kafka", 9092, 19092).await;
    service_to_node(&c, "nats-io", "nats", 4222, 14222).await;

    let sink = write(
        dir.path(),
        "sink.py",
        "import json\n\n\
         def handler(event, context):\n\
         \x20   d = event['data']\n\
         \x20   if isinstance(d, bytes):\n\
         \x20       d = json.loads(d)\n\
         \x20   if d.get('poison'):\n\
         \x20       raise Exception('poison message')\n\
         \x20   print('got %s via %s' % (d['seq'], event['event-namespace']), flush=True)\n\
         \x20   return 'ok'\n",
    );
    deploy(
        ns,
        "sink",
        "python3.11",
        "sink.handler",
        &sink,
        &["--label", "app=sink"],
    )
    .await;
    call_until("sink", ns, "{\"seq\": -1}", "ok", 180).await;
    kubeless_ok(&[
        "trigger",
        "kafka",
        "create",
        "orders-kafka",
        "-n",
        ns,
        "--trigger-topic",
        "orders",
        "--function-selector",
        "app=sink",
    ])
    .await;
    kubeless_ok(&[
        "trigger",
        "nats",
        "create",
        "orders-nats",
        "-n",
        ns,
        "--trigger-topic",
        "orders",
        "--function-selector",
        "app=sink",
    ])
    .await;

    // brokers that are down: each trigger says so in its status, and the
    // function keeps serving
    let status = |plural: &'static str, name: &'static str| async move {
        tokio::task::spawn_blocking(move || {
            run(Command::new("kubectl").args([
                "get",
                plural,
                name,
                "-n",
                "node-events",
                "-o",
                "jsonpath={.status.state}: {.status.conditions[0].message}",
            ]))
        })
        .await
        .ok()
        .filter(|(ok, _, _)| *ok)
        .map(|(_, out, _)| out)
    };
    for (plural, name) in [
        ("kafkatriggers", "orders-kafka"),
        ("natstriggers", "orders-nats"),
    ] {
        let s = eventually(
            &format!("{plural}/{name} to say its broker is down"),
            120,
            || async {
                status(plural, name)
                    .await
                    .filter(|s| s.starts_with("Degraded: "))
            },
        )
        .await;
        eprintln!("{name} with its broker down: {s}");
    }
    call_until("sink", ns, "{\"seq\": -2}", "ok", 30).await;

    let kafka_url = format!("tcp://{kafka_addr}");
    let _kafka = NodeBroker::start(
        &tansu,
        &[
            "broker",
            "--listener-url",
            &kafka_url,
            "--advertised-listener-url",
            &kafka_url,
            "--storage-engine",
            "memory://tansu/",
        ],
        &kafka_addr,
    );
    let js_dir = dir.path().join("js");
    let _nats = NodeBroker::start(
        Path::new("nats-server"),
        &[
            "-a",
            mirror::NODE_IP,
            "-p",
            "14222",
            "--jetstream",
            "--store_dir",
            js_dir.to_str().expect("utf-8"),
        ],
        &nats_addr,
    );
    for topic in ["orders", "orders.deadletter"] {
        kubeless_events::kafka::create_topic(&kafka_addr, topic, 1, false)
            .await
            .expect("create the Kafka topic");
    }

    // the consumers are up when the triggers say Ready
    for plural in ["kafkatriggers", "natstriggers"] {
        let name = if plural == "kafkatriggers" {
            "orders-kafka"
        } else {
            "orders-nats"
        };
        eventually(&format!("{plural}/{name} to be Ready"), 120, || async {
            let (ok, out, _) = tokio::task::spawn_blocking(move || {
                run(Command::new("kubectl").args([
                    "get",
                    plural,
                    name,
                    "-n",
                    "node-events",
                    "-o",
                    "jsonpath={.status.state}",
                ]))
            })
            .await
            .ok()?;
            (ok && out == "Ready").then_some(())
        })
        .await;
    }

    let t = Instant::now();
    let n = 50u64;
    let bodies: Vec<String> = (0..n).map(|i| format!("{{\"seq\": {i}}}")).collect();
    {
        let (addr, bodies) = (kafka_addr.clone(), bodies.clone());
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::{FutureProducer, FutureRecord};
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let p: FutureProducer = rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", &addr)
                    .create()
                    .expect("producer");
                for b in &bodies {
                    p.send(
                        FutureRecord::<(), _>::to("orders").payload(b),
                        Duration::from_secs(10),
                    )
                    .await
                    .expect("broker ack");
                }
            });
        })
        .await
        .expect("produce");
    }
    let nc = async_nats::connect(format!("nats://{nats_addr}"))
        .await
        .expect("connect to nats");
    for b in &bodies {
        nc.publish("orders", b.clone().into())
            .await
            .expect("publish");
    }
    nc.flush().await.expect("flush");

    eventually(
        "every message of both brokers in the function's log",
        180,
        || async {
            let (ok, logs) = kubeless_try(&["function", "logs", "sink", "-n", ns]).await;
            if !ok {
                return None;
            }
            let all = (0..n).all(|i| {
                logs.contains(&format!("got {i} via kafkatriggers.kubeless.io"))
                    && logs.contains(&format!("got {i} via natstriggers.kubeless.io"))
            });
            all.then_some(())
        },
    )
    .await;
    eprintln!(
        "kafka + nats: {n} messages each delivered to the pod in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // a poison message ends in the Kafka dead-letter topic after the retries
    {
        let addr = kafka_addr.clone();
        let dead = tokio::task::spawn_blocking(move || {
            use rdkafka::Message as _;
            use rdkafka::consumer::{BaseConsumer, Consumer};
            use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
            let p: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &addr)
                .create()
                .expect("producer");
            p.send(BaseRecord::<(), _>::to("orders").payload("{\"seq\": 999, \"poison\": true}"))
                .map_err(|(e, _)| e)
                .expect("queue");
            rdkafka::producer::Producer::flush(&p, Duration::from_secs(10)).expect("flush");
            let cons: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &addr)
                .set("group.id", "node-events-dead-letters")
                .set("auto.offset.reset", "earliest")
                .create()
                .expect("consumer");
            cons.subscribe(&["orders.deadletter"]).expect("subscribe");
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                assert!(Instant::now() < deadline, "no dead letter within 120 s");
                if let Some(Ok(m)) = cons.poll(Duration::from_secs(1)) {
                    return String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                }
            }
        })
        .await
        .expect("dead letter");
        assert!(dead.contains("\"poison\": true"), "{dead}");
    }

    kubeless_ok(&["trigger", "kafka", "delete", "orders-kafka", "-n", ns]).await;
    kubeless_ok(&["trigger", "nats", "delete", "orders-nats", "-n", ns]).await;
    kubeless_ok(&["function", "delete", "sink", "-n", ns]).await;
}
