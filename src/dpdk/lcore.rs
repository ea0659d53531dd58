//! Launching work on EAL lcores, and the TSC clock.

use super::DpdkError;
use std::ffi::{c_int, c_void};

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

/// A job running on a worker lcore; `join` waits for it and returns its result.
pub struct LcoreJoin {
    lcore: u32,
}

unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: arg is the Box<Job> leaked by launch_on_lcore, consumed exactly once.
    let job: Box<Job> = unsafe { Box::from_raw(arg.cast::<Job>()) };
    // A panic must not unwind into C; report it as a failed job.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).unwrap_or(-1)
}

/// Runs `job` on worker lcore `lcore` (which must be idle and not the main lcore).
pub fn launch_on_lcore<F>(lcore: u32, job: F) -> Result<LcoreJoin, DpdkError>
where
    F: FnOnce() -> i32 + Send + 'static,
{
    let boxed: Box<Job> = Box::new(Box::new(job));
    let arg = Box::into_raw(boxed).cast::<c_void>();
    // SAFETY: trampoline has the lcore_function_t signature and takes ownership of
    // arg; EAL is initialised (the caller holds an Eal).
    let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
    if ret != 0 {
        // SAFETY: the launch failed, so the job was never started: reclaim it.
        drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
        return Err(DpdkError::new(
            "rte_eal_remote_launch",
            format!("lcore {lcore}"),
            ret,
        ));
    }
    Ok(LcoreJoin { lcore })
}

impl LcoreJoin {
    /// The lcore the job was launched on.
    pub fn lcore(&self) -> u32 {
        self.lcore
    }

    /// Waits for the job to return and gives its result.
    pub fn join(self) -> i32 {
        // SAFETY: lcore was launched by us; waiting is always allowed from main.
        unsafe { dpdk_sys::rte_eal_wait_lcore(self.lcore) }
    }
}

/// The NUMA socket of `lcore`'s CPU, as the EAL found it (0 on a machine of one
/// node, or for an lcore the EAL does not run).
pub fn lcore_socket(lcore: u32) -> u32 {
    // SAFETY: reads the EAL's lcore table; any id is accepted (an unknown one
    // answers 0), and the EAL is initialised (the caller holds an Eal).
    unsafe { dpdk_sys::rte_lcore_to_socket_id(lcore) }
}

/// Waits for every worker lcore to finish.
pub fn wait_all_lcores() {
    // SAFETY: called from the main lcore after EAL init.
    unsafe { dpdk_sys::rte_eal_mp_wait_lcore() }
}

/// The calling thread's lcore id (u32::MAX on a non-EAL thread).
pub fn current_lcore() -> u32 {
    // SAFETY: reads a thread-local.
    unsafe { dpdk_sys::rte_lcore_id() }
}

/// TSC frequency in Hz, as the EAL calibrated it.
pub fn tsc_hz() -> u64 {
    // SAFETY: plain read of a value set at EAL init.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}

/// A monotonic clock read once per burst: TSC cycles, converted to milliseconds
/// for the connection timers.
#[derive(Clone, Copy)]
pub struct Tsc {
    start: u64,
    ms: CyclesToMs,
}

impl Tsc {
    /// A clock whose zero is now, converting at the EAL's TSC frequency.
    pub fn new() -> Tsc {
        Tsc {
            start: Self::cycles(),
            ms: CyclesToMs::new(tsc_hz()),
        }
    }

    /// Current TSC value.
    #[inline]
    pub fn cycles() -> u64 {
        // SAFETY: reads the time-stamp counter; no memory access.
        unsafe { dpdk_sys::rte_rdtsc() }
    }

    /// TSC frequency in Hz that cycles are converted at.
    pub fn hz(&self) -> u64 {
        self.ms.hz
    }

    /// Milliseconds since this clock was created, from a cycles reading.
    #[inline]
    pub fn millis(&mut self, cycles: u64) -> u64 {
        self.ms.convert(cycles.wrapping_sub(self.start))
    }
}

/// Elapsed cycles to whole milliseconds, `cycles * 1000 / hz` exactly, with the
/// division done once a millisecond instead of on every call: a worker asks every
/// loop (a few hundred cycles apart), and a 128-bit division costs a good share of
/// that. Remembers the cycle range of the last answer.
#[derive(Clone, Copy, Debug)]
pub struct CyclesToMs {
    hz: u64,
    ms: u64,
    /// The last answer holds for cycles in `from..until`.
    from: u64,
    until: u64,
}

impl CyclesToMs {
    pub fn new(hz: u64) -> CyclesToMs {
        CyclesToMs {
            hz: hz.max(1),
            ms: 0,
            from: 0,
            until: 0,
        }
    }

    #[inline]
    pub fn convert(&mut self, cycles: u64) -> u64 {
        if cycles < self.from || cycles >= self.until {
            self.recompute(cycles);
        }
        self.ms
    }

    #[cold]
    fn recompute(&mut self, cycles: u64) {
        let hz = u128::from(self.hz);
        let ms = u128::from(cycles) * 1000 / hz;
        // Millisecond m starts at the first cycle c with c * 1000 >= m * hz.
        let start_of = |m: u128| (m * hz).div_ceil(1000).min(u128::from(u64::MAX)) as u64;
        self.ms = ms as u64;
        self.from = start_of(ms);
        self.until = start_of(ms + 1);
        if self.until <= cycles {
            // Only at the very end of the u64 range: no caching there.
            self.until = cycles.saturating_add(1);
        }
    }
}

impl Default for Tsc {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::CyclesToMs;

    fn exact(cycles: u64, hz: u64) -> u64 {
        (u128::from(cycles) * 1000 / u128::from(hz)) as u64
    }

    #[test]
    fn cached_milliseconds_equal_the_division_at_every_step() {
        for hz in [1, 999, 1000, 1001, 2_000_000_007, 3_600_000_000, u64::MAX] {
            let mut clock = CyclesToMs::new(hz);
            let mut cycles = 0u64;
            // Steps below, at and above one millisecond's worth of cycles.
            let ms_cycles = (hz / 1000).max(1);
            let mut step = 1u64;
            for i in 0..20_000u64 {
                assert_eq!(
                    clock.convert(cycles),
                    exact(cycles, hz),
                    "hz {hz} cycles {cycles}"
                );
                step = step
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let delta = match i % 4 {
                    0 => 1,
                    1 => ms_cycles.saturating_sub(1),
                    2 => ms_cycles,
                    _ => (step >> 40) % ms_cycles.saturating_mul(3).max(1),
                };
                cycles = cycles.saturating_add(delta);
            }
        }
    }

    #[test]
    fn a_clock_going_back_or_to_the_end_of_the_range_is_recomputed() {
        let hz = 3_000_000_000;
        let mut clock = CyclesToMs::new(hz);
        for cycles in [
            10_000_000_000,
            5,
            3_000_000 - 1,
            3_000_000,
            u64::MAX - 1,
            u64::MAX,
            0,
        ] {
            assert_eq!(clock.convert(cycles), exact(cycles, hz), "cycles {cycles}");
        }
        let mut zero = CyclesToMs::new(0);
        assert_eq!(zero.convert(7), 7000, "a zero frequency counts as 1 Hz");
    }
}
