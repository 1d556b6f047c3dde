//! `kubeless install`: the CRDs, RBAC, `kubeless-config` and the
//! controller-manager Deployment, printed (`--dry-run`) or applied to the
//! cluster of the current kubeconfig context (server-side apply, so a
//! second run updates in place).

use anyhow::Context as _;
use clap::Args;

/// Flags of `kubeless install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Print the manifests instead of applying them
    #[arg(long)]
    dry_run: bool,
    /// controller-manager image
    #[arg(long)]
    image: Option<String>,
}

pub fn run(args: InstallArgs) -> anyhow::Result<()> {
    let image = args
        .image
        .unwrap_or_else(kubeless_controller::settings::default_image);
    if args.dry_run {
        print!("{}", kubeless_controller::install::manifests_yaml(&image));
        return Ok(());
    }
    let objects = kubeless_controller::install::manifests(&image);
    let rt = tokio::runtime::Runtime::new().context("start the async runtime")?;
    rt.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("connect to the Kubernetes API server")?;
        let done = kubeless_controller::install::apply(&client, &objects)
            .await
            .map_err(|e| anyhow::anyhow!(kubeless_controller::error_chain(&e)))?;
        for d in done {
            crate::log::log(crate::log::Level::Info, &format!("applied {d}"));
        }
        Ok(())
    })
}
