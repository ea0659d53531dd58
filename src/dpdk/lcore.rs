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
    pub fn lcore(&self) -> u32 {
        self.lcore
    }

    /// Waits for the job to return and gives its result.
    pub fn join(self) -> i32 {
        // SAFETY: lcore was launched by us; waiting is always allowed from main.
        unsafe { dpdk_sys::rte_eal_wait_lcore(self.lcore) }
    }
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
    hz: u64,
    start: u64,
}

impl Tsc {
    pub fn new() -> Tsc {
        Tsc {
            hz: tsc_hz().max(1),
            start: Self::cycles(),
        }
    }

    /// Current TSC value.
    #[inline]
    pub fn cycles() -> u64 {
        // SAFETY: reads the time-stamp counter; no memory access.
        unsafe { dpdk_sys::rte_rdtsc() }
    }

    pub fn hz(&self) -> u64 {
        self.hz
    }

    /// Milliseconds since this clock was created, from a cycles reading.
    #[inline]
    pub fn millis(&self, cycles: u64) -> u64 {
        let elapsed = cycles.wrapping_sub(self.start) as u128;
        (elapsed * 1000 / u128::from(self.hz)) as u64
    }
}

impl Default for Tsc {
    fn default() -> Self {
        Self::new()
    }
}
