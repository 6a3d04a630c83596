//! The JSON examples in `docs/`: each follows the schema of what it shows.

use serde_json::Value;

use crate::schemas::{file_name, files_in, list, root, schemas, violations};

/// The ```json examples of `docs/`, by the file and the heading they sit under, and the
/// schema (file stem) they follow. A block may hold one document or one per line. A block
/// under a heading missing here fails the test, unless its document names its schema
/// (`"schema": "flotilla.<name>/<x.y.z>"`). Fix a wrong example; do not drop it from here.
const DOC_EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "docs/tasks-and-streaming.md",
        "### `POST /v1/tasks`",
        "task-accepted.v1",
    ),
    (
        "docs/tasks-and-streaming.md",
        "### `POST /v1/tasks/batch`",
        "task-batch-result.v1",
    ),
    (
        "docs/tasks-and-streaming.md",
        "### `GET /v1/tasks/{id}` and `GET /v1/tasks`",
        "task-view.v1",
    ),
    (
        "docs/tasks-and-streaming.md",
        "### `GET /v1/instances`",
        "instances.v1",
    ),
    ("docs/tasks-and-streaming.md", "## Errors", "problem.v1"),
    (
        "docs/streaming.md",
        "## Observing output",
        "observer-frame.v1",
    ),
    (
        "docs/control-plane.md",
        "### An unknown version",
        "problem.v1",
    ),
    ("docs/control-plane.md", "### Errors", "problem.v1"),
];

/// Every ```json block of a markdown text: (the heading above it, its line, its text).
fn json_blocks(text: &str) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut open: Option<(bool, usize, String)> = None; // (is json, first line, text)
    for (n, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match &mut open {
            None if fence => {
                let lang = line.trim_start().trim_start_matches('`').trim();
                open = Some((lang == "json", n + 1, String::new()));
            }
            None if line.starts_with('#') => heading = line.trim().to_owned(),
            None => {}
            Some((json, first, body)) if fence => {
                if *json {
                    out.push((heading.clone(), *first, std::mem::take(body)));
                }
                open = None;
            }
            Some((_, _, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    out
}

/// The documents of a block: one JSON document, or one per line.
fn documents(block: &str) -> Result<Vec<Value>, String> {
    if let Ok(doc) = serde_json::from_str(block) {
        return Ok(vec![doc]);
    }
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{e}: {l}")))
        .collect()
}

/// The schema file a document names with `"schema": "flotilla.<name>/<major>.…"`.
fn named_schema(doc: &Value) -> Option<String> {
    let named = doc.get("schema")?.as_str()?.strip_prefix("flotilla.")?;
    let (name, version) = named.split_once('/')?;
    let major = version.split('.').next()?;
    Some(format!("{name}.v{major}"))
}

#[test]
fn json_examples_in_the_docs_follow_their_schemas() {
    let mut wrong = Vec::new();
    let mut used = vec![false; DOC_EXAMPLES.len()];
    for path in files_in(&root().join("docs"), "md") {
        let file = format!("docs/{}", file_name(&path));
        let text = std::fs::read_to_string(&path).unwrap();
        for (heading, line, block) in json_blocks(&text) {
            let at = format!("{file}:{line} (under {heading:?})");
            let docs = match documents(&block) {
                Ok(docs) => docs,
                Err(e) => {
                    wrong.push(format!("{at}: not JSON: {e}"));
                    continue;
                }
            };
            let listed = DOC_EXAMPLES
                .iter()
                .position(|(f, h, _)| *f == file && *h == heading);
            if let Some(i) = listed {
                used[i] = true;
            }
            for doc in docs {
                let stem = match (listed, named_schema(&doc)) {
                    (Some(i), _) => DOC_EXAMPLES[i].2.to_owned(),
                    (None, Some(stem)) => stem,
                    (None, None) => {
                        wrong.push(format!(
                            "{at}: which schema does it follow? Add it to DOC_EXAMPLES"
                        ));
                        continue;
                    }
                };
                if !schemas().contains_key(&stem) {
                    wrong.push(format!("{at}: no schema schemas/{stem}.json"));
                    continue;
                }
                let v = violations(&stem, &doc);
                if !v.is_empty() {
                    wrong.push(format!("{at}: does not follow {stem}:{}", list(&v)));
                }
            }
        }
    }
    for (i, (file, heading, _)) in DOC_EXAMPLES.iter().enumerate() {
        if !used[i] {
            wrong.push(format!(
                "DOC_EXAMPLES names {file} {heading:?}, which has no ```json block"
            ));
        }
    }
    assert!(wrong.is_empty(), "docs:\n  {}", wrong.join("\n  "));
}
