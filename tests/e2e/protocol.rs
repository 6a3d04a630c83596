//! The agent protocol on the wire, spoken by hand: an agent that names the `batch`
//! feature gets what is queued for it in batches and may answer in batches; one that
//! does not (an older agent) gets one message at a time.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{vm_rss_kib, App};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &App, token: &str, hello: Value) -> (Socket, Value) {
    let url = format!("{}/v1/agents/connect", app.base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text(hello.to_string())).await.unwrap();
    let welcome = next_text(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome)
}

async fn next_text(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a message within 20 s")
            .expect("the socket is open")
            .expect("a readable message");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// Reads until `n` assignments came; returns them and how many text messages held them.
async fn assignments(ws: &mut Socket, n: usize) -> (Vec<Value>, usize, usize) {
    let (mut assigns, mut messages, mut batches) = (Vec::new(), 0, 0);
    while assigns.len() < n {
        let msg = next_text(ws).await;
        messages += 1;
        let inner = match msg["type"].as_str() {
            Some("batch") => {
                batches += 1;
                msg["messages"].as_array().unwrap().clone()
            }
            _ => vec![msg],
        };
        assigns.extend(inner.into_iter().filter(|m| m["type"] == "assign"));
    }
    (assigns, messages, batches)
}

fn hello(id: &str, features: &[&str]) -> Value {
    json!({
        "type": "hello", "protocol": 2, "instance": id, "capabilities": ["os:linux"],
        "slots": 40, "pid": std::process::id(), "features": features,
    })
}

fn outcome(attempt: &Value) -> Value {
    json!({"type": "exited", "attempt": attempt, "outcome": {"kind": "exited", "code": 0, "signal": null}})
}

#[test]
fn a_batching_agent_gets_and_sends_batches_and_an_older_agent_one_message_at_a_time() {
    let app = App::start(0);
    let token = app.agent_token();
    let tasks: Vec<Value> = (0..40).map(|_| json!({"argv": ["true"]})).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // An agent that does not name `batch`: forty assignments, forty messages.
    let ids = app.client.submit_batch(&tasks).unwrap();
    assert_eq!(ids["accepted"], 40, "{ids}");
    rt.block_on(async {
        let (mut ws, welcome) = connect(&app, &token, hello("older", &[])).await;
        assert_eq!(welcome["features"], json!(["batch"]));
        let (assigns, messages, batches) = assignments(&mut ws, 40).await;
        assert_eq!((messages, batches), (40, 0));
        for a in &assigns {
            let started = json!({"type": "started", "attempt": a["attempt"], "pid": 1});
            ws.send(Message::text(started.to_string())).await.unwrap();
            ws.send(Message::text(outcome(&a["attempt"]).to_string()))
                .await
                .unwrap();
        }
        app.wait_until_finished(40);
        ws.close(None).await.unwrap();
    });

    // An agent that names it: the same forty come in a few batches, and its answers,
    // two batches of forty, are each taken whole.
    app.client.submit_batch(&tasks).unwrap();
    rt.block_on(async {
        let (mut ws, _) = connect(&app, &token, hello("newer", &["batch", "slots"])).await;
        let (assigns, messages, batches) = assignments(&mut ws, 40).await;
        assert!(
            messages < 40 && batches >= 1,
            "{messages} messages, {batches} of them batches"
        );
        let started: Vec<Value> = assigns
            .iter()
            .map(|a| json!({"type": "started", "attempt": a["attempt"], "pid": 1}))
            .collect();
        let exited: Vec<Value> = assigns.iter().map(|a| outcome(&a["attempt"])).collect();
        for messages in [started, exited] {
            let batch = json!({"type": "batch", "messages": messages});
            ws.send(Message::text(batch.to_string())).await.unwrap();
        }
        app.wait_until_finished(80);
        // A batch may not nest: the connection is refused with the reason.
        let nested = json!({"type": "batch", "messages": [{"type": "batch", "messages": [{"type": "heartbeat", "running": []}]}]});
        ws.send(Message::text(nested.to_string())).await.unwrap();
        let refused = loop {
            let msg = next_text(&mut ws).await;
            if msg["type"] != "batch" && msg["type"] != "done" {
                break msg;
            }
        };
        assert_eq!(refused["type"], "refused", "{refused}");
        assert!(
            refused["reason"].as_str().unwrap().contains("/messages/0/type"),
            "{refused}"
        );
    });
    let summary = app.client.summary().unwrap();
    assert_eq!(summary["succeeded"], 80, "{summary}");
}

/// The binary output chunk of the agent protocol.
fn chunk(attempt: u64, seq: u64, data: &[u8]) -> Message {
    let mut out = vec![1u8, 1];
    out.extend_from_slice(&attempt.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(data);
    Message::binary(out)
}

/// Reads until the server closes the connection; the reason of its `refused` message.
async fn refused_reason(ws: &mut Socket) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("the server closes the connection within 20 s");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "refused" {
                    return v["reason"].as_str().unwrap().to_owned();
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("the connection broke without a reason: {e}"),
            None => panic!("the connection closed without a reason"),
        }
    }
}

/// An agent that sends past its acknowledgement window is disconnected with the reason,
/// and its attempt is lost and queued again, as for any agent that goes away.
#[test]
fn an_agent_past_its_acknowledgement_window_is_disconnected_and_its_attempt_requeued() {
    let app = App::start(0);
    let token = app.agent_token();
    let task = app.submit(json!({"argv": ["true"], "maxAttempts": 2}));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reason = rt.block_on(async {
        let (mut ws, _) = connect(&app, &token, hello("hasty", &[])).await;
        let (assigns, _, _) = assignments(&mut ws, 1).await;
        let attempt = assigns[0]["attempt"].as_u64().unwrap();
        let started = json!({"type": "started", "attempt": attempt, "pid": 1});
        ws.send(Message::text(started.to_string())).await.unwrap();
        ws.send(chunk(attempt, 1, b"one\n")).await.unwrap();
        // Seq 300 while at most 256 may be unacknowledged.
        ws.send(chunk(attempt, 300, b"too far\n")).await.unwrap();
        refused_reason(&mut ws).await
    });
    assert!(
        reason.contains("exceeded the acknowledgement window"),
        "{reason}"
    );
    let id = task["id"].as_str().unwrap();
    let queued = app.wait_state(id, "queued", Duration::from_secs(20));
    assert_eq!(queued["attempts"], 1, "{queued}");
}

/// An agent that floods output without waiting for acknowledgements cannot make the
/// server hold it: it is disconnected (or kept in step), and the server's memory stays
/// within a few windows of its baseline.
#[test]
fn a_flooding_agent_does_not_grow_the_server_without_bound() {
    let app = App::start(0);
    let token = app.agent_token();
    app.submit(json!({"argv": ["true"], "maxAttempts": 1}));
    let pid = app.server_pid();
    let baseline = vm_rss_kib(pid);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sent, peak, reason) = rt.block_on(async {
        let (mut ws, _) = connect(&app, &token, hello("flood", &[])).await;
        let (assigns, _, _) = assignments(&mut ws, 1).await;
        let attempt = assigns[0]["attempt"].as_u64().unwrap();
        let started = json!({"type": "started", "attempt": attempt, "pid": 1});
        ws.send(Message::text(started.to_string())).await.unwrap();
        let line = vec![b'x'; (1 << 20) - 18];
        let (mut sent, mut peak) = (0u64, 0u64);
        // 1,024 chunks of 1 MiB (a GiB), never reading an acknowledgement.
        for seq in 1..=1024 {
            if ws.send(chunk(attempt, seq, &line)).await.is_err() {
                break;
            }
            sent = seq;
            if seq % 16 == 0 {
                peak = peak.max(vm_rss_kib(pid));
            }
        }
        let reason =
            match tokio::time::timeout(Duration::from_secs(5), refused_reason(&mut ws)).await {
                Ok(r) => r,
                Err(_) => String::from("(still connected)"),
            };
        (sent, peak, reason)
    });
    let grown_mib = peak.saturating_sub(baseline) / 1024;
    assert!(
        grown_mib < 256,
        "the server grew by {grown_mib} MiB while an agent flooded it ({sent} chunks sent; {reason})"
    );
    assert!(
        sent < 1024 || reason.contains("acknowledgement window") || reason == "(still connected)",
        "{reason}"
    );
}
