//! Facts about the machine that validation checks the config against.

/// Where Linux lists the online CPUs.
const ONLINE_CPUS_PATH: &str = "/sys/devices/system/cpu/online";

/// CPU ids at or above this are refused when parsing a CPU list, so that a corrupt
/// list cannot make us allocate without bound (Linux's NR_CPUS tops out at 8192).
const MAX_CPU_ID: u32 = 1 << 16;

/// What validation knows about the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostFacts {
    /// Online CPU ids, ascending; `None` skips the check that configured cores exist
    /// (`check-config` on another machine, tests).
    pub online_cpus: Option<Vec<u32>>,
    /// Whether paths the config names are looked at on this host (a control
    /// socket path that exists must be a socket); false for configs checked
    /// elsewhere and in tests.
    pub inspect_paths: bool,
}

impl HostFacts {
    /// Reads the online CPUs from sysfs; if that cannot be read or parsed, the
    /// core check is skipped rather than failing every config.
    pub fn detect() -> HostFacts {
        let online_cpus = std::fs::read_to_string(ONLINE_CPUS_PATH)
            .ok()
            .and_then(|text| parse_cpu_list(&text));
        HostFacts {
            online_cpus,
            inspect_paths: true,
        }
    }
}

/// Parses a kernel CPU list such as `0-3,5,7-8` (trailing newline allowed) into
/// ascending, de-duplicated ids. `None` for anything malformed.
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let text = text.trim_end_matches('\n');
    let mut cpus = Vec::new();
    for item in text.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((first, last)) => (parse_cpu_id(first)?, parse_cpu_id(last)?),
            None => {
                let id = parse_cpu_id(item)?;
                (id, id)
            }
        };
        if first > last {
            return None;
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

fn parse_cpu_id(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&id| id < MAX_CPU_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_like_sysfs() {
        assert_eq!(
            parse_cpu_list("0-3,5,7-8\n"),
            Some(vec![0, 1, 2, 3, 5, 7, 8])
        );
        assert_eq!(parse_cpu_list("0-3,5,7-8"), Some(vec![0, 1, 2, 3, 5, 7, 8]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("4-4,2,2"), Some(vec![2, 4]));
    }

    #[test]
    fn malformed_cpu_lists_are_rejected() {
        for bad in [
            "",
            "\n",
            "a",
            "1-",
            "-1",
            "3-1",
            "0,,1",
            "0-1-2",
            " 0",
            "+1",
            "65536",
            "0-99999999999",
        ] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn detect_reads_this_host() {
        let facts = HostFacts::detect();
        // Every Linux host has sysfs with at least one online CPU; elsewhere the
        // check is skipped.
        match std::fs::read_to_string(ONLINE_CPUS_PATH) {
            Ok(text) => {
                assert_eq!(facts.online_cpus, parse_cpu_list(&text));
                assert!(!facts.online_cpus.unwrap_or_default().is_empty());
            }
            Err(_) => assert_eq!(facts.online_cpus, None),
        }
    }
}
