//! `/healthz` (the process is up) and `/readyz` (it should get traffic: every stage started and
//! not shutting down).

use axum::extract::State;
use axum::http::StatusCode;

use crate::server::Gateway;

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

pub(crate) async fn readyz(State(gateway): State<Gateway>) -> (StatusCode, &'static str) {
    if gateway.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
