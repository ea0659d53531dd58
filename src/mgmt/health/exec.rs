//! Exec checks, keepalived's MISC_CHECK: a command run without a shell, as the
//! configured user (root only when the configuration says `run_as_root: true`),
//! in a process group of its own that is killed when the timeout passes. Exit
//! status 0 passes; any other, a signal or the timeout fails.
//!
//! The command gets a clean environment: `PATH`, and `FERROVS_SERVICE`,
//! `FERROVS_RS_ADDRESS`, `FERROVS_RS_PORT` naming what it checks. A command that
//! cannot be started (missing, not executable, unknown user) says nothing about
//! the server: that counts neither way, and is logged.

use super::CheckError;
use ferrovs_core::config::HealthCheckConfig;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{Pid, User};
use std::net::SocketAddr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One exec check of `target`, a real server of `service`.
pub(super) fn check(
    service: &str,
    target: SocketAddr,
    check: &HealthCheckConfig,
    deadline: Instant,
) -> Result<(), CheckError> {
    let Some((program, args)) = check.command.split_first() else {
        return Err(CheckError::Local("no command".into()));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", PATH)
        .env("FERROVS_SERVICE", service)
        .env("FERROVS_RS_ADDRESS", target.ip().to_string())
        .env("FERROVS_RS_PORT", target.port().to_string())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    match (&check.user, check.run_as_root) {
        (Some(name), _) => {
            let user = User::from_name(name)
                .map_err(|e| CheckError::Local(format!("user {name}: {e}")))?
                .ok_or_else(|| CheckError::Local(format!("no user named {name} on this host")))?;
            if user.uid.is_root() && !check.run_as_root {
                return Err(CheckError::Local(format!(
                    "user {name} is root (uid 0): the command runs as root only with run_as_root: true"
                )));
            }
            // Rust drops the supplementary groups when root changes the uid.
            cmd.uid(user.uid.as_raw())
                .gid(user.gid.as_raw())
                .env("USER", name)
                .env("LOGNAME", name)
                .env("HOME", &user.dir);
        }
        (None, true) => {}
        (None, false) => {
            return Err(CheckError::Local(
                "no user to run the command as, and no run_as_root".into(),
            ))
        }
    }
    crate::dpdk::close_descriptors_on_exec();
    let mut child = cmd
        .spawn()
        .map_err(|e| CheckError::Local(format!("cannot run {program}: {e}")))?;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return outcome(status),
            Ok(None) if Instant::now() >= deadline => {
                // The whole group: whatever the command started goes with it.
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                return Err(CheckError::Server(format!(
                    "{program} still running after {:?}: killed",
                    check.timeout
                )));
            }
            Ok(None) => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                return Err(CheckError::Local(format!("waiting for {program}: {e}")));
            }
        }
    }
}

fn outcome(status: ExitStatus) -> Result<(), CheckError> {
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(CheckError::Server(format!("exit status {code}"))),
        (None, Some(signal)) => Err(CheckError::Server(format!("killed by signal {signal}"))),
        (None, None) => Err(CheckError::Server(format!("ended with {status}"))),
    }
}
