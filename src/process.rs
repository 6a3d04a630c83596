//! Stopping a child `flotilla` process the way an operator would.

use std::process::Child;
use std::time::{Duration, Instant};

/// SIGTERM, then SIGKILL if it has not exited within `grace`; reaps it either way. A
/// server stopped so stops its local agents too.
pub fn terminate(child: &mut Child, grace: Duration) {
    // SAFETY: kill only sends a signal, to a child of this process.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
