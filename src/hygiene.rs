//! What a long-running process does about its own credentials: a token read from the
//! environment is wiped from it, and the process is marked non-dumpable.

use std::ffi::{c_char, CStr};

extern "C" {
    static mut environ: *mut *mut c_char;
}

/// Reads `name` from the environment and wipes it, including the bytes that
/// `/proc/<pid>/environ` shows (the block set up at exec, which removing a variable
/// leaves in place): a task that reads its parent's environment finds the name with no
/// value. Must be called before the process starts a thread.
pub fn take_env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    let prefix = format!("{name}=");
    // SAFETY: no other thread exists yet (the caller's promise), so nothing reads or
    // changes the environment meanwhile. `environ` is a null-terminated array of
    // NUL-terminated strings; each value is overwritten within its own length.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            let bytes = CStr::from_ptr(*entry).to_bytes();
            if bytes.starts_with(prefix.as_bytes()) {
                let len = bytes.len() - prefix.len();
                std::ptr::write_bytes((*entry).add(prefix.len()), 0, len);
            }
            entry = entry.add(1);
        }
    }
    std::env::remove_var(name);
    value
}

/// Marks this process non-dumpable: other processes of the same user, its tasks
/// included, can then neither read its memory nor its `/proc/<pid>/environ`, nor attach
/// a debugger. A task is dumpable again once it execs.
pub fn non_dumpable() {
    // SAFETY: prctl with PR_SET_DUMPABLE only changes a flag of this process.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not mark the process non-dumpable");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_taken_variable_is_gone_from_the_environment_and_its_value_returned() {
        // Runs in a child process of its own: the test harness has threads.
        if std::env::var_os("FLOTILLA_HYGIENE_CHILD").is_none() {
            let exe = std::env::current_exe().unwrap();
            let out = std::process::Command::new(exe)
                .args([
                    "--exact",
                    "hygiene::tests::a_taken_variable_is_gone_from_the_environment_and_its_value_returned",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env("FLOTILLA_HYGIENE_CHILD", "1")
                .env("FLOTILLA_TEST_SECRET", "s3cr3t-value-123")
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{said}");
            assert!(said.contains("environ clean"), "{said}");
            return;
        }
        let value = super::take_env("FLOTILLA_TEST_SECRET");
        assert_eq!(value.as_deref(), Some("s3cr3t-value-123"));
        assert!(std::env::var_os("FLOTILLA_TEST_SECRET").is_none());
        let raw = std::fs::read("/proc/self/environ").unwrap();
        let raw = String::from_utf8_lossy(&raw);
        assert!(!raw.contains("s3cr3t-value-123"), "{raw}");
        println!("environ clean");
    }
}
