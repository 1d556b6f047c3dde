//! `kubeless completion bash|zsh|fish|powershell`.

use clap::{CommandFactory, ValueEnum};
use clap_complete::Shell;

/// Shells a completion script can be printed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

/// Print the completion script of `C` for `shell` to stdout.
pub fn run<C: CommandFactory>(shell: CompletionShell) {
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
        CompletionShell::Powershell => Shell::PowerShell,
    };
    let mut cmd = C::command();
    // Into a buffer: clap_complete panics when its writer fails.
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "kubeless", &mut buf);
    crate::output::emit_bytes(&buf);
}
