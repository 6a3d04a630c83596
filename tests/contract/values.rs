//! Values built by the real code, validated against their schemas: the wire messages, the
//! observer frames, the evidence files and the admin views.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use flotilla_actors::control_plane::{
    ControlPlane, ControlPlaneConfig, RunRequest, ValidationMode,
};
use flotilla_actors::dispatcher::messages::InstanceView;
use flotilla_actors::domain::{
    Capability, End, HandleId, InstanceId, RunId, Scope, TaskId, TaskState,
};
use flotilla_actors::exec_handle::StoredFrame;
use flotilla_actors::fleet::DEFAULT_HEARTBEAT_MS as HEARTBEAT_MS;
use flotilla_actors::guard::approvals::{
    ApprovalKind, ApprovalRequest, Approvers, OverrideTarget, Registry, Signoff,
};
use flotilla_actors::guard::{GuardSpec, GuardView, Level};
use flotilla_actors::manifest::{
    render, render_metrics, to_v1, FleetEvidence, GuardEvidence, MetricsEvidence,
};
use flotilla_actors::protocol::{
    AgentMsg, Assignment, FinalStatus, HeldAttempt, Outcome, Resume, ServerMsg, StreamKind,
    FEATURE_BATCH, FEATURE_SLOTS, PROTOCOL_VERSION,
};
use flotilla_actors::store::{
    AttemptCounts, AttemptRow, Checkpoint, CheckpointAction, DecisionRow, GuardRunRow,
    InstanceStats, ObserverRecord, TaskRow,
};
use flotilla_actors::subscriber::to_observer;

use crate::schemas::{assert_valid, read_json, to_json};

/// A domain id from a literal that is valid.
pub fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

#[test]
fn agent_protocol_messages_follow_their_schemas() {
    let agent = [
        AgentMsg::Hello {
            protocol: PROTOCOL_VERSION,
            instance: id::<InstanceId>("gpu-box-1"),
            capabilities: Capability::parse_list("os:linux,gpu,llm-32k").unwrap(),
            slots: 4,
            pid: std::process::id(),
            held: vec![],
            features: vec![FEATURE_BATCH.into(), FEATURE_SLOTS.into()],
        },
        AgentMsg::Hello {
            protocol: PROTOCOL_VERSION,
            instance: id::<InstanceId>("local-1"),
            capabilities: vec![],
            slots: 1,
            pid: std::process::id(),
            held: vec![
                HeldAttempt {
                    attempt: 7,
                    acked: 0,
                },
                HeldAttempt {
                    attempt: 8,
                    acked: 256,
                },
            ],
            features: vec![],
        },
        AgentMsg::Batch {
            messages: vec![
                AgentMsg::Exited {
                    attempt: 7,
                    outcome: Outcome::TimedOut,
                },
                AgentMsg::Started {
                    attempt: 9,
                    pid: 4243,
                },
                AgentMsg::Heartbeat { running: vec![9] },
            ],
        },
        AgentMsg::Heartbeat { running: vec![] },
        AgentMsg::Heartbeat {
            running: vec![7, 8],
        },
        AgentMsg::Started {
            attempt: 7,
            pid: 4242,
        },
        AgentMsg::Exited {
            attempt: 7,
            outcome: Outcome::Exited {
                code: Some(0),
                signal: None,
            },
        },
        AgentMsg::Exited {
            attempt: 8,
            outcome: Outcome::Exited {
                code: None,
                signal: Some(9),
            },
        },
        AgentMsg::Exited {
            attempt: 9,
            outcome: Outcome::TimedOut,
        },
        AgentMsg::Exited {
            attempt: 10,
            outcome: Outcome::Cancelled,
        },
        AgentMsg::Exited {
            attempt: 11,
            outcome: Outcome::SpawnFailed {
                message: "no-such-tool: No such file or directory (os error 2)".into(),
            },
        },
    ];
    for msg in &agent {
        assert_valid("agent-message.v2", &format!("{msg:?}"), &to_json(msg));
    }

    let assignment = |cwd: Option<&str>, timeout_ms| Assignment {
        attempt: 42,
        task: id::<TaskId>("build-42"),
        handle: HandleId::generate(),
        attempt_no: 2,
        argv: vec!["cargo".into(), "test".into()],
        env: vec![("DB_PASS".into(), "hunter2-but-longer".into())],
        cwd: cwd.map(str::to_owned),
        timeout_ms,
        // Never sent: the schema refuses any field it does not name.
        guard: GuardSpec {
            level: Level::Sensitive,
            secret_env: vec!["DB_PASS".into()],
        },
        max_output_bytes: Some(1 << 20),
    };
    let server = [
        ServerMsg::Welcome {
            heartbeat_ms: HEARTBEAT_MS,
            grace_ms: 30_000,
            resume: vec![],
            fenced: vec![],
            features: vec![FEATURE_BATCH.into()],
        },
        ServerMsg::Welcome {
            heartbeat_ms: HEARTBEAT_MS,
            grace_ms: 30_000,
            resume: vec![Resume {
                attempt: 7,
                after: 12,
            }],
            fenced: vec![8],
            features: vec![],
        },
        ServerMsg::Batch {
            messages: vec![
                ServerMsg::Ack {
                    attempt: 41,
                    seq: 3,
                },
                ServerMsg::Done { attempt: 41 },
                ServerMsg::Assign(assignment(None, Some(5_000))),
                ServerMsg::Cancel { attempt: 40 },
                ServerMsg::Fence {
                    attempts: vec![39],
                    reason: "lease expired".into(),
                },
            ],
        },
        ServerMsg::Done { attempt: 42 },
        ServerMsg::Fence {
            attempts: vec![9],
            reason: "lease expired".into(),
        },
        ServerMsg::Assign(assignment(None, None)),
        ServerMsg::Assign(assignment(Some("/src/app"), Some(1_800_000))),
        ServerMsg::Cancel { attempt: 42 },
        ServerMsg::Ack {
            attempt: 42,
            seq: 256,
        },
        ServerMsg::Refused {
            reason: "no message for 3 s".into(),
            retry: false,
        },
        ServerMsg::Refused {
            reason: "instance id local-1 is in use".into(),
            retry: true,
        },
    ];
    for msg in &server {
        assert_valid("server-message.v2", &format!("{msg:?}"), &to_json(msg));
    }
}

#[test]
fn observer_frames_follow_their_schema() {
    let handle = HandleId::generate();
    let frame = |offset, attempt, kind, data: Vec<u8>| StoredFrame {
        handle: handle.clone(),
        offset,
        attempt,
        ts_ms: 1_795_000_000_123,
        kind,
        data,
    };
    let guard = json!({"action": "block", "stream": "stdout", "rule": "github-pat",
        "kind": "github-token", "digest": "0a1b2c3d", "start": 0, "end": 40});
    let status = |state, exit_code, signal, attempts, reason: Option<&str>| {
        serde_json::to_vec(&FinalStatus {
            end: End {
                state,
                exit_code,
                signal,
                reason: reason.map(str::to_owned),
            },
            attempts,
        })
        .unwrap()
    };
    let frames = [
        frame(1, 1, StreamKind::Stdout, b"hello\n".to_vec()),
        frame(2, 1, StreamKind::Stderr, vec![0xff, 0x00, b'a']),
        frame(3, 1, StreamKind::Guard, guard.to_string().into_bytes()),
        frame(
            4,
            1,
            StreamKind::Status,
            status(TaskState::Succeeded, Some(0), None, 1, None),
        ),
        frame(
            1,
            0,
            StreamKind::Status,
            status(
                TaskState::Cancelled,
                None,
                None,
                0,
                Some("cancelled while queued"),
            ),
        ),
        frame(
            9,
            3,
            StreamKind::Status,
            status(
                TaskState::TimedOut,
                None,
                Some(9),
                3,
                Some("timed out after 5 s"),
            ),
        ),
    ];
    for f in &frames {
        let shown = to_observer(f);
        assert_valid("observer-frame.v1", &format!("{shown:?}"), &to_json(&shown));
    }
    let base64 = to_json(&to_observer(&frames[1]));
    assert_eq!(base64["encoding"], "base64", "{base64}");
}

/// A finished task as the store holds it, with a secret in its env.
fn task_row(id: &str, state: TaskState) -> TaskRow {
    TaskRow {
        id: self::id(id),
        handle: HandleId::generate(),
        run_id: RunId::generate(),
        request: json!({
            "schema": "flotilla.run-request/2.0.0",
            "argv": ["make", "-j8"],
            "env": {"DEPLOY_TOKEN": "s3cr3t-deploy-value"},
        })
        .to_string(),
        state,
        attempts: 2,
        max_attempts: 3,
        instance: Some(self::id("local-2")),
        exit_code: Some(2),
        signal: None,
        reason: Some("exited with status 2".into()),
        created_ms: 1_795_000_000_000,
        updated_ms: 1_795_000_060_000,
        finished_ms: Some(1_795_000_060_000),
        parent: None,
        shard: None,
    }
}

/// Every rule id a guard decision may carry.
fn guard_rules() -> Vec<&'static str> {
    flotilla_guard::rule_ids()
        .chain(["held-back-timeout"])
        .collect()
}

#[test]
fn run_metrics_and_manifests_follow_their_schemas() {
    // One stored decision per rule the guard can report, each action, applied or not.
    let actions = ["allow", "redact", "block"];
    let rules = guard_rules();
    let decisions: Vec<DecisionRow> = rules
        .iter()
        .enumerate()
        .map(|(i, rule)| DecisionRow {
            attempt_no: 1 + (i % 2) as u32,
            stream: if i % 2 == 0 { "stdout" } else { "stderr" },
            rule: (*rule).to_owned(),
            kind: "secret".into(),
            action: actions[i % 3],
            mode: "enforce",
            applied: i % 4 != 0,
            digest: "0a1b2c3d".into(),
            start: 10 * i as u64,
            end: 10 * i as u64 + 8,
            allowed_by: (i % 3 == 0).then(|| "ap-0a1b2c3d4e5f".to_owned()),
            ts_ms: 1_795_000_000_000,
        })
        .collect();
    let runs = vec![
        GuardRunRow {
            attempt_no: 1,
            mode: "shadow".into(),
            level: "standard".into(),
            policy_approval: None,
            overrides: vec![],
            decisions: 0,
        },
        GuardRunRow {
            attempt_no: 2,
            mode: "enforce".into(),
            level: "standard".into(),
            policy_approval: Some("ap-0a1b2c3d4e5f".into()),
            overrides: vec!["ap-112233445566".into()],
            decisions: decisions.len() as u64 + 5,
        },
    ];
    let task = task_row("build-42", TaskState::Failed);
    for guard in [
        GuardEvidence {
            validation: None,
            approvals_file: ".runs/flotilla/approvals/latest.json".into(),
            runs: vec![],
            decisions: vec![],
        },
        GuardEvidence {
            validation: None,
            approvals_file: ".runs/flotilla/approvals/latest.json".into(),
            runs,
            decisions,
        },
    ] {
        let attempts = [AttemptRow {
            key: 1,
            attempt_no: 1,
            instance: id("local-2"),
            state: "exited".into(),
            started_ms: 1_795_000_000_100,
            ended_ms: Some(1_795_000_060_000),
            exit_code: Some(2),
            signal: None,
            detail: None,
        }];
        let stats = InstanceStats {
            instance: id("local-2"),
            capabilities: vec!["local".into(), "gpu:a100".into()],
            slots: 2,
            connected_ms: 1_795_000_000_000,
            left_ms: Some(1_795_000_090_000),
            last_heard_ms: 1_795_000_089_500,
            busy_ms: 59_900,
            utilization: 0.33,
            attempts: AttemptCounts {
                started: 4,
                running: 0,
                succeeded: 1,
                failed: 1,
                rescheduled: 1,
                fenced: 1,
                cancelled: 0,
            },
            restarts: 1,
            mttr_ms: Some(1_250),
            repairs: 2,
        };
        let required = [
            "task".to_owned(),
            "instance".to_owned(),
            "privacy".to_owned(),
        ];
        for (attempts, instances) in [(&attempts[..0], &[][..]), (&attempts[..], &[stats][..])] {
            let evidence = MetricsEvidence {
                attempts,
                guard: &guard,
                instances,
                required: &required,
            };
            assert_valid(
                "run-metrics.v1",
                "render_metrics",
                &render_metrics(&task, &evidence),
            );
        }
        let plain = render(&task, &attempts, &guard, &FleetEvidence::default());
        assert_valid("manifest.v2", "render", &plain);
        assert_valid("manifest.v1", "render, adapted to v1", &to_v1(&plain));
        // A poisoned shard with its checkpoints, and a fanned-out task with its shards.
        let checkpoint = |action, from: &str, to: Option<&str>| Checkpoint {
            ts_ms: 1_795_000_030_000,
            action,
            reason: "instance local-2 disconnected".into(),
            from_instance: Some(id(from)),
            to_instance: to.map(id),
            attempt_no: 1,
            epoch: 7,
        };
        let shard = TaskRow {
            parent: Some(id("build-42")),
            shard: Some(1),
            state: TaskState::Poisoned,
            ..task_row("build-42.s1", TaskState::Poisoned)
        };
        let fleet = FleetEvidence {
            checkpoints: CheckpointAction::ALL
                .into_iter()
                .map(|a| checkpoint(a, "local-2", Some("local-3")))
                .collect(),
            fan_out: None,
            // One observer that left, one still connected.
            observers: vec![
                ObserverRecord {
                    id: "o-18c2a-1".into(),
                    joined_ms: 1_764_590_000_000,
                    left_ms: Some(1_764_590_004_000),
                    from: 0,
                    last_offset: 12,
                    frames: 12,
                    bytes: 3_100,
                    policy: "drop".into(),
                    reason: Some("closed by the observer".into()),
                },
                ObserverRecord {
                    id: "o-18c2a-2".into(),
                    joined_ms: 1_764_590_001_000,
                    left_ms: None,
                    from: 5,
                    last_offset: 9,
                    frames: 4,
                    bytes: 900,
                    policy: "catch-up".into(),
                    reason: None,
                },
            ],
        };
        let fenced = [AttemptRow {
            state: "fenced".into(),
            detail: Some("lease expired: instance local-2 did not report it for 3000 ms".into()),
            ..attempts[0].clone()
        }];
        let poisoned = render(&shard, &fenced, &guard, &fleet);
        assert_valid("manifest.v2", "render a poisoned shard", &poisoned);
        assert_eq!(
            poisoned["recovery"].as_array().map(Vec::len),
            Some(CheckpointAction::ALL.len())
        );
        assert_eq!(poisoned["observers"][0]["reason"], "closed by the observer");
        let v1 = to_v1(&poisoned);
        assert_valid("manifest.v1", "a poisoned shard, adapted to v1", &v1);
        assert_eq!(
            (v1["state"].as_str(), v1.get("recovery")),
            (Some("failed"), None)
        );
        assert_eq!(
            v1["attempts"][0]["state"], "lost",
            "v1 knows fenced as lost"
        );
        let parent = FleetEvidence {
            checkpoints: vec![],
            fan_out: Some(("first-wins", vec![(shard.clone(), attempts.to_vec())])),
            observers: vec![],
        };
        let fanned = render(&task, &[], &guard, &parent);
        assert_valid("manifest.v2", "render a fanned-out task", &fanned);
        assert_eq!(fanned["fanOut"]["shards"][0]["taskId"], "build-42.s1");
        assert_valid("manifest.v1", "a fanned-out task, adapted", &to_v1(&fanned));
    }
}

#[test]
fn the_approvals_registry_follows_its_schema() {
    // Every status: a policy approved, an override approved then revoked, one revoked while
    // requested, one expired, and one requested.
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::load(dir.path(), &Scope::default()).unwrap();
    let who = Approvers {
        approvers: vec!["alice".into()],
        after_hours_owner: Some("oncall-privacy".into()),
    };
    let now = 1_795_000_000_000;
    let policy = registry
        .request(
            ApprovalRequest {
                kind: ApprovalKind::GuardPolicy,
                scope: None,
                target: None,
                signoff: None,
                reason: "enforce for restricted tasks".into(),
                requested_by: "carol".into(),
                expires_in_seconds: None,
            },
            now,
        )
        .unwrap();
    registry
        .approve(&policy.id, "alice", &who, now + 1)
        .unwrap();
    let mut ids = vec![policy.id];
    for (scope, target) in [
        (
            Some("build-42"),
            OverrideTarget {
                digest: Some("0a1b2c3d".into()),
                ..Default::default()
            },
        ),
        (
            None,
            OverrideTarget {
                rule: Some(guard_rules()[0].to_owned()),
                ..Default::default()
            },
        ),
        (
            None,
            OverrideTarget {
                pattern: Some("AKIA[A-Z0-9]{16}".into()),
                ..Default::default()
            },
        ),
    ] {
        let a = registry
            .request(
                ApprovalRequest {
                    kind: ApprovalKind::GuardOverride,
                    scope: scope.map(str::to_owned),
                    target: Some(target),
                    signoff: None,
                    reason: "known test fixture".into(),
                    requested_by: "dave".into(),
                    expires_in_seconds: Some(3600),
                },
                now + 2,
            )
            .unwrap();
        ids.push(a.id);
    }
    registry
        .approve(&ids[1], "oncall-privacy", &who, now + 3)
        .unwrap();
    registry.revoke(&ids[1], "bob", now + 4).unwrap();
    registry.revoke(&ids[2], "bob", now + 5).unwrap();
    // Listing past the overrides' life marks the last one expired; the next save keeps it.
    let later = now + 4_000_000;
    registry.list(later);
    let pending = ApprovalRequest {
        kind: ApprovalKind::GuardOverride,
        scope: None,
        target: Some(OverrideTarget {
            digest: Some("9f86d081".into()),
            ..Default::default()
        }),
        signoff: None,
        reason: "a public test vector".into(),
        requested_by: "dave".into(),
        expires_in_seconds: Some(600),
    };
    registry.request(pending, later).unwrap();
    let signoff = ApprovalRequest {
        kind: ApprovalKind::SponsorSignoff,
        scope: None,
        target: None,
        signoff: Some(Signoff {
            objectives: vec!["a fleet that heals itself".into()],
            success_metrics: vec!["completion of at least 95 % without manual intervention".into()],
        }),
        reason: "the autonomy upgrade programme".into(),
        requested_by: "dana".into(),
        expires_in_seconds: None,
    };
    let signoff = registry.request(signoff, later).unwrap();
    registry
        .approve(&signoff.id, "alice", &who, later + 1)
        .unwrap();
    let file = read_json(registry.path());
    let mut statuses: Vec<&str> = file["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["status"].as_str())
        .collect();
    statuses.sort_unstable();
    statuses.dedup();
    assert_eq!(statuses, ["approved", "expired", "requested", "revoked"]);
    assert_valid("approvals.v1", "the approvals registry file", &file);
}

#[test]
fn admin_views_follow_their_schemas() {
    let guard_view = GuardView {
        mode: "enforce",
        phase: "limited",
        levels: BTreeMap::from([("standard", "shadow")]),
        effective: Level::ALL.map(|l| (l.as_str(), "shadow")).into(),
        policy_approval: Some("ap-0a1b2c3d4e5f".into()),
        approvers: vec!["alice".into(), "bob".into()],
        after_hours_owner: None,
        fail_on_block: true,
        hold_back_ms: flotilla_actors::guard::HOLD_MS,
        hold_back_bytes: flotilla_guard::stream::MAX_HOLD,
    };
    assert_valid("guard-view.v1", "GuardView", &to_json(&guard_view));
    let instance = InstanceView {
        id: id("local-1"),
        capabilities: Capability::parse_list("local,os:linux").unwrap(),
        slots: 2,
        running: vec![id("build-42")],
        pid: 4242,
        connected_at: flotilla_actors::domain::rfc3339_ms(1_795_000_000_000),
        state: "ready",
        reason: None,
    };
    for state in [
        "ready", "quiet", "cooling", "cordoned", "draining", "drained", "failed",
    ] {
        let view = InstanceView {
            state,
            reason: (state == "failed").then(|| "6 restarts within 60 s".to_owned()),
            ..instance.clone()
        };
        assert_valid(
            "instances.v1",
            "InstanceView",
            &json!({ "instances": [view] }),
        );
    }
}

#[test]
fn the_control_plane_reports_follow_their_schemas() {
    let plane = ControlPlane::new(ControlPlaneConfig::default()).unwrap();
    let bad = br#"{"schema": "flotilla.run-request/2.0.0", "argv": ["true"], "timeoutSeconds": 9999999, "colour": 1}"#;
    let refused = plane.parse_run_request(bad).unwrap_err();
    let errors: Vec<Value> = refused.errors().iter().map(to_json).collect();
    assert!(!errors.is_empty());
    let problem = json!({
        "type": "urn:flotilla:problem:schema-violation",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": refused.to_string(),
        "errors": errors,
    });
    assert_valid("problem.v1", "a schema violation's errors", &problem);

    // In shadow the same request is let through and recorded as drift.
    plane
        .set_mode(
            "flotilla.run-request",
            ValidationMode::Shadow,
            "contract-test",
            None,
        )
        .unwrap();
    let bad =
        br#"{"schema": "flotilla.run-request/2.0.0", "argv": ["true"], "timeoutSeconds": 9999999}"#;
    let accepted = plane.parse_run_request(bad).unwrap();
    assert_eq!(accepted.report.outcome, "accepted-with-violations");
    assert_valid(
        "run-request.v2",
        "the let-through request, its violation corrected",
        &to_json(&RunRequest {
            timeout_seconds: Some(60),
            ..accepted.request.clone()
        }),
    );
    assert_valid("drift-report.v1", "drift_report", &plane.drift_report());
    let guard = GuardEvidence {
        validation: Some(to_json(&accepted.report).to_string()),
        approvals_file: ".runs/flotilla/approvals/latest.json".into(),
        runs: vec![],
        decisions: vec![],
    };
    let task = task_row("t-shadowed", TaskState::Cancelled);
    assert_valid(
        "manifest.v2",
        "render with a shadow report",
        &render(&task, &[], &guard, &FleetEvidence::default()),
    );

    // A v1 document is upgraded to a v2 request that follows the v2 schema.
    let v1 = br#"{"id": "build-7", "argv": ["make"], "env": {"A": "1"}, "cwd": "/src",
        "timeoutSeconds": 60, "capabilities": ["os:linux"], "maxAttempts": 2,
        "labels": {"team": "infra"}, "secretEnv": ["A"], "constraints": {"privacy": "sensitive"}}"#;
    let upgraded = plane.parse_run_request(v1).unwrap().request;
    assert_valid(
        "run-request.v2",
        "a v1 request upgraded",
        &to_json(&upgraded),
    );
}
