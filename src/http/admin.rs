//! The admin API's views: `/admin/fleet`, `/admin/queue`, `/admin/alerts` and the task
//! pages of `/admin/tasks`. Each body has its schema in `schemas/` and is checked
//! against it in debug builds.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use flotilla_actors::dispatcher::messages::{fleet_load, instances_by_state};
use flotilla_actors::domain::{InstanceId, TaskId, TaskState};
use flotilla_actors::store::TaskFilter;

use super::error::ApiError;
use super::tasks::TaskView;
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

/// Rows a task page holds by default, and at most.
const PAGE_ROWS: u32 = 100;
const PAGE_ROWS_MAX: u32 = 1000;
/// Bytes of task views a page holds by default, and the bounds a client may ask for.
const PAGE_BYTES: usize = 256 << 10;
const PAGE_BYTES_MIN: usize = 4 << 10;
const PAGE_BYTES_MAX: usize = 4 << 20;

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PageQuery {
    /// Comma-separated states.
    state: Option<String>,
    instance: Option<String>,
    capability: Option<String>,
    id_prefix: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
    max_bytes: Option<usize>,
}

fn bad_query(field: &str, rule: &str, message: String) -> ApiError {
    ApiError::field(
        StatusCode::BAD_REQUEST,
        "bad-query",
        format!("/query/{field}"),
        rule,
        message,
    )
}

/// A cursor names the last task of a page: `<accepted ms>:<task id>`.
fn parse_cursor(c: &str) -> Result<(i64, TaskId), ApiError> {
    let bad = || {
        bad_query(
            "cursor",
            "pattern",
            format!("cursor {c:?} is not one this API gave out; start again without it"),
        )
    };
    let (ms, id) = c.split_once(':').ok_or_else(bad)?;
    let ms = ms.parse::<i64>().map_err(|_| bad())?;
    let id = TaskId::parse(id).map_err(|_| bad())?;
    Ok((ms, id))
}

fn page_filter(q: &PageQuery) -> Result<TaskFilter, ApiError> {
    let states = match q.state.as_deref() {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|s| {
                s.parse::<TaskState>()
                    .map_err(|e| bad_query("state", "enum", e.to_string()))
            })
            .collect::<Result<_, _>>()?,
    };
    let instance = q
        .instance
        .as_deref()
        .map(|i| {
            InstanceId::parse(i)
                .map_err(|e| bad_query("instance", "pattern", format!("instance {i:?}: {e}")))
        })
        .transpose()?;
    let text = |field: &str, v: &Option<String>| match v.as_deref() {
        Some(s) if s.is_empty() || s.chars().count() > 64 => Err(bad_query(
            field,
            "maxLength",
            format!(
                "{field} must be 1 to 64 characters, got {}",
                s.chars().count()
            ),
        )),
        _ => Ok(v.clone()),
    };
    Ok(TaskFilter {
        states,
        instance,
        capability: text("capability", &q.capability)?,
        id_prefix: text("idPrefix", &q.id_prefix)?,
    })
}

/// `GET /admin/tasks`: tasks matching the filters, newest first, one page at a time. A
/// page stops at `limit` rows or before the row that would take it past `maxBytes` of
/// task views (it always holds one), and `nextCursor` continues after its last row.
pub async fn tasks(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let q: PageQuery = super::query(&req)?;
    let filter = page_filter(&q)?;
    let limit = q.limit.unwrap_or(PAGE_ROWS);
    if !(1..=PAGE_ROWS_MAX).contains(&limit) {
        return Err(bad_query(
            "limit",
            if limit < 1 { "minimum" } else { "maximum" },
            format!("limit must be between 1 and {PAGE_ROWS_MAX}, got {limit}"),
        ));
    }
    let max_bytes = q.max_bytes.unwrap_or(PAGE_BYTES);
    if !(PAGE_BYTES_MIN..=PAGE_BYTES_MAX).contains(&max_bytes) {
        return Err(bad_query(
            "maxBytes",
            if max_bytes < PAGE_BYTES_MIN {
                "minimum"
            } else {
                "maximum"
            },
            format!(
                "maxBytes must be between {PAGE_BYTES_MIN} and {PAGE_BYTES_MAX}, got {max_bytes}"
            ),
        ));
    }
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let rows = engine
        .store
        .page_tasks(&filter, after.as_ref().map(|(ms, id)| (*ms, id)), limit + 1)
        .await
        .map_err(|e| ApiError::internal("listing tasks", e))?;
    let mut views = Vec::new();
    let mut bytes = 0;
    let mut stopped_by = "end";
    for (i, row) in rows.iter().enumerate() {
        if i as u32 == limit {
            stopped_by = "rows";
            break;
        }
        let view = serde_json::to_value(TaskView::from(row))
            .map_err(|e| ApiError::internal("showing a task", e))?;
        let size = view.to_string().len();
        if !views.is_empty() && bytes + size > max_bytes {
            stopped_by = "bytes";
            break;
        }
        bytes += size;
        views.push((row, view));
    }
    let next = (stopped_by != "end")
        .then(|| views.last())
        .flatten()
        .map(|(row, _)| format!("{}:{}", row.created_ms, row.id));
    let tasks: Vec<serde_json::Value> = views.into_iter().map(|(_, v)| v).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "tasks": tasks,
        "nextCursor": next,
        "stoppedBy": stopped_by,
        "bytes": bytes,
        "limit": limit,
        "maxBytes": max_bytes,
    })))
}
