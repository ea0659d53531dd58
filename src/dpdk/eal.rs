//! EAL initialisation and cleanup.

use super::DpdkError;
use std::ffi::{c_char, c_int, CString};
use std::sync::atomic::{AtomicBool, Ordering};

/// EAL can be initialised once per process, even after cleanup.
static EAL_INITIALISED: AtomicBool = AtomicBool::new(false);

/// The initialised EAL. Dropping it runs `rte_eal_cleanup`; every port, queue and
/// mempool must be gone by then.
pub struct Eal {
    /// EAL's runtime directory (`/var/run/dpdk/<file-prefix>`), removed at cleanup:
    /// ferrovs runs no secondary processes that could still need it.
    runtime_dir: Option<std::path::PathBuf>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Eal {
    /// Runs `rte_eal_init` with `args` (args[0] is the program name).
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if EAL_INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::new(
                "rte_eal_init",
                "EAL was already initialised in this process",
                libc_ealready(),
            ));
        }
        let cstrings: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|_| DpdkError::new("rte_eal_init", "argument contains NUL", 22))?;
        // rte_eal_init may permute argv; give it pointers it owns for the call and
        // keep the strings alive for the life of the process (EAL keeps pointers).
        let mut argv: Vec<*mut c_char> =
            cstrings.iter().map(|c| c.as_ptr() as *mut c_char).collect();
        std::mem::forget(cstrings);
        let argc = argv.len() as c_int;
        // SAFETY: argv holds argc valid NUL-terminated strings that outlive the call
        // (leaked above); EAL init runs once per process (guarded above).
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        std::mem::forget(argv);
        if ret < 0 {
            return Err(DpdkError::from_errno("rte_eal_init", args.join(" ")));
        }
        // SAFETY: EAL is initialised; the returned string is static in EAL.
        let dir = unsafe { std::ffi::CStr::from_ptr(dpdk_sys::rte_eal_get_runtime_dir()) };
        let dir = dir.to_string_lossy().into_owned();
        Ok(Eal {
            runtime_dir: (!dir.is_empty()).then(|| dir.into()),
            _not_send: std::marker::PhantomData,
        })
    }

    /// The main lcore (the one `rte_eal_init` ran on).
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: EAL is initialised.
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    /// Number of ethdev ports probed.
    pub fn port_count(&self) -> u16 {
        // SAFETY: EAL is initialised.
        unsafe { dpdk_sys::rte_eth_dev_count_avail() }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: all DPDK objects are released before the Eal (ownership order in
        // the runtime); cleanup releases hugepage memory and EAL files.
        unsafe {
            dpdk_sys::rte_eal_cleanup();
        }
        if let Some(dir) = &self.runtime_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn libc_ealready() -> i32 {
    114 // EALREADY on Linux
}
