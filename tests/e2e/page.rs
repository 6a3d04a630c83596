//! The admin page in a real headless Chromium against the real server: it loads with no
//! console error, shows the running server's instances, a chart updates, the log viewer
//! receives a running task's lines and resumes after the server restarts (each line once,
//! in order), and cordoning from the page shows in the API. A screenshot is kept in
//! `target/test-artifacts/admin-page.png`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{wait_for, App, TOKEN};
use flotilla::webdriver::Browser;

const LINES: usize = 300;

fn instance_state(app: &App, id: &str) -> String {
    app.instances()
        .iter()
        .find(|i| i["id"] == id)
        .map(|i| i["state"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

/// The console's errors, leaving out the page's own requests failing while the server is
/// down (`expected_down`): the browser logs those itself.
fn errors(browser: &Browser, expected_down: bool) -> Vec<String> {
    browser
        .console()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .map(|(_, m)| m)
        .filter(|m| {
            !(expected_down
                && (m.contains("ERR_CONNECTION_REFUSED")
                    || m.contains("WebSocket connection to")
                    || m.contains("Failed to fetch")))
        })
        .collect()
}

#[test]
fn the_admin_page_shows_the_fleet_follows_a_log_across_a_restart_and_cordons() {
    let app = App::start(2);
    let browser = Browser::start();
    browser.goto(&format!("{}/admin", app.base));
    browser.run(
        "document.getElementById('token').value = arguments[0]; \
         document.getElementById('login').requestSubmit();",
        json!([TOKEN]),
    );

    // The running server's instances.
    let count = browser.wait(
        "the instances shown",
        Duration::from_secs(20),
        "const t = document.getElementById('instances'); return t.dataset.count === '2' ? t.innerText : null;",
        json!([]),
    );
    let shown = count.as_str().unwrap();
    assert!(
        shown.contains("local-1") && shown.contains("local-2"),
        "{shown}"
    );

    // A chart takes a point every second.
    let points = |b: &Browser| -> u64 {
        b.run(
            "return Number(document.getElementById('chart-utilization').dataset.points || 0);",
            json!([]),
        )
        .as_u64()
        .unwrap_or(0)
    };
    let first = points(&browser);
    wait_for("the chart moves", Duration::from_secs(10), || {
        (points(&browser) >= first + 2).then_some(())
    });

    // A task that prints a line every 20 ms; the page lists it, and its log follows.
    let script = format!("for i in $(seq 1 {LINES}); do echo line $i; sleep 0.02; done");
    let task = app.submit(json!({"argv": ["sh", "-c", script], "id": "page-watched"}));
    assert_eq!(task["id"], "page-watched");
    browser.wait(
        "the task in the table, picked",
        Duration::from_secs(20),
        "const r = document.querySelector('tr[data-task=\"page-watched\"]'); if (!r) return null; r.click(); return true;",
        json!([]),
    );
    browser.wait(
        "the first lines in the log viewer",
        Duration::from_secs(20),
        "return document.getElementById('log').textContent.includes('line 3\\n') || null;",
        json!([]),
    );
    let console = errors(&browser, false);
    assert!(console.is_empty(), "console errors: {console:?}");

    // The server goes down and comes back on the same address; the viewer resumes.
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let dir = app.crash();
    let app = App::start_at(dir, 2, &format!("127.0.0.1:{port}"));
    let text = browser.wait(
        "the whole output after the restart",
        Duration::from_secs(60),
        "const l = document.getElementById('log'); return l.textContent.includes('[succeeded') ? l.textContent : null;",
        json!([]),
    );
    let text = text.as_str().unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("line ")).collect();
    let want: Vec<String> = (1..=LINES).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, want, "every line once, in order");
    let connects = browser.run(
        "return Number(document.getElementById('log').dataset.connects);",
        json!([]),
    );
    assert!(
        connects.as_u64().unwrap() >= 2,
        "the viewer never reconnected: {connects}"
    );
    let _ = errors(&browser, true);

    // Cordon from the page; the API shows it.
    browser.wait(
        "the cordon button",
        Duration::from_secs(20),
        "const b = document.querySelector('button[data-id=\"local-1\"][data-action=\"cordon\"]'); if (!b) return null; b.click(); return true;",
        json!([]),
    );
    wait_for(
        "local-1 cordoned in the API",
        Duration::from_secs(10),
        || (instance_state(&app, "local-1") == "cordoned").then_some(()),
    );
    let cell: Value = browser.wait(
        "the page shows the cordon",
        Duration::from_secs(10),
        "const c = document.querySelector('tr[data-id=\"local-1\"] td[data-state]'); return c && c.dataset.state === 'cordoned' ? c.dataset.state : null;",
        json!([]),
    );
    assert_eq!(cell, "cordoned");
    let console = errors(&browser, false);
    assert!(
        console.is_empty(),
        "console errors after the restart: {console:?}"
    );

    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(browser.screenshot_base64())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("admin-page.png"), png).unwrap();
}
