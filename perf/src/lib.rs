//! The ferrovs benchmark bed (method: perf/README.md).
//!
//! - [`pcap`]: the pcap file format, written and read without a pcap library.
//! - [`traffic`]: the generated 5-tuples and 64-byte frames.
//! - [`scenario`]: workloads, modes, and the testpmd and ferrovs set-ups.
//! - [`testpmd`]: reads testpmd's periodic port statistics.
//! - [`prom`]: reads ferrovs's `/metrics`.
//! - [`verdict`]: decides whether a ferrovs run may be reported.
//! - [`report`]: the results table.
//! - [`memory`]: measured memory per live connection.
//! - [`host`]: what machine the table was measured on.
//!
//! The binaries: `ferrovs-pcapgen` (traffic files), `ferrovs-connmem` (memory per
//! connection), `ferrovs-perfrun` (the runner behind `perf/run.sh`). The criterion
//! micro-benchmarks are in `benches/hot_path.rs`.

pub mod host;
pub mod memory;
pub mod pcap;
pub mod prom;
pub mod report;
pub mod scenario;
pub mod testpmd;
pub mod traffic;
pub mod verdict;
