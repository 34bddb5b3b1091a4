//! The 2.10+ session requests, pure: IPROTO_ID's body and reply, BEGIN's options, and the
//! SYNC of an encoded reply (the network thread matches a stream's reply to its request by
//! it). Facts: shared docs transactions-and-http.md §A1–§A2.

use crate::mp::{self, Value};
use spindle_types::iproto::{key, PROTOCOL_VERSION};
use spindle_types::BoxError;

/// What a client said about itself in IPROTO_ID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientId {
    pub version: u64,
    /// Bit `n` set: the client announced feature id `n` (ids of 64 and above are dropped:
    /// the server knows none of them).
    pub features: u64,
}

fn body_error() -> BoxError {
    BoxError::invalid_msgpack("request body")
}

/// Decodes an IPROTO_ID body. A missing or non-map body, or a known key holding the wrong
/// type, is ER_INVALID_MSGPACK "request body"; unknown keys are skipped (as 2.11 does).
pub fn decode_id(body: &[u8]) -> Result<ClientId, BoxError> {
    let mut buf = body;
    let count = match mp::read_value(&mut buf) {
        Ok(Value::Map(n)) => n,
        _ => return Err(body_error()),
    };
    let mut id = ClientId::default();
    for _ in 0..count {
        let k = mp::read_value(&mut buf).map_err(|_| body_error())?;
        match k {
            Value::Uint(k) if k == u64::from(key::VERSION) => {
                id.version = mp::read_uint(&mut buf).map_err(|_| body_error())?;
            }
            Value::Uint(k) if k == u64::from(key::FEATURES) => {
                id.features = read_features(&mut buf)?;
            }
            Value::Uint(k) if k == u64::from(key::AUTH_TYPE) => {
                mp::read_str(&mut buf).map_err(|_| body_error())?;
            }
            _ => mp::skip(&mut buf).map_err(|_| body_error())?,
        }
    }
    Ok(id)
}

fn read_features(buf: &mut &[u8]) -> Result<u64, BoxError> {
    let n = mp::read_array_len(buf).map_err(|_| body_error())?;
    let mut features = 0u64;
    for _ in 0..n {
        let f = mp::read_uint(buf).map_err(|_| body_error())?;
        if f < 64 {
            features |= 1 << f;
        }
    }
    Ok(features)
}

/// The body of the reply to IPROTO_ID, as 2.11 shapes it: `{VERSION, FEATURES, AUTH_TYPE}`.
pub fn encode_id_reply(features: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    mp::write_map_len(&mut out, 3);
    mp::write_uint(&mut out, u64::from(key::VERSION));
    mp::write_uint(&mut out, PROTOCOL_VERSION);
    mp::write_uint(&mut out, u64::from(key::FEATURES));
    mp::write_array_len(&mut out, features.len() as u32);
    for &f in features {
        mp::write_uint(&mut out, f);
    }
    mp::write_uint(&mut out, u64::from(key::AUTH_TYPE));
    mp::write_str(&mut out, "chap-sha1");
    out
}

/// Transaction isolation levels (`TXN_ISOLATION`), 2.11's numbering.
pub const ISOLATION_LINEARIZABLE: u64 = 4;
/// One past the largest level 2.11 knows.
pub const ISOLATION_MAX: u64 = 5;

/// BEGIN's options. `timeout` is None when not given (or given as 0.0, which means the same).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BeginOptions {
    pub timeout: Option<f64>,
    pub isolation: u64,
}

/// Decodes a BEGIN body (`body` empty: none was sent). TIMEOUT must be a double and
/// TXN_ISOLATION an unsigned integer, else ER_INVALID_MSGPACK "request body"; the values
/// themselves are checked by [`check_begin`].
pub fn decode_begin(body: &[u8]) -> Result<BeginOptions, BoxError> {
    let mut options = BeginOptions::default();
    if body.is_empty() {
        return Ok(options);
    }
    let mut buf = body;
    let count = match mp::read_value(&mut buf) {
        Ok(Value::Map(n)) => n,
        _ => return Err(body_error()),
    };
    for _ in 0..count {
        let k = mp::read_value(&mut buf).map_err(|_| body_error())?;
        match k {
            Value::Uint(k) if k == u64::from(key::TIMEOUT) => match mp::read_value(&mut buf) {
                Ok(Value::F64(t)) => options.timeout = (t != 0.0).then_some(t),
                _ => return Err(body_error()),
            },
            Value::Uint(k) if k == u64::from(key::TXN_ISOLATION) => {
                options.isolation = mp::read_uint(&mut buf).map_err(|_| body_error())?;
            }
            _ => mp::skip(&mut buf).map_err(|_| body_error())?,
        }
    }
    Ok(options)
}

/// The value checks BEGIN makes once the transaction exists, in 2.11's order (timeout, then
/// isolation). `mvcc` says whether the MVCC engine is on (linearizable needs it).
pub fn check_begin(options: &BeginOptions, mvcc: bool) -> Result<(), BoxError> {
    if let Some(t) = options.timeout {
        if t.is_nan() || t < 0.0 {
            return Err(BoxError::illegal_params(
                "timeout must be a number greater than 0",
            ));
        }
    }
    match options.isolation {
        ISOLATION_LINEARIZABLE if !mvcc => Err(BoxError::unsupported(
            "Linearizable transaction",
            "disabled memtx mvcc engine",
        )),
        i if i >= ISOLATION_MAX => Err(BoxError::illegal_params("unknown isolation level")),
        _ => Ok(()),
    }
}

/// The SYNC of one encoded reply (length prefix included), None if it has none or the bytes
/// are not a reply. Used only on replies this server encoded.
pub fn reply_sync(reply: &[u8]) -> Option<u64> {
    let mut buf = reply;
    mp::read_uint(&mut buf).ok()?;
    let Ok(Value::Map(n)) = mp::read_value(&mut buf) else {
        return None;
    };
    for _ in 0..n {
        let k = mp::read_uint(&mut buf).ok()?;
        if k == u64::from(key::SYNC) {
            return mp::read_uint(&mut buf).ok();
        }
        mp::skip(&mut buf).ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iproto::encode_ok_empty;

    #[test]
    fn id_bodies_decode_as_2_11_does() {
        // {VERSION: 3, FEATURES: [0, 1, 2], AUTH_TYPE: "chap-sha1", 0x70: "skipped"}
        let mut body = vec![0x84, 0x54, 0x03, 0x55, 0x93, 0x00, 0x01, 0x02, 0x5b, 0xa9];
        body.extend_from_slice(b"chap-sha1");
        body.extend_from_slice(&[0x70, 0xa1, b'x']);
        let id = decode_id(&body).expect("valid");
        assert_eq!(
            id,
            ClientId {
                version: 3,
                features: 0b111
            }
        );
        assert_eq!(decode_id(&[0x80]), Ok(ClientId::default()));
        for bad in [
            &[][..],
            &[0x90],
            &[0x81, 0x54, 0xa1, b'3'],
            &[0x81, 0x55, 0x01],
            &[0x81, 0x55, 0x91, 0xa1, b'x'],
            &[0x81, 0x5b, 0x01],
            &[0x82, 0x54, 0x01],
        ] {
            let e = decode_id(bad).expect_err("invalid");
            assert_eq!(
                (e.code, e.message.as_str()),
                (20, "Invalid MsgPack - request body")
            );
        }
        // A feature id the server cannot know is accepted and dropped.
        assert_eq!(
            decode_id(&[0x81, 0x55, 0x91, 0xcc, 0xc8]).map(|i| i.features),
            Ok(0)
        );
    }

    #[test]
    fn the_id_reply_has_version_features_and_auth_type() {
        let body = encode_id_reply(&[0, 1]);
        let mut expected = vec![0x83, 0x54, 0x04, 0x55, 0x92, 0x00, 0x01, 0x5b, 0xa9];
        expected.extend_from_slice(b"chap-sha1");
        assert_eq!(body, expected);
    }

    #[test]
    fn begin_options_decode_and_check() {
        assert_eq!(decode_begin(&[]), Ok(BeginOptions::default()));
        // asynctnt's body: {TXN_ISOLATION: 0, TIMEOUT: 0.0}
        let mut body = vec![0x82, 0x59, 0x00, 0x56, 0xcb];
        body.extend_from_slice(&0.0f64.to_be_bytes());
        assert_eq!(decode_begin(&body), Ok(BeginOptions::default()));
        let mut body = vec![0x81, 0x56, 0xcb];
        body.extend_from_slice(&2.5f64.to_be_bytes());
        let options = decode_begin(&body).expect("valid");
        assert_eq!(options.timeout, Some(2.5));
        for bad in [
            &[0x81, 0x56, 0x05][..],
            &[0x81, 0x59, 0xa1, b'x'],
            &[0x91, 0x00],
            &[0x81],
        ] {
            let e = decode_begin(bad).expect_err("invalid");
            assert_eq!(e.code, 20, "{bad:?}");
        }
        let check = |timeout, isolation, mvcc| {
            check_begin(&BeginOptions { timeout, isolation }, mvcc).map_err(|e| (e.code, e.message))
        };
        assert_eq!(check(None, 3, false), Ok(()));
        assert_eq!(check(Some(1.0), 0, false), Ok(()));
        assert_eq!(
            check(Some(-1.0), 0, false),
            Err((
                1,
                "Illegal parameters, timeout must be a number greater than 0".into()
            ))
        );
        assert_eq!(
            check(None, 4, false),
            Err((
                5,
                "Linearizable transaction does not support disabled memtx mvcc engine".into()
            ))
        );
        assert_eq!(check(None, 4, true), Ok(()));
        assert_eq!(
            check(None, 5, false),
            Err((1, "Illegal parameters, unknown isolation level".into()))
        );
    }

    #[test]
    fn a_reply_s_sync_is_found_in_its_header() {
        let mut out = Vec::new();
        encode_ok_empty(&mut out, 0x0012_3456_789a, 7);
        assert_eq!(reply_sync(&out), Some(0x0012_3456_789a));
        assert_eq!(reply_sync(&[]), None);
        assert_eq!(reply_sync(&[0x01, 0x90]), None);
    }
}
