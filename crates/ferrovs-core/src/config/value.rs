//! Parsers for the config's own value syntaxes: durations and port devices.
//!
//! Addresses, prefixes and MACs use the standard `FromStr` of their types; these are
//! the formats that have no such type.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What [`parse_duration`] accepts, for error messages.
const DURATION_FORM: &str =
    "expected an integer followed by a unit (us, ms, s, m, h), e.g. \"900s\"";

/// A duration string that is not `<integer><unit>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationError {
    /// No leading decimal digits.
    MissingNumber,
    /// Digits with nothing after them.
    MissingUnit,
    /// Digits followed by something other than `us`, `ms`, `s`, `m`, `h`.
    UnknownUnit,
    /// The value does not fit a `Duration` of whole seconds in a `u64`.
    TooLarge,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::MissingNumber => f.write_str(DURATION_FORM),
            DurationError::MissingUnit => write!(f, "missing unit: {DURATION_FORM}"),
            DurationError::UnknownUnit => write!(f, "unknown unit: {DURATION_FORM}"),
            DurationError::TooLarge => f.write_str("too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses a duration written as an integer and a unit: `us`, `ms`, `s`, `m` or `h`
/// (`"900s"`, `"500ms"`). No sign, no fraction, no spaces.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let digits_end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(DurationError::MissingNumber);
    }
    if unit.is_empty() {
        return Err(DurationError::MissingUnit);
    }
    let n: u64 = digits.parse().map_err(|_| DurationError::TooLarge)?;
    let seconds = |per: u64| {
        n.checked_mul(per)
            .map(Duration::from_secs)
            .ok_or(DurationError::TooLarge)
    };
    match unit {
        "us" => Ok(Duration::from_micros(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(DurationError::UnknownUnit),
    }
}

/// The DPDK device behind a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortDevice {
    /// A PCI device, normalised to lowercase `dddd:bb:dd.f` (EAL `-a`).
    Pci(String),
    /// A virtual device (EAL `--vdev`): the whole spec, and its leading driver instance
    /// name (`net_af_packet0`), which is also the ethdev name.
    Vdev {
        /// The spec as written, e.g. `net_af_packet0,iface=veth-wan`.
        spec: String,
        /// The driver instance name, e.g. `net_af_packet0`.
        driver: String,
    },
}

impl PortDevice {
    /// The name DPDK gives the ethdev (`rte_eth_dev_get_port_by_name`): the PCI address
    /// or the vdev instance name. Two ports must not share it.
    pub fn ethdev_name(&self) -> &str {
        match self {
            PortDevice::Pci(address) => address,
            PortDevice::Vdev { driver, .. } => driver,
        }
    }
}

impl fmt::Display for PortDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortDevice::Pci(address) => f.write_str(address),
            PortDevice::Vdev { spec, .. } => f.write_str(spec),
        }
    }
}

/// A device string that is neither a PCI address nor a vdev spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// Neither form: no `net_` prefix and no PCI shape.
    Unrecognised,
    /// Looks like a PCI address but is not `DDDD:BB:DD.F` / `BB:DD.F` in range.
    BadPciAddress,
    /// `net_` is not followed by a driver instance name of `[A-Za-z0-9_]`.
    BadVdevDriver,
    /// A vdev argument that is not `key=value` (the argument is kept).
    BadVdevArgument(String),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Unrecognised => f.write_str(
                "expected a PCI address (\"0000:3b:00.0\" or \"3b:00.0\") or a vdev spec \
                 (\"net_<driver><n>[,key=value...]\")",
            ),
            DeviceError::BadPciAddress => f.write_str(
                "bad PCI address: expected DDDD:BB:DD.F or BB:DD.F in hex, \
                 device at most 1f, function at most 7",
            ),
            DeviceError::BadVdevDriver => f.write_str(
                "bad vdev driver name: expected \"net_\" followed by letters, digits or '_'",
            ),
            DeviceError::BadVdevArgument(arg) => write!(
                f,
                "bad vdev argument `{arg}`: expected key=value with a key of letters, digits, \
                 '_' or '-' and a non-empty value without spaces"
            ),
        }
    }
}

impl std::error::Error for DeviceError {}

impl FromStr for PortDevice {
    type Err = DeviceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.starts_with("net_") {
            parse_vdev(text)
        } else if text.contains(':') {
            parse_pci(text).map(PortDevice::Pci)
        } else {
            Err(DeviceError::Unrecognised)
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn parse_vdev(text: &str) -> Result<PortDevice, DeviceError> {
    let mut parts = text.split(',');
    let driver = parts.next().unwrap_or_default();
    let instance = &driver["net_".len().min(driver.len())..];
    if instance.is_empty() || !instance.bytes().all(is_word_byte) {
        return Err(DeviceError::BadVdevDriver);
    }
    for arg in parts {
        let valid = match arg.split_once('=') {
            Some((key, value)) => {
                !key.is_empty()
                    && key.bytes().all(|b| is_word_byte(b) || b == b'-')
                    && !value.is_empty()
                    && !value
                        .bytes()
                        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            }
            None => false,
        };
        if !valid {
            return Err(DeviceError::BadVdevArgument(arg.to_string()));
        }
    }
    Ok(PortDevice::Vdev {
        spec: text.to_string(),
        driver: driver.to_string(),
    })
}

/// Parses `DDDD:BB:DD.F` or `BB:DD.F` into the normalised `dddd:bb:dd.f`.
fn parse_pci(text: &str) -> Result<String, DeviceError> {
    let hex = |part: &str, width: usize, max: u32| -> Result<u32, DeviceError> {
        if part.len() != width || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DeviceError::BadPciAddress);
        }
        match u32::from_str_radix(part, 16) {
            Ok(value) if value <= max => Ok(value),
            _ => Err(DeviceError::BadPciAddress),
        }
    };
    let (slot, function) = text.split_once('.').ok_or(DeviceError::BadPciAddress)?;
    let fields: Vec<&str> = slot.split(':').collect();
    let (domain, bus, device) = match fields.as_slice() {
        [domain, bus, device] => (hex(domain, 4, 0xffff)?, *bus, *device),
        [bus, device] => (0, *bus, *device),
        _ => return Err(DeviceError::BadPciAddress),
    };
    let bus = hex(bus, 2, 0xff)?;
    let device = hex(device, 2, 0x1f)?;
    let function = hex(function, 1, 7)?;
    Ok(format!("{domain:04x}:{bus:02x}:{device:02x}.{function:x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_every_unit() {
        let cases = [
            ("900s", Duration::from_secs(900)),
            ("500ms", Duration::from_millis(500)),
            ("250us", Duration::from_micros(250)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("0s", Duration::ZERO),
            ("007s", Duration::from_secs(7)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn malformed_durations_are_rejected() {
        use DurationError::*;
        let cases = [
            ("", MissingNumber),
            ("s", MissingNumber),
            ("-1s", MissingNumber),
            ("+1s", MissingNumber),
            (" 1s", MissingNumber),
            ("1.5s", UnknownUnit),
            ("900", MissingUnit),
            ("900 s", UnknownUnit),
            ("900S", UnknownUnit),
            ("900sec", UnknownUnit),
            ("10d", UnknownUnit),
            ("1s ", UnknownUnit),
            ("99999999999999999999s", TooLarge),
            ("18446744073709551615h", TooLarge),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Err(expected), "{text:?}");
        }
        assert!(MissingUnit.to_string().contains("(us, ms, s, m, h)"));
    }

    #[test]
    fn pci_addresses_are_normalised() {
        let pci = |s: &str| s.parse::<PortDevice>();
        assert_eq!(
            pci("0000:3b:00.0"),
            Ok(PortDevice::Pci("0000:3b:00.0".into()))
        );
        assert_eq!(pci("3B:00.1"), Ok(PortDevice::Pci("0000:3b:00.1".into())));
        assert_eq!(
            pci("ABCD:ff:1f.7"),
            Ok(PortDevice::Pci("abcd:ff:1f.7".into()))
        );
        assert_eq!(pci("3b:00.1").unwrap().ethdev_name(), "0000:3b:00.1");
        for bad in [
            "0000:3b:00",
            "0000:3b:20.0",
            "0000:3b:00.8",
            "000:3b:00.0",
            "0000:3b:0.0",
            "0000:3g:00.0",
            "1:0000:3b:00.0",
            "0000:3b:00.00",
            ":3b:00.0",
            "+000:3b:00.0",
            "3b:+0.0",
        ] {
            assert_eq!(pci(bad), Err(DeviceError::BadPciAddress), "{bad}");
        }
    }

    #[test]
    fn vdev_specs_keep_spec_and_driver() {
        let dev: PortDevice = "net_af_packet0,iface=veth-wan,qpairs=2".parse().unwrap();
        assert_eq!(
            dev,
            PortDevice::Vdev {
                spec: "net_af_packet0,iface=veth-wan,qpairs=2".into(),
                driver: "net_af_packet0".into(),
            }
        );
        assert_eq!(dev.ethdev_name(), "net_af_packet0");
        assert_eq!(dev.to_string(), "net_af_packet0,iface=veth-wan,qpairs=2");
        let pcap: PortDevice = "net_pcap0,rx_pcap=/tmp/a.pcap,infinite_rx=1"
            .parse()
            .unwrap();
        assert_eq!(pcap.ethdev_name(), "net_pcap0");
        // DPDK keys may contain '-' (net_null's no-rx)
        let null: PortDevice = "net_null1,no-rx=1".parse().unwrap();
        assert_eq!(null.ethdev_name(), "net_null1");
        assert_eq!(
            "net_null0".parse::<PortDevice>().unwrap().ethdev_name(),
            "net_null0"
        );
    }

    #[test]
    fn malformed_devices_are_rejected() {
        let parse = |s: &str| s.parse::<PortDevice>();
        assert_eq!(parse(""), Err(DeviceError::Unrecognised));
        assert_eq!(parse("eth0"), Err(DeviceError::Unrecognised));
        assert_eq!(parse("af_packet0,iface=x"), Err(DeviceError::Unrecognised));
        assert_eq!(parse("net_"), Err(DeviceError::BadVdevDriver));
        assert_eq!(parse("net_,iface=x"), Err(DeviceError::BadVdevDriver));
        assert_eq!(parse("net_af-packet0"), Err(DeviceError::BadVdevDriver));
        let bad_arg = |arg: &str| Err(DeviceError::BadVdevArgument(arg.into()));
        assert_eq!(parse("net_tap0,"), bad_arg(""));
        assert_eq!(parse("net_tap0,iface"), bad_arg("iface"));
        assert_eq!(parse("net_tap0,iface="), bad_arg("iface="));
        assert_eq!(parse("net_tap0,=x"), bad_arg("=x"));
        assert_eq!(parse("net_tap0,if ace=x"), bad_arg("if ace=x"));
        assert_eq!(parse("net_tap0,iface=a b"), bad_arg("iface=a b"));
        assert_eq!(parse("net_tap0,,iface=x"), bad_arg(""));
        assert!(DeviceError::BadVdevArgument("k".into())
            .to_string()
            .contains("`k`"));
    }
}
