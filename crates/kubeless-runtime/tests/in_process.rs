//! The host as a library, the way the embedded server runs it in process:
//! workers started through a wrapper with a clean environment, their
//! output on pipes, pid files, and the request log in a sink.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubeless_runtime::{Config, Error, Host, Launch, Log, Output};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn config(code: &Path, handler: &str) -> Config {
    let env: HashMap<&str, String> = HashMap::from([
        ("FUNC_HANDLER", handler.to_owned()),
        ("MOD_NAME", "app".to_owned()),
        ("FUNC_RUNTIME", "python3.11".to_owned()),
        ("FUNC_PORT", "0".to_owned()),
        ("KUBELESS_BIND", "127.0.0.1".to_owned()),
        ("KUBELESS_INSTALL_VOLUME", code.display().to_string()),
        ("KUBELESS_PYTHON", "python3".to_owned()),
    ]);
    Config::from_lookup(|k| env.get(k).cloned(), 2).expect("valid config")
}

/// Reads a pipe to its end on a blocking thread.
fn drain(mut reader: std::io::PipeReader) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = reader.read_to_string(&mut text);
        text
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_get_the_launch_environment_wrapper_pipes_and_pid_files() {
    common::require_interpreter("python3");
    let code = common::code_dir();
    let pids = tempfile::tempdir().expect("pid dir");
    let (out_r, out_w) = std::io::pipe().expect("pipe");
    let (err_r, err_w) = std::io::pipe().expect("pipe");
    let (stdout, stderr) = (drain(out_r), drain(err_r));
    let sunk = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = Arc::clone(&sunk);
    let launch = Launch {
        // A real wrapper that execs the rest, as the server's cgroup join does.
        wrapper: vec!["env".into(), "KUBELESS_TEST_WRAPPED=1".into()],
        env: Some(vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("MARK".into(), "yes".into()),
        ]),
        output: Some(Output {
            stdout: Arc::new(out_w),
            stderr: Arc::new(err_w),
        }),
        pid_dir: Some(pids.path().to_owned()),
        log: Log::Sink(Arc::new(move |b: &[u8]| {
            sink.lock().unwrap().extend_from_slice(b)
        })),
    };
    let stop = CancellationToken::new();
    let host = Host::start(&config(code.path(), "environ"), launch, stop.clone())
        .await
        .expect("host starts");
    let pid_files: Vec<_> = std::fs::read_dir(pids.path())
        .expect("pid dir")
        .flatten()
        .collect();
    assert_eq!(pid_files.len(), 1, "one worker, one pid file");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let flushed = CancellationToken::new();
    let serving = kubeless_runtime::server::serve(
        listener,
        Arc::clone(host.app()),
        host.tracker().clone(),
        stop.clone(),
    );
    let flush = host.flush_requests(flushed.clone());
    let client = async {
        // The CARGO variable of this test process must not reach the worker.
        assert!(std::env::var_os("CARGO").is_some());
        let body: Value = reqwest::get(format!("http://{addr}/"))
            .await
            .expect("call")
            .json()
            .await
            .expect("json");
        assert_eq!(body["mark"], "yes", "{body}");
        assert_eq!(body["cargo"], Value::Null, "clean environment: {body}");
        assert_eq!(body["wrapped"], "1", "started through the wrapper: {body}");
        assert_eq!(body["handler"], "environ", "host variables added: {body}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !String::from_utf8_lossy(&sunk.lock().unwrap()).contains("\"GET / HTTP/1.1\" 200") {
            assert!(Instant::now() < deadline, "request log line in the sink");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
    };
    let closing = async {
        serving.await;
        host.close(Duration::from_secs(2), &CancellationToken::new())
            .await;
        flushed.cancel();
    };
    tokio::join!(client, closing, flush);

    assert_eq!(
        std::fs::read_dir(pids.path()).expect("pid dir").count(),
        0,
        "pid files removed with the workers"
    );
    // Every write end is closed: the workers are gone and the host dropped
    // its copies, so the readers reach the end.
    let out = stdout.join().expect("stdout");
    let err = stderr.join().expect("stderr");
    assert!(
        out.contains("module app loaded") && out.contains("environ called"),
        "{out}"
    );
    assert!(err.contains("to stderr"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_handler_is_a_load_failure() {
    common::require_interpreter("python3");
    let code = common::code_dir();
    let started = Host::start(
        &config(code.path(), "nope"),
        Launch::default(),
        CancellationToken::new(),
    )
    .await;
    match started {
        Err(e @ Error::LoadHandler { .. }) => {
            assert!(e.to_string().contains("has no function \"nope\""), "{e}")
        }
        Err(e) => panic!("expected a load failure, got {e}"),
        Ok(_) => panic!("a missing handler must not start"),
    }
}
