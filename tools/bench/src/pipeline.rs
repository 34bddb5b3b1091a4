//! Requests in flight on one connection, matched to replies by sync, and the judgement of each
//! reply. Replies may come in any order (Tarantool runs each request in its own fiber).
//!
//! A sync is `(sequence << SLOT_BITS) | slot`: the slot finds the request in O(1), the
//! sequence makes every sync unique on the connection, so a stray or repeated reply is caught.

use crate::stats::{Failure, Outcome, Stats};
use crate::workload::Op;
use spindle_proto::iproto::{self, decode_response, Response};
use spindle_proto::mp;
use std::time::Instant;

const SLOT_BITS: u32 = 20;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// The largest `--depth`.
pub const MAX_DEPTH: usize = 1 << SLOT_BITS;

#[derive(Clone, Copy, Debug)]
struct InFlight {
    sync: u64,
    op: Op,
    sent: Instant,
    /// Sent inside the measured window (after the warmup): its outcome is recorded.
    measured: bool,
}

#[derive(Debug)]
pub struct Pipeline {
    slots: Vec<Option<InFlight>>,
    free: Vec<u32>,
    sequence: u64,
}

/// Judges a reply to `op`. Errors are failures; so are replies without the expected data.
pub fn check_reply(op: Op, response: &Response, packet: &[u8]) -> Outcome {
    if response.is_error() {
        return Outcome::Failed(Failure::Server {
            code: response.code,
            message: response.error_message.clone().unwrap_or_default(),
        });
    }
    if op == Op::Ping {
        return Outcome::Ok { empty: false };
    }
    let Some(span) = &response.data else {
        return Outcome::Failed(Failure::BadReply(format!(
            "{} reply without DATA",
            op.name()
        )));
    };
    let mut data = iproto::slice(packet, span);
    let Ok(count) = mp::read_array_len(&mut data) else {
        return Outcome::Failed(Failure::BadReply(format!(
            "{} reply DATA is not an array",
            op.name()
        )));
    };
    match op {
        Op::Insert | Op::Replace if count != 1 => Outcome::Failed(Failure::BadReply(format!(
            "{} returned {count} tuples, expected 1",
            op.name()
        ))),
        Op::Select | Op::Update | Op::Delete if count > 1 => Outcome::Failed(Failure::BadReply(
            format!("{} by primary key returned {count} tuples", op.name()),
        )),
        // UPSERT always answers `[]` in 2.6: "empty" says nothing there.
        Op::Upsert => Outcome::Ok { empty: false },
        _ => Outcome::Ok { empty: count == 0 },
    }
}

impl Pipeline {
    pub fn new(depth: usize) -> Pipeline {
        let depth = depth.clamp(1, MAX_DEPTH);
        Pipeline {
            slots: vec![None; depth],
            free: (0..depth as u32).rev().collect(),
            sequence: 0,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn has_room(&self) -> bool {
        !self.free.is_empty()
    }

    /// Takes a slot for a request sent at `now`; returns its sync, or None if `depth` requests
    /// are already in flight.
    pub fn issue(&mut self, op: Op, now: Instant, measured: bool) -> Option<u64> {
        let slot = self.free.pop()?;
        self.sequence = self.sequence.wrapping_add(1) & (u64::MAX >> SLOT_BITS);
        let sync = (self.sequence << SLOT_BITS) | u64::from(slot);
        let entry = self.slots.get_mut(slot as usize)?;
        *entry = Some(InFlight {
            sync,
            op,
            sent: now,
            measured,
        });
        Some(sync)
    }

    /// Handles one reply packet (length prefix stripped) received at `now`. An error means the
    /// stream cannot be trusted any more (undecodable reply, unknown sync): close it.
    pub fn complete(
        &mut self,
        packet: &[u8],
        now: Instant,
        stats: &mut Stats,
    ) -> Result<(), String> {
        let response = decode_response(packet).map_err(|e| format!("undecodable reply: {e:?}"))?;
        if response.is_push() {
            return Ok(());
        }
        let slot = (response.sync & SLOT_MASK) as usize;
        let entry = match self.slots.get_mut(slot) {
            Some(entry) if entry.is_some_and(|e| e.sync == response.sync) => entry.take(),
            _ => {
                let message = response.error_message.unwrap_or_default();
                return Err(format!(
                    "reply with unknown sync {} (type {:#x}{}{message})",
                    response.sync,
                    response.response_type,
                    if message.is_empty() { "" } else { ": " }
                ));
            }
        };
        self.free.push(slot as u32);
        if let Some(request) = entry {
            if request.measured {
                let latency = now.saturating_duration_since(request.sent);
                let latency_ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
                stats.record(
                    request.op,
                    latency_ns,
                    check_reply(request.op, &response, packet),
                    now,
                );
            }
        }
        Ok(())
    }

    /// Fails every request in flight (the connection is gone) and frees the slots.
    pub fn fail_all(&mut self, failure: &Failure, now: Instant, stats: &mut Stats) {
        for (slot, entry) in self.slots.iter_mut().enumerate() {
            if let Some(request) = entry.take() {
                self.free.push(slot as u32);
                if request.measured {
                    stats.record(request.op, 0, Outcome::Failed(failure.clone()), now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Templates;
    use spindle_proto::iproto::{
        begin_response, encode_data_prefix, encode_error, finish_response,
    };
    use spindle_types::BoxError;

    fn strip_prefix(framed: &[u8]) -> &[u8] {
        &framed[5..]
    }

    fn ok_reply(sync: u64, tuples: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let start = begin_response(&mut out, 0, sync, 80);
        encode_data_prefix(&mut out, tuples);
        for i in 0..tuples {
            mp::write_array_len(&mut out, 2);
            mp::write_uint(&mut out, u64::from(i));
            mp::write_str(&mut out, "value");
        }
        finish_response(&mut out, start);
        out
    }

    fn setup() -> (Pipeline, Stats, Instant) {
        let templates = Templates::new().unwrap();
        let mut stats = Stats::new(&templates);
        stats.roll(0);
        (Pipeline::new(4), stats, Instant::now())
    }

    #[test]
    fn an_error_reply_is_a_failure_not_throughput() {
        let (mut pipe, mut stats, now) = setup();
        let sync = pipe.issue(Op::Insert, now, true).unwrap();
        let mut reply = Vec::new();
        encode_error(&mut reply, sync, 80, &BoxError::tuple_found("pk", "bench"));
        pipe.complete(strip_prefix(&reply), now, &mut stats)
            .unwrap();
        assert_eq!(pipe.in_flight(), 0);
        assert_eq!(stats.total_ok(), 0);
        assert_eq!(stats.total_errors(), 1);
        assert_eq!(stats.ops[Op::Insert.index()].hist.len(), 0);
        let entry = &stats.errors["server error 3"];
        assert_eq!(entry.count, 1);
        assert!(entry.message.contains("Duplicate key"), "{entry:?}");
        // The report built from these counts shows no throughput.
        let report = crate::report::Report::build(&stats, &[], 1.0, crate::report::Meta::default());
        assert_eq!(report.total.ok, 0);
        assert_eq!(report.total.errors, 1);
        assert_eq!(report.total.throughput_rps, 0.0);
    }

    #[test]
    fn successes_are_recorded_with_their_latency() {
        let (mut pipe, mut stats, now) = setup();
        let a = pipe.issue(Op::Select, now, true).unwrap();
        let b = pipe.issue(Op::Select, now, true).unwrap();
        let c = pipe.issue(Op::Replace, now, false).unwrap();
        assert_ne!(a, b);
        let later = now + std::time::Duration::from_micros(250);
        // Out of order, one empty select.
        pipe.complete(strip_prefix(&ok_reply(b, 0)), later, &mut stats)
            .unwrap();
        pipe.complete(strip_prefix(&ok_reply(a, 1)), later, &mut stats)
            .unwrap();
        pipe.complete(strip_prefix(&ok_reply(c, 1)), later, &mut stats)
            .unwrap();
        let select = &stats.ops[Op::Select.index()];
        assert_eq!((select.ok, select.empty, select.errors), (2, 1, 0));
        let p50 = select.hist.value_at_quantile(0.5);
        assert!((249_000..=251_000).contains(&p50), "{p50}");
        // The warmup request (measured = false) is not counted.
        assert_eq!(stats.ops[Op::Replace.index()].ok, 0);
        assert_eq!(pipe.in_flight(), 0);
    }

    #[test]
    fn malformed_or_unexpected_replies() {
        let (mut pipe, mut stats, now) = setup();
        let sync = pipe.issue(Op::Insert, now, true).unwrap();
        // INSERT answered with no tuple: a failure.
        pipe.complete(strip_prefix(&ok_reply(sync, 0)), now, &mut stats)
            .unwrap();
        assert_eq!(stats.total_errors(), 1);
        assert!(stats.errors.keys().any(|k| k.starts_with("bad reply")));
        // A reply nobody asked for breaks the connection.
        let err = pipe.complete(strip_prefix(&ok_reply(sync, 1)), now, &mut stats);
        assert!(err.is_err());
        assert!(pipe.complete(b"\x81\x00", now, &mut stats).is_err());
    }

    #[test]
    fn depth_bounds_the_requests_in_flight_and_fail_all_frees_them() {
        let (mut pipe, mut stats, now) = setup();
        for _ in 0..4 {
            assert!(pipe.issue(Op::Ping, now, true).is_some());
        }
        assert!(!pipe.has_room());
        assert!(pipe.issue(Op::Ping, now, true).is_none());
        pipe.fail_all(&Failure::Connection("reset".into()), now, &mut stats);
        assert_eq!(pipe.in_flight(), 0);
        assert_eq!(stats.total_errors(), 4);
        assert_eq!(stats.errors["connection lost"].count, 4);
    }
}
