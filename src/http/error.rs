//! `ApiError`: every failure of an HTTP route, rendered as `application/problem+json`
//! (RFC 9457) with the list of fields at fault.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use flotilla_actors::control_plane::FieldError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest {
        status: StatusCode,
        code: &'static str,
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A token of ours that no longer holds: expired or revoked.
    #[error("{0}")]
    TokenRefused(String),
    #[error("this token may not {0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The route exists for these methods only.
    #[error("method not allowed; use {0}")]
    MethodNotAllowed(String),
    /// The server cannot take this now; retry later.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error; see the server log")]
    Internal,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    errors: &'a [FieldError],
}

impl ApiError {
    /// A 400/413/422 naming the field, the rule and what is wrong.
    pub fn field(
        status: StatusCode,
        code: &'static str,
        pointer: impl Into<String>,
        rule: &str,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        ApiError::BadRequest {
            status,
            code,
            detail: message.clone(),
            errors: vec![FieldError {
                pointer: pointer.into(),
                rule: rule.to_owned(),
                message,
                expected: None,
            }],
        }
    }

    /// Logs an unexpected failure and hides its detail from the client.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        ApiError::Internal
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized => "unauthorized",
            ApiError::TokenRefused(_) => "token-refused",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::MethodNotAllowed(_) => "method-not-allowed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { status, .. } => *status,
            ApiError::Unauthorized | ApiError::TokenRefused(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut resp = HttpResponse::build(status);
        resp.content_type("application/problem+json");
        if matches!(self, ApiError::Unauthorized | ApiError::TokenRefused(_)) {
            resp.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::MethodNotAllowed(allow) = self {
            resp.insert_header(("Allow", allow.as_str()));
        }
        if matches!(self, ApiError::Unavailable(_)) {
            resp.insert_header(("Retry-After", "5"));
        }
        resp.json(self.problem())
    }
}

impl ApiError {
    /// The problem document (RFC 9457) this error is answered with; also one refused
    /// item of a batch.
    pub fn problem(&self) -> serde_json::Value {
        let status = self.status_code();
        let errors = match self {
            ApiError::BadRequest { errors, .. } => errors.as_slice(),
            _ => &[],
        };
        let problem = Problem {
            kind: format!("urn:flotilla:problem:{}", self.code()),
            title: status.canonical_reason().unwrap_or("error"),
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
        };
        // unwrap: a struct of strings and numbers always serialises.
        serde_json::to_value(problem).unwrap()
    }
}
