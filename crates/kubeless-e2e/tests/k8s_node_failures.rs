//! Functions that cannot run, on the real node (tools/k8s-harness/node-up.sh):
//! each says why in one line in `kubeless function ls` and `describe` and
//! in its Function's status and Ready condition, while a healthy function
//! beside them keeps answering; fixing the cause makes one READY.
//!
//! The cases, one function each: an image that cannot be pulled, a handler
//! module that raises at import and a handler that does not exist (crash
//! loops), a dependency no index has (the `install` init container fails),
//! a secret that does not exist (the pod stays ContainerCreating; the
//! kubelet's FailedMount event says why), and a memory request no node has
//! (unschedulable).
//!
//! Test names start with `real_node_` (see k8s_node.rs for how they run).

mod k8s_support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_support::eventually;
use k8s_support::node::{call_until, deploy, diagnose, kubeless_ok, kubeless_try, setup, write};
use kube::api::{Api, PostParams};
use kubeless_controller::resources::Function;
use serde_json::json;

const NS: &str = "node-failures";

/// A function that cannot run and what must be said about it.
struct Case {
    name: &'static str,
    /// Words `function ls` shows after `NOT READY: `.
    ls: &'static str,
    /// Reasons the status may carry (the kubelet alternates some).
    reasons: &'static [&'static str],
    /// Words of the whole message (`describe`, the Ready condition).
    message: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "no-image",
        ls: "cannot pull image 127.0.0.1:5055/nothing/here:1",
        reasons: &["ErrImagePull", "ImagePullBackOff"],
        message: "check the image name",
    },
    Case {
        name: "raises",
        ls: "keeps crashing (exit code 3)",
        reasons: &["CrashLoopBackOff"],
        message: "see kubeless function logs raises -n node-failures",
    },
    Case {
        name: "no-handler",
        ls: "keeps crashing (exit code 3)",
        reasons: &["CrashLoopBackOff"],
        message: "see kubeless function logs no-handler -n node-failures",
    },
    Case {
        name: "no-package",
        ls: "init container install failed (exit code 1)",
        reasons: &["InitContainerFailed"],
        message: "the dependencies could not be installed",
    },
    Case {
        name: "no-secret",
        ls: "secret \"nothere\" not found",
        reasons: &["FailedMount"],
        message: "create secret nothere in namespace node-failures",
    },
    Case {
        name: "too-big",
        ls: "unschedulable: 1 Insufficient memory",
        reasons: &["Unschedulable"],
        message: "lower --memory",
    },
];

/// The NAME cell of a `function ls` line.
fn name_of(line: &str) -> &str {
    line.split('\t').next().unwrap_or_default().trim()
}

async fn healthy_answers() {
    let (ok, out) = kubeless_try(&["function", "call", "ok", "-n", NS, "--data", "still"]).await;
    assert!(
        ok && out.contains("ok still"),
        "the healthy function stopped answering: {out}\n{}",
        diagnose(NS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_functions_that_cannot_run_say_why() {
    let Some((c, dir)) = setup(NS).await else {
        return;
    };
    let ok = write(
        dir.path(),
        "ok.py",
        "def handler(event, context):\n    return 'ok ' + event['data'].decode()\n",
    );
    let raises = write(
        dir.path(),
        "raises.py",
        "raise RuntimeError('boom at import')\n\ndef handler(event, context):\n    return 'never'\n",
    );
    let reqs = write(
        dir.path(),
        "requirements.txt",
        "no-such-package-anywhere==1.0\n",
    );
    let py = "python3.11";
    deploy(NS, "ok", py, "ok.handler", &ok, &[]).await;
    deploy(
        NS,
        "no-image",
        py,
        "ok.handler",
        &ok,
        &["--runtime-image", "127.0.0.1:5055/nothing/here:1"],
    )
    .await;
    deploy(NS, "raises", py, "raises.handler", &raises, &[]).await;
    deploy(NS, "no-handler", py, "ok.nothere", &ok, &[]).await;
    deploy(
        NS,
        "no-package",
        py,
        "ok.handler",
        &ok,
        &[
            "--dependencies",
            reqs.to_str().expect("utf-8"),
            // nothing listens there: pip gives up at once
            "--env",
            "PIP_INDEX_URL=http://10.250.0.1:9/simple/",
        ],
    )
    .await;
    deploy(
        NS,
        "no-secret",
        py,
        "ok.handler",
        &ok,
        &["--secrets", "nothere"],
    )
    .await;
    deploy(NS, "too-big", py, "ok.handler", &ok, &["--memory", "500Gi"]).await;
    let t0 = Instant::now();
    call_until("ok", NS, "first", "ok first", 300).await;

    // Every failing function says why in `function ls`; the healthy one
    // answers all along.
    let mut seen: Vec<Option<Duration>> = vec![None; CASES.len()];
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut ls = String::new();
    while seen.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "not every failure shows in function ls within 300 s:\n{ls}\n{}",
            diagnose(NS)
        );
        ls = kubeless_ok(&["function", "ls", "-n", NS]).await;
        for (case, at) in CASES.iter().zip(seen.iter_mut()) {
            let row = ls.lines().find(|l| name_of(l) == case.name);
            if at.is_none() && row.is_some_and(|r| r.contains(&format!("NOT READY: {}", case.ls))) {
                *at = Some(t0.elapsed());
            }
        }
        healthy_answers().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!("$ kubeless function ls -n {NS}\n{ls}");
    for (case, at) in CASES.iter().zip(&seen) {
        eprintln!(
            "{}: in function ls {:.0} s after deploy",
            case.name,
            at.unwrap_or_default().as_secs_f64()
        );
    }
    assert!(
        ls.lines()
            .any(|l| name_of(l) == "ok" && l.contains("1/1 READY")),
        "{ls}"
    );

    // describe and the Function's status say the same in full.
    let functions: Api<Function> = Api::namespaced(c.clone(), NS);
    for case in CASES {
        let describe = kubeless_ok(&["function", "describe", case.name, "-n", NS]).await;
        let row = |key: &str| {
            describe
                .lines()
                .find(|l| l.starts_with(key))
                .map(|l| l[key.len()..].trim().to_string())
                .unwrap_or_default()
        };
        assert_eq!(row("Status:"), "Failed", "{describe}");
        assert!(
            case.reasons.contains(&row("Reason:").as_str()),
            "{}: {describe}",
            case.name
        );
        let message = row("Message:");
        assert!(
            message.contains(case.ls) && message.contains(case.message),
            "{}: {describe}",
            case.name
        );
        let f = functions.get(case.name).await.expect("function");
        let st = serde_json::to_value(&f.status).expect("status");
        let ready = st["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(ready["status"], "False", "{}: {st}", case.name);
        assert!(
            case.reasons
                .contains(&ready["reason"].as_str().unwrap_or_default())
                && ready["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(case.ls),
            "{}: {st}",
            case.name
        );
        assert_eq!(st["phase"], "Failed", "{}: {st}", case.name);
        eprintln!(
            "{}: reason {} | {}",
            case.name,
            st["reason"].as_str().unwrap_or_default(),
            st["message"].as_str().unwrap_or_default()
        );
    }

    // The logs the messages point at say what went wrong.
    let logs = kubeless_ok(&["function", "logs", "raises", "-n", NS]).await;
    assert!(logs.contains("boom at import"), "{logs}");
    let logs = kubeless_ok(&["function", "logs", "no-handler", "-n", NS]).await;
    assert!(logs.contains("nothere"), "{logs}");
    let logs = kubeless_ok(&["function", "logs", "no-package", "-n", NS]).await;
    assert!(logs.contains("no-such-package-anywhere"), "{logs}");
    healthy_answers().await;

    // Fixing the cause is enough: the secret appears, the pod mounts it.
    let secrets: Api<Secret> = Api::namespaced(c.clone(), NS);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "nothere"},
                "stringData": {"token": "s3cret"},
            }))
            .expect("secret"),
        )
        .await
        .expect("create secret");
    let t = Instant::now();
    eventually(
        "no-secret to be READY once its secret exists",
        300,
        || async {
            let ls = kubeless_ok(&["function", "ls", "no-secret", "-n", NS]).await;
            ls.contains("1/1 READY").then_some(())
        },
    )
    .await;
    call_until("no-secret", NS, "fixed", "ok fixed", 60).await;
    let describe = kubeless_ok(&["function", "describe", "no-secret", "-n", NS]).await;
    assert!(
        describe.contains("Ready") && !describe.contains("Message:"),
        "{describe}"
    );
    eprintln!(
        "no-secret: READY {:.0} s after its secret was created",
        t.elapsed().as_secs_f64()
    );
    healthy_answers().await;

    for name in std::iter::once("ok").chain(CASES.iter().map(|c| c.name)) {
        kubeless_ok(&["function", "delete", name, "-n", NS]).await;
    }
}
