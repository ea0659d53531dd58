//! YAML configuration: loading, validation, and `FILE:LINE:COL: message` errors.
//!
//! Two passes. serde (`serde_yaml_ng`, `deny_unknown_fields`) checks structure: YAML
//! syntax, unknown and missing keys, value types. Its first error stops it, so only
//! that one is reported. The semantic pass (`check`) then parses every value with a
//! syntax of its own (addresses, prefixes, durations, MACs, devices, keywords) and
//! checks ranges and cross-references, reporting *all* problems, each at the
//! position of the offending value, found by path in a map built by `positions`.

mod bounds;
mod check;
mod error;
mod host;
mod model;
mod positions;
mod raw;
mod value;

use std::io::Read;
use std::path::Path;

pub use bounds::{MAX_CONFIG_BYTES, MAX_FLOW_DEPTH};
pub use error::{ConfigError, ConfigErrors};
pub use host::{parse_cpu_list, HostFacts};
pub use model::MAX_NEXT_HOPS;
pub use model::{
    AccessConfig, AnnounceConfig, CheckKind, Config, ConnectionsConfig, DenyAction, DnsRcode,
    DnsType, EalConfig, ForwardMode, HealthCheckConfig, InterfaceConfig, ManagementConfig,
    MempoolConfig, NeighborConfig, PortConfig, Protocol, ProxyProtocol, RealServerConfig,
    RouteConfig, RpFilter, SchedFlag, Scheduler, ServiceConfig, SharedAddress, SorryServerConfig,
    SourceRate, SyncConfig, Timeouts, UnknownKeyword, VlanConfig, WorkersConfig,
};
pub use value::{parse_duration, DeviceError, DurationError, PortDevice};

use positions::{Position, Positions};
use raw::RawConfig;

/// Reads and validates the config file at `path`, checking cores against this host.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let fail = |message: String| {
        ConfigErrors::one(ConfigError {
            file: file.clone(),
            line: 1,
            col: 1,
            message,
        })
    };
    // Read one byte past the limit, never more (the path could be /dev/zero), and
    // let the bounds check report the size.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|err| fail(format!("cannot read: {err}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|err| fail(format!("cannot read: not UTF-8 text ({err})")))?;
    parse(&text, &file, &HostFacts::detect())
}

/// Validates config `text`; `file` names it in errors.
pub fn parse(text: &str, file: &str, host: &HostFacts) -> Result<Config, ConfigErrors> {
    // YAML allows a byte order mark at the start of a stream; the parsers would take
    // it for part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    bounds::check(text).map_err(|(at, message)| {
        ConfigErrors::one(ConfigError {
            file: file.to_string(),
            line: at.line,
            col: at.col,
            message,
        })
    })?;
    let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|err| {
        let (position, message) = describe_serde_error(&err);
        ConfigErrors::one(ConfigError {
            file: file.to_string(),
            line: position.line,
            col: position.col,
            message,
        })
    })?;
    check::check(raw, file, &Positions::of(text), host)
}

/// The position of a serde_yaml_ng error and its message without the
/// " at line L column C" that its `Display` appends.
fn describe_serde_error(err: &serde_yaml_ng::Error) -> (Position, String) {
    let text = err.to_string();
    let (position, message) = match err.location() {
        Some(location) => {
            let position = Position {
                line: location.line(),
                col: location.column(),
            };
            let suffix = format!(" at line {} column {}", location.line(), location.column());
            let message = match text.find(&suffix) {
                Some(at) => format!("{}{}", &text[..at], &text[at + suffix.len()..]),
                None => text,
            };
            (position, message)
        }
        None => (Position::START, text),
    };
    (position, message)
}

#[cfg(test)]
mod tests;
