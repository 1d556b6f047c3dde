//! The `kubeless` command: a drop-in replacement for the Kubeless CLI that
//! talks to the embedded platform (`kubeless server`).
//!
//! Layout: [`commands`] has one module per command group (clap types and a
//! `run`); [`client`] is the platform seam (the [`client::Backend`] trait and
//! the local-API implementation); [`build`] turns deploy/update flags into a
//! Function object (pure); [`manifest`] parses `apply -f` input; [`metrics`]
//! parses Prometheus text for `function top`; [`output`] renders tables,
//! JSON and YAML; [`log`] writes logrus-style messages to stderr. Data goes
//! to stdout, messages to stderr, and a fatal error exits with code 1.

mod build;
mod client;
mod commands;
mod config;
mod log;
mod manifest;
mod metrics;
mod output;
mod schedule;
mod server_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::{BackendKind, Context};

/// Serverless framework for Kubernetes
#[derive(Debug, Parser)]
#[command(
    name = "kubeless",
    version,
    about = "Serverless framework for Kubernetes"
)]
struct Cli {
    /// Platform to talk to: the embedded server (local) or a Kubernetes cluster
    #[arg(
        long,
        global = true,
        env = "KUBELESS_BACKEND",
        value_enum,
        default_value = "local"
    )]
    backend: BackendKind,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum Command {
    /// function specific operations
    #[command(arg_required_else_help = true)]
    Function {
        #[command(subcommand)]
        cmd: commands::function::FunctionCommand,
    },
    /// trigger specific operations
    #[command(arg_required_else_help = true)]
    Trigger {
        #[command(subcommand)]
        cmd: commands::trigger::TriggerCommand,
    },
    /// manage message topics in Kafka
    #[command(arg_required_else_help = true)]
    Topic {
        #[command(subcommand)]
        cmd: commands::topic::TopicCommand,
    },
    /// secret specific operations (embedded platform)
    #[command(arg_required_else_help = true)]
    Secret {
        #[command(subcommand)]
        cmd: commands::secret::SecretCommand,
    },
    /// create or update objects from a manifest file
    Apply(commands::apply::FileArgs),
    /// delete the objects of a manifest file
    Delete(commands::apply::FileArgs),
    /// manage autoscale to function on Kubeless
    #[command(arg_required_else_help = true)]
    Autoscale {
        #[command(subcommand)]
        cmd: commands::autoscale::AutoscaleCommand,
    },
    /// Print the current configuration of a Kubeless server
    #[command(name = "get-server-config")]
    GetServerConfig,
    /// Print the version of Kubeless
    Version,
    /// Output shell completion code for the specified shell
    Completion {
        /// Shell
        #[arg(value_enum)]
        shell: commands::completion::CompletionShell,
    },
    /// Run the embedded Kubeless platform in this process
    Server(server_cmd::ServerArgs),
    /// Run the Kubernetes controllers (Kubernetes mode)
    #[command(name = "controller-manager")]
    ControllerManager(commands::controller::ControllerArgs),
    /// Install Kubeless into the current Kubernetes cluster
    Install(commands::install::InstallArgs),
    /// Remove Kubeless from the current Kubernetes cluster: the controller,
    /// every function and trigger (finalizers included), the CRDs, RBAC and
    /// namespace
    Uninstall(commands::uninstall::UninstallArgs),
    /// Call a function as a CronJobTrigger does (run by the CronJob)
    #[command(name = "cron-invoke", hide = true)]
    CronInvoke(commands::controller::CronInvokeArgs),
    /// Build a Function's image from a file (the Kubernetes build Job)
    #[command(name = "build-image", hide = true)]
    BuildImage(commands::build::BuildImageArgs),
    /// Push a directory as a one-layer image (scripts/k8s-images.sh)
    #[command(name = "push-rootfs", hide = true)]
    PushRootfs(commands::push_rootfs::PushRootfsArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Context::new(cli.backend);
    match cli.command {
        Command::Function { cmd } => commands::function::run(&ctx, cmd),
        Command::Trigger { cmd } => commands::trigger::run(&ctx, cmd),
        Command::Topic { cmd } => commands::topic::run(&ctx, cmd),
        Command::Secret { cmd } => commands::secret::run(&ctx, cmd),
        Command::Autoscale { cmd } => commands::autoscale::run(&ctx, cmd),
        Command::Apply(a) => commands::apply::apply(&ctx, a),
        Command::Delete(a) => commands::apply::delete(&ctx, a),
        Command::GetServerConfig => commands::server_config::get_server_config(&ctx),
        Command::Version => {
            commands::server_config::version();
            Ok(())
        }
        Command::Completion { shell } => {
            commands::completion::run::<Cli>(shell);
            Ok(())
        }
        Command::Server(args) => server_cmd::run(args),
        Command::ControllerManager(a) => commands::controller::run(a),
        Command::Install(a) => commands::install::run(a),
        Command::Uninstall(a) => commands::uninstall::run(a),
        Command::CronInvoke(a) => commands::controller::cron_invoke(a),
        Command::BuildImage(a) => commands::build::run_image(a),
        Command::PushRootfs(a) => commands::push_rootfs::run(a),
    }
}

fn main() -> ExitCode {
    log::init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::log(log::Level::Fatal, &format!("{e:#}"));
            ExitCode::from(1)
        }
    }
}
