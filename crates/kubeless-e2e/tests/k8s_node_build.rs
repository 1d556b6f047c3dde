//! The image build step on the real node (tools/k8s-harness/node-up.sh):
//! with `enable-build-step: "true"` and a `kubeless-registry-credentials`
//! secret, a build Job runs in the cluster, pushes the function's image to
//! the node's registry (10.250.0.1:5055, reached from pods), and the
//! function's Deployment runs that image; the same code deployed again
//! builds nothing.
//!
//! The setting is cluster-wide, so scripts/test.sh runs this binary on its
//! own, after the other real-node tests; it puts `kubeless-config` back when
//! it ends.

mod k8s_support;

use std::process::Command;
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_support::eventually;
use k8s_support::node::{call_until, kubeless_ok, run, setup, write};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kubeless_controller::resources::Function;
use serde_json::{Value, json};

/// The node's registry as pods see it.
const REGISTRY: &str = "10.250.0.1:5055";

/// `runtime-images` with python3.11's runtime image at the node's registry:
/// the controller reads the base image's manifest from inside its pod, where
/// ghcr.io is out of reach (containerd's mirror serves only pulls).
fn with_local_python_base(runtime_images: &str) -> String {
    let mut v: Value = serde_yaml::from_str(runtime_images).expect("runtime-images");
    let key = |o: &Value, k: &str| -> Option<String> {
        o.as_object()?
            .keys()
            .find(|x| x.eq_ignore_ascii_case(k))
            .cloned()
    };
    for rt in v.as_array_mut().expect("runtime-images is a list") {
        let id = key(rt, "id").expect("id");
        if rt[&id] != "python" {
            continue;
        }
        let versions = key(rt, "versions").expect("versions");
        for ver in rt[&versions].as_array_mut().expect("versions") {
            let version = key(ver, "version").expect("version");
            if ver[&version] != "3.11" {
                continue;
            }
            let images = key(ver, "images").expect("images");
            for img in ver[&images].as_array_mut().expect("images") {
                let phase = key(img, "phase").expect("phase");
                if img[&phase]
                    .as_str()
                    .is_some_and(|p| p.eq_ignore_ascii_case("runtime"))
                {
                    let image = key(img, "image").expect("image");
                    img[&image] = json!(format!("{REGISTRY}/kubeless-rs/runtime-python:3.11"));
                }
            }
        }
    }
    serde_json::to_string_pretty(&v).expect("json")
}

async fn set_config(configs: &Api<ConfigMap>, data: &std::collections::BTreeMap<String, String>) {
    configs
        .patch(
            "kubeless-config",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": data })),
        )
        .await
        .expect("patch kubeless-config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_build_step_runs_the_built_image() {
    let ns = "node-build";
    let Some((c, dir)) = setup(ns).await else {
        return;
    };

    let configs: Api<ConfigMap> = Api::namespaced(c.clone(), "kubeless");
    let saved = configs
        .get("kubeless-config")
        .await
        .expect("kubeless-config")
        .data
        .unwrap_or_default();
    let mut data = saved.clone();
    data.insert("enable-build-step".into(), "true".into());
    data.insert("function-registry-tls-verify".into(), "false".into());
    let images = with_local_python_base(saved.get("runtime-images").expect("runtime-images"));
    data.insert("runtime-images".into(), images);
    set_config(&configs, &data).await;

    let (ok, out, err) = run(Command::new("kubectl").args([
        "create",
        "secret",
        "docker-registry",
        "kubeless-registry-credentials",
        "-n",
        ns,
        &format!("--docker-server=http://{REGISTRY}/v2"),
        "--docker-username=builder",
        "--docker-password=unused",
    ]));
    assert!(ok, "{out}{err}");

    // code no earlier run built: the registry keeps its images between runs
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let code = write(
        dir.path(),
        "built.py",
        &format!(
            "# run {run_id}\ndef handler(event, context):\n    return 'from the built image'\n"
        ),
    );
    let deploy = || async {
        kubeless_ok(&[
            "function",
            "deploy",
            "built",
            "-n",
            ns,
            "--runtime",
            "python3.11",
            "--handler",
            "built.handler",
            "--from-file",
            code.to_str().expect("utf-8"),
        ])
        .await;
    };
    let t = Instant::now();
    deploy().await;
    call_until("built", ns, "x", "from the built image", 300).await;
    eprintln!(
        "build step: deploy -> first answer from the built image {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let jobs: Api<Job> = Api::namespaced(c.clone(), ns);
    let built = ListParams::default().labels("created-by=kubeless,function=built");
    let list = jobs.list(&built).await.expect("jobs").items;
    assert_eq!(list.len(), 1, "one build Job: {list:?}");
    let status = list[0].status.clone().unwrap_or_default();
    assert_eq!(status.succeeded, Some(1), "{status:?}");
    if let (Some(a), Some(b)) = (&status.start_time, &status.completion_time) {
        eprintln!(
            "build Job {}: {} s",
            list[0].metadata.name.clone().unwrap_or_default(),
            (b.0.as_second() - a.0.as_second())
        );
    }
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), ns);
    let d = deployments.get("built").await.expect("deployment");
    let pod = d.spec.expect("spec").template.spec.expect("pod spec");
    let image = pod.containers[0].image.clone().unwrap_or_default();
    assert!(
        image.starts_with(&format!("{REGISTRY}/builder/{ns}-built:")),
        "{image}"
    );
    assert!(
        pod.init_containers.unwrap_or_default().is_empty(),
        "no init containers with a built image"
    );
    let functions: Api<Function> = Api::namespaced(c.clone(), ns);
    let f = functions.get("built").await.expect("function");
    let status = serde_json::to_value(&f.status).expect("status");
    assert_eq!(status["image"], json!(image), "{status}");

    // the same code again: the tag exists, so no Job and nothing pushed
    kubeless_ok(&["function", "delete", "built", "-n", ns]).await;
    eventually("the first deployment and Job to be gone", 120, || async {
        let d = deployments.get_opt("built").await.ok()?;
        let j = jobs.list(&built).await.ok()?;
        (d.is_none() && j.items.is_empty()).then_some(())
    })
    .await;
    let t = Instant::now();
    deploy().await;
    call_until("built", ns, "x", "from the built image", 180).await;
    eprintln!(
        "build step, unchanged code again: first answer {:.1}s, no build",
        t.elapsed().as_secs_f64()
    );
    assert!(
        jobs.list(&built).await.expect("jobs").items.is_empty(),
        "no build Job for an image the registry has"
    );
    let d = deployments.get("built").await.expect("deployment");
    let again = d
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
        .containers[0]
        .image
        .clone()
        .unwrap_or_default();
    assert_eq!(again, image);

    // a build that fails (a dependency no index has) says so in the status,
    // and the function built before keeps answering
    let broken = write(
        dir.path(),
        "broken.py",
        "def handler(event, context):\n    return 'never'\n",
    );
    let reqs = write(
        dir.path(),
        "requirements.txt",
        "no-such-package-anywhere==1.0\n",
    );
    kubeless_ok(&[
        "function",
        "deploy",
        "broken",
        "-n",
        ns,
        "--runtime",
        "python3.11",
        "--handler",
        "broken.handler",
        "--from-file",
        broken.to_str().expect("utf-8"),
        "--dependencies",
        reqs.to_str().expect("utf-8"),
        "--env",
        // nothing listens there: pip fails at once
        "PIP_INDEX_URL=http://10.250.0.1:9/simple/",
    ])
    .await;
    let t = Instant::now();
    let message = eventually("the failed build in the status", 300, || async {
        let f = functions.get("broken").await.ok()?;
        let m = serde_json::to_value(&f.status).ok()?["message"]
            .as_str()?
            .to_string();
        (m.contains("build Job") && m.contains("failed")).then_some(m)
    })
    .await;
    eprintln!(
        "failed build Job in the status after {:.1}s: {message}",
        t.elapsed().as_secs_f64()
    );
    call_until("built", ns, "x", "from the built image", 30).await;
    kubeless_ok(&["function", "delete", "broken", "-n", ns]).await;

    kubeless_ok(&["function", "delete", "built", "-n", ns]).await;
    // restore: a merge patch cannot remove keys, but every key was there
    set_config(&configs, &saved).await;
}
