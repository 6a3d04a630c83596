//! Debug builds check every JSON response against the schema its route declares in
//! [`super::ROUTES`], and log `response violates its schema` for any that does not. The
//! end-to-end tests fail on such a line; release builds skip the check.

use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;

use super::{Resp, State, ROUTES};

/// The schema a response of this route and status must follow, if it declares one.
fn declared(method: &str, pattern: &str, status: u16) -> Option<&'static str> {
    let route = ROUTES
        .iter()
        .find(|r| r.path == pattern && r.method.eq_ignore_ascii_case(method))?;
    route.responses.iter().find_map(|(s, r)| match r {
        Resp::Schema(id) if *s == status => Some(*id),
        Resp::Problem if *s == status => Some(super::openapi::PROBLEM),
        _ => None,
    })
}

/// Checks `res` against its declared schema (debug builds only).
pub async fn check<B>(res: ServiceResponse<B>) -> Result<ServiceResponse<BoxBody>, actix_web::Error>
where
    B: MessageBody + 'static,
{
    if !cfg!(debug_assertions) {
        return Ok(res.map_into_boxed_body());
    }
    let method = res.request().method().as_str().to_owned();
    let pattern = res.request().match_pattern();
    let status = res.status().as_u16();
    let schema = pattern.and_then(|p| declared(&method, &p, status));
    let state = res.request().app_data::<State>().cloned();
    let (Some(schema), Some(state)) = (schema, state) else {
        return Ok(res.map_into_boxed_body());
    };
    let (req, res) = res.into_parts();
    let (res, body) = res.into_parts();
    let bytes = to_bytes(body)
        .await
        .map_err(|_| actix_web::error::ErrorInternalServerError("response body"))?;
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(doc) => {
            let errors = state.0.control.check(schema, &doc);
            if !errors.is_empty() {
                tracing::error!(
                    method,
                    path = req.path(),
                    status,
                    schema,
                    errors = ?errors,
                    "response violates its schema"
                );
            }
        }
        Err(e) => {
            tracing::error!(method, path = req.path(), status, schema, error = %e, "response violates its schema: not JSON");
        }
    }
    Ok(ServiceResponse::new(
        req,
        res.set_body(bytes).map_into_boxed_body(),
    ))
}
