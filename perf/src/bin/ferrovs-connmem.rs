//! Measures memory per live connection: builds a connection table for N
//! connections, fills it, and divides the growth of the resident set by N.
//!
//! Prints a human-readable summary and, last, `bytes_per_connection=<value>` for the
//! runner.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use ferrovs_core::conn::Mode;
use ferrovs_perf::memory::{measure_conn_table, measure_conn_table_v6};

#[derive(Parser)]
#[command(about = "Measure the memory of a filled ferrovs connection table")]
struct Cli {
    /// Table capacity and number of live connections.
    #[arg(long, default_value_t = 1_000_000)]
    connections: usize,
    /// NAT indexes two keys per connection (both directions), DR one.
    #[arg(long, value_enum, default_value_t = TableMode::Nat)]
    mode: TableMode,
    /// The connections' address family (the bed's are IPv4).
    #[arg(long, value_enum, default_value_t = AddressFamily::Ipv4)]
    family: AddressFamily,
}

#[derive(Clone, Copy, ValueEnum)]
enum AddressFamily {
    Ipv4,
    Ipv6,
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
    let measured = match cli.family {
        AddressFamily::Ipv4 => measure_conn_table(cli.connections, mode),
        AddressFamily::Ipv6 => measure_conn_table_v6(cli.connections, mode),
    };
    match measured {
        Ok(m) => {
            println!(
                "{} live {} connections ({}): resident set grew by {} bytes",
                m.connections, m.mode, m.family, m.rss_growth
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
