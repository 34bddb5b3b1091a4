//! The stream transaction workloads, `txn` and `counter`: interactive transactions over IPROTO
//! streams (the 2.10+ protocol; the server must announce 2.10 or later and run MVCC for a
//! transaction to outlive its first statement).
//!
//! A connection runs `depth` streams that advance in lockstep rounds: each round, every
//! stream's requests go out in one write, then all the replies are read (a stream's come back
//! in order, the streams' interleaved). `txn` is one round per transaction — BEGIN, the
//! REPLACEs and COMMIT sent together; `counter` two, since its write depends on its read —
//! BEGIN and SELECT, then REPLACE of the value plus one and COMMIT. A transaction counts once,
//! when its last reply arrives: a success, or the first error among its replies (for a counter
//! that lost a race, ER_TRANSACTION_CONFLICT; the stream then draws a key and tries again).

use crate::keys::Rng;
use crate::stats::{Failure, Outcome, Stats, Templates};
use crate::worker::{open, Clock, RunConfig, Shared, WorkerMsg};
use crate::workload::{Op, TXN_REPLACES};
use spindle_proto::iproto::{self, decode_frame, decode_response, Frame, Response};
use spindle_proto::mp;
use spindle_types::iproto::{key, request};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::ops::Range;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Barrier};
use std::time::Instant;

/// Replies larger than this are a broken stream.
const MAX_REPLY: usize = 1 << 26;
/// Printable bytes for the `txn` values.
const VALUE_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz012345";

/// One stream of a connection: its transaction in progress.
struct Stream {
    id: u64,
    key: u64,
    /// The counter's value read in the first round.
    seen: u64,
    started: Instant,
    measured: bool,
    failure: Option<Failure>,
}

struct Conn {
    socket: TcpStream,
    input: Vec<u8>,
    out: Vec<u8>,
    /// Which stream each request of the round belongs to, by `sync - first_sync`; true for
    /// the stream's last request of the transaction.
    owners: Vec<(usize, bool)>,
    first_sync: u64,
    next_sync: u64,
    streams: Vec<Stream>,
}

/// Runs one worker of a `txn` or `counter` run (the contract of `worker::run_worker`).
#[allow(clippy::too_many_arguments)]
pub fn run_txn_worker(
    worker: usize,
    conn_ids: Range<usize>,
    cfg: Arc<RunConfig>,
    shared: Arc<Shared>,
    barrier: Arc<Barrier>,
    templates: Templates,
    tx: Sender<WorkerMsg>,
) -> Stats {
    let mut stats = Stats::new(&templates);
    let mut conns = Vec::with_capacity(conn_ids.len());
    for id in conn_ids {
        match open_blocking(&cfg, id) {
            Ok(conn) => conns.push(conn),
            Err(e) => {
                shared.fail_setup(format!("connection {id}: {e}"));
                break;
            }
        }
    }
    barrier.wait();
    barrier.wait();
    let op = cfg.mix.ops().next().unwrap_or(Op::Txn);
    let mut rng = Rng::new(cfg.seed ^ (worker as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    if let (Some(clock), false) = (shared.clock.get(), shared.stop.load(Ordering::Relaxed)) {
        while !shared.stop.load(Ordering::Relaxed) {
            let result = match op {
                Op::Counter => counter_rounds(&mut conns, &cfg, clock, &mut rng, &mut stats),
                _ => txn_round(&mut conns, &cfg, clock, &mut rng, &mut stats),
            };
            if let Err(e) = result {
                eprintln!("spindle-bench: worker {worker} failed: {e}");
                stats.note_failure(&Failure::Connection(e), 1);
                break;
            }
            roll(worker, clock, &mut stats, &tx);
            let (ok, errors, _) = stats.take_live();
            shared.ok.fetch_add(ok, Ordering::Relaxed);
            shared.errors.fetch_add(errors, Ordering::Relaxed);
        }
    }
    if let Some(last) = stats.finish_seconds() {
        let _ = tx.send(WorkerMsg::Second {
            worker,
            stats: last,
        });
    }
    let _ = tx.send(WorkerMsg::Done { worker });
    stats
}

fn roll(worker: usize, clock: &Clock, stats: &mut Stats, tx: &Sender<WorkerMsg>) {
    if let Some(second) = clock.second(Instant::now()) {
        for done in stats.roll(second) {
            let _ = tx.send(WorkerMsg::Second {
                worker,
                stats: done,
            });
        }
    }
}

fn open_blocking(cfg: &RunConfig, id: usize) -> Result<Conn, String> {
    let socket = open(&cfg.addr, &cfg.user, cfg.password.as_deref())?;
    // SAFETY: the descriptor comes straight out of the socket `open` made, which gives up
    // its ownership by `into_raw_fd`.
    let socket = unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) };
    socket
        .set_nonblocking(false)
        .map_err(|e| format!("connection {id}: {e}"))?;
    let streams = (1..=cfg.depth as u64)
        .map(|id| Stream {
            id,
            key: 0,
            seen: 0,
            started: Instant::now(),
            measured: false,
            failure: None,
        })
        .collect();
    Ok(Conn {
        socket,
        input: Vec::with_capacity(64 * 1024),
        out: Vec::with_capacity(64 * 1024),
        owners: Vec::new(),
        first_sync: 1,
        next_sync: 1,
        streams,
    })
}

impl Conn {
    fn start_round(&mut self) {
        self.out.clear();
        self.owners.clear();
        self.first_sync = self.next_sync;
    }

    fn push(&mut self, stream: usize, request_type: u32, body: Option<&[u8]>, last: bool) {
        let sync = self.next_sync;
        self.next_sync += 1;
        let id = self.streams.get(stream).map_or(0, |s| s.id);
        iproto::encode_stream_request(&mut self.out, sync, id, request_type, body);
        self.owners.push((stream, last));
    }

    fn send(&mut self) -> Result<(), String> {
        self.socket
            .write_all(&self.out)
            .map_err(|e| format!("write: {e}"))
    }

    /// Reads every reply of the round; `on_reply(conn streams, stream, last, response,
    /// packet)` sees each.
    fn receive(
        &mut self,
        mut on_reply: impl FnMut(&mut Stream, bool, &Response, &[u8]),
    ) -> Result<(), String> {
        let mut left = self.owners.len();
        let mut chunk = vec![0u8; 64 * 1024];
        while left > 0 {
            let mut consumed = 0;
            while let Ok(Frame::Packet { prefix_len, len }) =
                decode_frame(self.input.get(consumed..).unwrap_or_default(), MAX_REPLY)
            {
                let at = consumed + prefix_len;
                let packet = self.input.get(at..at + len).unwrap_or_default();
                let response =
                    decode_response(packet).map_err(|e| format!("undecodable reply: {e:?}"))?;
                let owner = response
                    .sync
                    .checked_sub(self.first_sync)
                    .and_then(|i| self.owners.get(i as usize).copied());
                let Some((stream, last)) = owner else {
                    return Err(format!("a reply with an unknown sync {}", response.sync));
                };
                if let Some(s) = self.streams.get_mut(stream) {
                    on_reply(s, last, &response, packet);
                }
                consumed = at + len;
                left = left.saturating_sub(1);
            }
            self.input.drain(..consumed);
            if left == 0 {
                break;
            }
            let n = self
                .socket
                .read(&mut chunk)
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            self.input
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        Ok(())
    }
}

/// The first error of a transaction's replies is its failure.
fn note_error(stream: &mut Stream, response: &Response) {
    if response.is_error() && stream.failure.is_none() {
        stream.failure = Some(Failure::Server {
            code: response.code,
            message: response.error_message.clone().unwrap_or_default(),
        });
    }
}

fn finish(stream: &mut Stream, op: Op, stats: &mut Stats) {
    let now = Instant::now();
    let outcome = match stream.failure.take() {
        Some(failure) => Outcome::Failed(failure),
        None => Outcome::Ok { empty: false },
    };
    if stream.measured {
        let latency = now.duration_since(stream.started).as_nanos() as u64;
        stats.record(op, latency, outcome, now);
    }
}

fn begin_all(conn: &mut Conn, clock: &Clock, cfg: &RunConfig, rng: &mut Rng) {
    let now = Instant::now();
    for s in &mut conn.streams {
        s.started = now;
        s.measured = now >= clock.measure_start;
        s.failure = None;
        s.key = cfg.keys.next(rng);
    }
}

/// The body of a REPLACE of `[key, value]` into `space`.
fn store_body(space: u32, key: u64, value: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut body = Vec::with_capacity(48);
    mp::write_map_len(&mut body, 2);
    body.push(key::SPACE_ID);
    mp::write_uint(&mut body, u64::from(space));
    body.push(key::TUPLE);
    mp::write_array_len(&mut body, 2);
    mp::write_uint(&mut body, key);
    value(&mut body);
    body
}

fn random_value(rng: &mut Rng, size: usize, out: &mut Vec<u8>) {
    let bytes: Vec<u8> = (0..size)
        .map(|_| VALUE_ALPHABET[(rng.next_u64() % 32) as usize])
        .collect();
    mp::write_str_bytes(out, &bytes);
}

/// `txn`: every stream of every connection runs one whole transaction.
fn txn_round(
    conns: &mut [Conn],
    cfg: &RunConfig,
    clock: &Clock,
    rng: &mut Rng,
    stats: &mut Stats,
) -> Result<(), String> {
    for conn in conns.iter_mut() {
        begin_all(conn, clock, cfg, rng);
        conn.start_round();
        for i in 0..conn.streams.len() {
            conn.push(i, request::BEGIN, None, false);
            for _ in 0..TXN_REPLACES {
                let key = cfg.keys.next(rng);
                let body = store_body(cfg.space_id, key, |b| random_value(rng, cfg.value_size, b));
                conn.push(i, request::REPLACE, Some(&body), false);
            }
            conn.push(i, request::COMMIT, None, true);
        }
        conn.send()?;
    }
    finish_all(conns, Op::Txn, stats)
}

/// `counter`: every stream reads its counter, then writes it plus one and commits.
fn counter_rounds(
    conns: &mut [Conn],
    cfg: &RunConfig,
    clock: &Clock,
    rng: &mut Rng,
    stats: &mut Stats,
) -> Result<(), String> {
    for conn in conns.iter_mut() {
        begin_all(conn, clock, cfg, rng);
        conn.start_round();
        for i in 0..conn.streams.len() {
            let key = conn.streams.get(i).map_or(0, |s| s.key);
            let mut select = Vec::new();
            let mut k = Vec::new();
            mp::write_array_len(&mut k, 1);
            mp::write_uint(&mut k, key);
            iproto_select_body(&mut select, cfg.space_id, &k);
            conn.push(i, request::BEGIN, None, false);
            conn.push(i, request::SELECT, Some(&select), true);
        }
        conn.send()?;
    }
    for conn in conns.iter_mut() {
        conn.receive(|s, last, response, packet| {
            note_error(s, response);
            if last && !response.is_error() {
                s.seen = counter_value(response, packet);
            }
        })?;
    }
    for conn in conns.iter_mut() {
        conn.start_round();
        for i in 0..conn.streams.len() {
            let (key, seen, failed) = conn
                .streams
                .get(i)
                .map_or((0, 0, true), |s| (s.key, s.seen, s.failure.is_some()));
            if failed {
                conn.push(i, request::TXN_ROLLBACK, None, true);
                continue;
            }
            let body = store_body(cfg.space_id, key, |b| mp::write_uint(b, seen + 1));
            conn.push(i, request::REPLACE, Some(&body), false);
            conn.push(i, request::COMMIT, None, true);
        }
        conn.send()?;
    }
    finish_all(conns, Op::Counter, stats)
}

/// Reads the last round's replies of every connection; each transaction counts when its
/// last reply arrives.
fn finish_all(conns: &mut [Conn], op: Op, stats: &mut Stats) -> Result<(), String> {
    for conn in conns.iter_mut() {
        conn.receive(|s, last, response, _| {
            note_error(s, response);
            if last {
                finish(s, op, stats);
            }
        })?;
    }
    Ok(())
}

/// A SELECT body: `space`, primary index, EQ, limit 1, `key`.
fn iproto_select_body(out: &mut Vec<u8>, space: u32, key_bytes: &[u8]) {
    mp::write_map_len(out, 4);
    out.push(key::SPACE_ID);
    mp::write_uint(out, u64::from(space));
    out.push(key::INDEX_ID);
    mp::write_uint(out, 0);
    out.push(key::LIMIT);
    mp::write_uint(out, 1);
    out.push(key::KEY);
    out.extend_from_slice(key_bytes);
}

/// The counter in a SELECT reply: field 2 of its tuple, 0 if there is none (or it is not a
/// number: a row the `load` workload wrote).
fn counter_value(response: &Response, packet: &[u8]) -> u64 {
    let Some(span) = &response.data else {
        return 0;
    };
    let value = |mut data: &[u8]| -> Option<u64> {
        (mp::read_array_len(&mut data).ok()? > 0).then_some(())?;
        (mp::read_array_len(&mut data).ok()? > 1).then_some(())?;
        mp::skip(&mut data).ok()?;
        mp::read_uint(&mut data).ok()
    };
    value(iproto::slice(packet, span)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_proto::iproto::{decode_request, Request};

    #[test]
    fn a_replace_body_names_the_space_and_the_tuple() {
        let body = store_body(600, 7, |b| mp::write_uint(b, 42));
        let mut packet = Vec::new();
        iproto::encode_stream_request(&mut packet, 9, 3, request::REPLACE, Some(&body));
        let Ok(Frame::Packet { prefix_len, len }) = decode_frame(&packet, MAX_REPLY) else {
            panic!("one whole packet");
        };
        let (header, req) =
            decode_request(&packet[prefix_len..prefix_len + len]).expect("a request");
        assert_eq!((header.sync, header.stream_id), (9, 3));
        let Request::Replace { space_id, tuple } = req else {
            panic!("a REPLACE, got {req:?}");
        };
        assert_eq!(space_id, 600);
        let mut t = iproto::slice(&packet[prefix_len..prefix_len + len], &tuple);
        assert_eq!(mp::read_array_len(&mut t), Ok(2));
        assert_eq!(
            (mp::read_uint(&mut t), mp::read_uint(&mut t)),
            (Ok(7), Ok(42))
        );
    }
}
