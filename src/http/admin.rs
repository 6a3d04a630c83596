//! The admin API's views of the fleet: `/admin/fleet`, `/admin/queue`, `/admin/alerts`.
//! Each body has its schema in `schemas/` and is checked against it in debug builds.

use actix_web::{HttpRequest, HttpResponse};
use flotilla_actors::dispatcher::messages::{fleet_load, instances_by_state};

use super::error::ApiError;
use super::{auth, State};

/// `GET /admin/fleet`: the fleet at a glance: instances by state with slots, running
/// attempts and utilization (over the instances not failed), the queue's total and
/// oldest wait, observers, and the frame log's size.
pub async fn fleet(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let stopped = |e| ApiError::internal("fleet", e);
    let instances = engine.instances().await.map_err(stopped)?;
    let queue = engine.queue().await.map_err(stopped)?;
    let (slots, running, utilization) = fleet_load(&instances);
    let now = flotilla_actors::domain::now_ms();
    let oldest = queue.iter().filter_map(|q| q.oldest_wait_ms(now)).max();
    let log = engine.log.counters();
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "instances": {
            "total": instances.len(),
            "byState": instances_by_state(&instances),
            "slots": slots,
            "running": running,
            "utilization": utilization,
        },
        "queue": {
            "total": queue.iter().map(|q| q.depth).sum::<usize>(),
            "oldestWaitMs": oldest,
        },
        "observers": engine.observers.count(),
        "log": {"bytes": load(&log.size), "segments": load(&log.segments)},
    })))
}

/// `GET /admin/queue`: the tasks waiting, by the capabilities they require, with the
/// one waiting longest of each.
pub async fn queue(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let queues = engine
        .queue()
        .await
        .map_err(|e| ApiError::internal("queue", e))?;
    let now = flotilla_actors::domain::now_ms();
    let total: usize = queues.iter().map(|q| q.depth).sum();
    let queues: Vec<serde_json::Value> = queues
        .iter()
        .map(|q| {
            serde_json::json!({
                "capabilities": q.capabilities,
                "depth": q.depth,
                "oldestAcceptedAt": q.oldest_ms.map(flotilla_actors::domain::rfc3339_ms),
                "oldestWaitMs": q.oldest_wait_ms(now),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "total": total, "queues": queues })))
}

/// `GET /admin/alerts`: every alert rule with its state, measured value, threshold and
/// why, and how the rules are evaluated.
pub async fn alerts(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let settings = engine.alert_settings();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "everyMs": settings.every_ms,
        "windowMs": settings.window_ms,
        "webhook": settings.webhook.is_some(),
        "alerts": engine.alerts(),
    })))
}
