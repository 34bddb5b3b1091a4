//! The HTTP commit API's network side (docs/http-api.md): one thread of its own (`thread`,
//! mio, never `may`) that accepts HTTP/1.1 connections, parses heads with httparse
//! (`request`), decodes JSON and base64 and routes (`api`), answers `/v1/version` and
//! `/metrics` itself from values other threads publish (`metrics`), and hands commits and
//! reads to the TX thread over the bus as decoded `proto::kv` messages. Keep-alive and
//! pipelining work; idle and slow clients time out; every buffer is bounded
//! (`types::limits`).

pub mod api;
pub mod metrics;
pub mod request;
mod thread;

pub use thread::{start, HttpConfig, HttpHandle};
