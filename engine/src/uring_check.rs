//! Start-up check that io_uring is usable, with an operator-facing explanation when it is not.
//!
//! Kiln needs io_uring (its runtime has no fallback). Common reasons it is missing:
//! - `kernel.io_uring_disabled` is 1 (only members of `kernel.io_uring_group` may use it) or 2
//!   (disabled for everyone);
//! - a seccomp profile blocks `io_uring_setup` (Docker's default profile does since 25.0,
//!   returning EPERM; gVisor returns ENOSYS);
//! - the kernel is older than 5.1 or built without `CONFIG_IO_URING` (ENOSYS).

use std::io;

use thiserror::Error;

/// Why io_uring cannot be used.
#[derive(Debug, Error)]
pub enum UringUnavailable {
    #[error(
        "io_uring is disabled by sysctl kernel.io_uring_disabled={value}; \
         run `sysctl -w kernel.io_uring_disabled=0` (or add this user to kernel.io_uring_group when the value is 1)"
    )]
    DisabledBySysctl { value: u32 },
    #[error(
        "io_uring_setup was denied ({source}); a seccomp profile probably blocks it. In Docker, run with \
         a profile that allows io_uring_setup, io_uring_enter and io_uring_register \
         (e.g. --security-opt seccomp=unconfined); in Kubernetes set securityContext.seccompProfile accordingly; \
         also check `sysctl kernel.io_uring_disabled` is 0"
    )]
    Denied { source: io::Error },
    #[error(
        "io_uring_setup is not implemented here ({source}); Kiln needs Linux 5.11+ with CONFIG_IO_URING \
         and no sandbox (seccomp, gVisor) filtering io_uring system calls"
    )]
    KernelWithoutUring { source: io::Error },
    #[error("io_uring_setup failed: {source}")]
    Other { source: io::Error },
}

/// Reads `/proc/sys/kernel/io_uring_disabled` (absent on kernels before 6.6: treated as 0).
fn sysctl_value() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Pure classification of the probe result, separated for testing.
fn classify(sysctl: u32, setup: Result<(), io::Error>) -> Result<(), UringUnavailable> {
    match setup {
        Ok(()) => Ok(()),
        Err(e) if sysctl == 2 || (sysctl == 1 && e.raw_os_error() == Some(libc::EPERM)) => {
            Err(UringUnavailable::DisabledBySysctl { value: sysctl })
        }
        Err(e)
            if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::EACCES) =>
        {
            Err(UringUnavailable::Denied { source: e })
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            Err(UringUnavailable::KernelWithoutUring { source: e })
        }
        Err(e) => Err(UringUnavailable::Other { source: e }),
    }
}

/// Probes io_uring by creating (and closing) a one-entry ring.
pub fn check() -> Result<(), UringUnavailable> {
    // struct io_uring_params is 120 bytes; zeroed means "no flags".
    let mut params = [0u64; 15];
    // SAFETY: io_uring_setup(entries, params) writes into the 120-byte params block we own.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    let setup = if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: closing the ring fd we just created.
        unsafe { libc::close(fd as i32) };
        Ok(())
    };
    classify(sysctl_value(), setup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_uring_is_available_on_the_test_machine() {
        check().unwrap();
    }

    #[test]
    fn messages_say_what_to_change() {
        let e = classify(2, Err(io::Error::from_raw_os_error(libc::EPERM))).unwrap_err();
        assert!(
            e.to_string()
                .contains("sysctl -w kernel.io_uring_disabled=0")
        );
        let e = classify(0, Err(io::Error::from_raw_os_error(libc::EPERM))).unwrap_err();
        assert!(e.to_string().contains("seccomp"));
        let e = classify(0, Err(io::Error::from_raw_os_error(libc::ENOSYS))).unwrap_err();
        assert!(e.to_string().contains("CONFIG_IO_URING"));
        assert!(classify(0, Ok(())).is_ok());
    }
}
