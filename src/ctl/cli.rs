//! `ferrovs ctl`: the subcommands, the request each one sends and what it prints.
//!
//! Exit codes: 0 done, 1 bad arguments or refused by ferrovs (each error on its own
//! line on stderr; with `--json`, the refusal as JSON on stdout), 2 ferrovs cannot be
//! reached or answered nonsense.

use super::client::{self, CtlError};
use super::format::{self, ListView};
use super::proto::{Request, Response};
use super::DEFAULT_SOCKET;
use clap::{Args, Subcommand};
use ferrovs_core::config::parse_duration;
use ferrovs_core::conn::TcpState;
use serde_json::Value;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Done.
pub const EXIT_OK: u8 = 0;
/// Bad arguments or input, or ferrovs refused the request.
pub const EXIT_REFUSED: u8 = 1;
/// ferrovs could not be reached, or its answer made no sense.
pub const EXIT_UNREACHABLE: u8 = 2;

/// `ferrovs ctl [--socket PATH] [--timeout DURATION] SUBCOMMAND`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The control socket: management.control_socket of the running ferrovs.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// How long to wait for the answer ("10s", "500ms").
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// What to ask.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// What `ferrovs ctl` asks.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Services and real servers, like `ipvsadm -Ln`.
    List {
        /// Totals since start: Conns, InPkts, OutPkts, InBytes, OutBytes (`ipvsadm --stats`).
        #[arg(long, conflicts_with = "rate")]
        stats: bool,
        /// Per-second rates: CPS, InPPS, OutPPS, InBPS, OutBPS (`ipvsadm --rate`).
        #[arg(long)]
        rate: bool,
        /// Print ferrovs's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Connections, like `ipvsadm -Lnc`, with the local address FULLNAT uses.
    Conns {
        /// Only connections of this service (its name).
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        /// Only connections to this real server.
        #[arg(long, value_name = "IP:PORT", value_parser = parse_endpoint)]
        real_server: Option<SocketAddr>,
        /// Only connections in this state (ESTABLISHED, SYN_RECV, TIME_WAIT, ..., UDP).
        #[arg(long, value_parser = parse_state)]
        state: Option<String>,
        /// At most this many connections (ferrovs's default: 1000).
        #[arg(long, value_name = "N", value_parser = parse_limit)]
        limit: Option<usize>,
        /// Print ferrovs's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Adds a service from a file holding one `services:` item (YAML or JSON).
    AddService {
        /// The file ("-": standard input).
        #[arg(long, short, value_name = "FILE")]
        file: PathBuf,
    },
    /// Replaces the settings of the service of the same name (a complete item).
    EditService {
        /// The file ("-": standard input).
        #[arg(long, short, value_name = "FILE")]
        file: PathBuf,
    },
    /// Removes a service: no new connections, live ones finish or expire.
    RemoveService {
        /// The service's name.
        name: String,
    },
    /// Adds a real server to a service.
    AddRealServer {
        /// The service's name.
        service: String,
        /// The real server.
        #[arg(value_name = "IP:PORT", value_parser = parse_endpoint)]
        real_server: SocketAddr,
        /// Its weight (the config's default when not given).
        #[arg(long, value_name = "W")]
        weight: Option<u32>,
    },
    /// Changes a real server's weight (0 drains it).
    SetWeight {
        /// The service's name.
        service: String,
        /// The real server.
        #[arg(value_name = "IP:PORT", value_parser = parse_endpoint)]
        real_server: SocketAddr,
        /// The new weight.
        weight: u32,
    },
    /// Drains a real server: weight 0, live connections continue.
    Drain {
        /// The service's name.
        service: String,
        /// The real server.
        #[arg(value_name = "IP:PORT", value_parser = parse_endpoint)]
        real_server: SocketAddr,
    },
    /// Removes a real server from a service; its live connections continue.
    RemoveRealServer {
        /// The service's name.
        service: String,
        /// The real server.
        #[arg(value_name = "IP:PORT", value_parser = parse_endpoint)]
        real_server: SocketAddr,
    },
    /// Makes ferrovs read its configuration file again and apply what changed.
    Reload,
    /// Withdraws a VIP's route from the routing daemon (`announce`) until
    /// `announce VIP`: the routers stop sending it here; live flows continue.
    Withdraw {
        /// The VIP.
        vip: IpAddr,
    },
    /// Lets a VIP withdrawn by `withdraw` be announced again, once every service
    /// on it has its quorum of available real servers.
    Announce {
        /// The VIP.
        vip: IpAddr,
    },
    /// Connection sync: peers, last heard, datagrams and records each way, drops
    /// by reason, connections installed, shared addresses.
    Sync {
        /// Print ferrovs's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The running services as a `services:` YAML document, ready for the
    /// configuration file, like `ipvsadm -S` (changes made with ctl included).
    Save {
        /// Print the services as JSON instead.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `ferrovs ctl` command and returns its exit code.
pub fn run(args: &CtlArgs) -> u8 {
    let request = match request(&args.command) {
        Ok(request) => request,
        Err(e) => {
            emit(&[], &[e.to_string()]);
            return EXIT_REFUSED;
        }
    };
    let outcome = match client::call(&args.socket, &request, args.timeout) {
        Ok(response) => outcome(&args.command, &response),
        Err(e) => Outcome::unreachable(&e),
    };
    emit(outcome.stdout.as_bytes(), &outcome.stderr);
    outcome.code
}

/// The request `cmd` sends (reading the file of `add-service` and `edit-service`).
pub fn request(cmd: &CtlCommand) -> Result<Request, InputError> {
    let endpoint = |a: &SocketAddr| a.to_string();
    Ok(match cmd {
        CtlCommand::List { .. } => Request::List {},
        CtlCommand::Conns {
            service,
            real_server,
            state,
            limit,
            json: _,
        } => Request::Conns {
            service: service.clone(),
            real_server: real_server.as_ref().map(endpoint),
            state: state.clone(),
            limit: *limit,
        },
        CtlCommand::AddService { file } => Request::AddService {
            service: read_service(file)?,
        },
        CtlCommand::EditService { file } => Request::EditService {
            service: read_service(file)?,
        },
        CtlCommand::RemoveService { name } => Request::RemoveService { name: name.clone() },
        CtlCommand::AddRealServer {
            service,
            real_server,
            weight,
        } => {
            // A `real_servers:` item of the config.
            let mut item = serde_json::Map::new();
            item.insert("address".into(), real_server.ip().to_string().into());
            item.insert("port".into(), real_server.port().into());
            if let Some(w) = weight {
                item.insert("weight".into(), (*w).into());
            }
            Request::AddRealServer {
                service: service.clone(),
                real_server: Value::Object(item),
            }
        }
        CtlCommand::SetWeight {
            service,
            real_server,
            weight,
        } => Request::SetWeight {
            service: service.clone(),
            real_server: endpoint(real_server),
            weight: *weight,
        },
        CtlCommand::Drain {
            service,
            real_server,
        } => Request::Drain {
            service: service.clone(),
            real_server: endpoint(real_server),
        },
        CtlCommand::RemoveRealServer {
            service,
            real_server,
        } => Request::RemoveRealServer {
            service: service.clone(),
            real_server: endpoint(real_server),
        },
        CtlCommand::Reload => Request::Reload {},
        CtlCommand::Withdraw { vip } => Request::Withdraw { vip: *vip },
        CtlCommand::Announce { vip } => Request::Announce { vip: *vip },
        CtlCommand::Sync { .. } => Request::Sync {},
        CtlCommand::Save { .. } => Request::Save {},
    })
}

/// What to print and the exit code, for an answer to `cmd`.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// Text for stdout, written as is; empty when there is none.
    pub stdout: String,
    /// Lines for stderr.
    pub stderr: Vec<String>,
    /// The exit code: [`EXIT_OK`], [`EXIT_REFUSED`] or [`EXIT_UNREACHABLE`].
    pub code: u8,
}

impl Outcome {
    fn ok(stdout: String) -> Outcome {
        Outcome {
            stdout,
            stderr: Vec::new(),
            code: EXIT_OK,
        }
    }

    /// An answer that does not fit the question: the server is not speaking this
    /// protocol version.
    fn unexpected(cmd: &CtlCommand, response: &Response) -> Outcome {
        Outcome {
            stdout: String::new(),
            stderr: vec![format!(
                "ferrovs ctl: unexpected answer ({}) to {}",
                status(response),
                command_name(cmd)
            )],
            code: EXIT_UNREACHABLE,
        }
    }

    fn unreachable(e: &CtlError) -> Outcome {
        Outcome {
            stdout: String::new(),
            stderr: vec![format!("ferrovs ctl: {e}")],
            code: EXIT_UNREACHABLE,
        }
    }
}

/// Turns ferrovs's answer to `cmd` into output: a table (or JSON) for reads, the
/// message for changes, the errors of a refusal.
pub fn outcome(cmd: &CtlCommand, response: &Response) -> Outcome {
    let json = matches!(
        cmd,
        CtlCommand::List { json: true, .. }
            | CtlCommand::Conns { json: true, .. }
            | CtlCommand::Sync { json: true }
            | CtlCommand::Save { json: true }
    );
    // The protocol's types always serialise.
    let pretty = || serde_json::to_string_pretty(response).unwrap_or_default() + "\n";
    let stdout = match (cmd, response) {
        (_, Response::Error { errors }) => {
            return Outcome {
                stdout: if json { pretty() } else { String::new() },
                stderr: if json { Vec::new() } else { errors.clone() },
                code: EXIT_REFUSED,
            };
        }
        (CtlCommand::List { .. }, Response::Services { .. })
        | (CtlCommand::Conns { .. }, Response::Conns { .. })
        | (CtlCommand::Sync { .. }, Response::Sync { .. })
            if json =>
        {
            pretty()
        }
        (CtlCommand::List { stats, rate, .. }, Response::Services { services }) => {
            let view = match (stats, rate) {
                (true, _) => ListView::Stats,
                (_, true) => ListView::Rate,
                _ => ListView::Plain,
            };
            format::services(services, view)
        }
        (CtlCommand::Conns { .. }, Response::Conns { conns, truncated }) => {
            format::conns(conns, *truncated)
        }
        (CtlCommand::List { .. } | CtlCommand::Conns { .. }, _) => {
            return Outcome::unexpected(cmd, response)
        }
        (CtlCommand::Sync { .. }, Response::Sync { sync }) => format::sync(sync),
        (CtlCommand::Sync { .. }, _) => return Outcome::unexpected(cmd, response),
        (CtlCommand::Save { json }, Response::Saved { yaml }) => {
            if !json {
                yaml.clone()
            } else {
                match serde_yaml_ng::from_str::<Value>(yaml) {
                    Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_default() + "\n",
                    Err(_) => return Outcome::unexpected(cmd, response),
                }
            }
        }
        (CtlCommand::Save { .. }, _) => return Outcome::unexpected(cmd, response),
        (_, Response::Done { message }) => format!("{message}\n"),
        (
            _,
            Response::Services { .. }
            | Response::Conns { .. }
            | Response::Sync { .. }
            | Response::Saved { .. },
        ) => return Outcome::unexpected(cmd, response),
    };
    Outcome::ok(stdout)
}

fn status(response: &Response) -> &'static str {
    match response {
        Response::Services { .. } => "services",
        Response::Conns { .. } => "conns",
        Response::Sync { .. } => "sync",
        Response::Saved { .. } => "saved",
        Response::Done { .. } => "done",
        Response::Error { .. } => "error",
    }
}

fn command_name(cmd: &CtlCommand) -> &'static str {
    match cmd {
        CtlCommand::List { .. } => "list",
        CtlCommand::Conns { .. } => "conns",
        CtlCommand::AddService { .. } => "add-service",
        CtlCommand::EditService { .. } => "edit-service",
        CtlCommand::RemoveService { .. } => "remove-service",
        CtlCommand::AddRealServer { .. } => "add-real-server",
        CtlCommand::SetWeight { .. } => "set-weight",
        CtlCommand::Drain { .. } => "drain",
        CtlCommand::RemoveRealServer { .. } => "remove-real-server",
        CtlCommand::Reload => "reload",
        CtlCommand::Withdraw { .. } => "withdraw",
        CtlCommand::Announce { .. } => "announce",
        CtlCommand::Sync { .. } => "sync",
        CtlCommand::Save { .. } => "save",
    }
}

/// Writes the output; a closed pipe (`ferrovs ctl conns | head`) is not an error.
fn emit(stdout: &[u8], stderr: &[String]) {
    let _ = io::stdout().lock().write_all(stdout);
    let mut err = io::stderr().lock();
    for line in stderr {
        let _ = writeln!(err, "{line}");
    }
}

/// A service file that cannot be sent.
#[derive(Debug)]
pub enum InputError {
    /// The file cannot be read.
    Read {
        /// The file as named in messages (`<stdin>` for `-`).
        file: String,
        /// Why it could not be read.
        source: io::Error,
    },
    /// Not YAML (or JSON).
    Syntax {
        /// The file as named in messages (`<stdin>` for `-`).
        file: String,
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error, from 1.
        col: usize,
        /// The parser's message, without its position.
        message: String,
    },
    /// Well-formed, but not one `services:` item.
    NotAService {
        /// The file as named in messages (`<stdin>` for `-`).
        file: String,
        /// What is wrong with the item.
        message: String,
    },
}

impl InputError {
    /// The case as a snake_case label.
    pub fn reason(&self) -> &'static str {
        match self {
            InputError::Read { .. } => "read",
            InputError::Syntax { .. } => "syntax",
            InputError::NotAService { .. } => "not_a_service",
        }
    }
}

/// `FILE:LINE:COL: message`, as `check-config` reports.
impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Read { file, source } => write!(f, "{file}:1:1: cannot read: {source}"),
            InputError::Syntax {
                file,
                line,
                col,
                message,
            } => write!(f, "{file}:{line}:{col}: {message}"),
            InputError::NotAService { file, message } => write!(f, "{file}:1:1: {message}"),
        }
    }
}

impl std::error::Error for InputError {}

/// Reads the service item in `file` ("-": stdin).
fn read_service(file: &Path) -> Result<Value, InputError> {
    let stdin = file.as_os_str() == "-";
    let name = if stdin {
        "<stdin>".to_string()
    } else {
        file.display().to_string()
    };
    let mut text = String::new();
    let read = if stdin {
        io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    read.map_err(|source| InputError::Read {
        file: name.clone(),
        source,
    })?;
    service_item(&text, &name)
}

/// The JSON value of one `services:` item written in YAML or JSON (`file` names it
/// in errors). The item may stand alone or, as in the config, be the only element of
/// a `services:` list. Its keys are checked by ferrovs, with the config's rules.
pub fn service_item(text: &str, file: &str) -> Result<Value, InputError> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| syntax_error(&e, file))?;
    let not_a_service = |message: &str| InputError::NotAService {
        file: file.to_string(),
        message: message.to_string(),
    };
    let item = match value {
        Value::Object(mut map) if map.len() == 1 && map.contains_key("services") => {
            match map.remove("services") {
                Some(Value::Array(mut items)) if items.len() == 1 => items.remove(0),
                _ => return Err(not_a_service("`services:` must hold exactly one item")),
            }
        }
        other => other,
    };
    match &item {
        Value::Object(map) => match map.get("name") {
            Some(Value::String(_)) => Ok(item),
            Some(_) => Err(not_a_service("the service's `name` must be a string")),
            None => Err(not_a_service("the service has no `name`")),
        },
        _ => Err(not_a_service(
            "expected one `services:` item: a mapping with name, vip, port, protocol, mode, ...",
        )),
    }
}

/// The position of a YAML error and its message without the " at line L column C"
/// that serde_yaml_ng's `Display` appends.
fn syntax_error(err: &serde_yaml_ng::Error, file: &str) -> InputError {
    let text = err.to_string();
    let (line, col, message) = match err.location() {
        Some(at) => {
            let suffix = format!(" at line {} column {}", at.line(), at.column());
            (at.line(), at.column(), text.replacen(&suffix, "", 1))
        }
        None => (1, 1, text),
    };
    InputError::Syntax {
        file: file.to_string(),
        line,
        col,
        message,
    }
}

/// "IP:PORT", IPv6 as "[IP]:PORT", as ferrovs names real servers.
fn parse_endpoint(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| format!("`{text}` is not IP:PORT (IPv6 as [IP]:PORT)"))?;
    match addr {
        SocketAddr::V6(a) if a.scope_id() != 0 || a.flowinfo() != 0 => Err(format!(
            "`{text}`: no scope id, real servers are global addresses"
        )),
        _ => Ok(addr),
    }
}

/// An ipvsadm state name, any case.
fn parse_state(text: &str) -> Result<String, String> {
    let upper = text.to_ascii_uppercase();
    let names: Vec<&str> = TcpState::ALL
        .iter()
        .map(|s| s.name())
        .chain(["UDP"])
        .collect();
    if names.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!(
            "unknown state `{text}`; one of {}",
            names.join(" ")
        ))
    }
}

fn parse_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{text}` is not a positive number")),
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than 0".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::{ConnView, ServiceView};
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ctl: CtlArgs,
    }

    fn parse(args: &[&str]) -> Result<CtlArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("ctl").chain(args.iter().copied())).map(|c| c.ctl)
    }

    fn sent(args: &[&str]) -> Value {
        let args = parse(args).unwrap();
        serde_json::to_value(request(&args.command).unwrap()).unwrap()
    }

    #[test]
    fn defaults() {
        let args = parse(&["reload"]).unwrap();
        assert_eq!(args.socket, Path::new("/run/ferrovs/ctl.sock"));
        assert_eq!(args.timeout, Duration::from_secs(10));
        let args = parse(&["--socket", "/tmp/x.sock", "--timeout", "250ms", "list"]).unwrap();
        assert_eq!(args.socket, Path::new("/tmp/x.sock"));
        assert_eq!(args.timeout, Duration::from_millis(250));
        // Also after the subcommand.
        let args = parse(&["list", "--socket", "/tmp/y.sock", "--timeout", "2s"]).unwrap();
        assert_eq!(args.socket, Path::new("/tmp/y.sock"));
        assert_eq!(args.timeout, Duration::from_secs(2));
        for bad in ["0s", "10", "-1s", "1.5s"] {
            assert!(parse(&["--timeout", bad, "list"]).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_subcommand_sends_its_request() {
        assert_eq!(sent(&["list", "--stats"]), json!({"cmd": "list"}));
        assert_eq!(sent(&["conns"]), json!({"cmd": "conns"}));
        assert_eq!(
            sent(&[
                "conns",
                "--service",
                "web",
                "--real-server",
                "[2001:2:0:0::10]:8080",
                "--state",
                "syn_recv",
                "--limit",
                "5"
            ]),
            json!({"cmd": "conns", "service": "web", "real_server": "[2001:2::10]:8080",
                   "state": "SYN_RECV", "limit": 5})
        );
        assert_eq!(
            sent(&["remove-service", "web"]),
            json!({"cmd": "remove_service", "name": "web"})
        );
        assert_eq!(
            sent(&["add-real-server", "web", "198.19.0.13:8080"]),
            json!({"cmd": "add_real_server", "service": "web",
                   "real_server": {"address": "198.19.0.13", "port": 8080}})
        );
        assert_eq!(
            sent(&[
                "add-real-server",
                "web6",
                "[2001:2::13]:80",
                "--weight",
                "3"
            ]),
            json!({"cmd": "add_real_server", "service": "web6",
                   "real_server": {"address": "2001:2::13", "port": 80, "weight": 3}})
        );
        assert_eq!(
            sent(&["set-weight", "web", "198.19.0.10:8080", "0"]),
            json!({"cmd": "set_weight", "service": "web", "real_server": "198.19.0.10:8080",
                   "weight": 0})
        );
        assert_eq!(
            sent(&["drain", "web", "198.19.0.10:8080"]),
            json!({"cmd": "drain", "service": "web", "real_server": "198.19.0.10:8080"})
        );
        assert_eq!(
            sent(&["remove-real-server", "web", "198.19.0.10:8080"]),
            json!({"cmd": "remove_real_server", "service": "web",
                   "real_server": "198.19.0.10:8080"})
        );
        assert_eq!(sent(&["reload"]), json!({"cmd": "reload"}));
    }

    #[test]
    fn bad_arguments_are_refused_before_sending() {
        for args in [
            &["list", "--stats", "--rate"][..],
            &["conns", "--state", "CONFUSED"],
            &["conns", "--limit", "0"],
            &["conns", "--limit", "-3"],
            &["conns", "--real-server", "198.19.0.10"],
            &["drain", "web", "2001:2::10:8080"],
            &["drain", "web", "[fe80::1%2]:80"],
            &["drain", "web", "198.19.0.300:80"],
            &["drain", "web"],
            &["set-weight", "web", "198.19.0.10:8080", "-1"],
            &["set-weight", "web", "198.19.0.10:8080", "4294967296"],
            &["add-service"],
            &["remove-service"],
            &["frobnicate"],
            &[],
        ] {
            assert!(parse(args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn states_are_the_ipvsadm_names() {
        assert_eq!(parse_state("established").unwrap(), "ESTABLISHED");
        assert_eq!(parse_state("Udp").unwrap(), "UDP");
        assert_eq!(parse_state("SYNACK").unwrap(), "SYNACK");
        let err = parse_state("SYN").unwrap_err();
        assert!(err.contains("SYN_RECV") && err.contains("UDP"), "{err}");
    }

    const WEB: &str = "\
name: web
vip: 198.18.0.100
port: 80
protocol: tcp
mode: nat
persistence: 60s
real_servers:
  - { address: 198.19.0.10, port: 8080, weight: 1 }
";

    fn web_json() -> Value {
        json!({"name": "web", "vip": "198.18.0.100", "port": 80, "protocol": "tcp",
               "mode": "nat", "persistence": "60s",
               "real_servers": [{"address": "198.19.0.10", "port": 8080, "weight": 1}]})
    }

    #[test]
    fn service_items_from_yaml_json_or_a_services_list() {
        assert_eq!(service_item(WEB, "web.yaml").unwrap(), web_json());
        let listed = format!("services:\n  - {}", WEB.replace('\n', "\n    "));
        assert_eq!(service_item(&listed, "web.yaml").unwrap(), web_json());
        let json_text = serde_json::to_string_pretty(&web_json()).unwrap();
        assert_eq!(service_item(&json_text, "web.json").unwrap(), web_json());
    }

    #[test]
    fn bad_service_files_name_file_line_and_column() {
        let err = service_item("name: web\nvip: [198.18.0.100\n", "svc.yaml").unwrap_err();
        assert_eq!(err.reason(), "syntax");
        let text = err.to_string();
        assert!(text.starts_with("svc.yaml:3:1: "), "{text}");
        // The position is in front, not repeated at the end.
        assert!(!text.ends_with("at line 3 column 1"), "{text}");

        for (text, wanted) in [
            ("", "expected one `services:` item"),
            ("- name: web\n", "expected one `services:` item"),
            ("42\n", "expected one `services:` item"),
            ("vip: 198.18.0.100\n", "has no `name`"),
            ("name: [web]\n", "must be a string"),
            ("services: []\n", "exactly one item"),
            ("services:\n  - name: a\n  - name: b\n", "exactly one item"),
            ("services: {name: web}\n", "exactly one item"),
        ] {
            let err = service_item(text, "svc.yaml").unwrap_err();
            assert_eq!(err.reason(), "not_a_service", "{text:?}");
            let shown = err.to_string();
            assert!(
                shown.starts_with("svc.yaml:1:1: ") && shown.contains(wanted),
                "{text:?}: {shown}"
            );
        }
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let args = parse(&["add-service", "--file", "/nonexistent/web.yaml"]).unwrap();
        let err = request(&args.command).unwrap_err();
        assert_eq!(err.reason(), "read");
        assert!(err
            .to_string()
            .starts_with("/nonexistent/web.yaml:1:1: cannot read: "));
    }

    fn service() -> ServiceView {
        ServiceView {
            name: "web".into(),
            protocol: "tcp".into(),
            address: "198.18.0.100:80".into(),
            scheduler: "rr".into(),
            mode: "nat".into(),
            persistence_s: 0,
            ops: false,
            announced: None,
            quorum: None,
            available: None,
            sorry_active: None,
            stats: Default::default(),
            rates: Default::default(),
            real_servers: vec![],
        }
    }

    fn cmd(args: &[&str]) -> CtlCommand {
        parse(args).unwrap().command
    }

    #[test]
    fn reads_print_tables_or_json() {
        let services = Response::Services {
            services: vec![service()],
        };
        let out = outcome(&cmd(&["list"]), &services);
        assert_eq!(out.code, EXIT_OK);
        assert_eq!(out.stdout, format::services(&[service()], ListView::Plain));
        let out = outcome(&cmd(&["list", "--rate"]), &services);
        assert_eq!(out.stdout, format::services(&[service()], ListView::Rate));
        let out = outcome(&cmd(&["list", "--stats", "--json"]), &services);
        assert_eq!(out.code, EXIT_OK);
        assert_eq!(
            serde_json::from_str::<Response>(&out.stdout).unwrap(),
            services
        );
        assert!(out.stdout.contains("\n  \"services\": ["), "{}", out.stdout);

        let conns = Response::Conns {
            conns: vec![ConnView {
                protocol: "UDP".into(),
                client: "198.18.0.9:5353".into(),
                virtual_address: "198.18.0.53:53".into(),
                local: "198.18.0.9:5353".into(),
                real_server: "198.19.0.20:53".into(),
                state: "UDP".into(),
                expires_ms: 1000,
                worker: 1,
            }],
            truncated: true,
        };
        let out = outcome(&cmd(&["conns"]), &conns);
        assert_eq!(out.code, EXIT_OK);
        assert!(out.stdout.contains("raise --limit"));
        let out = outcome(&cmd(&["conns", "--json"]), &conns);
        assert!(out.stdout.contains("\"worker\": 1"), "{}", out.stdout);
    }

    #[test]
    fn save_prints_the_services_yaml_or_json() {
        let yaml = "services:\n- name: web\n  vip: 198.18.0.100\n  port: 80\n".to_string();
        let saved = Response::Saved { yaml: yaml.clone() };
        assert_eq!(request(&cmd(&["save"])).unwrap(), Request::Save {});
        let out = outcome(&cmd(&["save"]), &saved);
        assert_eq!((out.code, out.stdout.as_str()), (EXIT_OK, yaml.as_str()));
        let out = outcome(&cmd(&["save", "--json"]), &saved);
        let json: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(json["services"][0]["port"], 80);
        let out = outcome(
            &cmd(&["save"]),
            &Response::Sync {
                sync: super::super::proto::SyncView {
                    listen: String::new(),
                    ready: true,
                    peers: vec![],
                    datagrams_sent: 0,
                    datagrams_received: 0,
                    records_sent: 0,
                    records_received: 0,
                    installed: 0,
                    refused: 0,
                    lost: 0,
                    dropped: vec![],
                    shared: vec![],
                },
            },
        );
        assert_eq!(out.code, EXIT_UNREACHABLE);
        assert_eq!(outcome(&cmd(&["list"]), &saved).code, EXIT_UNREACHABLE);
    }

    #[test]
    fn refusals_print_every_error_and_exit_1() {
        let refused = Response::Error {
            errors: vec!["first problem".into(), "second problem".into()],
        };
        for args in [&["reload"][..], &["list"], &["drain", "web", "1.2.3.4:80"]] {
            let out = outcome(&cmd(args), &refused);
            assert_eq!(
                out,
                Outcome {
                    stdout: String::new(),
                    stderr: vec!["first problem".into(), "second problem".into()],
                    code: EXIT_REFUSED,
                }
            );
        }
        let out = outcome(&cmd(&["list", "--json"]), &refused);
        assert_eq!(out.code, EXIT_REFUSED);
        assert!(out.stdout.contains("\"second problem\""));
    }

    #[test]
    fn changes_print_the_message() {
        let done = Response::Done {
            message: "web: 198.19.0.10:8080 weight 2 -> 0".into(),
        };
        let out = outcome(&cmd(&["drain", "web", "198.19.0.10:8080"]), &done);
        assert_eq!(
            out,
            Outcome::ok("web: 198.19.0.10:8080 weight 2 -> 0\n".into())
        );
    }

    #[test]
    fn answers_of_the_wrong_kind_exit_2() {
        let done = Response::Done {
            message: "ok".into(),
        };
        let services = Response::Services { services: vec![] };
        let conns = Response::Conns {
            conns: vec![],
            truncated: false,
        };
        for (args, response) in [
            (&["list"][..], &done),
            (&["list"], &conns),
            (&["conns", "--json"], &services),
            (&["reload"], &services),
            (&["remove-service", "web"], &conns),
        ] {
            let out = outcome(&cmd(args), response);
            assert_eq!(out.code, EXIT_UNREACHABLE, "{args:?}");
            assert!(out.stdout.is_empty());
            assert!(
                out.stderr[0].contains("unexpected answer"),
                "{:?}",
                out.stderr
            );
        }
    }
}
