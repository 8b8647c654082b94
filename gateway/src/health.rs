//! `/healthz` (the process is up) and `/readyz` (it should get traffic: every stage started, not
//! shutting down, and the database and bus it uses answering; the body says what is wrong).

use axum::extract::State;
use axum::http::StatusCode;

use crate::server::Gateway;

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

pub(crate) async fn readyz(State(gateway): State<Gateway>) -> (StatusCode, String) {
    let reasons = gateway.unready_reasons().await;
    if reasons.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", reasons.join("; ")),
        )
    }
}
