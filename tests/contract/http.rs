//! The HTTP bodies, from the real routes over a real engine in this process (no agents
//! connected): task views, lists, summaries, the guard view, approvals, problems, drift,
//! and the evidence files the engine writes meanwhile.

use std::path::Path;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::test::TestRequest;
use actix_web::{web, App};
use serde_json::{json, Value};

use flotilla::http::{routes, Limits};
use flotilla_actors::control_plane::ControlPlaneConfig;
use flotilla_actors::domain::{HandleId, Scope};
use flotilla_actors::engine::{Engine, EngineConfig};
use flotilla_actors::guard::approvals::Approvers;
use flotilla_actors::guard::GuardSettings;
use flotilla_actors::protocol::StreamKind;
use flotilla_actors::subscriber::{to_observer, Subscription};

use crate::schemas::{assert_valid, to_json};
use crate::values::id;

const ADMIN: &str = "contract-test-admin-token-0123456789";

struct Reply {
    status: u16,
    content_type: String,
    body: Value,
}

async fn send<S, R, B>(app: &S, req: R) -> Reply
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let resp = actix_web::test::call_service(app, req).await;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = actix_web::test::read_body(resp).await;
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status} reply is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Reply {
        status,
        content_type,
        body,
    }
}

fn get(path: &str) -> TestRequest {
    TestRequest::get()
        .uri(path)
        .insert_header(("Authorization", format!("Bearer {ADMIN}")))
}

fn post(path: &str, body: &Value) -> TestRequest {
    TestRequest::post()
        .uri(path)
        .insert_header(("Authorization", format!("Bearer {ADMIN}")))
        .insert_header(("Content-Type", "application/json"))
        .set_payload(body.to_string())
}

#[track_caller]
fn expect(reply: &Reply, status: u16, stem: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: {:#}", reply.body);
    assert_valid(stem, what, &reply.body);
    if stem == "problem.v1" {
        assert_eq!(reply.content_type, "application/problem+json", "{what}");
        assert_eq!(reply.body["status"], status, "{what}");
    }
}

/// Waits for a file the engine writes in the background.
async fn written(path: &Path) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(doc) = serde_json::from_str(&text) {
                return doc;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} not written within 10 s",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn http_bodies_follow_their_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    let (engine, _, _watchdog) = Engine::start(EngineConfig {
        state_dir: dir.path().join("state"),
        artifacts_dir: artifacts.clone(),
        admin_token: Some(ADMIN.into()),
        scope: Scope::default(),
        guard: GuardSettings {
            approvers: Approvers {
                approvers: vec!["alice".into()],
                after_hours_owner: None,
            },
            ..GuardSettings::default()
        },
        control_plane: ControlPlaneConfig::default(),
        fleet: Default::default(),
        scheduler: Default::default(),
        streaming: Default::default(),
        tokens: Default::default(),
        retention: Default::default(),
        alerts: Default::default(),
        rollout: Default::default(),
    })
    .await
    .expect("the engine starts");
    let data = web::Data::new((
        engine.clone(),
        Limits {
            max_body_bytes: 262_144,
            max_batch_bytes: 1 << 20,
            max_batch_items: 100,
        },
    ));
    let app =
        actix_web::test::init_service(App::new().app_data(data.clone()).configure(routes)).await;

    // Submit: v1 and v2 bodies; a repeated idempotency key answers 200 with the same body.
    let v1 = json!({"id": "contract-1", "argv": ["sleep", "60"], "capabilities": ["gpu"],
        "env": {"API_TOKEN": "s3cr3t-api-token-value"}, "labels": {"team": "infra"}});
    let first = send(&app, post("/v1/tasks", &v1).to_request()).await;
    expect(&first, 201, "task-accepted.v1", "POST /v1/tasks (v1)");
    let v2 = json!({"schema": "flotilla.run-request/2.0.0", "argv": ["true"],
        "idempotencyKey": "contract-run-1", "requestedBy": "ci@infra",
        "schedule": {"recovery": {"maxRetries": 0}}});
    let second = send(&app, post("/v1/tasks", &v2).to_request()).await;
    expect(&second, 201, "task-accepted.v1", "POST /v1/tasks (v2)");
    let again = send(&app, post("/v1/tasks", &v2).to_request()).await;
    expect(&again, 200, "task-accepted.v1", "POST /v1/tasks (same key)");

    // A batch: each item answered as a single submission would be, in its own shape.
    let batch = json!({"tasks": [
        {"id": "contract-batch-1", "argv": ["sleep", "60"]},
        {"argv": []},
        v2,
        {"id": "contract-1", "argv": ["true"]},
    ]});
    let reply = send(&app, post("/v1/tasks/batch", &batch).to_request()).await;
    expect(&reply, 200, "task-batch-result.v1", "POST /v1/tasks/batch");
    let results = reply.body["results"].as_array().unwrap();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 422, 200, 409], "{:#}", reply.body);
    for r in results {
        match r.get("task") {
            Some(task) => assert_valid("task-accepted.v1", "a batch's task", task),
            None => assert_valid("problem.v1", "a batch's problem", &r["problem"]),
        }
    }
    let empty = send(
        &app,
        post("/v1/tasks/batch", &json!({"tasks": []})).to_request(),
    )
    .await;
    expect(&empty, 422, "problem.v1", "POST /v1/tasks/batch (empty)");
    let over: Vec<Value> = (0..101).map(|_| json!({"argv": ["true"]})).collect();
    let over = send(
        &app,
        post("/v1/tasks/batch", &json!({"tasks": over})).to_request(),
    )
    .await;
    expect(&over, 413, "problem.v1", "POST /v1/tasks/batch (too many)");

    // Read back.
    let view = send(&app, get("/v1/tasks/contract-1").to_request()).await;
    expect(&view, 200, "task-view.v1", "GET /v1/tasks/{id} (queued)");
    for path in ["/v1/tasks", "/v1/tasks?state=queued&limit=1"] {
        let list = send(&app, get(path).to_request()).await;
        expect(&list, 200, "task-list.v1", path);
    }
    let summary = send(&app, get("/v1/summary").to_request()).await;
    expect(&summary, 200, "summary.v1", "GET /v1/summary");
    let instances = send(&app, get("/v1/instances").to_request()).await;
    expect(&instances, 200, "instances.v1", "GET /v1/instances");
    let fleet = send(&app, get("/admin/fleet").to_request()).await;
    expect(&fleet, 200, "fleet-view.v1", "GET /admin/fleet");
    let queue = send(&app, get("/admin/queue").to_request()).await;
    expect(&queue, 200, "queue-view.v1", "GET /admin/queue");
    for path in [
        "/admin/tasks",
        "/admin/tasks?state=queued,running&limit=1&maxBytes=4096",
        "/admin/tasks?capability=local&idPrefix=contract",
    ] {
        let page = send(&app, get(path).to_request()).await;
        expect(&page, 200, "task-page.v1", path);
    }
    for path in [
        "/admin/tasks?cursor=nonsense",
        "/admin/tasks?state=waiting",
        "/admin/tasks?state=",
        "/admin/tasks?state=queued,",
        "/admin/tasks?maxBytes=10",
        "/admin/tasks?limit=0",
    ] {
        let bad = send(&app, get(path).to_request()).await;
        expect(&bad, 400, "problem.v1", path);
    }
    let handle = view.body["handle"].as_str().unwrap().to_owned();
    let path = format!("/admin/handles/{handle}/observer-token");
    let token = send(&app, post(&path, &json!(null)).to_request()).await;
    expect(
        &token,
        200,
        "observer-token.v1",
        "POST /admin/handles/{h}/observer-token",
    );
    let none = send(
        &app,
        post(
            "/admin/handles/h-0000000000000001/observer-token",
            &json!(null),
        )
        .to_request(),
    )
    .await;
    expect(
        &none,
        404,
        "problem.v1",
        "POST /admin/handles/{h}/observer-token (unknown)",
    );
    let alerts = send(&app, get("/admin/alerts").to_request()).await;
    expect(&alerts, 200, "alert-list.v1", "GET /admin/alerts");
    // Rollouts and reports: the view, each report, a refused advance, a rollback, a
    // review, and what an unknown component or report gets.
    let rollout = send(&app, get("/admin/rollout").to_request()).await;
    expect(&rollout, 200, "rollout-view.v1", "GET /admin/rollout");
    for kind in ["baseline", "post-rollout", "mttr-delta", "completeness"] {
        let path = format!("/admin/reports/{kind}");
        let report = send(&app, post(&path, &json!(null)).to_request()).await;
        expect(&report, 200, "report.v1", &path);
    }
    let windowed = send(
        &app,
        post(
            "/admin/reports/baseline?from=2026-12-01T00:00:00.000Z&to=2026-12-01T01:00:00.000Z",
            &json!(null),
        )
        .to_request(),
    )
    .await;
    expect(
        &windowed,
        200,
        "report.v1",
        "POST /admin/reports/baseline (window)",
    );
    let backwards = send(
        &app,
        post(
            "/admin/reports/baseline?from=2026-12-01T01:00:00.000Z&to=2026-12-01T00:00:00.000Z",
            &json!(null),
        )
        .to_request(),
    )
    .await;
    expect(
        &backwards,
        200,
        "report.v1",
        "POST /admin/reports (window backwards)",
    );
    assert_eq!(backwards.body["verdict"]["pass"], false);
    assert!(backwards.body["verdict"]["reasons"][0]
        .as_str()
        .unwrap()
        .starts_with("not met: the window is empty"));
    let no_report = send(
        &app,
        post("/admin/reports/vibes", &json!(null)).to_request(),
    )
    .await;
    expect(&no_report, 404, "problem.v1", "POST /admin/reports/vibes");
    let decision = json!({"by": "erin", "reason": "contract"});
    let refused = send(
        &app,
        post("/admin/rollout/guard/advance", &decision).to_request(),
    )
    .await;
    expect(
        &refused,
        409,
        "problem.v1",
        "POST /admin/rollout/guard/advance (gates)",
    );
    let back = send(
        &app,
        post("/admin/rollout/validation/rollback", &decision).to_request(),
    )
    .await;
    expect(
        &back,
        200,
        "rollout-change.v1",
        "POST /admin/rollout/validation/rollback",
    );
    let unknown = send(
        &app,
        post("/admin/rollout/dns/advance", &decision).to_request(),
    )
    .await;
    expect(
        &unknown,
        404,
        "problem.v1",
        "POST /admin/rollout/dns/advance",
    );
    let bad = send(
        &app,
        post("/admin/rollout/guard/advance", &json!({"by": "erin"})).to_request(),
    )
    .await;
    expect(
        &bad,
        422,
        "problem.v1",
        "POST /admin/rollout/guard/advance (no reason)",
    );
    let review = send(
        &app,
        post(
            "/admin/rollout/review",
            &json!({"by": "dana", "summary": "contract"}),
        )
        .to_request(),
    )
    .await;
    expect(
        &review,
        200,
        "rollout-review.v1",
        "POST /admin/rollout/review",
    );

    let guard = send(&app, get("/admin/guard").to_request()).await;
    expect(&guard, 200, "guard-view.v1", "GET /admin/guard");

    // A policy approval, requested and approved through the API, lands in the registry.
    let asked = send(
        &app,
        post(
            "/admin/guard/approvals",
            &json!({"kind": "guard-policy", "reason": "enforce", "requestedBy": "carol"}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(asked.status, 201, "{:#}", asked.body);
    let approval = asked.body["id"].as_str().unwrap().to_owned();
    let approve = format!("/admin/guard/approvals/{approval}/approve");
    let approved = send(&app, post(&approve, &json!({"by": "alice"})).to_request()).await;
    assert_eq!(approved.status, 200, "{:#}", approved.body);
    let registry = artifacts.join(".runs/flotilla/approvals/latest.json");
    assert_valid(
        "approvals.v1",
        "the approvals registry",
        &written(&registry).await,
    );
    let guard = send(&app, get("/admin/guard").to_request()).await;
    expect(
        &guard,
        200,
        "guard-view.v1",
        "GET /admin/guard (policy approved)",
    );
    assert_eq!(guard.body["policyApproval"], approval.as_str());

    // Cancel while queued: a final view, the status frame, the manifest and the metrics.
    let cancel = send(
        &app,
        post("/v1/tasks/contract-1/cancel", &json!({})).to_request(),
    )
    .await;
    assert_eq!(cancel.status, 200, "{:#}", cancel.body);
    let view = send(&app, get("/v1/tasks/contract-1").to_request()).await;
    expect(&view, 200, "task-view.v1", "GET /v1/tasks/{id} (cancelled)");
    let handle = id::<HandleId>(first.body["handle"].as_str().unwrap());
    let index = engine.log.create_handle(&handle);
    let mut sub = Subscription::new(engine.log.clone(), index, 0);
    let frames = tokio::time::timeout(Duration::from_secs(10), sub.next_batch())
        .await
        .expect("the status frame within 10 s")
        .unwrap()
        .expect("a frame");
    assert_eq!(frames.last().map(|f| f.kind), Some(StreamKind::Status));
    for f in &frames {
        assert_valid(
            "observer-frame.v1",
            "the status frame",
            &to_json(&to_observer(f)),
        );
    }
    let run = first.body["runId"].as_str().unwrap();
    let task_dir = artifacts.join(".runs/contract-1");
    let manifest = written(&task_dir.join(format!("cli/{run}/manifest.json"))).await;
    assert_valid("manifest.v2", "manifest.json", &manifest);
    assert_valid(
        "run-metrics.v1",
        "metrics.json",
        &written(&task_dir.join("metrics.json")).await,
    );

    // Errors, each a problem document.
    let no_token = TestRequest::get().uri("/v1/tasks").to_request();
    expect(&send(&app, no_token).await, 401, "problem.v1", "no token");
    let malformed = TestRequest::post()
        .uri("/v1/tasks")
        .insert_header(("Authorization", format!("Bearer {ADMIN}")))
        .set_payload("{\"argv\": [")
        .to_request();
    expect(
        &send(&app, malformed).await,
        400,
        "problem.v1",
        "malformed JSON",
    );
    let violation = post("/v1/tasks", &json!({"argv": [], "colour": "red"})).to_request();
    let violation = send(&app, violation).await;
    expect(&violation, 422, "problem.v1", "schema violation");
    assert!(violation.body["errors"].as_array().unwrap().len() >= 2);
    let unknown = post(
        "/v1/tasks",
        &json!({"schema": "flotilla.run-request/9.0.0", "argv": ["true"]}),
    )
    .to_request();
    expect(
        &send(&app, unknown).await,
        400,
        "problem.v1",
        "unknown version",
    );
    let bad_id = get("/v1/tasks/bad%20id").to_request();
    expect(&send(&app, bad_id).await, 400, "problem.v1", "invalid id");
    let bad_query = get("/v1/tasks?limit=5000").to_request();
    expect(&send(&app, bad_query).await, 400, "problem.v1", "bad query");
    let missing = get("/v1/tasks/no-such-task").to_request();
    expect(
        &send(&app, missing).await,
        404,
        "problem.v1",
        "unknown task",
    );
    let finished = post("/v1/tasks/contract-1/cancel", &json!({})).to_request();
    expect(
        &send(&app, finished).await,
        409,
        "problem.v1",
        "cancel finished",
    );
    let twice = post(&approve, &json!({"by": "alice"})).to_request();
    expect(&send(&app, twice).await, 409, "problem.v1", "approve twice");
    let nobody = post(
        "/admin/guard/approvals",
        &json!({"kind": "guard-override", "reason": "x", "requestedBy": "carol"}),
    )
    .to_request();
    expect(
        &send(&app, nobody).await,
        422,
        "problem.v1",
        "invalid approval",
    );

    // Shadow validation: a violating request is let through and shows in the drift report.
    let shadow = TestRequest::put()
        .uri("/admin/control-plane/modes")
        .insert_header(("Authorization", format!("Bearer {ADMIN}")))
        .set_payload(
            json!({"schema": "flotilla.run-request", "mode": "shadow", "by": "contract-test"})
                .to_string(),
        )
        .to_request();
    assert_eq!(send(&app, shadow).await.status, 200);
    let drifting = json!({"id": "contract-2", "argv": ["true"], "capabilities": ["gpu"],
        "timeoutSeconds": 9_999_999});
    let let_through = send(&app, post("/v1/tasks", &drifting).to_request()).await;
    expect(
        &let_through,
        201,
        "task-accepted.v1",
        "POST /v1/tasks (shadow)",
    );
    let drift = send(&app, get("/admin/control-plane/drift").to_request()).await;
    expect(
        &drift,
        200,
        "drift-report.v1",
        "GET /admin/control-plane/drift",
    );
    assert!(!drift.body["violations"].as_array().unwrap().is_empty());
    let cancel = post("/v1/tasks/contract-2/cancel", &json!({})).to_request();
    assert_eq!(send(&app, cancel).await.status, 200);
    let run = let_through.body["runId"].as_str().unwrap();
    let manifest = artifacts.join(format!(".runs/contract-2/cli/{run}/manifest.json"));
    let manifest = written(&manifest).await;
    assert_valid("manifest.v2", "manifest.json (shadow)", &manifest);
    assert_eq!(
        manifest["controlPlane"]["validation"]["outcome"],
        "accepted-with-violations"
    );
}
