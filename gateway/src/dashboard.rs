//! The dashboard: a page the gateway serves at `/dashboard/` (plain HTML, CSS and one JavaScript
//! module, embedded in the binary) that watches the organization on the feed protocol.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

const INDEX: &str = include_str!("../dashboard/index.html");
const APP: &str = include_str!("../dashboard/app.js");

/// The page's script with the feed's close codes written in, so it never hard-codes them.
static APP_SERVED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use winnerr_events::feed::close;
    let codes = serde_json::json!({
        "TOKEN_EXPIRED": close::TOKEN_EXPIRED,
        "HEARTBEAT": close::HEARTBEAT,
        "TOO_SLOW": close::TOO_SLOW,
    });
    APP.replace("__FEED_CLOSE_CODES__", &codes.to_string())
});
const STYLE: &str = include_str!("../dashboard/style.css");

/// Scripts and styles from this origin only; the feed on this origin's WebSocket.
const POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                      object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, POLICY),
        ],
        body,
    )
}

pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/dashboard/") }))
        .route(
            "/dashboard",
            get(|| async { Redirect::permanent("/dashboard/") }),
        )
        .route(
            "/dashboard/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_SERVED.as_str()) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_script_is_served_with_the_protocols_close_codes() {
        let served = super::APP_SERVED.as_str();
        assert!(!served.contains("__FEED_CLOSE_CODES__"));
        assert!(served.contains(&format!(
            "\"TOKEN_EXPIRED\":{}",
            winnerr_events::feed::close::TOKEN_EXPIRED
        )));
    }
}
