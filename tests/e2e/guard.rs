//! `flotilla guard scan` and `flotilla guard eval` as a user runs them.

use serde_json::Value;

use crate::support::{flotilla_cmd, output_with_input};

#[test]
fn scan_reports_byte_offsets_of_each_finding_and_exits_1() {
    let input = "build ok\nexport GITHUB_TOKEN=ghp_R4nd0mT0k3nV4lu3Xq8Lp2Zs9Wc7Vb3Nk1Hy\nmail jane.doe@gmail.com\n";
    let out = output_with_input(flotilla_cmd().args(["guard", "scan"]), input.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(1),
        "findings make the exit status 1"
    );
    let findings: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let spans: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| {
            let (s, e) = (
                f["start"].as_u64().unwrap() as usize,
                f["end"].as_u64().unwrap() as usize,
            );
            (f["kind"].as_str().unwrap(), &input[s..e])
        })
        .collect();
    assert_eq!(
        spans,
        vec![
            ("github-token", "ghp_R4nd0mT0k3nV4lu3Xq8Lp2Zs9Wc7Vb3Nk1Hy"),
            ("email", "jane.doe@gmail.com")
        ]
    );
    assert!(findings
        .iter()
        .all(|f| f["file"] == "-" && f["rule"].is_string()));
}

#[test]
fn eval_scores_a_corpus_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    let rows = [
        r#"{"id": "a", "text": "key: ghp_R4nd0mT0k3nV4lu3Xq8Lp2Zs9Wc7Vb3Nk1Hy", "label": "secret", "kind": "github-token", "spans": [[5, 45]]}"#,
        r#"{"id": "b", "text": "IBAN GB82 WEST 1234 5698 7654 32", "label": "pii", "kind": "iban", "spans": [[5, 32]]}"#,
        r#"{"id": "c", "text": "100644 blob 57c60df6403cb68d366eea7ab9275f895e46d60a\tREADME.md", "label": "none", "kind": "none", "spans": []}"#,
        r#"{"id": "d", "text": "password: ********", "label": "none", "kind": "none", "spans": []}"#,
    ];
    std::fs::write(&corpus, rows.join("\n")).unwrap();
    let out = flotilla_cmd()
        .args(["guard", "eval", "--scope", "e2e", "--corpus"])
        .arg(&corpus)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["overall"]["recall"], 1.0);
    assert_eq!(report["overall"]["fp_rate"], 0.0);
    assert_eq!(report["recall_by_kind"]["iban"], 1.0);
    let written: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(".runs/e2e/guard/eval.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(written["overall"], report["overall"]);
    // A corpus that is not JSON Lines is refused with the line named.
    std::fs::write(&corpus, "{\"id\": \"a\"}\nnot json\n").unwrap();
    let out = flotilla_cmd()
        .args(["guard", "eval", "--corpus"])
        .arg(&corpus)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
