//! The log format of `ferrovs run`: plain text with timestamps on a terminal,
//! syslog-style level prefixes without timestamps when stderr is the journal, or
//! one JSON object per line for log shippers (`--log-format`).
//!
//! journald stamps every line itself and reads a leading `<N>` (the syslog
//! priority, `SyslogLevelPrefix=`, on by default) as the line's level, so that
//! `journalctl -p warning` and the colours work. systemd says stderr is the journal
//! by setting `JOURNAL_STREAM` to the stream's `device:inode`; ferrovs compares it
//! with stderr's own, so a redirected stderr under systemd is not mistaken for the
//! journal.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `journal` when stderr is the systemd journal, else `text`.
    #[default]
    Auto,
    /// `[TIME LEVEL target] message`, for a terminal or a file.
    Text,
    /// `<N>target: message`: a syslog priority prefix and no timestamp, for journald.
    Journal,
    /// One JSON object per line: time, level, target, message.
    Json,
}

impl LogFormat {
    /// `Auto` resolved against the process's stderr and `JOURNAL_STREAM`.
    pub fn resolve(self) -> LogFormat {
        match self {
            LogFormat::Auto if stderr_is_journal() => LogFormat::Journal,
            LogFormat::Auto => LogFormat::Text,
            f => f,
        }
    }
}

/// Whether stderr is connected to the journal: `JOURNAL_STREAM` names its device
/// and inode.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    journal_stream_matches(&value.to_string_lossy(), meta.dev(), meta.ino())
}

/// Whether a `JOURNAL_STREAM` value (`device:inode`, decimal) names the file with
/// `dev` and `ino`.
pub fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>().ok() == Some(dev) && i.parse::<u64>().ok() == Some(ino)
}

/// The syslog priority of a level, as `sd-daemon(3)` prefixes (`<3>` error to
/// `<7>` debug; trace is debug too).
pub fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// One record for journald: every line of the message carries the priority, since
/// journald makes each line an entry of its own.
pub fn journal_line(level: log::Level, target: &str, message: &str) -> String {
    let prefix = format!("<{}>", syslog_priority(level));
    let mut out = String::with_capacity(message.len() + target.len() + 8);
    for (i, line) in message.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&prefix);
        if i == 0 {
            out.push_str(target);
            out.push_str(": ");
        }
        out.push_str(line);
    }
    out
}

/// One record as a JSON object on one line (newlines in the message escaped).
pub fn json_line(time: &str, level: log::Level, target: &str, message: &str) -> String {
    serde_json::json!({
        "time": time,
        "level": level.as_str().to_ascii_lowercase(),
        "target": target,
        "message": message,
    })
    .to_string()
}

/// Installs the logger: `RUST_LOG` filters (default `info`), `format` formats.
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    match format.resolve() {
        LogFormat::Auto | LogFormat::Text => {
            builder.format_timestamp_millis();
        }
        LogFormat::Journal => {
            builder.format(|buf, record| {
                let line =
                    journal_line(record.level(), record.target(), &record.args().to_string());
                writeln!(buf, "{line}")
            });
        }
        LogFormat::Json => {
            builder.format(|buf, record| {
                let time = buf.timestamp_millis().to_string();
                let line = json_line(
                    &time,
                    record.level(),
                    record.target(),
                    &record.args().to_string(),
                );
                writeln!(buf, "{line}")
            });
        }
    }
    builder.init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert!(journal_stream_matches("8:12345", 8, 12345));
        assert!(journal_stream_matches("8:12345\n", 8, 12345));
        assert!(!journal_stream_matches("8:12346", 8, 12345));
        assert!(!journal_stream_matches("9:12345", 8, 12345));
        assert!(!journal_stream_matches("812345", 8, 12345));
        assert!(!journal_stream_matches("", 8, 12345));
        assert!(!journal_stream_matches("a:b", 8, 12345));
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(syslog_priority(Level::Error), 3);
        assert_eq!(syslog_priority(Level::Warn), 4);
        assert_eq!(syslog_priority(Level::Info), 6);
        assert_eq!(syslog_priority(Level::Debug), 7);
        assert_eq!(syslog_priority(Level::Trace), 7);
    }

    #[test]
    fn journal_lines_have_a_prefix_and_no_timestamp() {
        assert_eq!(
            journal_line(Level::Warn, "ferrovs::mgmt", "worker 0: queue full"),
            "<4>ferrovs::mgmt: worker 0: queue full"
        );
        assert_eq!(
            journal_line(Level::Error, "ferrovs::mgmt", "reload refused:\na\nb"),
            "<3>ferrovs::mgmt: reload refused:\n<3>a\n<3>b"
        );
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let line = json_line(
            "2000-01-01T00:00:00.000Z",
            Level::Info,
            "ferrovs::runtime",
            "ready in 5 ms: \"quoted\"\nsecond line",
        );
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2000-01-01T00:00:00.000Z");
        assert_eq!(v["level"], "info");
        assert_eq!(v["target"], "ferrovs::runtime");
        assert_eq!(v["message"], "ready in 5 ms: \"quoted\"\nsecond line");
        assert_eq!(v.as_object().unwrap().len(), 4);
    }

    #[test]
    fn explicit_formats_resolve_to_themselves() {
        for f in [LogFormat::Text, LogFormat::Journal, LogFormat::Json] {
            assert_eq!(f.resolve(), f);
        }
    }
}
