use serde_json::json;

use super::*;

fn function(v: serde_json::Value) -> Function {
    serde_json::from_value(v).expect("valid function json")
}

fn sample() -> Function {
    function(json!({
        "apiVersion": "kubeless.io/v1beta1",
        "kind": "Function",
        "metadata": {"name": "get-python", "namespace": "default", "generation": 2,
                     "labels": {"created-by": "kubeless", "function": "get-python"}},
        "spec": {
            "handler": "helloget.foo",
            "function": "def foo(event, context):\n    return 'hello world'\n",
            "function-content-type": "text",
            "checksum": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "runtime": "python3.8",
            "timeout": "30",
            "deps": "requests==2.31.0\n",
            "deployment": {"spec": {"template": {"spec": {
                "containers": [{"name": "", "env": [{"name": "FOO", "value": "bar"},
                                                    {"name": "S", "valueFrom": {"secretKeyRef": {}}}],
                                "resources": {"limits": {"memory": "128Mi"}},
                                "volumeMounts": [{"name": "creds-vol", "mountPath": "/creds"}]}],
                "volumes": [{"name": "creds-vol", "secret": {"secretName": "creds"}}]}}}},
            "service": {"ports": [{"name": "http-function-port", "port": 8080, "targetPort": 8080}]}
        }
    }))
}

#[test]
fn plan_matches_golden() {
    let p = plan(&sample(), &Catalogue::embedded(), &Settings::default()).expect("plans");
    let got = serde_json::to_string_pretty(&p).expect("serialises") + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/plan-python.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &got).expect("write golden");
    }
    let want =
        std::fs::read_to_string(path).expect("golden file exists (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(got, want);
}

#[test]
fn env_order_follows_kubeless() {
    let p = plan(&sample(), &Catalogue::embedded(), &Settings::default()).expect("plans");
    let names: Vec<_> = p.env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "FOO",
            "FUNC_HANDLER",
            "MOD_NAME",
            "FUNC_TIMEOUT",
            "FUNC_RUNTIME",
            "FUNC_MEMORY_LIMIT",
            "FUNC_PORT",
            "KUBELESS_INSTALL_VOLUME",
            "PYTHONPATH"
        ]
    );
    assert_eq!(p.memory_limit_bytes, Some(128 * 1024 * 1024));
    assert_eq!(
        p.secrets,
        vec![SecretMount {
            secret: "creds".into(),
            mount_path: "/creds".into()
        }]
    );
    assert_eq!(
        p.warnings.len(),
        1,
        "valueFrom is reported: {:?}",
        p.warnings
    );
}

#[test]
fn artifact_key_changes_with_code_and_deps_only() {
    let base = plan(&sample(), &Catalogue::embedded(), &Settings::default()).expect("plans");
    let mut f = sample();
    f.spec.timeout = "99".into();
    f.metadata.labels.insert("x".into(), "y".into());
    let same = plan(&f, &Catalogue::embedded(), &Settings::default()).expect("plans");
    assert_eq!(base.artifact_key, same.artifact_key);
    f.spec.deps = "requests==2.32.0\n".into();
    let other = plan(&f, &Catalogue::embedded(), &Settings::default()).expect("plans");
    assert_ne!(base.artifact_key, other.artifact_key);
}

#[test]
fn bad_inputs_are_named() {
    let cat = Catalogue::embedded();
    let mut f = sample();
    f.spec.runtime = "cobol85".into();
    let err = plan(&f, &cat, &Settings::default()).expect_err("unknown runtime");
    assert!(err.to_string().contains("python3.8"), "{err}");
    let mut f = sample();
    f.spec.handler = "nodot".into();
    assert!(matches!(
        plan(&f, &cat, &Settings::default()),
        Err(PlanError::Handler(_))
    ));
    let mut f = sample();
    f.spec.timeout = "-3".into();
    assert!(matches!(
        plan(&f, &cat, &Settings::default()),
        Err(PlanError::Timeout(_))
    ));
    let mut f = sample();
    f.spec.timeout = String::new();
    assert_eq!(
        plan(&f, &cat, &Settings::default())
            .expect("plans")
            .timeout_secs,
        180
    );
}

#[test]
fn npm_registry_is_honoured() {
    let env = vec![
        EnvVar {
            name: "NPM_REGISTRY".into(),
            value: "http://127.0.0.1:4873".into(),
        },
        EnvVar {
            name: "NPM_SCOPE".into(),
            value: "@acme".into(),
        },
    ];
    let cmd = Language::Nodejs.install_command(&env).expect("npm");
    assert!(
        cmd.args
            .contains(&"--@acme:registry=http://127.0.0.1:4873".to_string())
    );
}

#[test]
fn quantities_and_expansion() {
    assert_eq!(quantity::parse_bytes("64Mi"), Some(64 << 20));
    assert_eq!(quantity::parse_bytes("1G"), Some(1_000_000_000));
    assert_eq!(quantity::parse_bytes("1e3"), Some(1000));
    assert_eq!(quantity::parse_bytes("12XB"), None);
    let v = expand::expand("$(A)/x:$(B):$$(A)", |k| {
        (k == "A").then(|| "/a".to_string())
    });
    assert_eq!(v, "/a/x:$(B):$(A)");
}

#[test]
fn runtime_names_cover_kubeless_ids() {
    let names = Catalogue::embedded().names();
    for r in ["python3.6", "python3.8", "nodejs14", "nodejs20"] {
        assert!(names.iter().any(|n| n == r), "{r}");
    }
    let r = Catalogue::embedded().resolve("nodejs14").expect("resolves");
    assert_eq!(
        (r.id.as_str(), r.version.as_str(), r.suffix.as_str()),
        ("nodejs", "14", ".js")
    );
    assert!(Catalogue::embedded().resolve("nodejs15").is_none());
}

fn with_runtime(runtime: &str) -> Function {
    let mut f = sample();
    f.spec.runtime = runtime.to_string();
    f
}

#[test]
fn legacy_ids_warn_only_where_the_installed_toolchain_runs_them() {
    let mut cat = Catalogue::embedded();
    // Kubernetes mode: the version picks the image, nothing to warn about.
    let p = plan(&with_runtime("python3.8"), &cat, &Settings::default()).expect("plans");
    assert!(!p.warnings.iter().any(|w| w.contains("runs on")));
    cat.installed.insert(Language::Python, "3.11".into());
    let p = plan(&with_runtime("python3.8"), &cat, &Settings::default()).expect("plans");
    assert!(
        p.warnings
            .iter()
            .any(|w| w.starts_with("runtime python3.8 runs on the installed Python 3.11")),
        "{:?}",
        p.warnings
    );
    let p = plan(&with_runtime("python3.11"), &cat, &Settings::default()).expect("plans");
    assert!(!p.warnings.iter().any(|w| w.contains("runs on")));
    assert!(Language::Ruby.is_legacy("2.7") && !Language::Ruby.is_legacy("3.1"));
    assert!(Language::Java.is_legacy("11") && !Language::Java.is_legacy("17"));
}

#[test]
fn a_missing_toolchain_says_how_to_install_it() {
    let cat = Catalogue::embedded().restricted_to(&[Language::Python]);
    assert!(cat.names().contains(&"custom".to_string()));
    assert!(!cat.names().iter().any(|n| n.starts_with("ruby")));
    let err = plan(&with_runtime("ruby3.1"), &cat, &Settings::default()).expect_err("no ruby");
    assert_eq!(
        err.to_string(),
        "runtime ruby3.1 is not available on this machine: install Ruby (apt-get install ruby ruby-bundler) or point --ruby at it, and restart kubeless server"
    );
    let err = plan(&with_runtime("ruby9"), &cat, &Settings::default()).expect_err("unknown");
    assert!(matches!(err, PlanError::UnknownRuntime { .. }));
}

#[test]
fn custom_runtime_runs_the_module_as_its_server() {
    let mut f = with_runtime("custom");
    f.spec.handler = "server.main".into();
    let p = plan(&f, &Catalogue::embedded(), &Settings::default()).expect("plans");
    assert_eq!(p.runtime.language, Language::Custom);
    assert_eq!(p.runtime.dep_name, None);
    assert_eq!(p.install, None);
    assert_eq!(p.compile, None);
    let server = p.server.expect("a server command");
    assert_eq!(server.program, "$(KUBELESS_INSTALL_VOLUME)/server");
    assert!(p.env.iter().any(|e| e.name == "FUNC_PORT"));
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("spec.deps is ignored"))
    );
    f.spec.handler = "../x.main".into();
    assert!(plan(&f, &Catalogue::embedded(), &Settings::default()).is_err());
}
