//! Builds the EAL argument vector from the configuration. Pure, so it is unit-tested
//! without DPDK.

/// A port's device as the EAL must be told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EalDevice {
    /// A PCI address such as `0000:3b:00.0`: allowlisted with `-a`.
    Pci(String),
    /// A virtual device spec such as `net_af_packet0,iface=veth0`: created with `--vdev`.
    Vdev(String),
}

/// What the EAL needs to know, taken from `eal:` and `ports:` in the config.
#[derive(Debug, Clone)]
pub struct EalSpec<'a> {
    /// All lcores; the first is the main (management) lcore.
    pub cores: &'a [u32],
    /// The CPU of each lcore (same order as `cores`).
    pub cpus: &'a [u32],
    /// Memory the EAL reserves at start-up, in MiB (`-m`).
    pub memory_mb: u32,
    /// Back that memory with huge pages; false passes `--no-huge`.
    pub hugepages: bool,
    /// Prefix of the EAL's runtime files (`--file-prefix`), which keeps them apart from
    /// other DPDK processes' on the host.
    pub file_prefix: &'a str,
    /// The ports' devices: PCI ones are allowlisted, vdevs created; with no PCI device,
    /// `--no-pci`.
    pub devices: &'a [EalDevice],
    /// Extra arguments, appended verbatim.
    pub extra: &'a [String],
}

/// The argv for `rte_eal_init`, program name first.
pub fn eal_args(spec: &EalSpec<'_>) -> Vec<String> {
    let mut args = vec!["ferrovs".to_string()];
    if spec.cores == spec.cpus {
        let cores: Vec<String> = spec.cores.iter().map(u32::to_string).collect();
        args.push("-l".into());
        args.push(cores.join(","));
    } else {
        // lcore@cpu: several lcores may share a CPU (tests, small machines).
        let map: Vec<String> = spec
            .cores
            .iter()
            .zip(spec.cpus)
            .map(|(l, c)| format!("{l}@{c}"))
            .collect();
        args.push("--lcores".into());
        args.push(map.join(","));
    }
    if let Some(main) = spec.cores.first() {
        args.push("--main-lcore".into());
        args.push(main.to_string());
    }
    if !spec.hugepages {
        args.push("--no-huge".into());
    }
    args.push("-m".into());
    args.push(spec.memory_mb.to_string());
    args.push("--file-prefix".into());
    args.push(spec.file_prefix.into());
    // Hugepage files are unlinked as soon as they are mapped, so nothing is left in
    // the hugetlbfs mount after exit, whatever way the process ends.
    if spec.hugepages {
        args.push("--huge-unlink".into());
    }
    let mut any_pci = false;
    for dev in spec.devices {
        match dev {
            EalDevice::Pci(addr) => {
                any_pci = true;
                args.push("-a".into());
                args.push(addr.clone());
            }
            EalDevice::Vdev(spec) => {
                args.push("--vdev".into());
                args.push(spec.clone());
            }
        }
    }
    // Without an allowlist the EAL probes every PCI NIC it can reach, including the
    // host's management interface; never take a device that is not configured.
    if !any_pci {
        args.push("--no-pci".into());
    }
    args.push("--log-level".into());
    args.push("notice".into());
    args.extend(spec.extra.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vdev_only_config_disables_pci_probing() {
        let devices = [EalDevice::Vdev("net_af_packet0,iface=veth0".into())];
        let extra = ["--no-telemetry".to_string()];
        let args = eal_args(&EalSpec {
            cores: &[0, 1],
            cpus: &[0, 1],
            memory_mb: 256,
            hugepages: false,
            file_prefix: "t1",
            devices: &devices,
            extra: &extra,
        });
        assert_eq!(
            args,
            [
                "ferrovs",
                "-l",
                "0,1",
                "--main-lcore",
                "0",
                "--no-huge",
                "-m",
                "256",
                "--file-prefix",
                "t1",
                "--vdev",
                "net_af_packet0,iface=veth0",
                "--no-pci",
                "--log-level",
                "notice",
                "--no-telemetry"
            ]
        );
    }

    #[test]
    fn pci_devices_are_allowlisted_and_hugepages_unlinked() {
        let devices = [
            EalDevice::Pci("0000:3b:00.0".into()),
            EalDevice::Pci("0000:3b:00.1".into()),
        ];
        let args = eal_args(&EalSpec {
            cores: &[2, 4, 6],
            cpus: &[2, 4, 6],
            memory_mb: 2048,
            hugepages: true,
            file_prefix: "lb1",
            devices: &devices,
            extra: &[],
        });
        let joined = args.join(" ");
        assert!(joined.contains("-l 2,4,6 --main-lcore 2"));
        assert!(joined.contains("-a 0000:3b:00.0 -a 0000:3b:00.1"));
        assert!(joined.contains("--huge-unlink"));
        assert!(!joined.contains("--no-pci"));
        assert!(!joined.contains("--no-huge"));
    }

    #[test]
    fn mapped_lcores_use_the_lcores_option() {
        let args = eal_args(&EalSpec {
            cores: &[0, 1, 2],
            cpus: &[0, 1, 1],
            memory_mb: 256,
            hugepages: false,
            file_prefix: "t",
            devices: &[],
            extra: &[],
        });
        let joined = args.join(" ");
        assert!(
            joined.contains("--lcores 0@0,1@1,2@1 --main-lcore 0"),
            "{joined}"
        );
        assert!(!joined.contains(" -l "));
    }
}
