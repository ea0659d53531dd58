//! The `ferrovs` command.

use clap::{CommandFactory, Parser, Subcommand};
use ferrovs::logging::LogFormat;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code for a user error (bad config, bad arguments).
const EXIT_USER: u8 = 1;
/// Exit code for an internal or environment error (DPDK, sockets); for
/// `import-keepalived`, a file that cannot be read or parsed.
const EXIT_INTERNAL: u8 = 2;
/// `import-keepalived`: the services are printed, but something of the
/// keepalived configuration was not carried over (named on stderr).
const EXIT_NOT_CARRIED: u8 = 1;

#[derive(Parser)]
#[command(
    name = "ferrovs",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("FERROVS_GIT_COMMIT"), ")"),
    about = "Kernel-bypass Layer-4 load balancer on DPDK"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run in the foreground until SIGINT/SIGTERM.
    Run {
        /// The YAML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// How log lines are written: text with timestamps, journal (a syslog
        /// priority prefix, no timestamp) or json (one object a line); auto is
        /// journal when stderr is the systemd journal, else text.
        #[arg(long, value_enum, value_name = "FORMAT", default_value = "auto")]
        log_format: LogFormat,
    },
    /// Validate a configuration file without touching DPDK.
    CheckConfig {
        /// The YAML configuration file.
        file: PathBuf,
    },
    /// Talk to a running ferrovs through its control socket.
    Ctl(ferrovs::ctl::cli::CtlArgs),
    /// Print the virtual servers of a keepalived configuration as ferrovs
    /// `services:` YAML; name on stderr, as FILE:LINE, everything not carried
    /// over. Exit 0: everything carried; 1: something was not; 2: the file cannot
    /// be read or parsed.
    ImportKeepalived {
        /// The keepalived configuration (keepalived.conf; includes are followed).
        file: PathBuf,
    },
    /// Write the man pages and shell completions (for packaging).
    #[command(hide = true)]
    GenDocs {
        /// The directory to write `man/` and `completions/` into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USER)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Ctl(args) => ExitCode::from(ferrovs::ctl::cli::run(&args)),
        Command::GenDocs { out } => match ferrovs::cli_docs::write_all(&Cli::command(), &out) {
            Ok(files) => {
                println!("{} files written under {}", files.len(), out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", out.display());
                ExitCode::from(EXIT_INTERNAL)
            }
        },
        Command::ImportKeepalived { file } => match ferrovs_core::keepalived::import_file(&file) {
            Ok(import) => {
                print!("{}", import.yaml);
                for note in &import.notes {
                    eprintln!("{note}");
                }
                if import.notes.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_NOT_CARRIED)
                }
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_INTERNAL)
            }
        },
        Command::CheckConfig { file } => match ferrovs_core::config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(EXIT_USER)
            }
        },
        Command::Run { config, log_format } => {
            ferrovs::logging::init(log_format);
            // Before any thread starts: it takes systemd's variables out of the
            // environment.
            ferrovs::notify::init_from_env();
            let cfg = match ferrovs_core::config::load(&config) {
                Ok(cfg) => cfg,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(EXIT_USER);
                }
            };
            let signals = ferrovs::mgmt::Signals::default();
            let handlers = [
                (signal_hook::consts::SIGINT, &signals.stop),
                (signal_hook::consts::SIGTERM, &signals.stop),
                (signal_hook::consts::SIGHUP, &signals.reload),
            ];
            for (sig, flag) in handlers {
                if let Err(e) = signal_hook::flag::register(sig, Arc::clone(flag)) {
                    eprintln!("cannot install signal handler: {e}");
                    return ExitCode::from(EXIT_INTERNAL);
                }
            }
            match ferrovs::runtime::run(cfg, config, signals) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::from(EXIT_INTERNAL)
                }
            }
        }
    }
}
