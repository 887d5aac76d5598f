//! Fail-stop: errors after which the process must not go on.
//!
//! A failed `fdatasync` leaves the page cache and the media in an unknown relation (a later
//! fsync may report success for pages the kernel already dropped), so a log whose sync failed can
//! never again say what is durable. Retrying is wrong, and so is answering clients from that log
//! forever: a replica that cannot write must leave its quorum or ISR by dying. [`fatal`] logs the
//! reason (path and errno) and exits the process with [`EXIT_CODE`].
//!
//! Tests that inject a failing disk run their body under [`capture`]: on that thread `fatal`
//! records the reason and returns, and the caller goes on failing the log as it would have
//! before the exit (no further writes accepted, every waiter woken with the error).

use std::cell::RefCell;

/// The process exit status after a fatal error (`EX_SOFTWARE`-like, distinct from a usage error).
pub const EXIT_CODE: i32 = 70;

thread_local! {
    static CAPTURED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Stops the process: logs `reason` and exits with [`EXIT_CODE`]. Under [`capture`] it records
/// the reason and returns instead.
pub fn fatal(reason: &str) {
    let captured = CAPTURED.with(|c| match c.borrow_mut().as_mut() {
        Some(list) => {
            list.push(reason.to_string());
            true
        }
        None => false,
    });
    if captured {
        tracing::error!(%reason, "fatal (captured by a test)");
        return;
    }
    tracing::error!(%reason, "fatal: stopping the process");
    say(format_args!(
        "kiln: fatal: {reason}; stopping (exit status {EXIT_CODE})"
    ));
    std::process::exit(EXIT_CODE);
}

/// Runs `f` with fatal errors on this thread recorded instead of exiting; returns its result and
/// the reasons recorded, in order.
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    let previous = CAPTURED.with(|c| c.borrow_mut().replace(Vec::new()));
    let out = f();
    let reasons = CAPTURED.with(|c| std::mem::replace(&mut *c.borrow_mut(), previous));
    (
        out,
        reasons.expect("capture installed a list on this thread"),
    )
}

/// Writes one line to stderr. Unlike `eprintln!`, a failed write (stderr redirected to a file on
/// a full disk, or closed) is ignored instead of aborting the process.
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_records_reasons_in_order_and_nests() {
        let ((), outer) = capture(|| {
            fatal("first");
            let ((), inner) = capture(|| fatal("inner"));
            assert_eq!(inner, vec!["inner".to_string()]);
            fatal("second");
        });
        assert_eq!(outer, vec!["first".to_string(), "second".to_string()]);
    }
}
