//! `ferrovs import-keepalived` on keepalived configurations written the way
//! keepalived's documentation (keepalived.conf(5), its doc/samples) shows them:
//! `tests/keepalived/NAME.conf`, with the services expected on stdout in
//! `NAME.yaml` and the lines not carried over, on stderr, in `NAME.notes`. Every
//! import must also pass `ferrovs check-config` inside a configuration whose
//! ports hold the addresses. No root, no DPDK.
//!
//! `FERROVS_BLESS=1 cargo test --test import_keepalived` rewrites the expected
//! files from what the command prints (review the diff).

#[path = "common/tempdir.rs"]
mod tempdir;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempdir::TempDir;

const FERROVS: &str = env!("CARGO_BIN_EXE_ferrovs");

/// (configuration, exit code expected).
const CASES: [(&str, i32); 7] = [
    ("sample", 1),
    ("ssl_get", 1),
    ("checks", 1),
    ("quorum", 1),
    ("include", 1),
    ("forms", 1),
    ("clean", 0),
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keepalived")
}

/// The command run in `tests/keepalived`, on a file named relative to it (as the
/// notes then name it).
fn import(file: &str) -> Output {
    Command::new(FERROVS)
        .current_dir(dir())
        .args(["import-keepalived", file])
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn imports_print_the_expected_services_and_notes() {
    let bless = std::env::var_os("FERROVS_BLESS").is_some();
    for (name, code) in CASES {
        let out = import(&format!("{name}.conf"));
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let yaml = dir().join(format!("{name}.yaml"));
        let notes = dir().join(format!("{name}.notes"));
        if bless {
            std::fs::write(&yaml, &stdout).unwrap();
            std::fs::write(&notes, &stderr).unwrap();
        }
        assert_eq!(out.status.code(), Some(code), "{name}: {stderr}");
        assert_eq!(
            stdout,
            std::fs::read_to_string(&yaml).unwrap(),
            "{name}: stdout"
        );
        assert_eq!(
            stderr,
            std::fs::read_to_string(&notes).unwrap(),
            "{name}: stderr"
        );
        // Every note is one FILE:LINE line naming what and why.
        for line in stderr.lines() {
            let (place, rest) = line.split_once(": ").unwrap();
            let (file, number) = place.rsplit_once(':').unwrap();
            assert!(
                file.ends_with(".conf") && number.parse::<usize>().is_ok(),
                "{line}"
            );
            assert!(rest.contains(" not carried over: "), "{line}");
        }
        assert_eq!(stderr.is_empty(), code == 0, "{name}");
    }
}

/// A configuration around the services: ports holding every subnet the test
/// configurations use (DR real servers must be on one), a default route.
const APPLIANCE: &str = "\
eal: { cores: [0, 1], hugepages: false }
ports:
  - { name: wan, device: net_null0, addresses: [\"192.168.200.1/24\", \"2001:db8:200::1/64\"] }
  - { name: lan, device: net_null1, addresses: [\"192.168.201.1/24\", \"10.0.0.254/24\", \"2001:db8:201::1/64\"] }
workers: { cores: [1] }
routes:
  - { prefix: \"0.0.0.0/0\", via: \"192.168.200.254\" }
";

#[test]
fn imported_services_pass_check_config() {
    let tmp = TempDir::new("import-keepalived");
    for (name, _) in CASES {
        let out = import(&format!("{name}.conf"));
        let config = tmp.join(format!("{name}.yaml"));
        std::fs::write(&config, format!("{APPLIANCE}{}", text(&out.stdout))).unwrap();
        let check = Command::new(FERROVS)
            .arg("check-config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{name}: {}\n{}",
            text(&check.stderr),
            text(&out.stdout)
        );
        // The services are all there, each named after its VIP and port.
        let cfg = ferrovs_core::config::parse(
            &std::fs::read_to_string(&config).unwrap(),
            "x",
            &ferrovs_core::config::HostFacts::default(),
        )
        .unwrap();
        let printed = text(&out.stdout).matches("\n  - name: ").count();
        assert_eq!(cfg.services.len(), printed, "{name}");
        for s in &cfg.services {
            assert!(s.name.starts_with("vs-"), "{}", s.name);
        }
    }
}

#[test]
fn files_that_cannot_be_read_or_parsed_exit_2() {
    for (file, message) in [
        (
            "unbalanced.conf",
            "unbalanced.conf:5: a block is not closed",
        ),
        ("quote.conf", "quote.conf:4: unterminated quote"),
        ("missing.conf", "missing.conf:1: cannot read: "),
    ] {
        let out = import(file);
        assert_eq!(out.status.code(), Some(2), "{file}");
        assert!(out.stdout.is_empty(), "{file}");
        assert!(
            text(&out.stderr).starts_with(message),
            "{file}: {}",
            text(&out.stderr)
        );
    }
    let tmp = TempDir::new("import-keepalived-include");
    let main = tmp.join("keepalived.conf");
    std::fs::write(&main, "include other.conf\n").unwrap();
    let out = Command::new(FERROVS)
        .args(["import-keepalived", main.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("keepalived.conf:1: include ")
            && text(&out.stderr).contains("other.conf: cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_keepalived_defaults_fill_what_is_not_written() {
    let tmp = TempDir::new("import-keepalived-defaults");
    let file = tmp.join("keepalived.conf");
    std::fs::write(
        &file,
        "virtual_server 192.168.200.50 8080 {\n  protocol TCP\n  persistence_timeout\n  real_server 192.168.201.50 8080 {\n    TCP_CHECK {\n    }\n  }\n}\n",
    )
    .unwrap();
    let out = Command::new(FERROVS)
        .args(["import-keepalived", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    // wlc, NAT, 6 minutes of persistence, a check every 60 s within 5 s, out
    // after 2 failures, back after 1 success.
    for line in [
        "    scheduler: wlc\n",
        "    mode: nat\n",
        "    persistence: 360s\n",
        "      interval: 60s\n",
        "      timeout: 5s\n",
        "      rise: 1\n",
        "      fall: 2\n",
    ] {
        assert!(yaml.contains(line), "{line:?} missing in\n{yaml}");
    }
}
