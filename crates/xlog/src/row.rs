//! Rows ("xrows", spec §1.1, §3): a MessagePack header map, optionally followed by a body map.
//! The same encoding is used inside file blocks and in the replication stream.

use spindle_proto::mp::{self, MpError, Value};
use spindle_types::iproto::{key, request};

use crate::error::{XlogError, XlogResult};

/// FLAGS bit marking the last row of a multi-row transaction.
pub const FLAG_COMMIT: u64 = 0x01;

/// The decoded header of one row.
///
/// `tsn` is the transaction id (the LSN of the transaction's first global row) and
/// `is_commit` marks the transaction's last row; on disk they become the TSN/FLAGS keys
/// (spec §3.2). `Default` describes a single-statement transaction (`is_commit = true`,
/// `tsn = lsn = 0`), which encodes neither key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowHeader {
    /// `IPROTO_REQUEST_TYPE` (INSERT, NOP, RAFT, ...).
    pub req_type: u32,
    /// Originating instance id; 0 for local rows.
    pub replica_id: u32,
    /// 0 = replicated, 1 = GROUP_LOCAL.
    pub group_id: u32,
    /// LSN within `replica_id`'s vclock component.
    pub lsn: u64,
    /// Seconds since the epoch when the row was written to this WAL; 0.0 = absent.
    pub timestamp: f64,
    /// Transaction id, absolute (not the on-disk difference).
    pub tsn: u64,
    /// Whether this row ends its transaction.
    pub is_commit: bool,
    /// Request correlation id: decoded from the wire, never written by `encode_row`.
    pub sync: u64,
}

impl Default for RowHeader {
    fn default() -> Self {
        RowHeader {
            req_type: 0,
            replica_id: 0,
            group_id: 0,
            lsn: 0,
            timestamp: 0.0,
            tsn: 0,
            is_commit: true,
            sync: 0,
        }
    }
}

/// One row: header plus the raw bytes of the body map (empty when there is no body, as for
/// NOP).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Row {
    pub header: RowHeader,
    pub body: Vec<u8>,
}

impl RowHeader {
    /// True when the on-disk form carries neither TSN nor FLAGS: a single-statement
    /// transaction.
    fn is_single_statement(&self) -> bool {
        self.tsn == self.lsn && self.is_commit
    }
}

/// Appends the row: header keys in Tarantool's order, zero values omitted, TSN/FLAGS per
/// spec §3.2, then the body bytes verbatim.
pub fn encode_row(row: &Row, out: &mut Vec<u8>) {
    encode_row_parts(&row.header, &row.body, out);
}

/// Like [`encode_row`], for a header and a borrowed body (the relay's path: no copy).
pub fn encode_row_parts(h: &RowHeader, body: &[u8], out: &mut Vec<u8>) {
    let single = h.is_single_statement();
    let entries = 1
        + usize::from(h.replica_id != 0)
        + usize::from(h.group_id != 0)
        + usize::from(h.lsn != 0)
        + usize::from(h.timestamp != 0.0)
        + if single {
            0
        } else {
            1 + usize::from(h.is_commit)
        };
    mp::write_map_len(out, entries as u32);
    write_key_uint(out, key::REQUEST_TYPE, u64::from(h.req_type));
    if h.replica_id != 0 {
        write_key_uint(out, key::REPLICA_ID, u64::from(h.replica_id));
    }
    if h.group_id != 0 {
        write_key_uint(out, key::GROUP_ID, u64::from(h.group_id));
    }
    if h.lsn != 0 {
        write_key_uint(out, key::LSN, h.lsn);
    }
    if h.timestamp != 0.0 {
        out.push(key::TIMESTAMP);
        mp::write_f64(out, h.timestamp);
    }
    if !single {
        // Local rows may sit below the transaction's tsn: the difference wraps (§3.2).
        write_key_uint(out, key::TSN, h.lsn.wrapping_sub(h.tsn));
        if h.is_commit {
            write_key_uint(out, key::FLAGS, FLAG_COMMIT);
        }
    }
    out.extend_from_slice(body);
}

fn write_key_uint(out: &mut Vec<u8>, k: u8, v: u64) {
    out.push(k);
    mp::write_uint(out, v);
}

/// A row whose body borrows the bytes it was decoded from (no copy).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowRef<'a> {
    pub header: RowHeader,
    /// The body map, already validated as well-formed MessagePack; empty for NOP.
    pub body: &'a [u8],
}

impl RowRef<'_> {
    pub fn to_row(&self) -> Row {
        Row {
            header: self.header,
            body: self.body.to_vec(),
        }
    }
}

/// Like [`decode_row`], without copying the body.
pub fn decode_row_ref<'a>(buf: &mut &'a [u8]) -> XlogResult<RowRef<'a>> {
    let mut cur = *buf;
    let header = decode_header(&mut cur)?;
    let body = if header.req_type == request::NOP || cur.is_empty() {
        &[][..]
    } else {
        decode_body_ref(&mut cur)?
    };
    *buf = cur;
    Ok(RowRef { header, body })
}

fn decode_body_ref<'a>(cur: &mut &'a [u8]) -> XlogResult<&'a [u8]> {
    if mp::peek_type(cur).map_err(mp_error("body"))? != mp::MpType::Map {
        return Err(XlogError::bad_row("body is not a map"));
    }
    let len = mp::check(cur).map_err(mp_error("body"))?;
    let (body, rest) = cur
        .split_at_checked(len)
        .ok_or_else(|| XlogError::bad_row("body"))?;
    *cur = rest;
    Ok(body)
}

/// Decodes one row and advances `buf` past it; on error `buf` is left untouched.
///
/// A NOP never has a body, even when bytes follow; any other type takes the next value as
/// its body when bytes remain, so inside a block the caller must call this once per row.
pub fn decode_row(buf: &mut &[u8]) -> XlogResult<Row> {
    decode_row_ref(buf).map(|r| r.to_row())
}

/// What the TSN and FLAGS keys said, before they are turned into `tsn`/`is_commit`.
#[derive(Default)]
struct TxnKeys {
    tsn_diff: Option<u64>,
    flags: u64,
}

fn decode_header(cur: &mut &[u8]) -> XlogResult<RowHeader> {
    let count = mp::read_map_len(cur).map_err(mp_error("header map"))?;
    let mut header = RowHeader::default();
    let mut txn = TxnKeys::default();
    for _ in 0..count {
        let k = mp::read_uint(cur).map_err(mp_error("header key"))?;
        decode_header_value(cur, k, &mut header, &mut txn)?;
    }
    match txn.tsn_diff {
        Some(diff) => {
            header.tsn = header.lsn.wrapping_sub(diff);
            header.is_commit = txn.flags & FLAG_COMMIT != 0;
        }
        None => {
            header.tsn = header.lsn;
            header.is_commit = true;
        }
    }
    Ok(header)
}

fn decode_header_value(
    cur: &mut &[u8],
    k: u64,
    header: &mut RowHeader,
    txn: &mut TxnKeys,
) -> XlogResult<()> {
    // Tarantool 2.6 peers reject header keys at or above IPROTO_KEY_MAX; so do we.
    if k >= u64::from(key::KEY_MAX) {
        return Err(XlogError::bad_row(format!(
            "header key {k:#x} out of range"
        )));
    }
    match k as u8 {
        key::REQUEST_TYPE => header.req_type = read_u32(cur, "type")?,
        key::SYNC => header.sync = read_u64(cur, "sync")?,
        key::REPLICA_ID => header.replica_id = read_u32(cur, "replica_id")?,
        key::GROUP_ID => header.group_id = read_u32(cur, "group_id")?,
        key::LSN => header.lsn = read_u64(cur, "lsn")?,
        key::TSN => txn.tsn_diff = Some(read_u64(cur, "tsn")?),
        key::FLAGS => txn.flags = read_u64(cur, "flags")?,
        key::TIMESTAMP => match mp::read_value(cur).map_err(mp_error("timestamp"))? {
            Value::F64(ts) => header.timestamp = ts,
            _ => return Err(XlogError::bad_row("timestamp is not a double")),
        },
        _ => mp::skip(cur).map_err(mp_error("header value"))?,
    }
    Ok(())
}

fn read_u64(cur: &mut &[u8], what: &'static str) -> XlogResult<u64> {
    mp::read_uint(cur).map_err(mp_error(what))
}

fn read_u32(cur: &mut &[u8], what: &'static str) -> XlogResult<u32> {
    let v = read_u64(cur, what)?;
    u32::try_from(v).map_err(|_| XlogError::bad_row(format!("{what} {v} out of range")))
}

fn mp_error(what: &'static str) -> impl Fn(MpError) -> XlogError {
    move |e| XlogError::bad_row(format!("{what}: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body_of(space: u64, tuple_len: usize) -> Vec<u8> {
        let mut b = Vec::new();
        mp::write_map_len(&mut b, 2);
        mp::write_uint(&mut b, 0x10);
        mp::write_uint(&mut b, space);
        mp::write_uint(&mut b, 0x21);
        mp::write_array_len(&mut b, 1);
        mp::write_str(&mut b, &"x".repeat(tuple_len));
        b
    }

    fn round_trip(rows: &[Row]) -> Vec<Row> {
        let mut buf = Vec::new();
        for row in rows {
            encode_row(row, &mut buf);
        }
        let mut cur = &buf[..];
        let mut out = Vec::new();
        while !cur.is_empty() {
            out.push(decode_row(&mut cur).unwrap());
        }
        out
    }

    fn row(req_type: u32, lsn: u64, tsn: u64, is_commit: bool, body: Vec<u8>) -> Row {
        let header = RowHeader {
            req_type,
            replica_id: 1,
            lsn,
            timestamp: 1.5,
            tsn,
            is_commit,
            ..RowHeader::default()
        };
        Row { header, body }
    }

    #[test]
    fn annotated_example_header_bytes() {
        // Spec §2.8: {0:3, 2:1, 3:1, 4:ts} followed by the body.
        let ts = f64::from_be_bytes([0x41, 0xda, 0xc0, 0x4a, 0xb5, 0x6a, 0x27, 0x69]);
        let mut r = row(request::REPLACE, 1, 1, true, vec![0x80]);
        r.header.timestamp = ts;
        let mut out = Vec::new();
        encode_row(&r, &mut out);
        let expected = [
            0x84, 0x00, 0x03, 0x02, 0x01, 0x03, 0x01, 0x04, 0xcb, 0x41, 0xda, 0xc0, 0x4a, 0xb5,
            0x6a, 0x27, 0x69, 0x80,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn multi_row_txn_keys_match_spec() {
        // Spec §2.8: {.., 8:0}, {.., 8:1}, {.., 8:2, 9:1}.
        let rows: Vec<Row> = (13..=15)
            .map(|lsn| row(request::INSERT, lsn, 13, lsn == 15, body_of(512, 3)))
            .collect();
        let mut out = Vec::new();
        encode_row(&rows[2], &mut out);
        assert_eq!(&out[..7], &[0x86, 0x00, 0x02, 0x02, 0x01, 0x03, 0x0f]);
        assert_eq!(&out[17..22], &[0x08, 0x02, 0x09, 0x01, 0x82]);
        assert_eq!(round_trip(&rows), rows);
    }

    #[test]
    fn local_row_tsn_wraps() {
        // Spec §3.2: local row lsn 1 inside a txn with tsn 7 stores TSN = -6 as uint64.
        let mut local = row(request::INSERT, 1, 7, false, body_of(513, 1));
        local.header.replica_id = 0;
        local.header.group_id = 1;
        let mut out = Vec::new();
        encode_row(&local, &mut out);
        let tsn_at = out.windows(2).position(|w| w == [0x08, 0xcf]).unwrap();
        assert_eq!(&out[tsn_at + 2..tsn_at + 10], &(-6i64 as u64).to_be_bytes());
        let nop = row(request::NOP, 8, 7, true, Vec::new());
        let first = row(request::INSERT, 7, 7, false, body_of(512, 1));
        let txn = vec![first, local, nop];
        assert_eq!(round_trip(&txn), txn);
    }

    #[test]
    fn nop_has_no_body_even_when_bytes_follow() {
        let nop = row(request::NOP, 3, 3, true, Vec::new());
        let next = row(request::INSERT, 4, 4, true, body_of(512, 2));
        assert_eq!(round_trip(&[nop.clone(), next.clone()]), vec![nop, next]);
    }

    #[test]
    fn single_statement_has_neither_tsn_nor_flags() {
        let r = row(request::DELETE, 9, 9, true, body_of(512, 0));
        let mut out = Vec::new();
        encode_row(&r, &mut out);
        assert_eq!(out[0], 0x84, "type, replica_id, lsn, timestamp only");
        assert_eq!(round_trip(std::slice::from_ref(&r)), vec![r]);
    }

    #[test]
    fn zero_fields_are_omitted_and_sync_never_written() {
        let mut r = Row::default();
        r.header.req_type = request::INSERT;
        r.header.sync = 77;
        let mut out = Vec::new();
        encode_row(&r, &mut out);
        assert_eq!(out, [0x81, 0x00, 0x02]);
    }

    #[test]
    fn decoder_accepts_wide_ints_and_sync() {
        // {0: cc 02, 1: cf sync, 3: ce lsn} + body.
        let mut buf = vec![0x83, 0x00, 0xcc, 0x02, 0x01, 0xcf, 0, 0, 0, 0, 0, 0, 0, 5];
        buf.extend_from_slice(&[0x03, 0xce, 0, 0, 1, 0, 0x80]);
        let r = decode_row(&mut &buf[..]).unwrap();
        assert_eq!(
            (r.header.req_type, r.header.sync, r.header.lsn),
            (2, 5, 256)
        );
        assert_eq!(r.body, [0x80]);
    }

    #[test]
    fn decoder_rejects_what_tarantool_rejects() {
        let cases: &[&[u8]] = &[
            &[0x81, 0x53, 0x00],                         // header key >= IPROTO_KEY_MAX
            &[0x81, 0x04, 0xca, 0, 0, 0, 0],             // float32 timestamp
            &[0x81, 0x03, 0xff],                         // negative lsn
            &[0x81, 0x00, 0xce, 0xff, 0xff, 0xff, 0xff], // fine type ...
            &[0x81, 0xa1, 0x61, 0x00],                   // string key
            &[0x91, 0x00],                               // header is not a map
            &[0x81, 0x00, 0x02, 0x91, 0x00],             // body is not a map
            &[0x81, 0x00, 0x02, 0x81, 0x00],             // truncated body
            &[0x82, 0x00, 0x02],                         // truncated header
        ];
        let ok = decode_row(&mut &cases[3][..]).unwrap();
        assert_eq!(ok.header.req_type, u32::MAX);
        for (n, case) in cases.iter().enumerate().filter(|&(n, _)| n != 3) {
            let mut cur = *case;
            assert!(decode_row(&mut cur).is_err(), "case {n} accepted");
            assert_eq!(cur.len(), case.len(), "case {n} moved the cursor");
        }
    }

    fn arb_row() -> impl Strategy<Value = Row> {
        let types = prop_oneof![
            Just(2u32),
            Just(3),
            Just(4),
            Just(5),
            Just(9),
            Just(12),
            Just(40)
        ];
        (
            types,
            0u32..32,
            0u32..2,
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            0usize..40,
        )
            .prop_map(
                |(req_type, replica_id, group_id, lsn, tsn, is_commit, len)| {
                    let header = RowHeader {
                        req_type,
                        replica_id,
                        group_id,
                        lsn,
                        timestamp: lsn as f64 / 3.0,
                        tsn,
                        is_commit,
                        sync: 0,
                    };
                    let body = if req_type == request::NOP {
                        Vec::new()
                    } else {
                        body_of(lsn, len)
                    };
                    Row { header, body }
                },
            )
    }

    proptest! {
        #[test]
        fn rows_round_trip(rows in proptest::collection::vec(arb_row(), 1..8)) {
            // Exact: TSN/FLAGS and omitted zero fields decode back to the same values.
            prop_assert_eq!(round_trip(&rows), rows);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut cur = &bytes[..];
            while !cur.is_empty() {
                if decode_row(&mut cur).is_err() {
                    break;
                }
            }
        }

        #[test]
        fn truncated_rows_are_errors(r in arb_row()) {
            let mut buf = Vec::new();
            encode_row(&r, &mut buf);
            // A cut inside the header is always an error; a cut exactly between header and
            // body decodes as a body-less row, which is why blocks carry a length.
            let body_at = buf.len() - r.body.len();
            for cut in 0..body_at {
                prop_assert!(decode_row(&mut &buf[..cut]).is_err());
            }
            for cut in body_at + 1..buf.len() {
                prop_assert!(decode_row(&mut &buf[..cut]).is_err());
            }
        }
    }
}
