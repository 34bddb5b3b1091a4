//! The 2.10+ watcher packets, pure: the WATCH/UNWATCH body and the EVENT the server sends.
//! Facts: shared docs transactions-and-http.md §A5; the decoding errors are 2.11's.

use crate::iproto::{begin_packet, finish_response};
use crate::mp::{self, MpType};
use spindle_types::iproto::{key, request};
use spindle_types::BoxError;

/// The one past the last body key 2.11 knows (`IPROTO_KEY_MAX`): keys below it must hold
/// their type, keys at or above it may hold anything.
const KEY_MAX_2_11: u64 = 0x5c;

fn packet_body() -> BoxError {
    BoxError::invalid_msgpack("packet body")
}

/// The key of a WATCH or UNWATCH body: the payload of its EVENT_KEY string.
/// No body → "missing request body"; a non-map body, a key that is not an unsigned integer,
/// or a known key holding another type than 2.11's table says → "packet body"; no
/// EVENT_KEY → ER_MISSING_REQUEST_FIELD "event key".
pub fn decode_watch(body: &[u8]) -> Result<&[u8], BoxError> {
    if body.is_empty() {
        return Err(BoxError::invalid_msgpack("missing request body"));
    }
    let mut buf = body;
    let count = mp::read_map_len(&mut buf).map_err(|_| packet_body())?;
    let mut event_key = None;
    for _ in 0..count {
        let k = mp::read_uint(&mut buf).map_err(|_| packet_body())?;
        let kind = mp::peek_type(buf).map_err(|_| packet_body())?;
        if k < KEY_MAX_2_11 && body_key_type(k).is_some_and(|t| t != kind) {
            return Err(packet_body());
        }
        if k == u64::from(key::EVENT_KEY) {
            event_key = Some(mp::read_str(&mut buf).map_err(|_| packet_body())?);
        } else {
            mp::skip(&mut buf).map_err(|_| packet_body())?;
        }
    }
    event_key.ok_or_else(|| BoxError::missing_request_field("event key"))
}

/// The type 2.11 requires of body key `k` (below `KEY_MAX_2_11`); None: any.
fn body_key_type(k: u64) -> Option<MpType> {
    use MpType::*;
    Some(match k {
        0x04 | 0x56 => Double,
        0x1f | 0x50 => Bool,
        0x20 | 0x21 | 0x28 | 0x2c | 0x2d | 0x2f | 0x30 | 0x32 | 0x33 | 0x41 | 0x51 | 0x55 => Array,
        0x22..=0x25 | 0x27 | 0x2e | 0x31 | 0x35 | 0x40 | 0x57 | 0x5b => Str,
        0x26 | 0x29..=0x2b | 0x42 | 0x52 => Map,
        0x58 => return None,
        _ => Uint,
    })
}

/// An EVENT packet: header `{REQUEST_TYPE: EVENT}` only (no SYNC, no SCHEMA_VERSION),
/// body `{EVENT_KEY: key}` plus `EVENT_DATA: value` if the key has one (`value` is one
/// encoded MessagePack value).
pub fn encode_event(out: &mut Vec<u8>, event_key: &[u8], value: Option<&[u8]>) {
    let start = begin_packet(out);
    mp::write_map_len(out, 1);
    mp::write_uint(out, u64::from(key::REQUEST_TYPE));
    mp::write_uint(out, u64::from(request::EVENT));
    mp::write_map_len(out, if value.is_some() { 2 } else { 1 });
    mp::write_uint(out, u64::from(key::EVENT_KEY));
    mp::write_str_bytes(out, event_key);
    if let Some(value) = value {
        mp::write_uint(out, u64::from(key::EVENT_DATA));
        out.extend_from_slice(value);
    }
    finish_response(out, start);
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_types::error::code::{ER_INVALID_MSGPACK, ER_MISSING_REQUEST_FIELD};

    fn err(body: &[u8]) -> (u32, String) {
        let e = decode_watch(body).unwrap_err();
        (e.code, e.message)
    }

    #[test]
    fn the_key_is_read_and_other_keys_skipped() {
        assert_eq!(decode_watch(b"\x81\x57\xa1k").unwrap(), b"k");
        assert_eq!(
            decode_watch(b"\x83\x60\x90\x58\xc0\x57\xa2ab").unwrap(),
            b"ab"
        );
    }

    #[test]
    fn malformed_bodies_get_2_11s_errors() {
        let invalid = |what: &str| (ER_INVALID_MSGPACK, format!("Invalid MsgPack - {what}"));
        assert_eq!(err(b""), invalid("missing request body"));
        assert_eq!(err(b"\x91\xa1k"), invalid("packet body"));
        assert_eq!(err(b"\x81\xa1k\xa1k"), invalid("packet body"));
        assert_eq!(err(b"\x81\x57\x01"), invalid("packet body"));
        assert_eq!(err(b"\x82\x10\xa1x\x57\xa1k"), invalid("packet body"));
        assert_eq!(err(b"\x81\x57"), invalid("packet body"));
        let missing = err(b"\x80");
        assert_eq!(missing.0, ER_MISSING_REQUEST_FIELD);
        assert!(missing.1.contains("'event key'"), "{}", missing.1);
    }

    #[test]
    fn an_event_has_no_sync_and_data_only_with_a_value() {
        let mut out = Vec::new();
        encode_event(&mut out, b"k", None);
        assert_eq!(&out[5..], b"\x81\x00\x4c\x81\x57\xa1k");
        out.clear();
        encode_event(&mut out, b"k", Some(b"\x2a"));
        assert_eq!(&out[5..], b"\x81\x00\x4c\x82\x57\xa1k\x58\x2a");
        assert_eq!(out[..5], [0xce, 0, 0, 0, (out.len() - 5) as u8]);
    }
}
