//! Guard admin routes: modes, approvals and overrides; and the Prometheus counters.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use flotilla_actors::guard::approvals::{ApprovalError, ApprovalRequest};
use flotilla_actors::guard::{GuardError, ModeChange};
use serde::Deserialize;

use super::error::ApiError;
use super::{admin_body, auth, State};

/// Who approves or revokes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct By {
    by: String,
}

fn refused(status: StatusCode, code: &'static str, detail: String) -> ApiError {
    ApiError::BadRequest {
        status,
        code,
        detail,
        errors: Vec::new(),
    }
}

/// A 422 naming the top-level field a domain check refused.
fn invalid_field(field: &'static str, message: String) -> ApiError {
    ApiError::field(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-field",
        format!("/{field}"),
        field,
        message,
    )
}

fn approval_error(e: ApprovalError) -> ApiError {
    let detail = e.to_string();
    match e {
        ApprovalError::NotFound(_) => ApiError::NotFound(detail),
        ApprovalError::Invalid { field, message } => invalid_field(field, message),
        ApprovalError::NoApprovers => refused(StatusCode::FORBIDDEN, "no-approvers", detail),
        ApprovalError::NotApprover { .. } => {
            refused(StatusCode::FORBIDDEN, "not-an-approver", detail)
        }
        ApprovalError::SelfApproval(_) => refused(StatusCode::FORBIDDEN, "self-approval", detail),
        ApprovalError::NotPending { .. } | ApprovalError::Closed { .. } => {
            ApiError::Conflict(detail)
        }
        e @ (ApprovalError::Io { .. } | ApprovalError::Corrupt { .. }) => {
            ApiError::internal("recording an approval", e)
        }
    }
}

/// `GET /admin/guard`: modes per level, the rollout phase, the policy approval in force.
pub async fn show(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    Ok(HttpResponse::Ok().json(engine.guard.view()))
}

/// `PUT /admin/guard/modes`: switch modes; enforcing needs a policy approval in force.
pub async fn change(
    req: HttpRequest,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let change: ModeChange =
        admin_body(&req, &state, "flotilla.guard-mode-change/1.0.0", payload).await?;
    let (engine, _) = &**state;
    match engine.guard.change(change) {
        Ok(view) => Ok(HttpResponse::Ok().json(view)),
        Err(e @ GuardError::NoPolicyApproval { .. }) => Err(refused(
            StatusCode::CONFLICT,
            "policy-approval-missing",
            e.to_string(),
        )),
        Err(GuardError::Invalid { field, message }) => Err(invalid_field(field, message)),
        Err(GuardError::Approval(e)) => Err(approval_error(e)),
    }
}

/// `GET /admin/guard/approvals`.
pub async fn approvals(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "approvals": engine.guard.approvals() })))
}

/// `POST /admin/guard/approvals`: request a policy approval or an override.
pub async fn request(
    req: HttpRequest,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let body: ApprovalRequest =
        admin_body(&req, &state, "flotilla.approval-request/1.1.0", payload).await?;
    let (engine, _) = &**state;
    let a = engine
        .guard
        .request_approval(body)
        .map_err(approval_error)?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/admin/guard/approvals/{}", a.id)))
        .json(a))
}

/// `POST /admin/guard/approvals/{id}/approve`.
pub async fn approve(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    decide(req, path, payload, state, true).await
}

/// `POST /admin/guard/approvals/{id}/revoke`.
pub async fn revoke(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    decide(req, path, payload, state, false).await
}

async fn decide(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: State,
    approve: bool,
) -> Result<HttpResponse, ApiError> {
    let By { by } = admin_body(&req, &state, "flotilla.approval-decision/1.0.0", payload).await?;
    let (engine, _) = &**state;
    let id = path.into_inner();
    let a = match approve {
        true => engine.guard.approve(&id, &by),
        false => engine.guard.revoke(&id, &by),
    }
    .map_err(approval_error)?;
    Ok(HttpResponse::Ok().json(a))
}
