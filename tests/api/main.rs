//! Integration tests: each starts the real server on a free port and drives it over real sockets
//! with a Twilio-protocol client and feed clients, as Twilio and the CRM UI would.

mod bad_input;
mod capacity;
mod dashboard;
mod feed;
mod helpers;
mod http;
mod kafka;
mod keyterms;
mod lifecycle;
mod listen;
mod messages;
mod observability;
mod privacy;
mod protocol;
mod rest;
mod scoring;
mod softphone;
mod store;
mod two_way;
mod voice;
