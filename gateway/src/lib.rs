//! The gateway: where people and dashboards meet the engine. Authenticated WebSocket feeds of
//! each organization's live events, the REST API of the CRM UI, Prometheus `/metrics`, health and
//! readiness.

mod api;
pub mod auth;
pub mod connections;
mod dashboard;
mod feed;
mod health;
mod listen;
mod metrics;
mod presence;
pub mod rooms;
mod server;
pub mod telemetry;

pub use auth::{Auth, AuthError, Claims, Jwks, JwksError};
pub use server::{FEED_PATH, Gateway, GatewayConfig};
