//! The replication wire: packet framing over blocking sockets, and the encoders and decoders
//! of the packets relays and appliers exchange (xlog-and-replication.md §5). Everything read
//! from a socket is untrusted: malformed input is an error, never a panic.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use spindle_proto::iproto::{decode_frame, Frame};
use spindle_proto::mp;
use spindle_types::iproto::{ballot_key, key, request};
use spindle_types::limits::{REPL_PACKET_MAX, REPL_READ_BUFFER};
use spindle_types::BoxError;
use spindle_xlog::{decode_row_ref, encode_row_parts, RowHeader, RowRef, Vclock};

pub fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Reads whole packets from a socket through one buffer.
pub struct PacketReader {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
}

impl PacketReader {
    /// `initial` holds bytes already read from the socket by someone else.
    pub fn new(stream: TcpStream, initial: Vec<u8>) -> PacketReader {
        PacketReader {
            stream,
            buf: initial,
            start: 0,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn into_parts(mut self) -> (TcpStream, Vec<u8>) {
        let rest = self.buf.split_off(self.start);
        (self.stream, rest)
    }

    /// The length of the next complete packet, if the buffer holds one.
    fn buffered_frame(&self) -> io::Result<Option<(usize, usize)>> {
        let pending = self.buf.get(self.start..).unwrap_or_default();
        match decode_frame(pending, REPL_PACKET_MAX) {
            Ok(Frame::Packet { prefix_len, len }) => Ok(Some((prefix_len, len))),
            Ok(Frame::Need(_)) => Ok(None),
            Err(e) => Err(invalid(e.to_box_error().message)),
        }
    }

    /// Whether another whole packet is already buffered (no syscall needed to read it).
    pub fn has_packet(&self) -> bool {
        matches!(self.buffered_frame(), Ok(Some(_)))
    }

    fn take(&mut self, prefix_len: usize, len: usize) -> &[u8] {
        let from = self.start + prefix_len;
        self.start = from + len;
        self.buf.get(from..from + len).unwrap_or_default()
    }

    /// Reads one packet, blocking (up to the socket's read timeout).
    pub fn read_packet(&mut self) -> io::Result<&[u8]> {
        loop {
            if let Some((prefix_len, len)) = self.buffered_frame()? {
                return Ok(self.take(prefix_len, len));
            }
            self.fill(false)?;
        }
    }

    /// A packet if one can be had without waiting (the relay polls for ACKs between batches;
    /// its writes go through the same socket and must keep blocking).
    pub fn try_read_packet(&mut self) -> io::Result<Option<&[u8]>> {
        if self.buffered_frame()?.is_none() && !self.fill(true)? {
            return Ok(None);
        }
        match self.buffered_frame()? {
            Some((prefix_len, len)) => Ok(Some(self.take(prefix_len, len))),
            None => Ok(None),
        }
    }

    /// Reads more bytes; false when `polling` and nothing was there.
    fn fill(&mut self, polling: bool) -> io::Result<bool> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + REPL_READ_BUFFER, 0);
        let target = self.buf.get_mut(old..).unwrap_or_default();
        let result = if polling {
            spindle_fiber::recv_nowait(&self.stream, target)
        } else {
            self.stream.read(target)
        };
        match result {
            Ok(0) => {
                self.buf.truncate(old);
                Err(io::ErrorKind::UnexpectedEof.into())
            }
            Ok(n) => {
                self.buf.truncate(old + n);
                Ok(true)
            }
            Err(e) => {
                self.buf.truncate(old);
                match e.kind() {
                    io::ErrorKind::WouldBlock if polling => Ok(false),
                    io::ErrorKind::Interrupted => Ok(true),
                    _ => Err(e),
                }
            }
        }
    }
}

/// Appends one packet: `ce <u32 len>` then whatever `encode` writes.
pub fn packet(out: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0xce, 0, 0, 0, 0]);
    encode(out);
    let len = (out.len() - start - 5) as u32;
    if let Some(slot) = out.get_mut(start + 1..start + 5) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

fn write_key_uint(out: &mut Vec<u8>, k: u8, v: u64) {
    out.push(k);
    mp::write_uint(out, v);
}

/// A compact header `{0: type, [1: sync], [2: replica_id]}`.
fn header(out: &mut Vec<u8>, req_type: u32, sync: u64, replica_id: u32) {
    let entries = 1 + u32::from(sync != 0) + u32::from(replica_id != 0);
    mp::write_map_len(out, entries);
    write_key_uint(out, key::REQUEST_TYPE, u64::from(req_type));
    if sync != 0 {
        write_key_uint(out, key::SYNC, sync);
    }
    if replica_id != 0 {
        write_key_uint(out, key::REPLICA_ID, u64::from(replica_id));
    }
}

/// `OK {VCLOCK: vclock}`: JOIN stage markers and the applier's ACK.
pub fn encode_vclock_ok(out: &mut Vec<u8>, sync: u64, vclock: &Vclock) {
    packet(out, |out| {
        header(out, request::OK, sync, 0);
        mp::write_map_len(out, 1);
        out.push(key::VCLOCK);
        vclock.encode_mp(out);
    });
}

/// One row of the initial JOIN stream: `INSERT {SPACE_ID: ce u32, TUPLE: tuple}`, header with
/// the type only.
pub fn encode_join_row(out: &mut Vec<u8>, sync: u64, space_id: u32, tuple: &[u8]) {
    packet(out, |out| {
        header(out, request::INSERT, sync, 0);
        out.extend_from_slice(&[0x82, key::SPACE_ID, 0xce]);
        out.extend_from_slice(&space_id.to_be_bytes());
        out.push(key::TUPLE);
        out.extend_from_slice(tuple);
    });
}

/// A WAL row as stored (replica_id, lsn, timestamp, tsn/flags), ready for the stream.
pub fn encode_wal_row(out: &mut Vec<u8>, row: &RowRef<'_>) {
    packet(out, |out| encode_row_parts(&row.header, row.body, out));
}

/// The SUBSCRIBE answer: header carries the master's id, body `{VCLOCK, CLUSTER_UUID}`.
pub fn encode_subscribe_ok(
    out: &mut Vec<u8>,
    sync: u64,
    master_id: u32,
    vclock: &Vclock,
    cluster_uuid: &str,
) {
    packet(out, |out| {
        header(out, request::OK, sync, master_id);
        mp::write_map_len(out, 2);
        out.push(key::VCLOCK);
        vclock.encode_mp(out);
        out.push(key::CLUSTER_UUID);
        mp::write_str(out, cluster_uuid);
    });
}

/// `{0: OK, [1: sync], 2: master_id, 4: now}` with no body.
pub fn encode_heartbeat(out: &mut Vec<u8>, sync: u64, master_id: u32) {
    let h = RowHeader {
        req_type: request::OK,
        replica_id: master_id,
        timestamp: now(),
        sync,
        ..Default::default()
    };
    packet(out, |out| encode_row_parts(&h, &[], out));
}

/// The VOTE answer's body `{BALLOT: {IS_RO, IS_LOADING, VCLOCK, GC_VCLOCK}}` (2.6.0 order).
pub fn encode_ballot(out: &mut Vec<u8>, read_only: bool, vclock: &Vclock, gc_vclock: &Vclock) {
    mp::write_map_len(out, 1);
    out.push(key::BALLOT);
    mp::write_map_len(out, 4);
    out.push(ballot_key::IS_RO);
    mp::write_bool(out, read_only);
    out.push(ballot_key::IS_LOADING);
    mp::write_bool(out, false);
    out.push(ballot_key::VCLOCK);
    vclock.encode_mp(out);
    out.push(ballot_key::GC_VCLOCK);
    gc_vclock.encode_mp(out);
}

/// `{0: type}` with an optional body map of pre-encoded entries.
pub fn encode_request(out: &mut Vec<u8>, req_type: u32, body: impl FnOnce(&mut Vec<u8>)) {
    packet(out, |out| {
        header(out, req_type, 0, 0);
        body(out);
    });
}

pub fn encode_join(out: &mut Vec<u8>, instance_uuid: &str) {
    encode_request(out, request::JOIN, |out| {
        mp::write_map_len(out, 1);
        out.push(key::INSTANCE_UUID);
        mp::write_str(out, instance_uuid);
    });
}

/// SUBSCRIBE as a 2.6 applier sends it (§5.6).
pub fn encode_subscribe(
    out: &mut Vec<u8>,
    cluster_uuid: &str,
    instance_uuid: &str,
    vclock: &Vclock,
    own_id: u32,
) {
    encode_request(out, request::SUBSCRIBE, |out| {
        mp::write_map_len(out, 6);
        out.push(key::CLUSTER_UUID);
        mp::write_str(out, cluster_uuid);
        out.push(key::INSTANCE_UUID);
        mp::write_str(out, instance_uuid);
        out.push(key::VCLOCK);
        vclock.encode_mp(out);
        write_key_uint(
            out,
            key::SERVER_VERSION,
            u64::from(spindle_types::iproto::SERVER_VERSION_ID),
        );
        out.push(key::REPLICA_ANON);
        mp::write_bool(out, false);
        out.push(key::ID_FILTER);
        mp::write_array_len(out, 1);
        mp::write_uint(out, u64::from(own_id));
    });
}

/// An error packet in Tarantool's form (the iproto thread's fixed header).
pub fn encode_error(out: &mut Vec<u8>, sync: u64, err: &BoxError) {
    spindle_proto::iproto::encode_error(out, sync, 0, err);
}

/// Seconds since the epoch, as row timestamps carry it.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What the body of an `OK` marker or ACK carries.
pub fn body_vclock(body: &[u8]) -> io::Result<Option<Vclock>> {
    let mut found = None;
    for_each_body_key(body, |k, value| {
        if k == u64::from(key::VCLOCK) {
            let mut v = value;
            found = Some(Vclock::decode_mp(&mut v).map_err(|_| invalid("bad vclock"))?);
        }
        Ok(())
    })?;
    Ok(found)
}

/// Calls `f(key, raw value)` for each entry of a body map.
pub fn for_each_body_key(
    body: &[u8],
    mut f: impl FnMut(u64, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    if body.is_empty() {
        return Ok(());
    }
    let mut cur = body;
    let count = mp::read_map_len(&mut cur).map_err(|_| invalid("body is not a map"))?;
    for _ in 0..count {
        let k = mp::read_uint(&mut cur).map_err(|_| invalid("bad body key"))?;
        let value = mp::take_value(&mut cur).map_err(|_| invalid("bad body value"))?;
        f(k, value)?;
    }
    Ok(())
}

/// A decoded packet: the row header (for responses: type/sync/replica_id) and the body.
pub fn decode_packet(packet: &[u8]) -> io::Result<RowRef<'_>> {
    let mut cur = packet;
    decode_row_ref(&mut cur).map_err(|e| invalid(e.to_string()))
}

/// Turns an error packet into a BoxError (code from the type, message from ERROR_24).
pub fn packet_error(row: &RowRef<'_>) -> Option<BoxError> {
    if row.header.req_type < request::TYPE_ERROR {
        return None;
    }
    let code = row.header.req_type & 0x7fff;
    let mut message = String::new();
    let _ = for_each_body_key(row.body, |k, value| {
        if k == u64::from(key::ERROR_24) {
            let mut v = value;
            if let Ok(s) = mp::read_str(&mut v) {
                message = String::from_utf8_lossy(s).into_owned();
            }
        }
        Ok(())
    });
    Some(BoxError::new(code, message))
}

/// Writes all of `buf` (one syscall for a whole batch, as far as the kernel takes it).
pub fn send_all(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let result = stream.write_all(buf);
    buf.clear();
    result
}

/// The string value of a body entry.
pub fn str_value(value: &[u8]) -> io::Result<String> {
    let mut v = value;
    mp::read_str(&mut v)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .map_err(|_| invalid("expected a string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_matches_the_captured_bytes() {
        let mut v = Vclock::new();
        v.set(1, 14);
        let mut out = Vec::new();
        encode_vclock_ok(&mut out, 0, &v);
        assert_eq!(
            out,
            [0xce, 0, 0, 0, 8, 0x81, 0, 0, 0x81, 0x26, 0x81, 0x01, 0x0e]
        );
    }

    #[test]
    fn heartbeat_is_15_bytes_and_decodes() {
        let mut out = Vec::new();
        encode_heartbeat(&mut out, 0, 1);
        assert_eq!(out.len(), 5 + 15);
        let row = decode_packet(&out[5..]).expect("decodes");
        assert_eq!(row.header.replica_id, 1);
        assert_eq!(row.header.lsn, 0);
        assert!(row.header.timestamp > 0.0);
    }

    #[test]
    fn subscribe_response_matches_the_capture_prefix() {
        let mut v = Vclock::new();
        v.set(1, 14);
        let mut out = Vec::new();
        let uuid = "179fb6fd-0000-0000-0000-000000000000";
        encode_subscribe_ok(&mut out, 0, 1, &v, uuid);
        assert_eq!(
            &out[5..16],
            &[0x82, 0, 0, 2, 1, 0x82, 0x26, 0x81, 1, 0x0e, 0x25]
        );
        let row = decode_packet(&out[5..]).expect("decodes");
        assert_eq!(body_vclock(row.body).expect("ok"), Some(v));
    }

    #[test]
    fn error_packets_are_recognised() {
        let mut out = Vec::new();
        encode_error(&mut out, 0, &BoxError::xlog_gap("{1: 1}", "{1: 9}"));
        let row = decode_packet(&out[5..]).expect("decodes");
        let err = packet_error(&row).expect("an error");
        assert_eq!(err.code, 32);
        assert!(err.message.starts_with("Missing .xlog file"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&[0xc1u8][..], &[0x81, 0x00], &[0x81, 0x00, 0xcc], &[]] {
            assert!(decode_packet(bytes).is_err());
        }
        assert!(body_vclock(&[0x81, 0x26, 0x81, 0x40, 0x01]).is_err());
    }
}
