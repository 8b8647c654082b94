//! Candle models that know nothing of calls: Whisper speech-to-text, the sentiment classifier
//! and the lead-score model, with weight fetching and conversion.
//!
//! Empty until the models issue lands: nothing in the engine uses a model yet.
