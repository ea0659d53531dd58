//! The benchmark runner behind `perf/run.sh`.
//!
//! For each workload it generates the pcap file, runs `dpdk-testpmd` in `io` and
//! `5tswap` mode, then ferrovs in every forwarding mode that exists, one process at a
//! time over the same virtual devices and the same worker core, and prints one table.
//! Then it measures memory per live connection in a process of its own.
//!
//! testpmd's rate is the mean of its own periodic `Tx-pps` on the egress port over
//! the measured seconds; ferrovs's is the difference of its TX counter between two
//! scrapes of `/metrics` divided by the time between them. Both skip the same
//! warm-up; ferrovs's warm-up also waits until the file has been replayed twice, so
//! every flow exists before the interval starts.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use ferrovs_perf::host;
use ferrovs_perf::prom::{http_body, Metrics};
use ferrovs_perf::report::{combine_rounds, issue_target, Cell, Report, Row, MEMORY_TARGET};
use ferrovs_perf::scenario::{
    self, testpmd_args, Bed, BenchMode, Engine, FerrovsEndpoints, Memory, Workload, MODES_BUILT,
    WORKLOADS,
};
use ferrovs_perf::testpmd::StatsParser;
use ferrovs_perf::traffic::{write_pcap, Addressing};
use ferrovs_perf::verdict::{self, judge, Evidence, Expect, Scrape, Shutdown};

#[derive(Parser)]
#[command(about = "Run the ferrovs benchmark bed and print the results table")]
struct Cli {
    /// The ferrovs binary (default: `ferrovs` next to this program).
    #[arg(long)]
    ferrovs: Option<PathBuf>,
    /// The testpmd binary.
    #[arg(long, default_value = "dpdk-testpmd")]
    testpmd: PathBuf,
    /// Where pcap files, configurations, logs and the table go.
    #[arg(long, default_value = "perf/out")]
    work_dir: PathBuf,
    /// Workloads to run (default: all): udp-1k, udp-64k, udp-1m, tcp-syn.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Measure ferrovs in these modes even if `MODES_BUILT` does not list them
    /// (nat, fullnat, dr, tunnel).
    #[arg(long = "try-mode", value_delimiter = ',')]
    try_modes: Vec<String>,
    /// Seconds of traffic before the measured interval.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u32,
    /// Length of the measured interval in seconds.
    #[arg(long, default_value_t = 3)]
    measure_secs: u32,
    /// Times every contestant of a workload is measured, in turn (testpmd io,
    /// 5tswap, then ferrovs in each mode, again and again). The table gives
    /// medians; a ratio is the median of the rounds' ratios.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// DPDK memory: hugepages if enough are free (auto), or forced.
    #[arg(long, value_enum, default_value_t = MemoryChoice::Auto)]
    memory: MemoryChoice,
    /// The main lcore and the one worker lcore, for both contestants.
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    lcores: Vec<u32>,
    /// Where ferrovs serves `/metrics` during a run.
    #[arg(long, default_value = "127.0.0.1:9911")]
    metrics_listen: SocketAddr,
    /// Skip testpmd (its columns stay empty).
    #[arg(long)]
    no_testpmd: bool,
    /// Connections in the memory measurement (at least 1).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    memory_connections: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MemoryChoice {
    Auto,
    Huge,
    Nohuge,
}

/// How long a process may take to start serving (loading a 1M-packet file into
/// mbufs with 4 KB pages takes a while).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long ferrovs's warm-up may take beyond `--warmup-secs` before giving up.
const WARMUP_EXTRA: Duration = Duration::from_secs(60);
/// How long a process gets to stop after SIGINT/SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// Measurements of one row spoiled by another data plane before giving up.
const ATTEMPTS: u32 = 3;
/// How long to wait for another data plane to finish before giving up a run.
const IDLE_WAIT: Duration = Duration::from_secs(600);
/// testpmd's port for `net_null0`, where forwarded packets leave.
const EGRESS_PORT: u16 = 1;
/// Burst size and ports of the set-up: a worker holds at most one burst per port
/// between RX and TX.
const IN_FLIGHT_BOUND: u64 = 32 * 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrovs-perfrun: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What every run of one invocation shares.
struct Ctx<'a> {
    cli: &'a Cli,
    /// Set by SIGINT/SIGTERM: every wait checks it, so the children are stopped
    /// (their guards dropped) instead of left polling.
    stop: Arc<AtomicBool>,
    clock: Instant,
    work_dir: PathBuf,
    ferrovs: PathBuf,
    file_prefix: String,
    addressing: Addressing,
}

fn run(cli: &Cli) -> Result<(), String> {
    let lcores: [u32; 2] = cli
        .lcores
        .as_slice()
        .try_into()
        .map_err(|_| "--lcores takes exactly two: the main lcore and the worker".to_string())?;
    if cli.warmup_secs == 0 || cli.measure_secs == 0 || cli.rounds == 0 {
        return Err("--warmup-secs, --measure-secs and --rounds must be at least 1".into());
    }
    let workloads: Vec<Workload> = if cli.workloads.is_empty() {
        WORKLOADS.to_vec()
    } else {
        cli.workloads
            .iter()
            .map(|n| scenario::workload(n).ok_or_else(|| format!("unknown workload {n}")))
            .collect::<Result<_, _>>()?
    };
    let tried: Vec<BenchMode> = cli
        .try_modes
        .iter()
        .map(|n| BenchMode::from_name(n).ok_or_else(|| format!("unknown mode {n}")))
        .collect::<Result<_, _>>()?;

    fs::create_dir_all(&cli.work_dir).map_err(|e| format!("{}: {e}", cli.work_dir.display()))?;
    let work_dir =
        fs::canonicalize(&cli.work_dir).map_err(|e| format!("{}: {e}", cli.work_dir.display()))?;
    // The path goes into a vdev argument list, which commas would split.
    if work_dir.to_string_lossy().contains(',') {
        return Err(format!(
            "{}: the work directory must not contain a comma",
            work_dir.display()
        ));
    }
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let ferrovs = cli
        .ferrovs
        .clone()
        .unwrap_or_else(|| exe.with_file_name("ferrovs"));

    let needed_mb = workloads
        .iter()
        .map(|w| u64::from(scenario::memory_mb(w, Memory::Hugepages)))
        .max()
        .unwrap_or(0);
    let free_mb = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| host::hugepages_free_mb(&m))
        .unwrap_or(0);
    let memory = match cli.memory {
        MemoryChoice::Huge => Memory::Hugepages,
        MemoryChoice::Nohuge => Memory::NoHuge,
        MemoryChoice::Auto if free_mb >= needed_mb => Memory::Hugepages,
        MemoryChoice::Auto => {
            eprintln!(
                "note: {free_mb} MB of free hugepages, {needed_mb} MB needed: using --no-huge \
                 (`echo {} > /proc/sys/vm/nr_hugepages` for hugepages)",
                needed_mb.div_ceil(2) + 64
            );
            Memory::NoHuge
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let ctx = Ctx {
        cli,
        stop,
        clock: Instant::now(),
        work_dir,
        ferrovs,
        file_prefix: format!("ferrovs-perf-{}", std::process::id()),
        addressing: Addressing::default(),
    };
    let mut header = String::new();
    header.push_str(
        "ferrovs benchmark bed: 64-byte frames, net_pcap (infinite_rx) -> one \
         worker core -> net_null\n",
    );
    header.push_str(&format!("machine: {}\n", host::describe()));
    header.push_str(&format!(
        "DPDK {}, memory: {}, lcores: main {} worker {}, warm-up {} s, measured {} s per run\n",
        dpdk_version(),
        memory.name(),
        lcores[0],
        lcores[1],
        cli.warmup_secs,
        cli.measure_secs
    ));
    header.push_str(&format!(
        "{} round(s) per workload, contestants in turn; figures are medians, a ratio is the \
         median of the rounds' ratios (lowest-highest)\n",
        cli.rounds
    ));
    eprint!("{header}");

    let mut report = Report::new();
    for w in &workloads {
        let pcap = ctx.work_dir.join(format!("{}.pcap", w.name));
        eprintln!("{}: writing {}", w.name, pcap.display());
        let file = File::create(&pcap).map_err(|e| format!("{}: {e}", pcap.display()))?;
        write_pcap(std::io::BufWriter::new(file), w.traffic, &ctx.addressing)
            .map_err(|e| format!("{}: {e}", pcap.display()))?;
        let bed = Bed {
            workload: *w,
            pcap: &pcap,
            lcores,
            memory,
            file_prefix: &ctx.file_prefix,
        };

        // Every contestant once per round, so that each ratio compares runs made
        // minutes apart at most and a slow spell of a shared machine spoils one
        // round rather than the table.
        let modes: Vec<BenchMode> = BenchMode::ALL
            .into_iter()
            .filter(|m| MODES_BUILT.contains(m) || tried.contains(m))
            .collect();
        let mut io_rounds = Vec::new();
        let mut tswap_rounds = Vec::new();
        let mut ferrovs_rounds: Vec<Vec<Cell>> = vec![Vec::new(); modes.len()];
        for round in 1..=cli.rounds {
            if cli.rounds > 1 {
                eprintln!("{}: round {round} of {}", w.name, cli.rounds);
            }
            if !cli.no_testpmd {
                io_rounds.push(run_testpmd(&ctx, &bed, Engine::Io, &mut report));
                tswap_rounds.push(run_testpmd(&ctx, &bed, Engine::FiveTupleSwap, &mut report));
            }
            for (mode, cells) in modes.iter().zip(&mut ferrovs_rounds) {
                if ctx.stop.load(Ordering::Relaxed) {
                    return Err("interrupted".into());
                }
                cells.push(run_ferrovs(&ctx, &bed, *mode, &mut report));
            }
        }
        let io = combine_rounds(&io_rounds);
        let tswap = combine_rounds(&tswap_rounds);
        for mode in BenchMode::ALL {
            let (ferrovs, round_ratios) = match modes.iter().position(|m| *m == mode) {
                Some(i) => {
                    let cells = &ferrovs_rounds[i];
                    let ratios: Vec<f64> = cells
                        .iter()
                        .zip(&tswap_rounds)
                        .filter_map(|(f, t)| match (f, t) {
                            (Cell::Rate(f), Cell::Rate(t)) if *t > 0.0 => Some(f / t),
                            _ => None,
                        })
                        .collect();
                    (combine_rounds(cells), ratios)
                }
                None => (Cell::NotBuilt, Vec::new()),
            };
            report.rows.push(Row {
                workload: w.label.to_string(),
                mode: mode.name().to_string(),
                ferrovs,
                testpmd_io: io.clone(),
                testpmd_5tswap: tswap.clone(),
                target: issue_target(w, mode),
                round_ratios,
            });
        }
    }
    if ctx.stop.load(Ordering::Relaxed) {
        return Err("interrupted".into());
    }
    let memory_row = measure_memory(&ctx, &exe, &mut report);
    report.rows.push(memory_row);

    let table = format!("{header}\n{}", report.render());
    println!("{table}");
    let out = ctx.work_dir.join("results.txt");
    fs::write(&out, &table).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("table written to {}", out.display());
    Ok(())
}

/// The installed DPDK's version as pkg-config knows it.
fn dpdk_version() -> String {
    Command::new("pkg-config")
        .args(["--modversion", "libdpdk"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "(version unknown)".to_string())
}

/// A child process that is killed (SIGKILL, by its pid) if still running when
/// dropped, so no error path leaves a busy-polling DPDK process behind.
struct Guard {
    child: Child,
}

impl Guard {
    /// Sends `signal` and waits up to [`STOP_GRACE`]; SIGKILL after that. Returns the
    /// exit status when the process stopped by itself.
    fn stop(&mut self, signal: &str) -> Option<ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-s", signal, &pid])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if sent {
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                match self.child.try_wait() {
                    Ok(Some(status)) => return Some(status),
                    Ok(None) => thread::sleep(Duration::from_millis(50)),
                    Err(_) => break,
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// The exit status if the process has ended.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until no other DPDK data plane runs (an end-to-end test, another
/// benchmark): with two cores, anything polling beside the measured process
/// would be measured too.
fn wait_for_idle_cores(ctx: &Ctx<'_>) -> Result<(), RunFailure> {
    nap(ctx, Duration::ZERO)?;
    let deadline = Instant::now() + IDLE_WAIT;
    let mut told = false;
    loop {
        let others = host::other_data_planes(std::process::id());
        let Some((pid, cmd)) = others.first() else {
            return Ok(());
        };
        if Instant::now() > deadline {
            return Err(RunFailure::Other(format!(
                "another DPDK data plane kept running for {} s: pid {pid} ({cmd})",
                IDLE_WAIT.as_secs()
            )));
        }
        if !told {
            eprintln!("waiting for pid {pid} ({cmd}) to finish");
            told = true;
        }
        nap(ctx, Duration::from_millis(500))?;
    }
}

/// Sleeps `d` in short slices, failing as soon as the runner is interrupted.
fn nap(ctx: &Ctx<'_>, d: Duration) -> Result<(), RunFailure> {
    let end = Instant::now() + d;
    loop {
        if ctx.stop.load(Ordering::Relaxed) {
            return Err(RunFailure::Other("interrupted".into()));
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Fails when another data plane than `own` (the one being measured, if still
/// running) runs now: called when a measurement ends, so one that started meanwhile
/// (and is still running) invalidates it.
fn check_no_interference(own: Option<u32>) -> Result<(), RunFailure> {
    let others = host::other_data_planes(std::process::id());
    match others.iter().find(|(pid, _)| Some(*pid) != own) {
        None => Ok(()),
        Some((pid, cmd)) => Err(RunFailure::Interference(format!(
            "another DPDK data plane ran during the measurement: pid {pid} ({cmd})"
        ))),
    }
}

/// Why a run gave no figure.
enum RunFailure {
    /// Another data plane ran meanwhile: worth trying again.
    Interference(String),
    /// Anything else.
    Other(String),
}

impl From<String> for RunFailure {
    fn from(e: String) -> Self {
        RunFailure::Other(e)
    }
}

impl From<&str> for RunFailure {
    fn from(e: &str) -> Self {
        RunFailure::Other(e.to_string())
    }
}

/// Runs `f` again (up to [`ATTEMPTS`] times in all) while another data plane
/// spoils the measurement.
fn with_retries<T>(name: &str, mut f: impl FnMut() -> Result<T, RunFailure>) -> Result<T, String> {
    let mut attempt = 1;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(RunFailure::Interference(e)) if attempt < ATTEMPTS => {
                eprintln!("{name}: {e}; measuring again");
                attempt += 1;
            }
            Err(RunFailure::Interference(e) | RunFailure::Other(e)) => return Err(e),
        }
    }
}

/// The last `n` lines of a log file, for error notes.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

fn run_testpmd(ctx: &Ctx<'_>, bed: &Bed<'_>, engine: Engine, report: &mut Report) -> Cell {
    let name = format!("{} testpmd {}", bed.workload.name, engine.forward_mode());
    eprintln!("{name}: running");
    match with_retries(&name, || testpmd_rate(ctx, bed, engine)) {
        Ok(pps) => {
            eprintln!("{name}: {:.2} Mpps", pps / 1e6);
            Cell::Rate(pps)
        }
        Err(e) => {
            eprintln!("{name}: failed: {e}");
            Cell::Failed(report.note(format!("{name}: {e}")))
        }
    }
}

fn testpmd_rate(ctx: &Ctx<'_>, bed: &Bed<'_>, engine: Engine) -> Result<f64, RunFailure> {
    let stem = format!("testpmd-{}-{}", bed.workload.name, engine.forward_mode());
    let log_path = ctx.work_dir.join(format!("{stem}.log"));
    let err_path = ctx.work_dir.join(format!("{stem}.stderr.log"));
    let mut log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let err_log = File::create(&err_path).map_err(|e| format!("{}: {e}", err_path.display()))?;
    let args = testpmd_args(bed, engine);
    wait_for_idle_cores(ctx)?;
    let _ = writeln!(log, "# {} {}", ctx.cli.testpmd.display(), args.join(" "));
    let child = Command::new(&ctx.cli.testpmd)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err_log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", ctx.cli.testpmd.display()))?;
    let mut guard = Guard { child };
    let stdout = guard
        .child
        .stdout
        .take()
        .ok_or("testpmd has no stdout pipe")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let (warmup, measure) = (ctx.cli.warmup_secs, ctx.cli.measure_secs);
    // Show 0 comes at start-up with no rate; show k covers second k.
    let shows_needed = 1 + warmup + measure;
    let deadline = Instant::now() + STARTUP_TIMEOUT + Duration::from_secs(u64::from(shows_needed));
    let mut parser = StatsParser::new();
    let mut failure = None;
    while !parser.has_sample(EGRESS_PORT, shows_needed - 1) {
        if ctx.stop.load(Ordering::Relaxed) {
            failure = Some("interrupted".to_string());
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) => {
                let _ = writeln!(log, "{line}");
                parser.feed(&line);
            }
            Err(RecvTimeoutError::Timeout) if !left.is_zero() => {}
            Err(RecvTimeoutError::Timeout) => {
                failure = Some(format!(
                    "no statistics after {} s",
                    STARTUP_TIMEOUT.as_secs() + u64::from(shows_needed)
                ));
                break;
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Its stdout closed: it has exited or is about to.
                thread::sleep(Duration::from_millis(200));
                failure = Some(format!(
                    "testpmd exited ({}) after {} statistics shows: {}",
                    guard
                        .exited()
                        .map_or("still running".to_string(), |s| s.to_string()),
                    parser.shows(),
                    tail(&err_path, 3)
                ));
                break;
            }
        }
    }
    // testpmd prints its final statistics on SIGINT; keep them in the log.
    let status = guard.stop("INT");
    for line in rx.try_iter() {
        let _ = writeln!(log, "{line}");
    }
    let _ = reader.join();
    if let Some(f) = failure {
        return Err(RunFailure::Other(f));
    }
    check_no_interference(None)?;
    if status.is_none() {
        eprintln!("note: testpmd did not stop on SIGINT and was killed");
    }
    match parser.mean_tx_pps(EGRESS_PORT, 1 + warmup, measure) {
        Some(pps) if pps > 0.0 => Ok(pps),
        Some(_) => Err(RunFailure::Other(format!(
            "testpmd forwarded nothing (see {})",
            log_path.display()
        ))),
        None => Err(RunFailure::Other(format!(
            "incomplete statistics (see {})",
            log_path.display()
        ))),
    }
}

fn run_ferrovs(ctx: &Ctx<'_>, bed: &Bed<'_>, mode: BenchMode, report: &mut Report) -> Cell {
    let name = format!("{} ferrovs {}", bed.workload.name, mode.name());
    eprintln!("{name}: running");
    match with_retries(&name, || ferrovs_evidence(ctx, bed, mode)) {
        Err(e) => {
            eprintln!("{name}: failed: {e}");
            Cell::Failed(report.note(format!("{name}: {e}")))
        }
        Ok(evidence) => match judge(&evidence) {
            Ok(m) => {
                eprintln!(
                    "{name}: {:.2} Mpps transmitted, {:.2} Mpps received{}",
                    m.tx_pps / 1e6,
                    m.rx_pps / 1e6,
                    m.new_conns_per_sec
                        .map_or(String::new(), |c| format!(", {:.2} M new conn/s", c / 1e6))
                );
                for n in &m.notes {
                    report.note(format!("{name}: {n}"));
                }
                Cell::Rate(m.figure)
            }
            Err(refusals) => {
                let why: Vec<String> = refusals.iter().map(ToString::to_string).collect();
                eprintln!("{name}: refused: {}", why.join("; "));
                Cell::Refused(report.note(format!("{name}: refused: {}", why.join("; "))))
            }
        },
    }
}

fn ferrovs_evidence(ctx: &Ctx<'_>, bed: &Bed<'_>, mode: BenchMode) -> Result<Evidence, RunFailure> {
    let stem = format!("ferrovs-{}-{}", bed.workload.name, mode.name());
    let config_path = ctx.work_dir.join(format!("{stem}.yaml"));
    let log_path = ctx.work_dir.join(format!("{stem}.log"));
    let socket = ctx.work_dir.join(format!("{stem}.sock"));
    let listen = ctx.cli.metrics_listen.to_string();
    let config = scenario::ferrovs_config(
        bed,
        mode,
        &FerrovsEndpoints {
            metrics_listen: &listen,
            control_socket: &socket,
        },
        &ctx.addressing,
    );
    fs::write(&config_path, config).map_err(|e| format!("{}: {e}", config_path.display()))?;

    let check = Command::new(&ctx.ferrovs)
        .arg("check-config")
        .arg(&config_path)
        .output()
        .map_err(|e| format!("cannot start {}: {e}", ctx.ferrovs.display()))?;
    if !check.status.success() {
        let errors = String::from_utf8_lossy(&check.stderr);
        return Err(RunFailure::Other(format!(
            "configuration rejected: {}",
            errors.lines().collect::<Vec<_>>().join(" / ")
        )));
    }

    wait_for_idle_cores(ctx)?;
    let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let child = Command::new(&ctx.ferrovs)
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", ctx.ferrovs.display()))?;
    let mut guard = Guard { child };
    let died = |guard: &mut Guard| -> Option<String> {
        guard
            .exited()
            .map(|status| format!("ferrovs exited ({status}): {}", tail(&log_path, 3)))
    };

    // Serving metrics means the ports are up and the worker runs.
    let started = Instant::now();
    let first = loop {
        if let Some(e) = died(&mut guard) {
            return Err(e.into());
        }
        if let Ok(s) = scrape(ctx) {
            break s;
        }
        if started.elapsed() > STARTUP_TIMEOUT {
            return Err(RunFailure::Other(format!(
                "no metrics on {listen} after {} s",
                STARTUP_TIMEOUT.as_secs()
            )));
        }
        nap(ctx, Duration::from_millis(200))?;
    };

    // Warm-up: the first pass creates the flows; wait for two.
    let packets = f64::from(bed.workload.traffic.packets());
    let warmup = f64::from(ctx.cli.warmup_secs);
    let give_up =
        started.elapsed() + Duration::from_secs(u64::from(ctx.cli.warmup_secs)) + WARMUP_EXTRA;
    loop {
        nap(ctx, Duration::from_millis(250))?;
        if let Some(e) = died(&mut guard) {
            return Err(e.into());
        }
        let s = scrape(ctx)?;
        let rx = s.metrics.sum(verdict::metric::WORKER_RX).unwrap_or(0.0);
        if rx >= 2.0 * packets && s.at - first.at >= warmup {
            break;
        }
        if started.elapsed() > give_up {
            return Err(RunFailure::Other(format!(
                "warm-up: {rx} packets received, {} needed (two passes over the file)",
                2.0 * packets
            )));
        }
    }
    let start = scrape(ctx)?;
    nap(ctx, Duration::from_secs(u64::from(ctx.cli.measure_secs)))?;
    let end = scrape(ctx)?;
    check_no_interference(Some(guard.child.id()))?;
    let stopped = guard.stop("TERM");
    let log_text = fs::read_to_string(&log_path).unwrap_or_default();
    let mut shutdown = Shutdown::from_log(&log_text);
    shutdown.clean &= stopped.is_some_and(|s| s.success());
    Ok(Evidence {
        first,
        start,
        end,
        in_flight_bound: IN_FLIGHT_BOUND,
        expect: if bed.workload.new_connections() {
            Expect::NewConnections
        } else {
            Expect::Established {
                flows: bed.workload.traffic.packets(),
            }
        },
        shutdown,
    })
}

/// One `GET /metrics`, timed at the midpoint of the exchange.
fn scrape(ctx: &Ctx<'_>) -> Result<Scrape, String> {
    let addr = ctx.cli.metrics_listen;
    let t0 = ctx.clock.elapsed();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("metrics on {addr}: {e}"))?;
    let timeout = Some(Duration::from_secs(5));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| format!("metrics on {addr}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("metrics on {addr}: {e}"))?;
    let t1 = ctx.clock.elapsed();
    let body = http_body(&response).map_err(|e| format!("metrics on {addr}: {e}"))?;
    let metrics = Metrics::parse(body).map_err(|e| format!("metrics on {addr}: {e}"))?;
    Ok(Scrape {
        at: (t0 + t1).as_secs_f64() / 2.0,
        metrics,
    })
}

/// 1000000 -> "1M", 65536 -> "65536", 20000 -> "20K" (n >= 1: the CLI refuses 0).
fn count_label(n: u64) -> String {
    match n {
        n if n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{}K", n / 1_000),
        n => n.to_string(),
    }
}

/// Runs `ferrovs-connmem` (a process of its own, so nothing else is in its
/// resident set) and makes the memory row.
fn measure_memory(ctx: &Ctx<'_>, exe: &Path, report: &mut Report) -> Row {
    let n = ctx.cli.memory_connections;
    let connmem = exe.with_file_name("ferrovs-connmem");
    eprintln!("memory: {n} connections");
    let cell = match Command::new(&connmem)
        .args(["--connections", &n.to_string(), "--mode", "nat"])
        .output()
    {
        Err(e) => {
            Cell::Failed(report.note(format!("memory: cannot start {}: {e}", connmem.display())))
        }
        Ok(out) if !out.status.success() => Cell::Failed(report.note(format!(
            "memory: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix("bytes_per_connection="))
                .and_then(|v| v.trim().parse::<f64>().ok());
            match value {
                Some(v) => {
                    for line in text
                        .lines()
                        .filter(|l| !l.starts_with("bytes_per_connection="))
                    {
                        report.note(format!("memory: {line}"));
                    }
                    Cell::Bytes(v)
                }
                None => Cell::Failed(report.note(format!("memory: unreadable output: {text}"))),
            }
        }
    };
    Row {
        workload: format!("memory per live connection ({} conns)", count_label(n)),
        mode: "nat".to_string(),
        ferrovs: cell,
        testpmd_io: Cell::Empty,
        testpmd_5tswap: Cell::Empty,
        target: Some(MEMORY_TARGET),
        round_ratios: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_measurement_of_no_connections_is_refused() {
        assert!(Cli::try_parse_from(["ferrovs-perfrun", "--memory-connections", "0"]).is_err());
        let cli = Cli::try_parse_from(["ferrovs-perfrun", "--memory-connections", "1"]).unwrap();
        assert_eq!(cli.memory_connections, 1);
        assert_eq!(count_label(1_000_000), "1M");
    }
}
