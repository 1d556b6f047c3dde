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
    // Kubeless printed only the list above; a missing toolchain is worth
    // saying, with how to get it, rather than leaving the runtimes out.
    for u in &cfg.unavailable {
        log::warn(format!(
            "Unavailable runtimes ({} is not installed): {}. To use them: {}",
            u.language,
            u.runtimes.join(", "),
            u.hint
        ));
    }
    Ok(())
}

/// Print the CLI version.
pub fn version() {
    crate::output::emit(&format!(
        "Kubeless version: {}\n",
        env!("CARGO_PKG_VERSION")
    ));
}
