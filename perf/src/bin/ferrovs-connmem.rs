//! Measures memory per live connection: builds a connection table for N
//! connections, fills it, and divides the growth of the resident set by N.
//!
//! Prints a human-readable summary and, last, `bytes_per_connection=<value>` for the
//! runner.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use ferrovs_core::conn::Mode;
use ferrovs_perf::memory::measure_conn_table;

#[derive(Parser)]
#[command(about = "Measure the memory of a filled ferrovs connection table")]
struct Cli {
    /// Table capacity and number of live connections.
    #[arg(long, default_value_t = 1_000_000)]
    connections: usize,
    /// NAT indexes two keys per connection (both directions), DR one.
    #[arg(long, value_enum, default_value_t = TableMode::Nat)]
    mode: TableMode,
}

#[derive(Clone, Copy, ValueEnum)]
enum TableMode {
    Nat,
    Dr,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mode = match cli.mode {
        TableMode::Nat => Mode::Nat,
        TableMode::Dr => Mode::Dr,
    };
    match measure_conn_table(cli.connections, mode) {
        Ok(m) => {
            println!(
                "{} live {} connections (IPv4): resident set grew by {} bytes",
                m.connections, m.mode, m.rss_growth
            );
            println!(
                "computed from the table's allocations: {:.1} bytes per connection",
                m.table_per_connection()
            );
            println!("bytes_per_connection={:.1}", m.rss_per_connection());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrovs-connmem: {e}");
            ExitCode::FAILURE
        }
    }
}
