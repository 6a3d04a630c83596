//! The CLI clients against a real server.

use std::time::Duration;

use crate::support::{flotilla_cmd, App, TOKEN};

fn flotilla(app: &App, args: &[&str]) -> std::process::Output {
    flotilla_cmd()
        .args(args)
        .env("FLOTILLA_SERVER", &app.base)
        .env("FLOTILLA_TOKEN", TOKEN)
        .output()
        .unwrap()
}

#[test]
fn submit_watch_prints_the_id_then_the_output_and_exits_with_the_status() {
    let app = App::start(1);
    let out = flotilla(
        &app,
        &[
            "submit",
            "--watch",
            "--",
            "sh",
            "-c",
            "echo hello; echo oops >&2; exit 7",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    let id = lines.next().unwrap();
    assert!(id.starts_with("t-"), "{stdout}");
    assert_eq!(lines.collect::<Vec<_>>(), vec!["hello"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("oops"));
    assert_eq!(out.status.code(), Some(7));

    // `watch` on the finished task replays it; `tasks` lists it.
    let out = flotilla(&app, &["watch", id]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let out = flotilla(&app, &["tasks", "--state", "failed"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(id));
}

#[test]
fn submit_names_the_field_at_fault() {
    let app = App::start(0);
    let out = flotilla(&app, &["submit", "--cap", "Not Valid", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/capabilities/0") && err.contains("pattern"),
        "{err}"
    );
}

#[test]
fn watch_resumes_after_the_server_restarts_mid_stream() {
    // The server is killed while a watcher follows a queued-then-running task; the
    // watcher reconnects to the restarted server and prints every line exactly once.
    let app = App::start(0);
    let out = flotilla(
        &app,
        &[
            "submit",
            "--",
            "sh",
            "-c",
            "for i in $(seq 300); do echo n $i; done",
        ],
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let base = app.base.clone();
    let port = base.rsplit(':').next().unwrap().to_owned();
    let watcher = flotilla_cmd()
        .args(["watch", &id])
        .env("FLOTILLA_SERVER", &base)
        .env("FLOTILLA_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let dir = app.crash();
    // Restart on the same port so the watcher can find it again.
    let app = restart_on_port(dir, &port);
    let out = watcher.wait_with_output().unwrap();
    let expected: String = (1..=300).map(|i| format!("n {i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    assert_eq!(out.status.code(), Some(0));
    drop(app);
}

fn restart_on_port(dir: tempfile::TempDir, port: &str) -> App {
    App::start_at(dir, 1, &format!("127.0.0.1:{port}"))
}
