//! `kubeless get-server-config` and `kubeless version`.

use super::Context;
use crate::log;

/// Log the runtimes the platform supports.
pub fn get_server_config(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.backend()?.server_config()?;
    log::info("Current Server Config:");
    log::info(format!(
        "Supported Runtimes are: {}",
        cfg.runtimes.join(", ")
    ));
    Ok(())
}

/// Print the CLI version.
pub fn version() {
    crate::output::emit(&format!(
        "Kubeless version: {}\n",
        env!("CARGO_PKG_VERSION")
    ));
}
