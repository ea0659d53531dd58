//! The command line without DPDK: `check-config`, `--help`, exit codes, and a bad
//! config never reaching DPDK.

#[path = "common/tempdir.rs"]
mod tempdir;

use std::process::Command;
use tempdir::TempDir;

const FERROVS: &str = env!("CARGO_BIN_EXE_ferrovs");

fn ferrovs(args: &[&str]) -> std::process::Output {
    Command::new(FERROVS)
        .args(args)
        .output()
        .expect("run ferrovs")
}

/// Writes `text` to file `name` in `dir`.
fn temp_file(dir: &TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const VALID: &str = "eal:\n  cores: [0, 1]\nports:\n  - name: wan\n    device: net_null0\n    addresses: [\"198.18.0.1/24\"]\nworkers:\n  cores: [1]\n";

#[test]
fn check_config_accepts_a_valid_file() {
    let dir = TempDir::new("cli");
    let p = temp_file(&dir, "valid.yaml", VALID);
    let out = ferrovs(&["check-config", p.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_reports_every_error_with_file_line_col() {
    let bad = VALID
        .replace("198.18.0.1/24", "198.18.0.300/24")
        .replace("cores: [1]", "cores: [0]");
    let dir = TempDir::new("cli");
    let p = temp_file(&dir, "bad.yaml", &bad);
    let out = ferrovs(&["check-config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = p.display().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with(&format!("{file}:6:")), "{err}");
    assert!(lines[0].contains("addresses[0]"), "{err}");
    assert!(lines[1].starts_with(&format!("{file}:8:")), "{err}");
    assert!(lines[1].contains("management core"), "{err}");
}

#[test]
fn unknown_keys_and_missing_files_are_user_errors() {
    let dir = TempDir::new("cli");
    let p = temp_file(
        &dir,
        "typo.yaml",
        &VALID.replace(
            "workers:\n  cores: [1]\n",
            "workers:\n  cores: [1]\n  burts: 32\n",
        ),
    );
    let out = ferrovs(&["check-config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":9:3: ") && err.contains("burts"), "{err}");
    let out = ferrovs(&["check-config", "/nonexistent/ferrovs.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("/nonexistent/ferrovs.yaml:1:1: cannot read"));
}

#[test]
fn run_with_a_bad_config_never_starts_dpdk() {
    let dir = TempDir::new("cli");
    let p = temp_file(&dir, "bad-run.yaml", &VALID.replace("net_null0", "nic0"));
    let out = ferrovs(&["run", "--config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":5:") && err.contains("device"), "{err}");
    assert!(!err.contains("EAL"), "DPDK was started: {err}");
}

#[test]
fn help_and_usage_errors() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["check-config", "--help"],
    ] {
        let out = ferrovs(args);
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
    let out = ferrovs(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(1));
    let out = ferrovs(&["run"]);
    assert_eq!(out.status.code(), Some(1));
}
