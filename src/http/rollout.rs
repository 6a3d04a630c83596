//! Gated rollouts and success-metric reports over the admin API: `/admin/rollout…` and
//! `/admin/reports/{kind}`. The rules are the engine's (`flotilla_actors::rollout`,
//! `flotilla_actors::reports`); here they are parsed, asked and mapped.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use flotilla_actors::control_plane::FieldError;
use flotilla_actors::domain::{now_ms, parse_rfc3339_ms};
use flotilla_actors::reports::{ReportError, ReportKind, Window};
use flotilla_actors::rollout::{Component, RolloutError};
use serde::Deserialize;

use super::error::ApiError;
use super::{admin_body, auth, State};

/// Who decides a phase change, and why.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Decision {
    by: String,
    reason: String,
}

/// A reviewer's post-rollout summary.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Review {
    by: String,
    summary: String,
}

fn rollout_error(e: RolloutError) -> ApiError {
    match e {
        RolloutError::GatesFailed { ref gates, .. } => ApiError::BadRequest {
            status: StatusCode::CONFLICT,
            code: "gates-failed",
            detail: e.to_string(),
            errors: gates
                .iter()
                .filter(|g| !g.pass)
                .map(|g| FieldError::new(format!("/gates/{}", g.gate), "gate", g.detail.clone()))
                .collect(),
        },
        RolloutError::AtEnd { .. } => ApiError::Conflict(e.to_string()),
        RolloutError::Invalid { field, message } => ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            format!("/{field}"),
            "value",
            message,
        ),
        RolloutError::Apply(m) => ApiError::Conflict(m),
        RolloutError::Report(e) => report_error(e),
        e @ (RolloutError::Io { .. } | RolloutError::Stopped) => ApiError::internal("rollout", e),
    }
}

fn report_error(e: ReportError) -> ApiError {
    ApiError::internal("report", e)
}

fn component(name: &str) -> Result<Component, ApiError> {
    Component::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Component::ALL.iter().map(|c| c.as_str()).collect();
        ApiError::NotFound(format!(
            "no rollout component {name:?} (known: {})",
            known.join(", ")
        ))
    })
}

/// `GET /admin/rollout`: every component's phase, the gates of its next step as they
/// stand now, its changes, and the last review.
pub async fn status(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let view = engine.rollout_view().await.map_err(rollout_error)?;
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /admin/rollout/{component}/{advance|rollback}`.
pub async fn step(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let (name, action) = path.into_inner();
    let d: Decision = admin_body(&req, &state, "flotilla.rollout-decision/1.0.0", payload).await?;
    let (engine, _) = &**state;
    let c = component(&name)?;
    let change = match action.as_str() {
        "advance" => engine.rollout_advance(c, &d.by, &d.reason).await,
        "rollback" => engine.rollout_rollback(c, &d.by, &d.reason).await,
        other => {
            return Err(ApiError::NotFound(format!(
                "no rollout action {other:?}: advance or rollback"
            )))
        }
    }
    .map_err(rollout_error)?;
    Ok(HttpResponse::Ok().json(change))
}

/// `POST /admin/rollout/review`: the post-rollout review, kept in `out/<scope>/state.json`.
pub async fn review(
    req: HttpRequest,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let r: Review = admin_body(
        &req,
        &state,
        "flotilla.rollout-review-request/1.0.0",
        payload,
    )
    .await?;
    let (engine, _) = &**state;
    let review = engine
        .rollout_review(&r.by, &r.summary)
        .await
        .map_err(rollout_error)?;
    Ok(HttpResponse::Ok().json(review))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `POST /admin/reports/{kind}`: computes a report from what is recorded and writes it.
pub async fn report(
    req: HttpRequest,
    path: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let name = path.into_inner();
    let kind = ReportKind::parse(&name).ok_or_else(|| {
        let known: Vec<&str> = ReportKind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::NotFound(format!("no report {name:?} (known: {})", known.join(", ")))
    })?;
    let q: ReportQuery = super::query(&req)?;
    let time = |field: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|s| {
                parse_rfc3339_ms(s).ok_or_else(|| {
                    ApiError::field(
                        StatusCode::BAD_REQUEST,
                        "bad-query",
                        format!("/query/{field}"),
                        "format",
                        format!("{field} must be a time like 2026-12-01T20:00:00.000Z, got {s:?}"),
                    )
                })
            })
            .transpose()
    };
    let (from, to) = (time("from", &q.from)?, time("to", &q.to)?);
    let window = match (from, to) {
        (None, None) => None,
        (from, to) => {
            let to_ms = to.unwrap_or_else(now_ms);
            Some(Window {
                from_ms: from.unwrap_or(to_ms - 86_400_000),
                to_ms,
            })
        }
    };
    let (doc, _) = engine.report(kind, window).await.map_err(report_error)?;
    Ok(HttpResponse::Ok().json(doc))
}
