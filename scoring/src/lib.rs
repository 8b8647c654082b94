//! Lead scoring: features from call events and CRM records, scores with explanations.
//!
//! Empty until the lead-scoring issue lands.
