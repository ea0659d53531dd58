//! Man pages and shell completions, generated from the clap definitions of the
//! `ferrovs` command (`clap_mangen`, `clap_complete`), plus the hand-written
//! `ferrovs.yaml(5)`. The package build writes them with the hidden
//! `ferrovs gen-docs --out DIR` subcommand:
//!
//! - `DIR/man/ferrovs.8`, one page per subcommand (`ferrovs-run.8`,
//!   `ferrovs-check-config.8`, `ferrovs-ctl.8`, `ferrovs-ctl-list.8`, ...), and
//!   `ferrovs.yaml.5`;
//! - `DIR/completions/ferrovs.bash`, `_ferrovs` (zsh), `ferrovs.fish`.
//!
//! Hidden subcommands (`gen-docs` itself) appear in neither.

use clap::Command;
use clap_complete::Shell;
use std::io;
use std::path::{Path, PathBuf};

/// The manual section of the command's pages: system administration (ferrovs
/// runs as root and is installed in `/usr/sbin`).
pub const SECTION: &str = "8";

/// `ferrovs.yaml(5)`, written by hand in roff.
pub const CONFIG_MAN_PAGE: &str = include_str!("man/ferrovs.yaml.5");

/// The file name of `ferrovs.yaml(5)`.
pub const CONFIG_MAN_PAGE_FILE: &str = "ferrovs.yaml.5";

/// The shells completions are written for, with their file names.
pub const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "ferrovs.bash"),
    (Shell::Zsh, "_ferrovs"),
    (Shell::Fish, "ferrovs.fish"),
];

/// `cmd` without its hidden subcommands, at every level (clap_complete would
/// otherwise complete them).
pub fn public(cmd: &Command) -> Command {
    let mut out = Command::new(cmd.get_name().to_string());
    if let Some(v) = cmd.get_version() {
        out = out.version(v.to_string());
    }
    if let Some(v) = cmd.get_long_version() {
        out = out.long_version(v.to_string());
    }
    if let Some(a) = cmd.get_about() {
        out = out.about(a.clone());
    }
    if let Some(a) = cmd.get_long_about() {
        out = out.long_about(a.clone());
    }
    if cmd.is_subcommand_required_set() {
        out = out.subcommand_required(true);
    }
    if cmd.is_arg_required_else_help_set() {
        out = out.arg_required_else_help(true);
    }
    for a in cmd.get_arguments() {
        out = out.arg(a.clone());
    }
    for g in cmd.get_groups() {
        out = out.group(g.clone());
    }
    for s in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out = out.subcommand(public(s));
    }
    out
}

/// What the pages of some commands say beyond their options, in roff.
fn extra_sections(page: &str) -> &'static str {
    match page {
        "ferrovs" => {
            "\
.SH \"EXIT STATUS\"
0 done, 1 a user error (arguments, a configuration with errors, a change
ferrovs refused), 2 an internal error (DPDK, ferrovs cannot be reached).
.SH FILES
.TP
.I /etc/ferrovs/ferrovs.yaml
The configuration of the systemd service; see
.BR ferrovs.yaml (5).
.TP
.I /run/ferrovs/ctl.sock
The default control socket of
.BR \"ferrovs ctl\" .
.TP
.I /lib/systemd/system/ferrovs.service
The systemd unit: Type=notify, a watchdog, reload by SIGHUP.
.TP
.I /usr/lib/sysctl.d/ferrovs.conf
Reserves 2 MB hugepages for DPDK at boot.
"
        }
        "ferrovs-run" => {
            "\
.SH SIGNALS
.TP
.BR SIGINT ,\\ SIGTERM
Stop cleanly (with announce: withdraw every VIP and keep forwarding for
announce.shutdown_grace first; a second signal stops at once).
.TP
.B SIGHUP
Read the configuration file again and apply it, as a whole or not at all.
.SH ENVIRONMENT
.TP
.B RUST_LOG
Log filter (default info), for example debug, or ferrovs::mgmt=debug.
.TP
.BR NOTIFY_SOCKET ,\\ WATCHDOG_USEC ,\\ WATCHDOG_PID
Set by systemd for Type=notify and WatchdogSec=: ferrovs sends READY=1 when it
forwards, RELOADING=1 and READY=1 around a reload, STOPPING=1 at a stop, and
WATCHDOG=1 at half the watchdog interval while every worker makes progress.
.TP
.B JOURNAL_STREAM
Set by systemd when stderr is the journal; with \\-\\-log\\-format auto, log lines
then carry a syslog priority prefix and no timestamp.
.TP
.B FERROVS_TEST_STALL_WORKER0_AFTER_S
Test only: worker 0 stops polling after this many seconds, so that tests can
show the watchdog stop. Never set it in production.
"
        }
        _ => "",
    }
}

fn see_also(page: &str) -> String {
    let mut refs: Vec<String> = [
        "ferrovs",
        "ferrovs-run",
        "ferrovs-check-config",
        "ferrovs-ctl",
    ]
    .iter()
    .filter(|p| **p != page)
    .map(|p| format!(".BR {} ({SECTION})", p.replace('-', "\\-")))
    .collect();
    refs.push(".BR ferrovs.yaml (5)".into());
    refs.push(".BR systemctl (1)".into());
    format!(".SH \"SEE ALSO\"\n{}\n", refs.join(",\n"))
}

/// Every man page: (file name, roff text). The command's own pages come from its
/// clap definitions, one per visible subcommand at every level, named like
/// `git`'s (`ferrovs-ctl-list.8`); then `ferrovs.yaml.5`.
pub fn man_pages(cmd: &Command) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut root = public(cmd).disable_help_subcommand(true);
    root.build();
    let source = format!("ferrovs {}", root.get_version().unwrap_or_default());
    let mut out = Vec::new();
    collect(&root, &source, &mut out)?;
    out.push((
        CONFIG_MAN_PAGE_FILE.to_string(),
        CONFIG_MAN_PAGE.as_bytes().to_vec(),
    ));
    Ok(out)
}

fn collect(cmd: &Command, source: &str, out: &mut Vec<(String, Vec<u8>)>) -> io::Result<()> {
    let page = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    let man = clap_mangen::Man::new(cmd.clone())
        .section(SECTION)
        .source(source)
        .manual("ferrovs manual");
    let mut text = Vec::new();
    man.render(&mut text)?;
    text.extend_from_slice(extra_sections(&page).as_bytes());
    text.extend_from_slice(see_also(&page).as_bytes());
    out.push((man.get_filename(), text));
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        collect(sub, source, out)?;
    }
    Ok(())
}

/// The completion scripts: (file name, script) for bash, zsh and fish.
pub fn completions(cmd: &Command) -> Vec<(String, Vec<u8>)> {
    SHELLS
        .iter()
        .map(|(shell, file)| {
            let mut c = public(cmd);
            let mut text = Vec::new();
            clap_complete::generate(*shell, &mut c, "ferrovs", &mut text);
            (file.to_string(), text)
        })
        .collect()
}

/// Writes every man page to `out/man` and every completion script to
/// `out/completions`; returns the files written.
pub fn write_all(cmd: &Command, out: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (dir, files) in [("man", man_pages(cmd)?), ("completions", completions(cmd))] {
        let dir = out.join(dir);
        std::fs::create_dir_all(&dir)?;
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text)?;
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Subcommand};

    /// A command shaped like `ferrovs`'s: `run`, `check-config`, `ctl` with the
    /// real ctl definitions, and a hidden subcommand.
    fn command() -> Command {
        let ctl = crate::ctl::cli::CtlArgs::augment_args(Command::new("ctl"))
            .about("Talk to a running ferrovs through its control socket.");
        Command::new("ferrovs")
            .version("0.0.0")
            .about("Kernel-bypass Layer-4 load balancer on DPDK")
            .subcommand_required(true)
            .subcommand(
                Command::new("run")
                    .about("Run in the foreground")
                    .arg(clap::arg!(--config <FILE> "The YAML configuration file.")),
            )
            .subcommand(Command::new("check-config").about("Validate a configuration file"))
            .subcommand(ctl)
            .subcommand(Command::new("gen-docs").hide(true))
    }

    fn ctl_names() -> Vec<String> {
        let cmd = crate::ctl::cli::CtlCommand::augment_subcommands(Command::new("x"));
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        assert!(names.len() >= 12, "{names:?}");
        // Each parses back, so the names are the real ones.
        for n in &names {
            assert!(crate::ctl::cli::CtlCommand::has_subcommand(n));
        }
        names
    }

    #[test]
    fn a_man_page_per_command_and_every_ctl_subcommand() {
        let pages = man_pages(&command()).unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "ferrovs.8",
            "ferrovs-run.8",
            "ferrovs-check-config.8",
            "ferrovs-ctl.8",
            "ferrovs.yaml.5",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        for sub in ctl_names() {
            let file = format!("ferrovs-ctl-{sub}.8");
            let (_, text) = pages
                .iter()
                .find(|(n, _)| *n == file)
                .unwrap_or_else(|| panic!("{file} missing from {names:?}"));
            let text = String::from_utf8_lossy(text);
            assert!(text.contains(&format!(".TH ferrovs-ctl-{sub} 8")), "{file}");
            assert!(text.contains("ferrovs ctl"), "{file}: no synopsis");
            assert!(text.contains(".SH \"SEE ALSO\""), "{file}");
        }
        assert!(!names
            .iter()
            .any(|n| n.contains("gen-docs") || n.contains("help")));
        let root = String::from_utf8_lossy(&pages[0].1);
        assert!(root.contains(".SH \"EXIT STATUS\""));
        let run = pages.iter().find(|(n, _)| n == "ferrovs-run.8").unwrap();
        let run = String::from_utf8_lossy(&run.1);
        assert!(run.contains("WATCHDOG_USEC") && run.contains("SIGHUP"));
    }

    #[test]
    fn completions_for_three_shells_name_every_ctl_subcommand() {
        let scripts = completions(&command());
        assert_eq!(scripts.len(), 3);
        for (file, text) in &scripts {
            let text = String::from_utf8_lossy(text);
            for sub in ctl_names()
                .iter()
                .chain(&["run".into(), "check-config".into()])
            {
                assert!(text.contains(sub.as_str()), "{file}: no {sub}");
            }
            assert!(
                !text.contains("gen-docs"),
                "{file} completes a hidden command"
            );
        }
    }

    #[test]
    fn the_config_page_describes_every_key() {
        let raw = include_str!("../crates/ferrovs-core/src/config/raw.rs");
        let mut keys = Vec::new();
        for line in raw.lines() {
            let Some(rest) = line.trim().strip_prefix("pub ") else {
                continue;
            };
            let Some((field, _)) = rest.split_once(':') else {
                continue;
            };
            if field.contains(' ') || field.contains('(') {
                continue;
            }
            keys.push(if field == "kind" { "type" } else { field });
        }
        assert!(keys.len() > 50, "{keys:?}");
        let page = CONFIG_MAN_PAGE.replace("\\-", "-");
        for key in keys {
            let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
            let found = page.match_indices(key).any(|(i, _)| {
                let before = page[..i].chars().next_back().is_none_or(|c| !word(c));
                let after = page[i + key.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !word(c));
                before && after
            });
            assert!(found, "ferrovs.yaml.5 does not describe `{key}`");
        }
    }

    #[test]
    fn write_all_writes_files() {
        let dir = crate::tempdir::TempDir::new("docs");
        let files = write_all(&command(), &dir).unwrap();
        assert!(dir.join("man/ferrovs-ctl-drain.8").is_file());
        assert!(dir.join("man/ferrovs.yaml.5").is_file());
        assert!(dir.join("completions/_ferrovs").is_file());
        assert!(files.len() > 15);
    }
}
