//! Writes the benchmark traffic as a pcap file of 64-byte frames.
//!
//! `ferrovs-pcapgen udp --flows 65536 --out udp-64k.pcap`: one UDP datagram per flow,
//! client -> VIP, in a fixed shuffled order; replayed, every flow recurs.
//! `ferrovs-pcapgen syn --count 1048576 --out syn.pcap`: SYNs, each a new 5-tuple.

use std::fs::File;
use std::io::BufWriter;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferrovs_core::packet::MacAddr;
use ferrovs_perf::traffic::{write_pcap, Addressing, Traffic};

#[derive(Parser)]
#[command(about = "Write ferrovs benchmark traffic as a pcap file")]
struct Cli {
    #[command(subcommand)]
    traffic: Kind,
    /// Output file.
    #[arg(long, global = true, default_value = "traffic.pcap")]
    out: PathBuf,
    /// Destination MAC: the receiving port (net_pcap's first port by default).
    #[arg(long, global = true)]
    dst_mac: Option<MacAddr>,
    /// Source MAC: the client-side router.
    #[arg(long, global = true)]
    src_mac: Option<MacAddr>,
    /// The virtual IP the clients address.
    #[arg(long, global = true)]
    vip: Option<Ipv4Addr>,
}

#[derive(Subcommand)]
enum Kind {
    /// UDP datagrams, one per flow, flows cycled.
    Udp {
        /// Distinct flows (one packet each per pass).
        #[arg(long, default_value_t = 65536)]
        flows: u32,
        /// Service port.
        #[arg(long, default_value_t = 9000)]
        port: u16,
    },
    /// TCP SYNs, each from a fresh client address and port.
    Syn {
        /// SYNs in the file.
        #[arg(long, default_value_t = 1 << 20)]
        count: u32,
        /// Service port.
        #[arg(long, default_value_t = 80)]
        port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut addressing = Addressing::default();
    if let Some(mac) = cli.dst_mac {
        addressing.dst_mac = mac;
    }
    if let Some(mac) = cli.src_mac {
        addressing.src_mac = mac;
    }
    if let Some(vip) = cli.vip {
        addressing.vip = vip;
    }
    let traffic = match cli.traffic {
        Kind::Udp { flows, port } => {
            addressing.udp_port = port;
            Traffic::UdpFlows { flows }
        }
        Kind::Syn { count, port } => {
            addressing.tcp_port = port;
            Traffic::TcpSyns { count }
        }
    };
    let result = File::create(&cli.out)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            write_pcap(BufWriter::new(f), traffic, &addressing).map_err(|e| e.to_string())
        });
    match result {
        Ok(n) => {
            println!("{}: {n} frames", cli.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrovs-pcapgen: {}: {e}", cli.out.display());
            ExitCode::FAILURE
        }
    }
}
