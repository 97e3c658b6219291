//! `cargo xtask docs DIR`: shell completions (bash, zsh, fish) and man pages for `cnictl` and
//! `ferrocni-agent`, written under DIR as a package installs them:
//!
//! ```text
//! DIR/completions/bash/cnictl     DIR/completions/zsh/_cnictl     DIR/completions/fish/cnictl.fish
//! DIR/man/man1/cnictl.1           DIR/man/man8/ferrocni-agent.8   (and the agent's completions)
//! ```
//!
//! Made from the very clap definitions the binaries parse with (their `cli.rs`, compiled in
//! here as modules), so a flag added to either shows up in both at the next release. This is
//! a release-time step (scripts/release.sh), not the binaries' job: clap_complete and
//! clap_mangen stay out of everything that is shipped.

// The binaries read the parsed fields; here only the definitions are used.
#[allow(dead_code)]
#[path = "../../agent/src/cli.rs"]
mod agent_cli;
#[allow(dead_code)]
#[path = "../../cnictl/src/cli.rs"]
mod cnictl_cli;

use clap::CommandFactory;
use clap_complete::Shell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Each command, and the manual section of its page: cnictl is a user command (1), the
/// agent a system daemon (8).
fn commands() -> [(clap::Command, &'static str); 2] {
    [
        (cnictl_cli::Cli::command(), "1"),
        (agent_cli::Args::command(), "8"),
    ]
}

/// Where each shell looks for a completion of `name`, below DIR/completions.
fn completion_path(shell: Shell, name: &str) -> String {
    match shell {
        Shell::Zsh => format!("zsh/_{name}"),
        Shell::Fish => format!("fish/{name}.fish"),
        _ => format!("{shell}/{name}"),
    }
}

const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

fn create(path: &Path) -> std::io::Result<BufWriter<File>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    File::create(path).map(BufWriter::new)
}

/// Writes every page and completion under `out`; returns the files written.
fn docs(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (mut command, section) in commands() {
        let name = command.get_name().to_string();
        let page = out.join(format!("man/man{section}/{name}.{section}"));
        let mut file = create(&page)?;
        clap_mangen::Man::new(command.clone())
            .section(section)
            .render(&mut file)?;
        file.flush()?;
        written.push(page);
        for shell in SHELLS {
            let path = out.join("completions").join(completion_path(shell, &name));
            let mut file = create(&path)?;
            clap_complete::generate(shell, &mut command, name.clone(), &mut file);
            file.flush()?;
            written.push(path);
        }
    }
    Ok(written)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.as_slice() {
        [task, dir] if task == "docs" => PathBuf::from(dir),
        _ => {
            eprintln!("usage: cargo xtask docs DIR   (completions and man pages into DIR)");
            return std::process::ExitCode::from(2);
        }
    };
    match docs(&out) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask docs {}: {e}", out.display());
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definitions_are_valid_clap_commands() {
        for (command, _) in commands() {
            command.debug_assert();
        }
    }

    #[test]
    fn pages_and_completions_name_every_flag() {
        let dir = std::env::temp_dir().join(format!("ferrocni-xtask-{}", std::process::id()));
        let written = docs(&dir).expect("written");
        assert_eq!(written.len(), 2 * (1 + SHELLS.len()));
        let read = |path: &str| std::fs::read_to_string(dir.join(path)).expect(path);
        let agent_page = read("man/man8/ferrocni-agent.8");
        for flag in [
            "etcd\\-endpoints",
            "FERROCNI_ETCD_ENDPOINTS",
            "metrics\\-address",
        ] {
            assert!(agent_page.contains(flag), "{flag} in the agent's page");
        }
        assert!(read("man/man1/cnictl.1").contains("cnictl\\-add"));
        for path in [
            "completions/bash/ferrocni-agent",
            "completions/zsh/_ferrocni-agent",
            "completions/fish/ferrocni-agent.fish",
        ] {
            assert!(read(path).contains("etcd-endpoints"), "{path}");
        }
        for path in [
            "completions/bash/cnictl",
            "completions/zsh/_cnictl",
            "completions/fish/cnictl.fish",
        ] {
            let text = read(path);
            assert!(
                text.contains("netns") && text.contains("conf-dir"),
                "{path}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
