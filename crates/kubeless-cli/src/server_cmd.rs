//! `kubeless server`: runs the embedded platform in this process.

use clap::Args;

/// Flags of `kubeless server`.
#[derive(Debug, Args)]
pub struct ServerArgs {}

/// Run the embedded server until SIGTERM/SIGINT.
pub fn run(_args: ServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("the embedded server is not built yet")
}
