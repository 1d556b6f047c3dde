//! The `kubeless` command.

mod server_cmd;

fn main() -> anyhow::Result<()> {
    server_cmd::run(server_cmd::ServerArgs {})
}
