//! `kubeless-runtime`: reads the environment, validates it, and runs the
//! host until SIGTERM/SIGINT. Exit codes: 0 clean shutdown, 1 runtime
//! failure, 2 invalid configuration, 3 the handler could not be loaded.
//!
//! `kubeless-runtime compile --language go|java --dir <code dir> --module
//! <MOD_NAME> --handler <FUNC_HANDLER> [--go P] [--javac P] [--mvn P]`
//! builds a compiled function once (see `kubeless_runtime::compile`); it
//! exits 0 when built, 1 when the build failed, 2 on bad arguments.

use std::collections::HashMap;
use std::process::ExitCode;

use kubeless_runtime::compile::CompileOptions;
use kubeless_runtime::{Config, Error, Language, run};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("compile") {
        return compile(&args[1..]);
    }
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let config = match Config::from_lookup(|k| env.get(k).cloned(), cpus) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kubeless-runtime: {e}");
            return ExitCode::from(2);
        }
    };

    // One thread is plenty: the host only shuffles bytes between sockets,
    // and the workers do the real work.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubeless-runtime: start async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e.downcast_ref::<Error>() {
                Some(Error::LoadHandler { .. }) => 3,
                Some(Error::InvalidConfig { .. }) => 2,
                _ => 1,
            };
            eprintln!("kubeless-runtime: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(code)
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = CancellationToken::new();
    let force = CancellationToken::new();

    // The first signal starts the drain, a second one cuts it short.
    let signals = async {
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            seen += 1;
            if seen == 1 {
                shutdown.cancel();
            } else {
                force.cancel();
            }
        }
    };
    tokio::select! {
        result = run(config, shutdown.clone(), force.clone()) => Ok(result?),
        _ = signals => Ok(()),
    }
}

fn compile(args: &[String]) -> ExitCode {
    let mut opts = CompileOptions {
        language: Language::Go,
        code_dir: ".".into(),
        module: String::new(),
        handler: String::new(),
        go: "go".to_owned(),
        javac: "javac".to_owned(),
        mvn: "mvn".to_owned(),
        maven_mirror: std::env::var("MAVEN_MIRROR_URL").ok(),
    };
    let mut language = None;
    let mut pairs = args.chunks(2);
    for pair in pairs.by_ref() {
        let [flag, value] = pair else {
            eprintln!("kubeless-runtime: compile: {} needs a value", pair[0]);
            return ExitCode::from(2);
        };
        match flag.as_str() {
            "--language" => language = Language::parse(value),
            "--dir" => opts.code_dir = value.into(),
            "--module" => opts.module = value.clone(),
            "--handler" => opts.handler = value.clone(),
            "--go" => opts.go = value.clone(),
            "--javac" => opts.javac = value.clone(),
            "--mvn" => opts.mvn = value.clone(),
            other => {
                eprintln!("kubeless-runtime: compile: unknown flag {other}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(language) = language else {
        eprintln!("kubeless-runtime: compile: --language go|java is required");
        return ExitCode::from(2);
    };
    opts.language = language;
    match kubeless_runtime::compile::compile(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubeless-runtime: {e}");
            ExitCode::from(1)
        }
    }
}
