//! What the Debian package ships, from the real binary and without DPDK: the man
//! pages and completions `ferrovs gen-docs` writes (a page and a completion for
//! every ctl command of `ferrovs ctl --help`), the hidden subcommand staying
//! hidden, `--log-format`, and the default configuration passing check-config.

#[path = "common/tempdir.rs"]
mod tempdir;

use std::process::{Command, Output};
use tempdir::TempDir;

const FERROVS: &str = env!("CARGO_BIN_EXE_ferrovs");

fn ferrovs(args: &[&str]) -> Output {
    Command::new(FERROVS)
        .args(args)
        .output()
        .expect("run ferrovs")
}

/// The subcommands `--help` lists under "Commands:".
fn commands(help: &[&str]) -> Vec<String> {
    let out = ferrovs(help);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split("Commands:")
        .nth(1)
        .expect("a command list")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn gen_docs_writes_a_page_and_completions_for_every_command() {
    let dir = TempDir::new("gendocs");
    let out = ferrovs(&["gen-docs", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let top = commands(&["--help"]);
    assert_eq!(
        top,
        ["run", "check-config", "ctl", "import-keepalived"],
        "gen-docs must stay hidden"
    );
    let ctl = commands(&["ctl", "--help"]);
    assert!(ctl.len() >= 12, "{ctl:?}");
    let mut pages = vec!["ferrovs.8".to_string()];
    pages.extend(top.iter().map(|c| format!("ferrovs-{c}.8")));
    pages.extend(ctl.iter().map(|c| format!("ferrovs-ctl-{c}.8")));
    for page in &pages {
        let text = std::fs::read_to_string(dir.join("man").join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".SH SYNOPSIS"), "{page}");
    }
    let config = std::fs::read_to_string(dir.join("man/ferrovs.yaml.5")).unwrap();
    assert!(config.contains(".TH FERROVS.YAML 5"));
    let written = std::fs::read_dir(dir.join("man")).unwrap().count();
    assert_eq!(written, pages.len() + 1, "no page for a hidden command");
    for file in ["ferrovs.bash", "_ferrovs", "ferrovs.fish"] {
        let text = std::fs::read_to_string(dir.join("completions").join(file)).unwrap();
        for c in top.iter().chain(&ctl) {
            assert!(text.contains(c.as_str()), "{file} does not complete {c}");
        }
        assert!(!text.contains("gen-docs"), "{file}");
    }
}

#[test]
fn log_format_is_an_option_of_run() {
    let out = ferrovs(&["run", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for v in ["auto", "text", "journal", "json"] {
        assert!(help.contains(v), "{help}");
    }
    let out = ferrovs(&["run", "--config", "x.yaml", "--log-format", "xml"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn the_default_configuration_passes_check_config() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/ferrovs.yaml");
    let out = ferrovs(&["check-config", conf]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
