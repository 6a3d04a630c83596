//! The engine on the tune halves of its own held-out corpora (`guard/heldout/`): what the
//! rules were fixed against, so that a change that loses a class fails here. The holdout
//! halves are measured with `flotilla guard eval`, never asserted on.

use flotilla_guard::Engine;
use serde_json::Value;

/// (positives found, positives, unambiguous negatives flagged, unambiguous negatives).
fn score(file: &str) -> (usize, usize, usize, usize) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("heldout")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let engine = Engine::new();
    let (mut found, mut positives, mut flagged, mut negatives) = (0, 0, 0, 0);
    for line in text.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let body = row["text"].as_str().unwrap();
        // The corpus counts characters; findings are byte offsets.
        let chars: Vec<usize> = body.char_indices().map(|(b, _)| b).collect();
        let byte = |c: u64| chars.get(c as usize).copied().unwrap_or(body.len());
        let findings = engine.scan(body);
        if row["label"] == "none" {
            if row["ambiguous"] == true {
                continue;
            }
            negatives += 1;
            flagged += usize::from(!findings.is_empty());
            continue;
        }
        positives += 1;
        let spans = row["spans"].as_array().unwrap();
        let hit = spans.iter().any(|s| {
            let (start, end) = (byte(s[0].as_u64().unwrap()), byte(s[1].as_u64().unwrap()));
            findings.iter().any(|f| f.start < end && start < f.end)
        });
        found += usize::from(hit);
    }
    (found, positives, flagged, negatives)
}

#[test]
fn the_tune_sets_keep_their_recall_and_false_positive_rate() {
    for file in [
        "text.tune.jsonl",
        "keys.tune.jsonl",
        "fresh3.tune.jsonl",
        "fresh4.tune.jsonl",
    ] {
        let (found, positives, flagged, negatives) = score(file);
        let recall = found as f64 / positives as f64;
        let fp = flagged as f64 / negatives as f64;
        assert!(
            recall >= 0.97,
            "{file}: recall {recall:.3} ({found} of {positives})"
        );
        assert!(
            fp <= 0.005,
            "{file}: false-positive rate {fp:.4} ({flagged} of {negatives})"
        );
    }
}
