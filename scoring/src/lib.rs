//! Lead scoring: features from call events and CRM records, scores with explanations.
//!
//! - [`features`]: what a lead's history says, in the CRM's five groups, as the model's input.
//! - [`timeline`]: urgency and move dates in what the customer says.
//! - [`model`]: the global prior, per-organization training, scores explained by their factors.
//! - [`scorer`]: the live transform on the bus that re-scores a lead as its call goes.
//! - [`synth`]: a deterministic, synthetic organization history to train and test on.

pub mod features;
mod metrics;
pub mod model;
pub mod scorer;
pub mod synth;
pub mod timeline;

pub use features::{FEATURES, LeadHistory, features};
pub use model::{Explained, prior};
pub use scorer::{LeadSource, NoCrm, Scorer, SourceError};
