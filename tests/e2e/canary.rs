//! `flotilla canary` against its own server: a SIGKILL and a SIGSTOP round, a report
//! that follows its schema, exit status 0.

use serde_json::Value;

use crate::support::{flotilla_cmd, schema_errors};

#[test]
fn the_canary_kills_and_hangs_instances_and_reports_each_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let out = flotilla_cmd()
        .args(["canary", "--artifacts-dir"])
        .arg(dir.path())
        .env_remove("FLOTILLA_TOKEN")
        .output()
        .expect("run flotilla canary");
    let progress = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{progress}");
    assert!(progress.contains("canary: sigkill local-"), "{progress}");
    assert!(progress.contains("canary: sigstop local-"), "{progress}");
    let path = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(path.contains("/.runs/flotilla/canary/r-"), "{path}");
    let report: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let errors = schema_errors(include_str!("../../schemas/canary-report.v1.json"), &report);
    assert!(errors.is_empty(), "{errors:?}\n{report:#}");
    assert_eq!(report["verdict"], "pass", "{report:#}");
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    for (round, fault) in rounds.iter().zip(["sigkill", "sigstop"]) {
        assert_eq!(round["fault"], fault);
        assert_eq!(round["result"], "pass", "{round:#}");
        for figure in ["detectMs", "rescheduleMs", "mttrMs"] {
            assert!(
                round[figure].as_f64().is_some_and(|ms| ms > 0.0),
                "{figure}: {round:#}"
            );
        }
    }
    // A hang is found by its lease (3 s), a kill at once.
    assert!(rounds[0]["detectMs"].as_f64().unwrap() < 1000.0);
    assert!(rounds[1]["detectMs"].as_f64().unwrap() >= 1000.0);
}
