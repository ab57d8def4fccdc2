//! `pairgate completions SHELL` and `pairgate man --out DIR`: generated from
//! the clap definitions, so they never drift from the real command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, Failure};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Folder to write the pages into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn completions(args: CompletionsArgs) -> Result<(), Failure> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "pairgate", &mut std::io::stdout());
    Ok(())
}

pub fn man(args: ManArgs) -> Result<(), Failure> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    clap_mangen::generate_to(Cli::command(), &args.out)
        .with_context(|| format!("write man pages into {}", args.out.display()))?;
    println!("man pages written to {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every leaf command `pairgate a b` of the clap definitions, with its long flags.
    fn commands(cmd: &clap::Command, path: &str, out: &mut Vec<(String, Vec<String>)>) {
        let subcommands: Vec<&clap::Command> = cmd
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subcommands.is_empty() {
            let flags = cmd
                .get_arguments()
                .filter(|a| !a.is_global_set())
                .filter_map(|a| a.get_long())
                .filter(|l| !["help", "version", "verbose"].contains(l))
                .map(|l| format!("--{l}"))
                .collect();
            out.push((path.to_owned(), flags));
        }
        for sub in subcommands {
            commands(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    /// `docs/reference.md` names every command in a table row (`` `pairgate
    /// ca init …` ``) that lists every one of its flags.
    #[test]
    fn the_reference_names_every_command_and_flag() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reference.md");
        let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut all = Vec::new();
        commands(&Cli::command(), "pairgate", &mut all);
        assert!(all.len() > 20, "{all:?}");
        let mut missing = Vec::new();
        for (command, flags) in &all {
            let row = doc.lines().find(|l| {
                l.starts_with("| `")
                    && (l.contains(&format!("`{command} ")) || l.contains(&format!("`{command}`")))
            });
            match row {
                None => missing.push(format!("{command} (no table row)")),
                Some(row) => {
                    for flag in flags {
                        if !row.contains(flag.as_str()) {
                            missing.push(format!("{command} {flag}"));
                        }
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "docs/reference.md lacks (add them to the command's row): {missing:?}"
        );
        assert!(doc.contains("`--verbose`"), "the global flag");
    }
}
