//! What every HTTP function behind API Gateway (payload v2) shares: the tenant
//! of a request, and the JSON answers. Behind the `lambda` feature, so the client
//! crate does not link `lambda_http`.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};

use crate::tenant::{tenant_from_authorizer, TenantClaimError};

/// The tenant from the authorizer context (a JWT claim, or a Lambda authorizer's
/// field of the same name): [`tenant_from_authorizer`]. Nothing in the request
/// body or path is consulted.
pub fn tenant_of(req: &Request, claim: &str) -> Result<String, TenantClaimError> {
    let authorizer = req.request_context_ref().and_then(|ctx| ctx.authorizer());
    let jwt = authorizer.and_then(|a| a.jwt.as_ref()).map(|jwt| &jwt.claims);
    tenant_from_authorizer(jwt, authorizer.map(|a| &a.fields), claim)
}

/// The answer to a request without a usable tenant: `401` (with
/// `WWW-Authenticate: Bearer`) when there is none, `403` when it breaks the rule.
pub fn tenant_refused(error: &TenantClaimError) -> Response<Body> {
    match error {
        TenantClaimError::Missing { .. } => {
            let mut resp = error_response(StatusCode::UNAUTHORIZED, "unauthenticated", error.to_string());
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
        TenantClaimError::Unusable { .. } => error_response(StatusCode::FORBIDDEN, "forbidden", error.to_string()),
    }
}

/// A JSON answer.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = Response::new(Body::Text(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `{"error": <code>, "message": <text>}`, the API's error shape.
pub fn error_response(status: StatusCode, error: &str, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({ "error": error, "message": message.into() }))
}
