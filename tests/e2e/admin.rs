//! The admin API's task pages: bounded in rows and bytes, continued by a cursor that
//! neither repeats nor skips a task while new ones arrive, and filtered.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{schema_errors, App};

const PAGE: &str = include_str!("../../schemas/task-page.v1.json");

/// Every page of `query`, following the cursors; new tasks are submitted after the
/// first page, to show they do not disturb the walk.
fn walk(app: &App, query: &str, between: impl Fn(usize)) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/admin/tasks?{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.admin_get(&path);
        assert_eq!(schema_errors(PAGE, &page), Vec::<String>::new(), "{page}");
        between(pages.len());
        cursor = page["nextCursor"].as_str().map(str::to_owned);
        pages.push(page);
        if cursor.is_none() {
            return pages;
        }
        assert!(pages.len() < 100, "the walk does not end");
    }
}

fn ids(pages: &[Value]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p["tasks"].as_array().unwrap().iter())
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn task_pages_are_bounded_in_rows_and_bytes_and_the_cursor_neither_repeats_nor_skips() {
    let app = App::start(2);
    // 24 tasks: every third with a 5 KB argument, so pages of 8 KiB stop on bytes.
    let mut submitted = Vec::new();
    for i in 0..24 {
        let arg = if i % 3 == 0 {
            "x".repeat(5000)
        } else {
            format!("n{i}")
        };
        let t = app.submit(json!({"argv": ["echo", arg], "id": format!("page-{i:02}")}));
        submitted.push(t["id"].as_str().unwrap().to_owned());
    }
    app.wait_until_finished(24);

    let pages = walk(&app, "limit=5&maxBytes=8192", |n| {
        if n == 0 {
            app.submit(json!({"argv": ["true"], "id": "late-arrival"}));
        }
    });
    let seen = ids(&pages);
    // Newest first, each once; the task that arrived mid-walk is newer than the cursor.
    let mut want = submitted.clone();
    want.reverse();
    assert_eq!(seen, want, "pages: {pages:?}");
    let stops: HashSet<&str> = pages
        .iter()
        .map(|p| p["stoppedBy"].as_str().unwrap())
        .collect();
    assert!(
        stops.contains("bytes") && stops.contains("rows"),
        "{stops:?}"
    );
    for p in &pages {
        let n = p["tasks"].as_array().unwrap().len();
        assert!((1..=5).contains(&n), "{p}");
        assert!(
            n == 1 || p["bytes"].as_u64().unwrap() <= 8192,
            "a page of {n} rows past its bound: {p}"
        );
    }
    assert_eq!(pages.last().unwrap()["stoppedBy"], "end");

    // Filters: by state, by instance, by id prefix; all together narrow.
    let failed = app.submit(json!({"argv": ["false"], "id": "page-failing"}));
    let failed = failed["id"].as_str().unwrap();
    app.wait_state(failed, "failed", Duration::from_secs(20));
    let only_failed = ids(&walk(&app, "state=failed", |_| {}));
    assert_eq!(only_failed, [failed]);
    let on_one = ids(&walk(&app, "instance=local-1&idPrefix=page-", |_| {}));
    let mut want: Vec<String> = submitted
        .iter()
        .map(String::as_str)
        .chain([failed])
        .filter(|id| app.task(id)["instance"] == "local-1")
        .map(str::to_owned)
        .collect();
    want.sort_by(|a, b| b.cmp(a));
    let mut got = on_one.clone();
    got.sort_by(|a, b| b.cmp(a));
    assert_eq!(got, want);
    let late = ids(&walk(&app, "idPrefix=late", |_| {}));
    assert_eq!(late, ["late-arrival"]);

    // A cursor this API never gave out is refused, naming the field.
    let bad = ureq::get(&format!("{}/admin/tasks?cursor=12:..", app.base))
        .set(
            "Authorization",
            &format!("Bearer {}", crate::support::TOKEN),
        )
        .call();
    let Err(ureq::Error::Status(400, resp)) = bad else {
        panic!("a bad cursor was taken: {bad:?}");
    };
    let problem: Value = resp.into_json().unwrap();
    assert_eq!(
        problem["errors"][0]["pointer"], "/query/cursor",
        "{problem}"
    );
}
