//! The guard in the stream path, end to end: enforcement needs a recorded approval; then a
//! task's planted secrets reach no file, database, log or observer; a sensitive task is
//! stopped with a `guard` frame; an approved override lets one value through until it is
//! revoked.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use flotilla::client::{self, ClientError};
use flotilla_actors::protocol::{ObserverFrame, StreamKind};
use serde_json::{json, Value};

use crate::support::{files_under, flotilla_cmd, wait_for, App, TOKEN};

const CONFIG: &str = "[guard]\napprovers = [\"alice\", \"bob\"]\nafter-hours-owner = \"oncall\"\n";

/// Secrets the task prints, as (what, value). None of them is in the request.
fn planted() -> Vec<(&'static str, String)> {
    vec![
        ("aws key id", "AKIAQ3RZ7N2LX5TWB4KJ".into()),
        (
            "aws secret",
            "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".into(),
        ),
        (
            "github token",
            "ghp_R4nd0mT0k3nV4lu3Xq8Lp2Zs9Wc7Vb3Nk1Hy".into(),
        ),
        ("database password", "Zq7vN3xLp9Rt".into()),
        ("generic password", "Tr0ub4dor&3xq!Vz".into()),
        (
            "slack token",
            "xoxb-204812345678-409612345678-Qf8sLp3Vn7Rt2Zx9Wc4Kb6Hj".into(),
        ),
        (
            "private key",
            "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun".into(),
        ),
        ("slow stripe key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc".into()),
    ]
}

const ENV_SECRET: &str = "Vx9-plain-looking-s3cret-v4lue";

/// A script, outside the app's folders, that prints the planted secrets: one split over
/// two writes 300 ms apart (longer than the hold-back), the private key over many lines.
fn planting_script(dir: &Path) -> String {
    let s = planted();
    let script = format!(
        "#!/bin/sh\nsleep 0.5\necho 'building...'\n\
         echo 'export AWS_ACCESS_KEY_ID={}'\n\
         echo 'aws_secret_access_key = \"{}\"'\n\
         echo 'cloning with {}'\n\
         echo 'DATABASE_URL=postgres://deploy:{}@db.internal:5432/app'\n\
         echo 'password=\"{}\"'\n\
         echo 'SLACK_BOT_TOKEN={}' >&2\n\
         echo '-----BEGIN RSA PRIVATE KEY-----'\necho '{}'\n\
         echo 'hUYl9hG0ZcPLOdgCBPSf2HZ7a8VMXq9wUSgbJvLxGdTDxvE2XtRK'\n\
         echo '-----END RSA PRIVATE KEY-----'\n\
         printf 'stripe: %s' '{}'; sleep 0.3; printf '%s\\n' '{}'\n\
         echo \"deploy token: $DEPLOY_TOKEN\"\n\
         printf '%s' \"$DEPLOY_TOKEN\" | base64\n\
         echo 'done'\n",
        s[0].1,
        s[1].1,
        s[2].1,
        s[3].1,
        s[4].1,
        s[5].1,
        s[6].1,
        &s[7].1[..14],
        &s[7].1[14..],
    );
    let path = dir.join("plant.sh");
    std::fs::write(&path, script).unwrap();
    path.display().to_string()
}

/// Follows a handle from offset 0 to its status frame; returns every frame.
fn observe(base: &str, handle: &str) -> Vec<ObserverFrame> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut frames = Vec::new();
    rt.block_on(client::follow(
        base,
        TOKEN,
        handle,
        0,
        Duration::from_secs(60),
        |f| frames.push(f.clone()),
    ))
    .expect("observer reached the status frame");
    frames
}

fn text_of(frames: &[ObserverFrame]) -> String {
    frames
        .iter()
        .map(|f| String::from_utf8_lossy(&f.bytes()).into_owned())
        .collect()
}

fn admin(app: &App, method: &str, path: &str, body: Value) -> Result<Value, ClientError> {
    app.client.admin(method, path, Some(&body))
}

/// Requests a policy approval as carol and has alice approve it; returns its id.
fn approve_policy(app: &App) -> String {
    let req = json!({"kind": "guard-policy", "reason": "enforce rollout", "requestedBy": "carol"});
    let a = admin(app, "POST", "/admin/guard/approvals", req).unwrap();
    let id = a["id"].as_str().unwrap().to_owned();
    admin(
        app,
        "POST",
        &format!("/admin/guard/approvals/{id}/approve"),
        json!({"by": "alice"}),
    )
    .unwrap();
    id
}

#[test]
fn enforcing_needs_a_recorded_approval_and_then_no_planted_secret_is_stored_or_seen() {
    let app = App::start_with_config(1, CONFIG);
    let engine = flotilla_guard::Engine::new();
    for (what, value) in planted().iter().take(7) {
        let line = match *what {
            "aws secret" => format!("aws_secret_access_key = \"{value}\""),
            "database password" => format!("postgres://deploy:{value}@db.internal:5432/app"),
            "generic password" => format!("password=\"{value}\""),
            "private key" => {
                format!("-----BEGIN RSA PRIVATE KEY-----\n{value}\n-----END RSA PRIVATE KEY-----\n")
            }
            _ => value.clone(),
        };
        assert!(
            !engine.scan(&line).is_empty(),
            "the engine must detect the {what}"
        );
    }

    // Enforcement without a policy approval is refused, naming the missing evidence.
    let err = admin(
        &app,
        "PUT",
        "/admin/guard/modes",
        json!({"mode": "enforce", "by": "carol"}),
    )
    .unwrap_err();
    let ClientError::Api { status, detail, .. } = err else {
        panic!("expected a refusal, got {err:?}")
    };
    assert_eq!(status, 409);
    assert!(
        detail.contains("guard-policy") && detail.contains("approvals/latest.json"),
        "{detail}"
    );
    let approval = approve_policy(&app);
    let view = admin(
        &app,
        "PUT",
        "/admin/guard/modes",
        json!({"mode": "enforce", "by": "carol"}),
    )
    .unwrap();
    assert_eq!(view["effective"]["standard"], "enforce", "{view}");
    assert_eq!(view["policyApproval"], approval.as_str());

    let outside = tempfile::tempdir().unwrap();
    let script = planting_script(outside.path());
    let reply = app.submit(json!({
        "argv": ["sh", script],
        "env": {"DEPLOY_TOKEN": ENV_SECRET},
    }));
    let id = reply["id"].as_str().unwrap().to_owned();
    let handle = reply["handle"].as_str().unwrap().to_owned();
    let live = observe(&app.base, &handle);
    app.wait_state(&id, "succeeded", Duration::from_secs(30));
    let replayed = observe(&app.base, &handle);
    let (live, replayed) = (text_of(&live), text_of(&replayed));
    assert_eq!(live, replayed, "a late observer sees what a live one saw");
    assert!(
        live.contains("building...") && live.contains("done"),
        "{live}"
    );
    for marker in [
        "[REDACTED:github-pat:",
        "[REDACTED:task-secret:",
        "[REDACTED:held-back-timeout:",
    ] {
        assert!(live.contains(marker), "no {marker} in:\n{live}");
    }

    // The evidence: the manifest names each decision (never the value) and the approval.
    let manifest = wait_for(
        "manifest with guard decisions",
        Duration::from_secs(10),
        || {
            let path = files_under(&app.artifacts().join(".runs").join(&id))
                .into_iter()
                .find(|p| p.ends_with("manifest.json"))?;
            let m: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
            (m["state"] == "succeeded" && m["privacy"]["guardDecisionsTotal"].as_u64()? >= 9)
                .then_some(m)
        },
    );
    let privacy = &manifest["privacy"];
    assert_eq!(privacy["attempts"][0]["mode"], "enforce");
    assert_eq!(privacy["attempts"][0]["policyApproval"], approval.as_str());
    assert!(privacy["approvals"]
        .as_array()
        .unwrap()
        .contains(&json!(approval)));
    assert_eq!(
        manifest["request"]["env"]["DEPLOY_TOKEN"]
            .as_str()
            .map(|s| s.starts_with("[REDACTED:task-secret:")),
        Some(true),
        "the manifest shows a marker for a secret env value"
    );
    let decisions = privacy["guardDecisions"].as_array().unwrap();
    assert!(decisions
        .iter()
        .all(|d| d["applied"] == true && d["digest"].as_str().unwrap().len() == 8));
    let metrics: Value = serde_json::from_slice(
        &std::fs::read(app.artifacts().join(".runs").join(&id).join("metrics.json")).unwrap(),
    )
    .unwrap();
    assert!(
        metrics["privacyEvents"]["total"].as_u64().unwrap() >= 9,
        "{metrics}"
    );
    let prom = app.prometheus();
    assert!(
        prom.contains("flotilla_guard_decisions_total{rule=\"github-pat\",kind=\"github-token\",action=\"redact\",mode=\"enforce\",applied=\"true\"} 1"),
        "{prom}"
    );

    // Nowhere on disk: state dir, database, frame log, .runs, out, the server's own log.
    let dir = app.stop(); // everything the server buffers is written when it stops
    let mut secrets: Vec<(String, String)> = planted()
        .into_iter()
        .map(|(w, v)| (w.to_owned(), v))
        .collect();
    secrets.push((
        "slow stripe key, first part".into(),
        "sk_live_4eC39H".into(),
    ));
    secrets.push(("slow stripe key, rest".into(), "qLyjWDarjtT1zdp7dc".into()));
    let env_b64 = base64::engine::general_purpose::STANDARD.encode(ENV_SECRET);
    let files = files_under(dir.path());
    assert!(files
        .iter()
        .any(|f| f.extension().is_some_and(|e| e == "log")
            && f.parent().is_some_and(|p| p.ends_with("frames"))));
    assert!(files.iter().any(|f| f.ends_with("flotilla.db")));
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let hay = String::from_utf8_lossy(&bytes);
        for (what, value) in &secrets {
            assert!(
                !hay.contains(value.as_str()),
                "the {what} is in {}",
                file.display()
            );
        }
        assert!(
            !hay.contains(&env_b64),
            "base64 of the env secret is in {}",
            file.display()
        );
        // The database keeps the request, env included, so the task can run again after
        // a crash; everywhere else the env secret must not be.
        let database = file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("flotilla.db");
        if !database {
            assert!(
                !hay.contains(ENV_SECRET),
                "the env secret is in {}",
                file.display()
            );
        }
    }
    for seen in [&live, &replayed] {
        for (what, value) in &secrets {
            assert!(!seen.contains(value.as_str()), "an observer saw the {what}");
        }
        assert!(!seen.contains(ENV_SECRET) && !seen.contains(&env_b64));
    }
}

#[test]
fn a_sensitive_task_is_stopped_and_an_override_lets_one_value_through_until_revoked() {
    let app = App::start_with_config(1, CONFIG);
    approve_policy(&app);
    admin(
        &app,
        "PUT",
        "/admin/guard/modes",
        json!({"mode": "enforce", "by": "oncall", "reason": "test"}),
    )
    .unwrap();

    // Sensitive: a secret blocks the output, a guard frame stands in, the task fails.
    let outside = tempfile::tempdir().unwrap();
    let script = outside.path().join("leak.sh");
    std::fs::write(
        &script,
        "echo starting\nsleep 0.2\necho 'token ghp_R4nd0mT0k3nV4lu3Xq8Lp2Zs9Wc7Vb3Nk1Hy'\nsleep 30\n",
    )
    .unwrap();
    let reply = app.submit(json!({
        "argv": ["sh", script.display().to_string()],
        "constraints": {"privacy": "sensitive"},
    }));
    let (id, handle) = (
        reply["id"].as_str().unwrap(),
        reply["handle"].as_str().unwrap(),
    );
    let t = app.wait_state(id, "failed", Duration::from_secs(20));
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .contains("blocked by the privacy guard: github-pat"),
        "{t}"
    );
    let frames = observe(&app.base, handle);
    let guard: Vec<&ObserverFrame> = frames
        .iter()
        .filter(|f| f.kind == StreamKind::Guard)
        .collect();
    assert_eq!(guard.len(), 1, "one guard frame");
    let note: Value = serde_json::from_slice(&guard[0].bytes()).unwrap();
    assert_eq!(
        (note["action"].as_str(), note["rule"].as_str()),
        (Some("block"), Some("github-pat"))
    );
    let text = text_of(&frames);
    assert!(
        text.contains("starting") && !text.contains("ghp_R4nd0m"),
        "{text}"
    );

    // Standard: a value is redacted; an approved override for its digest lets it through.
    let print = |id: &str| -> (String, Value) {
        let r = app.submit(json!({"id": id, "argv": ["echo", "key AKIAQ3RZ7N2LX5TWB4KJ in use"]}));
        let h = r["handle"].as_str().unwrap().to_owned();
        app.wait_state(id, "succeeded", Duration::from_secs(20));
        let manifest = wait_for("manifest with a decision", Duration::from_secs(10), || {
            let path = files_under(&app.artifacts().join(".runs").join(id))
                .into_iter()
                .find(|p| p.ends_with("manifest.json"))?;
            let m: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
            (m["privacy"]["guardDecisionsTotal"] == 1).then_some(m)
        });
        (text_of(&observe(&app.base, &h)), manifest)
    };
    let (before, m) = print("t-before");
    assert!(!before.contains("AKIAQ3RZ"), "{before}");
    let digest = m["privacy"]["guardDecisions"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        before.contains(&format!("[REDACTED:aws-access-key-id:{digest}]")),
        "{before}"
    );

    let req = json!({
        "kind": "guard-override", "target": {"digest": digest}, "reason": "published test key",
        "requestedBy": "carol", "expiresInSeconds": 3600,
    });
    let ov = admin(&app, "POST", "/admin/guard/approvals", req).unwrap();
    let ov_id = ov["id"].as_str().unwrap().to_owned();
    let self_approval = admin(
        &app,
        "POST",
        &format!("/admin/guard/approvals/{ov_id}/approve"),
        json!({"by": "carol"}),
    );
    assert!(matches!(
        self_approval,
        Err(ClientError::Api { status: 403, .. })
    ));
    admin(
        &app,
        "POST",
        &format!("/admin/guard/approvals/{ov_id}/approve"),
        json!({"by": "bob"}),
    )
    .unwrap();
    let (during, m) = print("t-during");
    assert!(during.contains("AKIAQ3RZ7N2LX5TWB4KJ"), "{during}");
    let d = &m["privacy"]["guardDecisions"][0];
    assert_eq!(
        (d["action"].as_str(), d["allowedBy"].as_str()),
        (Some("allow"), Some(ov_id.as_str()))
    );
    assert!(m["privacy"]["approvals"]
        .as_array()
        .unwrap()
        .contains(&json!(ov_id)));

    admin(
        &app,
        "POST",
        &format!("/admin/guard/approvals/{ov_id}/revoke"),
        json!({"by": "alice"}),
    )
    .unwrap();
    let (after, _) = print("t-after");
    assert!(!after.contains("AKIAQ3RZ"), "revoked: {after}");

    // The registry on disk holds the whole history.
    let registry: Value = serde_json::from_slice(
        &std::fs::read(app.artifacts().join(".runs/flotilla/approvals/latest.json")).unwrap(),
    )
    .unwrap();
    let entry = registry["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == ov_id.as_str())
        .unwrap();
    assert_eq!(
        (
            entry["status"].as_str(),
            entry["approvedBy"].as_str(),
            entry["revokedBy"].as_str()
        ),
        (Some("revoked"), Some("bob"), Some("alice"))
    );
}

#[test]
fn a_server_configured_to_enforce_without_an_approval_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flotilla.toml"),
        "[guard]\nmode = \"enforce\"\n",
    )
    .unwrap();
    let out = flotilla_cmd()
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--local-instances",
            "0",
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .arg("--artifacts-dir")
        .arg(dir.path().join("artifacts"))
        .current_dir(dir.path())
        .env("FLOTILLA_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy approval")
            && err.contains("guard-policy")
            && err.contains("latest.json"),
        "{err}"
    );
}
