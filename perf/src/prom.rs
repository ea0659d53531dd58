//! A reader of the Prometheus text exposition format (version 0.0.4), enough to take
//! ferrovs's `/metrics` apart: samples with labels and a value; `# HELP`/`# TYPE`
//! lines and timestamps are skipped.

use std::fmt;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name as the line spells it.
    pub name: String,
    /// Label names and values in the order the line gives them, values unescaped.
    pub labels: Vec<(String, String)>,
    /// The value; may be NaN or infinite.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong with it.
    pub kind: PromErrorKind,
}

/// What was wrong with the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromErrorKind {
    /// The metric name is empty or has characters outside `[a-zA-Z0-9_:]`.
    BadName,
    /// A label set that is not `{key="value",...}`.
    BadLabels,
    /// No value, or one that is not a number.
    BadValue,
}

impl PromErrorKind {
    /// The error as a snake_case label.
    pub const fn reason(self) -> &'static str {
        match self {
            PromErrorKind::BadName => "bad_name",
            PromErrorKind::BadLabels => "bad_labels",
            PromErrorKind::BadValue => "bad_value",
        }
    }
}

impl fmt::Display for PromError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "metrics line {}: {}", self.line, self.kind.reason())
    }
}

impl std::error::Error for PromError {}

/// All samples of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    samples: Vec<Sample>,
}

impl Metrics {
    /// Parses a whole exposition.
    pub fn parse(text: &str) -> Result<Metrics, PromError> {
        let mut samples = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            samples.push(parse_line(line).map_err(|kind| PromError { line: i + 1, kind })?);
        }
        Ok(Metrics { samples })
    }

    /// Every sample.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Whether any sample of `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// The sum of every sample of `name` (over all label sets), `None` when there is
    /// no such sample.
    pub fn sum(&self, name: &str) -> Option<f64> {
        self.sum_filtered(name, |_| true)
    }

    /// The sum of the samples of `name` whose label `key` equals `value`.
    pub fn sum_where(&self, name: &str, key: &str, value: &str) -> Option<f64> {
        self.sum_filtered(name, |s| s.label(key) == Some(value))
    }

    /// The samples of `name` summed per value of label `key` (e.g. drops per reason
    /// over all workers), in first-seen order. Samples without the label are left out.
    pub fn sum_by(&self, name: &str, key: &str) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        for s in self.samples.iter().filter(|s| s.name == name) {
            let Some(v) = s.label(key) else { continue };
            match out.iter_mut().find(|(k, _)| k == v) {
                Some((_, total)) => *total += s.value,
                None => out.push((v.to_string(), s.value)),
            }
        }
        out
    }

    fn sum_filtered(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for s in self.samples.iter().filter(|s| s.name == name && keep(s)) {
            found = true;
            total += s.value;
        }
        found.then_some(total)
    }
}

/// The body of an HTTP/1.x response if its status is 200.
pub fn http_body(response: &str) -> Result<&str, HttpError> {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or(HttpError::Malformed)?;
    let status = head.lines().next().unwrap_or_default();
    let mut parts = status.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(v), Some("200")) if v.starts_with("HTTP/1.") => Ok(body),
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => {
            Err(HttpError::Status(code.parse().unwrap_or(0)))
        }
        _ => Err(HttpError::Malformed),
    }
}

/// Why an HTTP response carried no metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Not an HTTP/1.x response with a header block.
    Malformed,
    /// A status other than 200 (0 when not a number).
    Status(u16),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Malformed => f.write_str("malformed HTTP response"),
            HttpError::Status(code) => write!(f, "HTTP status {code}"),
        }
    }
}

impl std::error::Error for HttpError {}

fn parse_line(line: &str) -> Result<Sample, PromErrorKind> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    let name_ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !name_ok {
        return Err(PromErrorKind::BadName);
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .and_then(parse_value)
        .ok_or(PromErrorKind::BadValue)?;
    // An optional timestamp may follow; anything beyond it is an error.
    match (fields.next(), fields.next()) {
        (None, _) => {}
        (Some(ts), None) if ts.parse::<i64>().is_ok() => {}
        _ => return Err(PromErrorKind::BadValue),
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `key="value",...}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut Vec<(String, String)>,
) -> Result<&'a str, PromErrorKind> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or(PromErrorKind::BadLabels)?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(PromErrorKind::BadLabels);
        }
        s = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or(PromErrorKind::BadLabels)?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(PromErrorKind::BadLabels),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err(PromErrorKind::BadLabels),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(PromErrorKind::BadLabels);
        }
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP ferrovs_worker_rx_packets_total Packets received by the worker
# TYPE ferrovs_worker_rx_packets_total counter
ferrovs_worker_rx_packets_total{worker="0"} 10
ferrovs_worker_rx_packets_total{worker="1"} 5
ferrovs_worker_dropped_packets_total{worker="0",reason="tx_full"} 3
ferrovs_worker_dropped_packets_total{worker="1",reason="tx_full"} 4
ferrovs_worker_dropped_packets_total{worker="1",reason="not_for_us"} 2
ferrovs_mempool_available_mbufs 4000
ferrovs_build_info{version="0.1.0"} 1
"#;

    #[test]
    fn sums_and_groups() {
        let m = Metrics::parse(SCRAPE).unwrap();
        assert_eq!(m.samples().len(), 7);
        assert_eq!(m.sum("ferrovs_worker_rx_packets_total"), Some(15.0));
        assert_eq!(m.sum("ferrovs_mempool_available_mbufs"), Some(4000.0));
        assert_eq!(m.sum("ferrovs_nothing"), None);
        assert!(m.has("ferrovs_build_info"));
        assert_eq!(
            m.sum_where("ferrovs_worker_dropped_packets_total", "reason", "tx_full"),
            Some(7.0)
        );
        assert_eq!(
            m.sum_where("ferrovs_worker_dropped_packets_total", "reason", "no_route"),
            None
        );
        assert_eq!(
            m.sum_by("ferrovs_worker_dropped_packets_total", "reason"),
            vec![
                ("tx_full".to_string(), 7.0),
                ("not_for_us".to_string(), 2.0)
            ]
        );
    }

    #[test]
    fn labels_with_escapes_commas_and_spaces() {
        let m =
            Metrics::parse("m{a=\"x\\\"y\",b = \"p\\\\q\\nr\" , c=\"{,}\",} 2.5e3 1700000000000\n")
                .unwrap();
        let s = &m.samples()[0];
        assert_eq!(s.label("a"), Some("x\"y"));
        assert_eq!(s.label("b"), Some("p\\q\nr"));
        assert_eq!(s.label("c"), Some("{,}"));
        assert_eq!(s.value, 2500.0);
    }

    #[test]
    fn http_responses() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\na 1\n";
        assert_eq!(http_body(ok), Ok("a 1\n"));
        assert_eq!(
            http_body("HTTP/1.0 404 Not Found\r\n\r\n"),
            Err(HttpError::Status(404))
        );
        assert_eq!(http_body("HTTP/1.0 abc\r\n\r\n"), Err(HttpError::Status(0)));
        assert_eq!(http_body("HTTP/1.1 200 OK\r\n"), Err(HttpError::Malformed));
        assert_eq!(http_body("SSH-2.0\r\n\r\n"), Err(HttpError::Malformed));
        assert_eq!(http_body(""), Err(HttpError::Malformed));
    }

    #[test]
    fn special_values() {
        let m = Metrics::parse("a +Inf\nb -Inf\nc NaN\nd{} 0\n").unwrap();
        assert_eq!(m.samples()[0].value, f64::INFINITY);
        assert_eq!(m.samples()[1].value, f64::NEG_INFINITY);
        assert!(m.samples()[2].value.is_nan());
        assert_eq!(m.sum("d"), Some(0.0));
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line_number() {
        let cases = [
            ("{a=\"b\"} 1", PromErrorKind::BadName),
            ("1abc 1", PromErrorKind::BadName),
            ("a-b 1", PromErrorKind::BadName),
            ("m{a=b} 1", PromErrorKind::BadLabels),
            ("m{a=\"b} 1", PromErrorKind::BadLabels),
            ("m{a=\"b\" c=\"d\"} 1", PromErrorKind::BadLabels),
            ("m{=\"b\"} 1", PromErrorKind::BadLabels),
            ("m{a=\"\\x\"} 1", PromErrorKind::BadLabels),
            ("m{a=\"b\"", PromErrorKind::BadLabels),
            ("m", PromErrorKind::BadValue),
            ("m{} ", PromErrorKind::BadValue),
            ("m one", PromErrorKind::BadValue),
            ("m 1 2 3", PromErrorKind::BadValue),
            ("m 1 later", PromErrorKind::BadValue),
            ("m 1e999", PromErrorKind::BadValue),
        ];
        for (line, kind) in cases {
            let text = format!("# ok\nok 1\n{line}\n");
            assert_eq!(
                Metrics::parse(&text),
                Err(PromError { line: 3, kind }),
                "{line}"
            );
        }
    }
}
