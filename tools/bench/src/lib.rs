//! `spindle-bench`: an event-driven load driver for IPROTO servers (spindle or Tarantool 2.6).
//!
//! Many connections are multiplexed on a few threads, each running a mio (epoll) loop over
//! non-blocking sockets — no thread per connection, so the numbers are the server's, not the
//! client scheduler's. Each connection keeps `--depth` requests in flight (pipelined, matched
//! by sync). Every reply is checked: error replies (and malformed ones) are counted as
//! failures and reported, never as throughput. Latencies of successful requests go into HDR
//! histograms; the report gives throughput and p50/p90/p99/p99.9/max as a table or JSON, plus
//! per-second rows (worst latency of each second) for the latency log.
//!
//! Modules: `cli` (options), `keys` (PRNG, uniform/zipfian keys), `workload` (request kinds,
//! mixes, encoding), `pipeline` (in-flight requests, reply checking), `stats` (counters,
//! histograms), `worker` (connections and the event loop), `prepare` (the space, via
//! `_space`/`_index`), `idle` (`--idle-connections`), `hostile` (`--hostile-connections`:
//! clients that never read), `report` (table, JSON, latency log), `run` (one run end to end).

pub mod cli;
pub mod hostile;
pub mod idle;
pub mod keys;
pub mod pipeline;
pub mod prepare;
pub mod report;
pub mod run;
pub mod stats;
pub mod txn;
pub mod worker;
pub mod workload;

pub use cli::Args;
pub use run::run;
