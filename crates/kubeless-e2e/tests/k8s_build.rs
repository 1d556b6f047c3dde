//! The image build step in Kubernetes mode (`enable-build-step: "true"`),
//! against the real kube-apiserver of tools/k8s-harness and a real
//! registry (`docker-registry` with htpasswd auth, `skopeo` as the
//! independent client).
//!
//! Pods cannot run here (no kubelet), so the build Job's two steps are run
//! by the test exactly as the Job describes them: its `prepare` init
//! container's script (paths under a temporary directory instead of the
//! volumes), then its `build` container's command and environment. The
//! image it pushes is read back with skopeo and run by `kubeless server`
//! from the pulled layers, so a Job that builds a broken image fails here.

mod common;
mod k8s_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::registry::{PASSWORD, Registry, USER, inspect, need, push_base};
use common::{Server, bin_dir};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubeless_controller::resources::Function;
use serde_json::{Value, json};

const HELLO: &str =
    "def foo(event, context):\n    return 'built by the job ' + str(event['data'])\n";

fn function(name: &str) -> Function {
    serde_json::from_value(json!({
        "apiVersion": "kubeless.io/v1beta1", "kind": "Function",
        "metadata": {"name": name, "labels": {"created-by": "kubeless", "function": name}},
        "spec": {
            "handler": "hello.foo", "runtime": "python3.11", "timeout": "30",
            "function": HELLO, "function-content-type": "text", "checksum": "", "deps": "",
            "deployment": {}, "service": {}, "horizontalPodAutoscaler": {}
        }
    }))
    .expect("function")
}

/// `kubeless-config` with the build step on, plain HTTP to the registry,
/// and Python's runtime image = the test base image.
fn config(ns: &str, base: &str) -> ConfigMap {
    let mut data = kubeless_controller::settings::default_config_data();
    data.insert("functions-namespace".into(), ns.to_string());
    data.insert("enable-build-step".into(), "true".into());
    data.insert("function-registry-tls-verify".into(), "false".into());
    let mut images: Value =
        serde_json::from_str(&data["runtime-images"]).expect("runtime-images JSON");
    for rt in images.as_array_mut().expect("array") {
        if rt["ID"] != "python" {
            continue;
        }
        for v in rt["versions"].as_array_mut().expect("versions") {
            for i in v["images"].as_array_mut().expect("images") {
                if i["phase"] == "runtime" {
                    i["image"] = json!(base);
                }
            }
        }
    }
    data.insert("runtime-images".into(), images.to_string());
    serde_json::from_value(json!({"metadata": {"name": "kubeless-config"}, "data": data}))
        .expect("config map")
}

fn registry_secret(host: &str) -> Secret {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let cfg = json!({"auths": {format!("http://{host}/v2"): {"auth": auth}}}).to_string();
    serde_json::from_value(json!({
        "metadata": {"name": "kubeless-registry-credentials"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": cfg},
    }))
    .expect("secret")
}

fn pod_spec(v: &Value) -> &Value {
    &v["spec"]["template"]["spec"]
}

/// Run the Job's `prepare` init container script with its volumes at
/// `root/kubeless` and `root/src` (the function's ConfigMap data).
fn run_prepare(job: &Value, cm: &ConfigMap, root: &Path) {
    let src = root.join("src");
    let out = root.join("kubeless");
    std::fs::create_dir_all(&src).expect("src dir");
    std::fs::create_dir_all(&out).expect("layer dir");
    for (k, v) in cm.data.clone().unwrap_or_default() {
        std::fs::write(src.join(k), v).expect("configmap file");
    }
    let prepare = pod_spec(job)["initContainers"]
        .as_array()
        .expect("init containers")
        .iter()
        .find(|c| c["name"] == "prepare")
        .expect("a prepare init container")
        .clone();
    assert_eq!(prepare["command"][0], "sh");
    let script = prepare["command"][2]
        .as_str()
        .expect("script")
        .replace("/kubeless", &out.to_string_lossy())
        .replace("/src/", &format!("{}/", src.to_string_lossy()));
    let status = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .status()
        .expect("run the prepare script");
    assert!(status.success(), "prepare script failed: {script}");
}

/// Run the Job's `build` container: its args and environment, with the
/// volumes under `root` and the registry credentials in `docker_config`.
fn run_build(job: &Value, root: &Path, docker_config: &Path) -> String {
    let c = &pod_spec(job)["containers"][0];
    assert_eq!(c["command"], json!(["kubeless"]));
    let args: Vec<String> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| {
            a.as_str()
                .expect("string arg")
                .replace(
                    "/docker/.dockerconfigjson",
                    &docker_config.to_string_lossy(),
                )
                .replace("/kubeless", &root.join("kubeless").to_string_lossy())
        })
        .collect();
    let mut cmd = Command::new(bin_dir().join("kubeless"));
    cmd.args(&args).stdin(Stdio::null());
    for e in c["env"].as_array().expect("env") {
        cmd.env(
            e["name"].as_str().expect("name"),
            e["value"].as_str().unwrap_or(""),
        );
    }
    let out = cmd.output().expect("run kubeless build-image");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "build-image failed:\n{stderr}");
    eprintln!("{stderr}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn job_of(jobs: &Api<Job>, function: &str) -> Option<Job> {
    jobs.list(&ListParams::default().labels(&format!("created-by=kubeless,function={function}")))
        .await
        .ok()?
        .items
        .into_iter()
        .next()
}

#[test]
fn build_step_creates_the_job_and_the_deployment_runs_its_image() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let Some(env) = rt.block_on(k8s_support::Env::start("b", "build")) else {
        return;
    };
    // The end runs the Job-built image in embedded mode, under bubblewrap.
    need("bwrap", "run scripts/deps/sandbox.sh");
    let reg = Registry::start();
    let base = push_base(&reg);
    let host = reg.host();
    let ns = env.ns.clone();
    let fns: Api<Function> = env.api();
    let deps: Api<Deployment> = env.api();
    let jobs: Api<Job> = env.api();
    let cms: Api<ConfigMap> = env.api();
    let secrets: Api<Secret> = env.api();

    // Without the registry secret: the init-container path, and the status
    // says why.
    rt.block_on(async {
        cms.patch(
            "kubeless-config",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&config(&ns, &base)),
        )
        .await
        .expect("config");
        fns.create(&PostParams::default(), &function("plain"))
            .await
            .expect("create");
        let f = k8s_support::eventually("the fallback warning", 30, || async {
            fns.get("plain").await.ok().filter(|f| {
                f.status.as_ref().is_some_and(|s| {
                    s.message
                        .contains("kubeless-registry-credentials not found")
                })
            })
        })
        .await;
        assert_eq!(f.status.expect("status").image, "");
        let d = deps.get("plain").await.expect("deployment");
        let d = serde_json::to_value(&d).expect("json");
        assert_eq!(pod_spec(&d)["initContainers"][0]["name"], "prepare");
        assert!(job_of(&jobs, "plain").await.is_none());
    });

    // With it: a build Job, and the Deployment on the planned image.
    let (job, cm, image) = rt.block_on(async {
        secrets
            .create(&PostParams::default(), &registry_secret(&host))
            .await
            .expect("secret");
        fns.create(&PostParams::default(), &function("hello"))
            .await
            .expect("create");
        let job = k8s_support::eventually("the build Job", 30, || job_of(&jobs, "hello")).await;
        let job = serde_json::to_value(&job).expect("json");
        let name = job["metadata"]["name"].as_str().expect("name").to_string();
        assert!(
            name.starts_with("build-hello-") && name.len() == 22,
            "{name}"
        );
        assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "Function");
        assert_eq!(pod_spec(&job)["restartPolicy"], "OnFailure");
        let d = k8s_support::eventually("the Deployment on the built image", 30, || async {
            deps.get("hello").await.ok().filter(|d| {
                serde_json::to_value(d).expect("json")["spec"]["template"]["spec"]["containers"][0]
                    ["image"]
                    .as_str()
                    .is_some_and(|i| i.starts_with(&format!("{host}/builder/{ns}-hello:")))
            })
        })
        .await;
        let d = serde_json::to_value(&d).expect("json");
        let image = pod_spec(&d)["containers"][0]["image"]
            .as_str()
            .expect("image")
            .to_string();
        let tag = image.rsplit(':').next().expect("tag");
        assert_eq!(&tag[..10], &name["build-hello-".len()..]);
        assert!(pod_spec(&d).get("initContainers").is_none(), "{d}");
        assert!(
            pod_spec(&d)["imagePullSecrets"]
                .as_array()
                .expect("pull secrets")
                .contains(&json!({"name": "kubeless-registry-credentials"}))
        );
        let f = k8s_support::eventually("the status image", 30, || async {
            fns.get("hello")
                .await
                .ok()
                .filter(|f| f.status.as_ref().is_some_and(|s| s.image == image))
        })
        .await;
        assert_eq!(f.status.expect("status").image, image);
        let cm = cms.get("hello").await.expect("the function's ConfigMap");
        (job, cm, image)
    });

    // Do the Job's work as it describes it, then read the image back.
    let work = tempfile::tempdir().expect("work dir");
    run_prepare(&job, &cm, work.path());
    let counts = |reg: &Registry| (reg.blob_uploads(), reg.blob_mounts(), reg.manifest_puts());
    let (uploads, mounts, manifests) = counts(&reg);
    let pushed = run_build(&job, work.path(), &reg.docker_config(PASSWORD));
    assert_eq!(
        pushed, image,
        "the Job pushes the image the Deployment runs"
    );
    // The function layer and config uploaded, the base layer mounted from
    // the base's repository, one manifest: counted in the access log.
    assert_eq!(
        counts(&reg),
        (uploads + 2, mounts + 1, manifests + 1),
        "{}",
        reg.log()
    );
    let cfg = inspect(&image, true);
    assert_eq!(
        cfg["config"]["Entrypoint"],
        json!(["/usr/local/bin/kubeless-runtime"])
    );
    // The build Job is idempotent: run again, nothing is pushed (no blob
    // upload or mount, no manifest, in the registry's access log).
    let before = counts(&reg);
    let again = run_build(&job, work.path(), &reg.docker_config(PASSWORD));
    assert_eq!(again, image);
    assert_eq!(
        counts(&reg),
        before,
        "the second run pushed something:\n{}",
        reg.log()
    );

    // The image is in the registry: deleting the Job and touching the
    // Function does not start another build.
    rt.block_on(async {
        let name = job["metadata"]["name"].as_str().expect("name");
        jobs.delete(name, &DeleteParams::background())
            .await
            .expect("delete job");
        k8s_support::eventually("the Job to go", 30, || async {
            job_of(&jobs, "hello").await.is_none().then_some(())
        })
        .await;
        let patch = json!({"metadata": {"annotations": {"touched": "1"}}});
        fns.patch("hello", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("touch");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            job_of(&jobs, "hello").await.is_none(),
            "an image already in the registry is not built again"
        );
        let d = deps.get("hello").await.expect("deployment");
        let d = serde_json::to_value(&d).expect("json");
        assert_eq!(pod_spec(&d)["containers"][0]["image"], json!(image));
    });

    // Run the Job-built image in embedded mode and call it.
    let server = Server::start();
    let cfg_path = reg.docker_config(PASSWORD);
    server.ok(&[
        "secret",
        "create",
        "kubeless-registry-credentials",
        "--from-file",
        &format!(".dockerconfigjson={}", cfg_path.to_string_lossy()),
    ]);
    let manifest = json!({
        "apiVersion": "kubeless.io/v1beta1", "kind": "Function",
        "metadata": {"name": "from-job", "namespace": "default",
                     "annotations": {"kubeless.io/run-image": "true", "kubeless.io/registry-tls-verify": "false"}},
        "spec": {"handler": "", "runtime": "", "function": "", "deps": "",
                 "deployment": {"spec": {"template": {"spec": {"containers": [{"image": image}]}}}}}
    });
    let path = server.file("from-job.json", manifest.to_string());
    server.ok(&["apply", "-f", &path]);
    server.wait_ready("from-job");
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/default/from-job", server.gateway()))
        .header("Content-Type", "application/json")
        .body("\"world\"")
        .send()
        .expect("call the function");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().expect("body"), "built by the job world");
    drop(server);

    // Deleting the Function removes its build Jobs.
    rt.block_on(async {
        fns.delete("hello", &DeleteParams::default())
            .await
            .expect("delete");
        k8s_support::eventually("the Function to go", 30, || async {
            fns.get_opt("hello")
                .await
                .ok()
                .and_then(|f| f.is_none().then_some(()))
        })
        .await;
        env.stop().await;
    });
}
