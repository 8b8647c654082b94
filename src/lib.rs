//! The Winnerr engine as a library: configuration and the wiring of every stage into one
//! process. The `winnerr` binary and the integration tests both start it from here.

pub mod config;
pub mod demo;
pub mod dial;
pub mod evaluate;
pub mod inbox;
pub mod keyterms;
pub mod leads;
pub mod models_cli;
pub mod startup;
pub mod watch;

pub use config::Config;
pub use startup::App;
