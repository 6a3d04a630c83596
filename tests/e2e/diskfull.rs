//! A full disk under the state dir (a small tmpfs): the server retries its writes,
//! reports itself degraded, refuses new tasks with 503, records nothing as finished
//! whose output is not on disk, and resumes on its own once space returns, with no
//! acknowledged byte lost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{wait_for, App};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CAP_SYS_ADMIN); this test fills a real disk"
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `path` until the disk is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0x55u8; 64 << 10];
    loop {
        if f.write_all(&block).and_then(|_| f.sync_data()).is_err() {
            return;
        }
    }
}

fn readyz(app: &App) -> Value {
    match ureq::get(&format!("{}/readyz", app.base)).call() {
        Ok(r) => r.into_json().unwrap(),
        Err(ureq::Error::Status(_, r)) => r.into_json().unwrap(),
        Err(e) => panic!("GET /readyz: {e}"),
    }
}

/// Whether a process whose command line holds `marker` runs on this machine.
fn running(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(marker))
            .unwrap_or(false)
    })
}

/// The state dir whole on a small disk: the store and the frame log both fail.
#[test]
fn a_full_disk_holds_work_back_and_loses_nothing_once_space_returns() {
    full_disk("state");
}

/// Only the frame log on a small disk: the store still takes writes, yet an attempt
/// whose output is not on disk is not recorded as ended.
#[test]
fn a_full_log_disk_alone_holds_the_end_of_an_attempt_back() {
    full_disk("state/frames");
}

fn full_disk(under: &str) {
    let dir = tempfile::tempdir().unwrap();
    let _tmpfs = Tmpfs::mount(&dir.path().join(under), "24m");
    let filler = dir.path().join(under).join("filler");
    let app = App::start_in(dir, 1);
    // Fewer chunks than the agent's window: the agent sends them all and reports the
    // end at once, acknowledged or not.
    let marker = format!("disk-full-{}", std::process::id());
    let script = format!(
        "for i in $(seq 1 100); do echo \"{marker} line $i $(printf '%0100d' 0)\"; sleep 0.02; done"
    );
    let task = app.submit(json!({"argv": ["sh", "-c", script]}));
    let id = task["id"].as_str().unwrap().to_owned();
    let handle = task["handle"].as_str().unwrap().to_owned();
    app.wait_state(&id, "running", Duration::from_secs(20));

    fill(&filler);
    let ready = wait_for(
        "readyz reports the full disk",
        Duration::from_secs(30),
        || {
            let r = readyz(&app);
            (r["status"] == "degraded" && r["reasons"].to_string().contains("cannot write"))
                .then_some(r)
        },
    );
    assert!(
        ready["reasons"].to_string().contains("No space left"),
        "{ready}"
    );
    // New work is refused with the reason, not lost.
    let refused = ureq::post(&format!("{}/v1/tasks", app.base))
        .set("Authorization", &format!("Bearer {}", app.client.token()))
        .send_json(json!({"argv": ["true"]}));
    let Err(ureq::Error::Status(503, resp)) = refused else {
        panic!("a task was accepted while the disk is full: {refused:?}");
    };
    assert_eq!(resp.header("Retry-After"), Some("5"));
    let problem: Value = resp.into_json().unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("does not take writes"),
        "{problem}"
    );
    // The task's process ends, but its output is not on disk: it is not recorded as
    // finished.
    wait_for("the task's process ends", Duration::from_secs(60), || {
        (!running(&marker)).then_some(())
    });
    let t = app.task(&id);
    assert_eq!(
        t["state"], "running",
        "recorded before its output is on disk: {t}"
    );

    // Space returns: everything goes through on its own.
    std::fs::remove_file(&filler).unwrap();
    let done = app.wait_state(&id, "succeeded", Duration::from_secs(60));
    assert_eq!(done["attempts"], 1, "{done}");
    wait_for("readyz clears", Duration::from_secs(30), || {
        let r = readyz(&app);
        (!r["reasons"].to_string().contains("cannot write")).then_some(())
    });
    let lines: Vec<String> = app
        .output(&handle)
        .into_iter()
        .filter(|(_, kind, _)| kind == "stdout")
        .map(|(_, _, data)| data)
        .collect::<String>()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 100, "every line, once");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("{marker} line {} ", i + 1)),
            "{line}"
        );
    }
    assert!(!app
        .prometheus()
        .contains("flotilla_log_write_failures_total 0\n"));
    let again = app.submit(json!({"argv": ["true"]}));
    app.wait_state(
        again["id"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(30),
    );
}
