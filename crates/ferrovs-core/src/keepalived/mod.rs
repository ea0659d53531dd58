//! `ferrovs import-keepalived`: the `virtual_server` blocks of a keepalived
//! configuration as ferrovs `services:` YAML, and every line that could not be
//! carried over, with its place and the reason.
//!
//! Pure text to text: [`parse`] reads keepalived's syntax (blocks, quotes,
//! comments, `include`, parameters), `convert` maps what keepalived's checker
//! (the LVS part) configures onto ferrovs's keys. What keepalived can express
//! and ferrovs cannot (VRRP, firewall-mark services, SMTP checks, weights set by
//! scripts, ...) is named in a [`Note`], never dropped silently.

mod convert;
pub mod parse;

use std::fmt;
use std::io::Read;
use std::path::Path;

pub use parse::ParseError;

/// Largest configuration file read (keepalived configurations are kilobytes).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// Something of the keepalived configuration that the services do not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The file, as named in the report.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What was not carried over ("hysteresis 2", "vrrp_instance VI_1").
    pub what: String,
    /// Why, and what ferrovs does instead.
    pub why: String,
}

/// `FILE:LINE: WHAT not carried over: WHY`.
impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} not carried over: {}",
            self.file, self.line, self.what, self.why
        )
    }
}

/// The outcome of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The `services:` document.
    pub yaml: String,
    /// How many services it holds.
    pub services: usize,
    /// What was not carried over, in the order of the configuration.
    pub notes: Vec<Note>,
}

/// Reads a keepalived configuration file (and what it includes) and converts
/// its virtual servers.
pub fn import_file(path: &Path) -> Result<Import, ParseError> {
    let parsed = parse::parse_file(path, &read_file)?;
    Ok(convert::convert(&parsed))
}

/// Converts keepalived configuration `text`, named `name` in notes; includes are
/// read from the file system, relative to `name`'s directory.
pub fn import_text(text: &str, name: &str) -> Result<Import, ParseError> {
    let parsed = parse::parse_text(text, name, &read_file)?;
    Ok(convert::convert(&parsed))
}

/// A configuration file as text, refusing what is too large to be one.
fn read_file(path: &Path) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_FILE_BYTES >> 20),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}
