//! Why a function's pods do not run: a pure reading of its pods and their
//! Warning events into a status reason and a one-line message.
//!
//! The kubelet and the scheduler know why a pod cannot run, but they say
//! it in the pod and its events, which a function's user never reads;
//! the Deployment only counts `0/1` ready. [`problem`] picks the first fact
//! that explains it, newest pod first (during a rollout the new pods are
//! the ones that matter):
//!
//! 1. a container or init container waiting in `ErrImagePull`,
//!    `ImagePullBackOff`, `InvalidImageName`, `CrashLoopBackOff` (with the
//!    last exit code), `CreateContainerConfigError`, `CreateContainerError`
//!    or `RunContainerError`; an init container that exited non-zero;
//! 2. a pod the scheduler cannot place (`PodScheduled=False`);
//! 3. else, for a pod [`stuck`] before any container started (waiting in
//!    `ContainerCreating`/`PodInitializing`: a volume that cannot be
//!    mounted, a sandbox that cannot be created), its newest Warning event.
//!
//! Messages are one line, short enough that their start says what is
//! wrong (`function ls` shows the first 50 characters), and end with the
//! fix where there is one. Pods that are going away, finished, or run by
//! a build Job are not judged; a container that runs but is not ready yet
//! is not a problem (readiness probes fail while a handler loads).

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Event, Pod};
use k8s_openapi::jiff::Timestamp;

/// Why the pods of a function do not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A CamelCase word: the kubelet's (`CrashLoopBackOff`), the
    /// scheduler's (`Unschedulable`), an event's (`FailedMount`), or
    /// `InitContainerFailed`.
    pub reason: String,
    /// One line for the status and `kubeless function ls`/`describe`.
    pub message: String,
}

/// Waiting reasons of a container that cannot get its image.
const PULL: &[&str] = &["ErrImagePull", "ImagePullBackOff"];
/// Waiting reasons of a container that cannot be created or started.
const CREATE: &[&str] = &[
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];
/// Waiting reasons of a pod that has not started any container yet.
const STARTING: &[&str] = &["ContainerCreating", "PodInitializing"];
/// Longest part of a message taken from the kubelet, the scheduler or an
/// event.
const MAX_CAUSE: usize = 160;

/// What stops `function`'s pods from running, if anything. `events` are
/// the Warning events of the [`stuck`] pods (the other pods' are
/// ignored).
pub fn problem(function: &str, namespace: &str, pods: &[Pod], events: &[Event]) -> Option<Problem> {
    let pods = judged(pods);
    let logs = format!("see kubeless function logs {function} -n {namespace}");
    pods.iter()
        .find_map(|p| container_problem(p, &logs).or_else(|| unschedulable(p)))
        .or_else(|| {
            pods.iter()
                .filter(|p| is_stuck(p))
                .find_map(|p| event_problem(p, events, namespace))
        })
}

/// The pods that have not started a container yet and whose Warning
/// events may say why (list their events for [`problem`]).
pub fn stuck(pods: &[Pod]) -> Vec<String> {
    judged(pods)
        .into_iter()
        .filter(|p| is_stuck(p))
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

/// The field selector of a pod's Warning events.
pub fn warning_events_of(pod: &str) -> String {
    format!("involvedObject.kind=Pod,involvedObject.name={pod},type=Warning")
}

/// The pods worth judging, newest first: not being deleted, not finished,
/// not a build Job's.
fn judged(pods: &[Pod]) -> Vec<&Pod> {
    let mut out: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .filter(|p| {
            !p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Job")
        })
        .collect();
    out.sort_by(|a, b| {
        let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        t(b).cmp(&t(a))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    out
}

fn statuses(pod: &Pod, init: bool) -> &[ContainerStatus] {
    pod.status
        .as_ref()
        .and_then(|s| {
            if init {
                s.init_container_statuses.as_deref()
            } else {
                s.container_statuses.as_deref()
            }
        })
        .unwrap_or_default()
}

/// The image a container runs, from its status, else from the pod's spec.
fn image_of(pod: &Pod, c: &ContainerStatus, init: bool) -> String {
    if !c.image.is_empty() {
        return c.image.clone();
    }
    pod.spec
        .as_ref()
        .and_then(|s| {
            if init {
                s.init_containers.as_deref()
            } else {
                Some(s.containers.as_slice())
            }
        })
        .and_then(|cs| cs.iter().find(|s| s.name == c.name))
        .and_then(|s| s.image.clone())
        .unwrap_or_default()
}

fn container_problem(pod: &Pod, logs: &str) -> Option<Problem> {
    for init in [true, false] {
        for c in statuses(pod, init) {
            if let Some(p) = container_status_problem(pod, c, init, logs) {
                return Some(p);
            }
        }
    }
    None
}

fn container_status_problem(
    pod: &Pod,
    c: &ContainerStatus,
    init: bool,
    logs: &str,
) -> Option<Problem> {
    let state = c.state.as_ref()?;
    let last_exit = c
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .filter(|t| t.exit_code != 0 || t.reason.as_deref() == Some("OOMKilled"));
    let which = if init {
        format!(" (init container {})", c.name)
    } else {
        String::new()
    };
    if let Some(w) = &state.waiting {
        let reason = w.reason.clone().unwrap_or_default();
        let detail = w.message.as_deref().map(one_line).unwrap_or_default();
        let problem = |message: String| Problem {
            reason: reason.clone(),
            message,
        };
        if PULL.contains(&reason.as_str()) {
            let image = image_of(pod, c, init);
            let cause = last_segment(&detail);
            let cause = if cause.is_empty() {
                String::new()
            } else {
                format!(": {cause}")
            };
            return Some(problem(format!(
                "cannot pull image {image}{which}{cause}; check the image name and that the node can reach its registry"
            )));
        }
        if reason == "InvalidImageName" {
            let image = image_of(pod, c, init);
            return Some(problem(format!(
                "invalid image name {image}{which}: {}",
                clip(&last_segment(&detail))
            )));
        }
        if reason == "CrashLoopBackOff" && init {
            return Some(init_failed(&c.name, last_exit.map(|t| t.exit_code), logs));
        }
        if reason == "CrashLoopBackOff" {
            return Some(problem(crashing(last_exit, logs)));
        }
        if CREATE.contains(&reason.as_str()) {
            let what = if reason == "RunContainerError" {
                "cannot start the container"
            } else {
                "cannot create the container"
            };
            return Some(problem(format!("{what}{which}: {}", clip_front(&detail))));
        }
        return None;
    }
    // Between two back-offs a crashing container is terminated, or running
    // again and not ready yet: the same problem, not a new start (else the
    // status would flip at every restart).
    let exited = state.terminated.as_ref().filter(|t| t.exit_code != 0);
    let restarted = state.running.is_some() && !c.ready && c.restart_count > 0;
    let t = exited.or(last_exit.filter(|_| restarted))?;
    if init {
        return Some(init_failed(&c.name, Some(t.exit_code), logs));
    }
    let reason = if c.restart_count > 0 {
        "CrashLoopBackOff".to_string()
    } else {
        t.reason.clone().unwrap_or_else(|| "Error".to_string())
    };
    Some(Problem {
        reason,
        message: crashing(Some(t), logs),
    })
}

fn crashing(last: Option<&ContainerStateTerminated>, logs: &str) -> String {
    match last {
        Some(t) if t.reason.as_deref() == Some("OOMKilled") => {
            "killed for using more memory than its limit (OOMKilled), restarting; raise --memory"
                .to_string()
        }
        Some(t) => format!(
            "keeps crashing (exit code {}), restarting; {logs}",
            t.exit_code
        ),
        None => format!("keeps crashing, restarting; {logs}"),
    }
}

fn init_failed(name: &str, exit_code: Option<i32>, logs: &str) -> Problem {
    // The init containers the controller renders, and what they do.
    let what = match name {
        "prepare" => ": the function's code could not be prepared",
        "install" => ": the dependencies could not be installed",
        "compile" => ": the function could not be compiled",
        _ => "",
    };
    let code = exit_code
        .map(|c| format!(" (exit code {c})"))
        .unwrap_or_default();
    Problem {
        reason: "InitContainerFailed".to_string(),
        message: format!("init container {name} failed{code}{what}; {logs}"),
    }
}

fn unschedulable(pod: &Pod) -> Option<Problem> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    let text = one_line(c.message.as_deref().unwrap_or_default());
    // "0/1 nodes are available: 1 Insufficient memory. no new claims to
    // deallocate, preemption: 0/1 nodes are available: ...": the first
    // sentence says why.
    let detail = match text.split_once(" are available: ") {
        Some((nodes, rest)) => {
            let why = rest.split(". ").next().unwrap_or(rest);
            format!("{} ({nodes} are available)", why.trim_end_matches('.'))
        }
        None => text.clone(),
    };
    let mut hints = Vec::new();
    if detail.contains("Insufficient memory") {
        hints.push("lower --memory");
    }
    if detail.contains("Insufficient cpu") {
        hints.push("lower --cpu");
    }
    let fix = if hints.is_empty() {
        String::new()
    } else {
        format!("; {} or add nodes", hints.join(" or "))
    };
    Some(Problem {
        reason: c
            .reason
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "Unschedulable".to_string()),
        message: format!("unschedulable: {}{fix}", clip(&detail)),
    })
}

/// Scheduled, not finished, and every container still waiting to be
/// created (or not reported yet).
fn is_stuck(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    let scheduled = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "PodScheduled" && c.status == "True");
    let creating = |c: &ContainerStatus| {
        c.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .is_some_and(|w| STARTING.contains(&w.reason.as_deref().unwrap_or_default()))
    };
    scheduled
        && status.phase.as_deref() == Some("Pending")
        && statuses(pod, true).iter().all(creating)
        && statuses(pod, false).iter().all(creating)
}

/// When an event was last seen.
fn seen(e: &Event) -> Option<Timestamp> {
    [
        e.series
            .as_ref()
            .and_then(|s| s.last_observed_time.as_ref())
            .map(|t| t.0),
        e.last_timestamp.as_ref().map(|t| t.0),
        e.event_time.as_ref().map(|t| t.0),
        e.first_timestamp.as_ref().map(|t| t.0),
        e.metadata.creation_timestamp.as_ref().map(|t| t.0),
    ]
    .into_iter()
    .flatten()
    .max()
}

fn event_problem(pod: &Pod, events: &[Event], namespace: &str) -> Option<Problem> {
    let name = pod.metadata.name.as_deref()?;
    let uid = pod.metadata.uid.as_deref();
    let e = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| {
            let o = &e.involved_object;
            o.kind.as_deref() == Some("Pod")
                && o.name.as_deref() == Some(name)
                && (o.uid.is_none() || uid.is_none() || o.uid.as_deref() == uid)
        })
        // The kubelet's summary ("Unable to attach or mount volumes ...
        // timed out") says less than the mount error it repeats: newest
        // first, but summaries last.
        .max_by_key(|e| (!is_summary(e), seen(e)))?;
    let reason = e.reason.clone().unwrap_or_else(|| "Warning".to_string());
    let text = one_line(e.message.as_deref().unwrap_or_default());
    let message = match text.split_once(" : ") {
        // MountVolume.SetUp failed for volume "v" : secret "s" not found
        Some((what, cause)) if reason == "FailedMount" => {
            let volume = what
                .split_once("for volume ")
                .map(|(_, v)| format!(" (volume {})", v.trim_matches('"')))
                .unwrap_or_default();
            let fix = missing(cause)
                .map(|(kind, obj)| format!("; create {kind} {obj} in namespace {namespace}"))
                .unwrap_or_default();
            format!("{}{volume}{fix}", clip(cause.trim()))
        }
        _ => clip(&text),
    };
    Some(Problem { reason, message })
}

fn is_summary(e: &Event) -> bool {
    e.message
        .as_deref()
        .is_some_and(|m| m.starts_with("Unable to attach or mount volumes"))
}

/// `secret "s" not found` -> ("secret", "s").
fn missing(cause: &str) -> Option<(&str, &str)> {
    let (kind, rest) = cause.trim().split_once(" \"")?;
    let (obj, tail) = rest.split_once('"')?;
    (tail.trim() == "not found" && matches!(kind, "secret" | "configmap")).then_some((kind, obj))
}

/// Whitespace runs (newlines included) as one space.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The innermost cause of a `a: b: c` chain of errors (`c`), without
/// containerd's trailing `: unknown`.
fn last_segment(s: &str) -> String {
    let s = s.trim().trim_end_matches(": unknown");
    s.rsplit(": ").next().unwrap_or(s).trim().to_string()
}

/// At most [`MAX_CAUSE`] characters, cut at the end.
fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_CAUSE {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_CAUSE).collect();
    out.push_str("...");
    out
}

/// At most [`MAX_CAUSE`] characters, keeping the end of an error chain
/// (the innermost cause) from a `: ` boundary.
fn clip_front(s: &str) -> String {
    let s = s.trim().trim_end_matches(": unknown");
    let n = s.chars().count();
    if n <= MAX_CAUSE {
        return s.to_string();
    }
    let start = s
        .match_indices(": ")
        .map(|(i, sep)| i + sep.len())
        .find(|&i| s[i..].chars().count() <= MAX_CAUSE);
    match start {
        Some(i) => format!("...{}", &s[i..]),
        None => {
            let tail: String = s.chars().skip(n - MAX_CAUSE).collect();
            format!("...{tail}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(name: &str, created: &str, status: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                         "creationTimestamp": created,
                         "labels": {"created-by": "kubeless", "function": "f"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": "f-123", "uid": "rs"}]},
            "spec": {"containers": [{"name": "f", "image": "runtime:1"}],
                     "initContainers": [{"name": "prepare", "image": "prepare:1"},
                                        {"name": "install", "image": "runtime:1"}]},
            "status": status,
        }))
        .expect("pod")
    }

    fn scheduled() -> Value {
        json!([{"type": "PodScheduled", "status": "True"}])
    }

    fn waiting(name: &str, image: &str, reason: &str, message: &str) -> Value {
        json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0,
               "state": {"waiting": {"reason": reason, "message": message}}})
    }

    fn running(name: &str) -> Value {
        json!({"name": name, "image": "runtime:1", "imageID": "", "ready": false,
               "restartCount": 0, "state": {"running": {}}})
    }

    fn done(name: &str, code: i32) -> Value {
        json!({"name": name, "image": "runtime:1", "imageID": "", "ready": false,
               "restartCount": 0,
               "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}}})
    }

    fn event(pod: &str, reason: &str, message: &str, last: &str) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{pod}.{reason}"), "namespace": "ns"},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": "ns", "uid": format!("uid-{pod}")},
            "reason": reason, "message": message, "type": "Warning",
            "lastTimestamp": last,
        }))
        .expect("event")
    }

    fn judge(pods: &[Pod], events: &[Event]) -> Option<(String, String)> {
        problem("f", "ns", pods, events).map(|p| (p.reason, p.message))
    }

    #[test]
    fn an_image_that_cannot_be_pulled() {
        let p = pod(
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Pending", "conditions": scheduled(),
                   "initContainerStatuses": [],
                   "containerStatuses": [waiting("f", "127.0.0.1:5055/nothing/here:1", "ImagePullBackOff",
                       "Back-off pulling image \"127.0.0.1:5055/nothing/here:1\": ErrImagePull: failed to pull and unpack image \"127.0.0.1:5055/nothing/here:1\": failed to resolve reference \"127.0.0.1:5055/nothing/here:1\": 127.0.0.1:5055/nothing/here:1: not found")]}),
        );
        assert_eq!(
            judge(&[p], &[]),
            Some((
                "ImagePullBackOff".into(),
                "cannot pull image 127.0.0.1:5055/nothing/here:1: not found; check the image name and that the node can reach its registry".into()
            ))
        );
        let p = pod(
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Pending", "conditions": scheduled(),
                   "initContainerStatuses": [waiting("prepare", "prepare:9", "ErrImagePull",
                       "rpc error: code = Unknown desc = dial tcp 10.0.0.9:443: connect: connection refused")],
                   "containerStatuses": [waiting("f", "runtime:1", "PodInitializing", "")]}),
        );
        assert_eq!(
            judge(&[p], &[]),
            Some((
                "ErrImagePull".into(),
                "cannot pull image prepare:9 (init container prepare): connection refused; check the image name and that the node can reach its registry".into()
            ))
        );
    }

    #[test]
    fn an_invalid_image_name() {
        let p = pod(
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Pending", "conditions": scheduled(),
                   "containerStatuses": [waiting("f", "Bad:Name", "InvalidImageName",
                       "Failed to apply default image tag \"Bad:Name\": couldn't parse image name \"Bad:Name\": invalid reference format: repository name must be lowercase")]}),
        );
        assert_eq!(
            judge(&[p], &[]),
            Some((
                "InvalidImageName".into(),
                "invalid image name Bad:Name: repository name must be lowercase".into()
            ))
        );
    }

    #[test]
    fn a_crash_loop_with_the_last_exit_code() {
        let mut c = waiting(
            "f",
            "runtime:1",
            "CrashLoopBackOff",
            "back-off 20s restarting failed container=f pod=f-1_ns(uid)",
        );
        c["lastState"] = json!({"terminated": {"exitCode": 3, "reason": "Error"}});
        c["restartCount"] = json!(2);
        let p = pod(
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Running", "conditions": scheduled(),
                   "initContainerStatuses": [done("prepare", 0)],
                   "containerStatuses": [c.clone()]}),
        );
        assert_eq!(
            judge(&[p], &[]),
            Some((
                "CrashLoopBackOff".into(),
                "keeps crashing (exit code 3), restarting; see kubeless function logs f -n ns"
                    .into()
            ))
        );
        // Running again between two back-offs: still crashing.
        let mut again = c.clone();
        again["state"] = json!({"running": {}});
        let p = pod(
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Running", "conditions": scheduled(), "containerStatuses": [again]}),
        );
        let (reason, _) = judge(&[p], &[]).expect("problem");
        assert_eq!(reason, "CrashLoopBackOff");
        c["lastState"] = json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
        let p = pod(
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Running", "conditions": scheduled(), "containerStatuses": [c]}),
        );
        let (reason, message) = judge(&[p], &[]).expect("problem");
        assert_eq!(reason, "CrashLoopBackOff");
        assert!(message.contains("OOMKilled") && message.ends_with("raise --memory"));
    }

    #[test]
    fn an_init_container_that_fails() {
        // Exited, about to be restarted...
        let p = pod(
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Pending", "conditions": scheduled(),
                   "initContainerStatuses": [done("prepare", 0), done("install", 1)],
                   "containerStatuses": [waiting("f", "runtime:1", "PodInitializing", "")]}),
        );
        let want = Some((
            "InitContainerFailed".to_string(),
            "init container install failed (exit code 1): the dependencies could not be installed; see kubeless function logs f -n ns".to_string(),
        ));
        assert_eq!(judge(&[p], &[]), want);
        // ... and backing off.
        let mut c = waiting(
            "install",
            "runtime:1",
            "CrashLoopBackOff",
            "back-off 10s restarting failed container",
        );
        c["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        let p = pod(
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Pending", "conditions": scheduled(),
                   "initContainerStatuses": [done("prepare", 0), c],
                   "containerStatuses": [waiting("f", "runtime:1", "PodInitializing", "")]}),
        );
        assert_eq!(judge(&[p], &[]), want);
    }

    #[test]
    fn a_container_that_cannot_be_created() {
        let p = pod(
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Pending", "conditions": scheduled(),
                   "containerStatuses": [waiting("f", "runtime:1", "CreateContainerConfigError",
                       "secret \"db\" not found")]}),
        );
        assert_eq!(
            judge(&[p], &[]),
            Some((
                "CreateContainerConfigError".into(),
                "cannot create the container: secret \"db\" not found".into()
            ))
        );
        let long = format!(
            "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: {}: exec: \"nope\": executable file not found in $PATH: unknown",
            "x".repeat(40)
        );
        let p = pod(
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Running", "conditions": scheduled(),
                   "containerStatuses": [waiting("f", "runtime:1", "RunContainerError", &long)]}),
        );
        let (reason, message) = judge(&[p], &[]).expect("problem");
        assert_eq!(reason, "RunContainerError");
        assert!(
            message.starts_with("cannot start the container: ...")
                && message.ends_with("exec: \"nope\": executable file not found in $PATH"),
            "{message}"
        );
        assert!(message.chars().count() < 220, "{message}");
    }

    #[test]
    fn a_pod_no_node_can_run() {
        let p = pod(
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient memory. no new claims to deallocate, preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."}]}),
        );
        assert_eq!(
            judge(&[p], &[]),
            Some((
                "Unschedulable".into(),
                "unschedulable: 1 Insufficient memory (0/1 nodes are available); lower --memory or add nodes".into()
            ))
        );
    }

    #[test]
    fn a_missing_secret_from_the_kubelet_events() {
        let p = pod(
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Pending", "conditions": scheduled(),
                   "initContainerStatuses": [waiting("prepare", "prepare:1", "PodInitializing", ""),
                                             waiting("install", "runtime:1", "PodInitializing", "")],
                   "containerStatuses": [waiting("f", "runtime:1", "PodInitializing", "")]}),
        );
        assert_eq!(stuck(std::slice::from_ref(&p)), ["f-1"]);
        assert_eq!(judge(std::slice::from_ref(&p), &[]), None);
        let events = [
            event(
                "f-1",
                "FailedMount",
                "MountVolume.SetUp failed for volume \"nothere-vol\" : secret \"nothere\" not found",
                "2026-01-01T00:00:05Z",
            ),
            event(
                "f-1",
                "FailedMount",
                "Unable to attach or mount volumes: unmounted volumes=[nothere-vol], unattached volumes=[]: timed out waiting for the condition",
                "2026-01-01T00:02:05Z",
            ),
            // another pod's
            event(
                "g-1",
                "FailedMount",
                "something else",
                "2026-01-01T00:03:00Z",
            ),
        ];
        assert_eq!(
            judge(&[p], &events),
            Some((
                "FailedMount".into(),
                "secret \"nothere\" not found (volume nothere-vol); create secret nothere in namespace ns".into()
            ))
        );
    }

    #[test]
    fn the_newest_event_of_a_stuck_pod() {
        let p = pod(
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Pending", "conditions": scheduled()}),
        );
        let events = [
            event(
                "f-1",
                "FailedCreatePodSandBox",
                "Failed to create pod sandbox: rpc error:\n  network not ready",
                "2026-01-01T00:00:09Z",
            ),
            event("f-1", "FailedMount", "older", "2026-01-01T00:00:01Z"),
        ];
        assert_eq!(
            judge(&[p], &events),
            Some((
                "FailedCreatePodSandBox".into(),
                "Failed to create pod sandbox: rpc error: network not ready".into()
            ))
        );
    }

    #[test]
    fn starting_running_deleted_and_build_pods_are_no_problem() {
        // Pulling, initialising, running but not ready yet: just starting.
        let starting = [
            pod(
                "f-1",
                "2026-01-01T00:00:00Z",
                json!({"phase": "Pending", "conditions": scheduled(),
                       "initContainerStatuses": [running("prepare")],
                       "containerStatuses": [waiting("f", "runtime:1", "PodInitializing", "")]}),
            ),
            pod(
                "f-2",
                "2026-01-01T00:00:00Z",
                json!({"phase": "Running", "conditions": scheduled(),
                       "initContainerStatuses": [done("prepare", 0)],
                       "containerStatuses": [running("f")]}),
            ),
        ];
        assert_eq!(judge(&starting, &[]), None);
        assert!(stuck(&starting).is_empty());
        // A pod going away, or a build Job's pod, is not judged.
        let crashed = json!({"phase": "Running", "conditions": scheduled(),
            "containerStatuses": [waiting("f", "runtime:1", "CrashLoopBackOff", "")]});
        let mut deleted = pod("f-3", "2026-01-01T00:00:00Z", crashed.clone());
        deleted.metadata.deletion_timestamp = deleted.metadata.creation_timestamp.clone();
        let mut build = pod("build-f-1", "2026-01-01T00:00:00Z", crashed);
        build.metadata.owner_references = Some(vec![
            serde_json::from_value(
                json!({"apiVersion": "batch/v1", "kind": "Job", "name": "build-f", "uid": "j"}),
            )
            .expect("owner"),
        ]);
        assert_eq!(judge(&[deleted, build], &[]), None);
        assert_eq!(judge(&[], &[]), None);
    }

    #[test]
    fn the_newest_pod_speaks_first() {
        let old = pod(
            "f-old",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                   "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu."}]}),
        );
        let new = pod(
            "f-new",
            "2026-01-01T00:01:00Z",
            json!({"phase": "Pending", "conditions": scheduled(),
                   "containerStatuses": [waiting("f", "img:2", "ErrImagePull", "not found")]}),
        );
        let (reason, _) = judge(&[old.clone(), new], &[]).expect("problem");
        assert_eq!(reason, "ErrImagePull");
        let (reason, message) = judge(&[old], &[]).expect("problem");
        assert_eq!(reason, "Unschedulable");
        assert!(message.ends_with("lower --cpu or add nodes"), "{message}");
    }

    #[test]
    fn messages_are_one_short_line() {
        let p = pod(
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"phase": "Pending", "conditions": scheduled(),
                   "containerStatuses": [waiting("f", "runtime:1", "CreateContainerConfigError",
                       &format!("line one\nline two {}", "y".repeat(300)))]}),
        );
        let (_, message) = judge(&[p], &[]).expect("problem");
        assert!(!message.contains('\n'));
        assert!(message.chars().count() < 220, "{message}");
        assert_eq!(
            warning_events_of("f-1"),
            "involvedObject.kind=Pod,involvedObject.name=f-1,type=Warning"
        );
    }
}
