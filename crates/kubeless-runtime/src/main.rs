//! `kubeless-runtime`: reads the environment, validates it, and runs the
//! host until SIGTERM/SIGINT. Exit codes: 0 clean shutdown, 1 runtime
//! failure, 2 invalid configuration, 3 the handler could not be loaded.

use std::collections::HashMap;
use std::process::ExitCode;

use kubeless_runtime::{Config, Error, run};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
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
