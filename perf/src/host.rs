//! Facts about the machine the table was measured on, read from `/proc`.

/// Free 2 MB-class hugepage memory in MB, from `/proc/meminfo` text
/// (`HugePages_Free` x `Hugepagesize`).
pub fn hugepages_free_mb(meminfo: &str) -> Option<u64> {
    let field = |key: &str| -> Option<(u64, Option<&str>)> {
        let line = meminfo.lines().find(|l| l.starts_with(key))?;
        let mut parts = line[key.len()..].split_whitespace();
        let value = parts.next()?.parse::<u64>().ok()?;
        Some((value, parts.next()))
    };
    let (free, _) = field("HugePages_Free:")?;
    let (size, unit) = field("Hugepagesize:")?;
    let size_kb = match unit {
        Some("kB") => size,
        _ => return None,
    };
    free.checked_mul(size_kb).map(|kb| kb / 1024)
}

/// The CPU model from `/proc/cpuinfo` text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Logical CPUs listed in `/proc/cpuinfo` text.
pub fn cpu_count(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count()
}

/// One line describing this machine: CPU, core count, kernel, memory.
pub fn describe() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let meminfo = read("/proc/meminfo");
    let mem_gb = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("? GB".to_string(), |kb| {
            format!("{:.0} GB", kb as f64 / 1024.0 / 1024.0)
        });
    format!(
        "{} ({} logical CPUs), Linux {}, {mem_gb} RAM",
        cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".to_string()),
        cpu_count(&cpuinfo),
        read("/proc/sys/kernel/osrelease").trim(),
    )
}

/// Whether a `/proc/<pid>/cmdline` (NUL-separated arguments) is a DPDK data plane
/// that busy-polls cores: `dpdk-testpmd`, or `ferrovs run`. Two of them at once on
/// a small machine would measure each other.
pub fn is_data_plane(cmdline: &[u8]) -> bool {
    let mut args = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let Some(program) = args.next() else {
        return false;
    };
    let base = program.rsplit('/').next().unwrap_or_default();
    base == "dpdk-testpmd" || (base == "ferrovs" && args.next().as_deref() == Some("run"))
}

/// Running data planes other than process `except`: (pid, command line).
pub fn other_data_planes(except: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == except {
            continue;
        }
        // A process may end between listing and reading: skip it.
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if is_data_plane(&cmdline) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, text.trim().to_string()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_data_planes() {
        assert!(is_data_plane(b"dpdk-testpmd\0-l\0-1\0"));
        assert!(is_data_plane(b"/usr/bin/dpdk-testpmd\0"));
        assert!(is_data_plane(
            b"/work/main/target/release/ferrovs\0run\0--config\0x.yaml\0"
        ));
        assert!(!is_data_plane(b"ferrovs\0check-config\0x.yaml\0"));
        assert!(!is_data_plane(b"ferrovs\0"));
        assert!(!is_data_plane(b"cargo\0run\0"));
        assert!(!is_data_plane(b"/usr/bin/vim\0dpdk-testpmd\0"));
        assert!(!is_data_plane(b""));
        assert!(!is_data_plane(b"\xff\xfe\0run"));
    }

    #[test]
    fn this_test_is_not_a_data_plane() {
        assert!(other_data_planes(0)
            .iter()
            .all(|(pid, _)| *pid != std::process::id()));
    }

    #[test]
    fn hugepages() {
        let m = "MemTotal: 24681 kB\nHugePages_Total:     512\nHugePages_Free:      500\n\
                 HugePages_Rsvd:        0\nHugepagesize:       2048 kB\n";
        assert_eq!(hugepages_free_mb(m), Some(1000));
        let gb = "HugePages_Free: 2\nHugepagesize: 1048576 kB\n";
        assert_eq!(hugepages_free_mb(gb), Some(2048));
        assert_eq!(hugepages_free_mb("HugePages_Free: 2\n"), None);
        assert_eq!(
            hugepages_free_mb("HugePages_Free: x\nHugepagesize: 2048 kB\n"),
            None
        );
        assert_eq!(
            hugepages_free_mb("HugePages_Free: 2\nHugepagesize: 2048 MB\n"),
            None
        );
    }

    #[test]
    fn cpu() {
        let c = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\n\
                 processor\t: 1\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(
            cpu_model(c).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(cpu_count(c), 2);
        assert_eq!(cpu_model("processor: 0\nmodel name:\n"), None);
        assert_eq!(cpu_count(""), 0);
    }

    #[test]
    fn describes_this_machine() {
        assert!(describe().contains("Linux"));
    }
}
