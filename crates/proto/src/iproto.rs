//! IPROTO packets: framing, request decoding (server side), response encoding (server side),
//! request encoding and response decoding (client side). See iproto.md §1–§4.
//!
//! A packet is `<size: MP uint> <header: MP map> [<body: MP map>]`. The server decodes a request
//! in one pass without allocating: the result holds [`Span`]s (byte ranges into the packet)
//! rather than copies, and every byte of the packet is validated on the way, so later stages may
//! parse spans with the unchecked-shape assumptions "this is one well-formed value of depth at
//! most `MP_DEPTH_MAX`".
//!
//! Validation follows what a real 2.6.0 server answers (checked on the wire, and compared live
//! by crates/client/tests/against_tarantool.rs), with deliberate differences:
//! * unknown header keys are ignored (as 2.10+ does, so newer clients' keys such as STREAM_ID
//!   never break a request);
//! * integers wider than 32 bits saturate to `u32::MAX` where 2.6 silently truncates them (so
//!   `2^32 + 512` never aliases space 512, nor type `2^32 + 1` SELECT);
//! * the never-used byte 0xc1 is invalid MessagePack everywhere (2.6 lets it through in a body);
//! * an AUTH tuple is checked here, before the server looks the user up, so an unknown user
//!   with a malformed tuple gets "Invalid MsgPack" where 2.6 says "User ... is not found".

use crate::mp::{self, MpError, MpResult, MpType, Value};
use spindle_types::iproto::{key, request};
use spindle_types::limits::{MP_DEPTH_MAX, PACKET_SIZE_HARD_MAX};
use spindle_types::BoxError;

/// A byte range into the packet slice given to [`decode_request`] / [`decode_response`].
pub type Span = std::ops::Range<u32>;

/// Bytes of the `ce <u32>` length prefix this module writes.
const PREFIX_LEN: usize = 5;
/// Nesting depth [`Cursor::value`] validates without allocating; real keys and tuples stay far
/// below it.
const INLINE_DEPTH: usize = 16;
const _: () = assert!(INLINE_DEPTH <= MP_DEPTH_MAX);
/// IPROTO_ID (2.10+); not among the 2.6 constants in `spindle_types::iproto::request`.
pub const REQUEST_ID: u32 = request::ID;
/// Clients recover an error code from a response type as `type & 0x7fff`.
const ERROR_CODE_MASK: u32 = 0x7fff;
/// Encoded `[]`: what an absent optional argument list means.
const EMPTY_ARRAY: &[u8] = &[0x90];

// ---------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------

/// Outcome of looking at the start of a read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet: the buffer must hold at least this many (prefix included).
    Need(usize),
    /// A whole packet is present: header+body are `buf[prefix_len..prefix_len + len]`.
    Packet { prefix_len: usize, len: usize },
}

/// A framing fault. The peer is out of sync, so the connection must be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The first byte is not a MessagePack unsigned integer.
    BadPrefix,
    /// The announced packet size exceeds the limit.
    TooBig(u64),
}

impl FrameError {
    /// The error Tarantool sends (with sync 0) before closing the connection.
    pub fn to_box_error(self) -> BoxError {
        match self {
            FrameError::BadPrefix => BoxError::invalid_msgpack("packet length"),
            FrameError::TooBig(n) => {
                BoxError::invalid_msgpack(&format!("too big packet size in the header: {n}"))
            }
        }
    }
}

/// Reads the length prefix (any uint width: fixint, cc, cd, ce, cf). `max` = configured packet
/// size limit (also capped at Tarantool's absolute 2 GiB limit).
pub fn decode_frame(buf: &[u8], max: usize) -> Result<Frame, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(Frame::Need(1));
    };
    let prefix_len = match first {
        0x00..=0x7f => 1,
        0xcc => 2,
        0xcd => 3,
        0xce => 5,
        0xcf => 9,
        _ => return Err(FrameError::BadPrefix),
    };
    let Some(mut prefix) = buf.get(..prefix_len) else {
        return Ok(Frame::Need(prefix_len));
    };
    let len = mp::read_uint(&mut prefix).map_err(|_| FrameError::BadPrefix)?;
    let limit = (max as u64).min(PACKET_SIZE_HARD_MAX);
    if len > limit {
        return Err(FrameError::TooBig(len));
    }
    // len <= limit <= 2^31, so neither conversion nor addition can overflow.
    let len = len as usize;
    let total = prefix_len + len;
    Ok(if buf.len() < total {
        Frame::Need(total)
    } else {
        Frame::Packet { prefix_len, len }
    })
}

// ---------------------------------------------------------------------------------------------
// Request decoding (server side)
// ---------------------------------------------------------------------------------------------

/// The request header fields the server acts on. Other header keys are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// 0 if absent (which 2.6 answers with "Unknown request type 0").
    pub request_type: u32,
    /// Echoed in the response; 0 if absent.
    pub sync: u64,
    /// 0 (or absent) means "do not check".
    pub schema_version: u64,
    /// 2.10+ streams; 0 if absent.
    pub stream_id: u64,
}

/// A decoded request. `Span`s of MessagePack values (key, tuple, ops, args, body) cover the whole
/// value; `Span`s of names (function name, expression, user name, uuid, scramble) cover only the
/// string's payload bytes, which are not checked to be UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Ping,
    /// `limit`: both 0xFFFFFFFF and 2^64-1 arrive as "unlimited" and read as `u32::MAX`.
    Select {
        space_id: u32,
        index_id: u32,
        limit: u32,
        offset: u32,
        iterator: u32,
        key: Span,
    },
    Insert {
        space_id: u32,
        tuple: Span,
    },
    Replace {
        space_id: u32,
        tuple: Span,
    },
    /// `ops` come from the TUPLE key (0x21), as in every client.
    Update {
        space_id: u32,
        index_id: u32,
        index_base: u32,
        key: Span,
        ops: Span,
    },
    Delete {
        space_id: u32,
        index_id: u32,
        key: Span,
    },
    /// INDEX_ID is ignored for UPSERT, as in 2.6.
    Upsert {
        space_id: u32,
        index_base: u32,
        tuple: Span,
        ops: Span,
    },
    /// `scramble` is None when the AUTH tuple is `[]` (only valid for a password-less user;
    /// the server decides). Otherwise it is exactly 20 bytes (MP_STR or MP_BIN on the wire).
    Auth {
        user: Span,
        scramble: Option<Span>,
    },
    /// `args` is empty when the TUPLE key was absent, which means `[]`: read it with
    /// [`array_or_empty`]. `is_16` marks CALL_16 (type 6).
    Call {
        name: Span,
        args: Span,
        is_16: bool,
    },
    /// `args` as for `Call`.
    Eval {
        expr: Span,
        args: Span,
    },
    /// Recognised (a body with SQL_TEXT or STMT_ID), not decoded further.
    Execute,
    /// Recognised (a body with SQL_TEXT or STMT_ID), not decoded further.
    Prepare,
    Vote,
    /// `instance_uuid` is empty if the key was absent.
    Join {
        instance_uuid: Span,
    },
    /// The whole body map.
    Subscribe {
        body: Span,
    },
    /// The whole body map.
    Register {
        body: Span,
    },
    FetchSnapshot,
    /// IPROTO_ID (2.10+); `body` is the whole body map, or empty if there was none.
    Id {
        body: Span,
    },
    /// BEGIN (2.10+); `body` is the whole body, or empty if there was none (decoded by TX
    /// with `streams::decode_begin`, which a 2.6-compatible server never does).
    Begin {
        body: Span,
    },
    /// COMMIT (2.10+); the body is ignored.
    Commit,
    /// ROLLBACK (2.10+); the body is ignored.
    Rollback,
    /// WATCH and UNWATCH (2.10+); `body` as for `Begin` (decoded by TX with
    /// `watch::decode_watch` from compat 2.10 on; before, they are unknown types).
    Watch {
        body: Span,
    },
    Unwatch {
        body: Span,
    },
    /// Any other type: 2.6 answers ER_UNKNOWN_REQUEST_TYPE and keeps the connection open.
    Unknown(u32),
}

/// A request that could not be decoded. Only framing errors close the connection; this one is
/// answered with an error response carrying `header.sync` (0 if `header` is None).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The header fields read before the fault. For a malformed header this is what was read up
    /// to the bad entry (Tarantool echoes a SYNC that came before it); None if the header is
    /// not even a map.
    pub header: Option<Header>,
    pub error: BoxError,
}

/// The bytes of `span` within `packet`. A span this module produced for the same packet always
/// fits: one that does not is a bug (asserted in debug builds; empty in release builds).
pub fn slice<'a>(packet: &'a [u8], span: &Span) -> &'a [u8] {
    let bytes = packet.get(span.start as usize..span.end as usize);
    debug_assert!(
        bytes.is_some(),
        "span {span:?} outside a packet of {}",
        packet.len()
    );
    bytes.unwrap_or_default()
}

/// Like [`slice`], but an empty span (an absent optional argument list) reads as `[]`.
pub fn array_or_empty<'a>(packet: &'a [u8], span: &Span) -> &'a [u8] {
    if span.is_empty() {
        EMPTY_ARRAY
    } else {
        slice(packet, span)
    }
}

fn packet_header_error() -> BoxError {
    BoxError::invalid_msgpack("packet header")
}

fn packet_body_error() -> BoxError {
    BoxError::invalid_msgpack("packet body")
}

fn missing_body_error() -> BoxError {
    BoxError::invalid_msgpack("missing request body")
}

fn required<T>(field: Option<T>, name: &str) -> Result<T, BoxError> {
    field.ok_or_else(|| BoxError::missing_request_field(name))
}

/// Integers wider than 32 bits saturate (see the module comment).
fn saturate(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// A validating reader over one packet that reports positions as packet offsets.
struct Cursor<'a> {
    packet: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// None if the packet is too large for u32 spans (far above any packet size limit).
    fn new(packet: &'a [u8]) -> Option<Self> {
        u32::try_from(packet.len()).ok()?;
        Some(Cursor {
            packet,
            rest: packet,
        })
    }

    fn pos(&self) -> u32 {
        // Cannot truncate: the packet length fits u32 (checked in `new`).
        (self.packet.len() - self.rest.len()) as u32
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_type(&self) -> MpResult<MpType> {
        mp::peek_type(self.rest)
    }

    /// Validates and skips one whole value (depth-limited exactly like `mp::check`); returns
    /// its span. Nesting up to `INLINE_DEPTH` is tracked in a small array on the stack; deeper
    /// values (rare, usually hostile) are handed to `mp::check`, which allocates.
    fn value(&mut self) -> MpResult<Span> {
        let start = self.pos();
        let whole = self.rest;
        let mut stack = [0u32; INLINE_DEPTH];
        let mut depth = 0usize;
        let mut pending: u32 = 1;
        loop {
            while pending == 0 {
                if depth == 0 {
                    return Ok(start..self.pos());
                }
                depth -= 1;
                pending = *stack.get(depth).ok_or(MpError::Invalid)?;
            }
            pending -= 1;
            let children = self.skip_head()?;
            if children == 0 {
                continue;
            }
            if children > self.rest.len() as u64 {
                return Err(MpError::Truncated);
            }
            if children > 0 {
                let Some(slot) = stack.get_mut(depth) else {
                    return self.deep_value(whole);
                };
                *slot = pending;
                depth += 1;
                // children <= rest.len() <= u32::MAX.
                pending = children as u32;
            }
        }
    }

    /// Skips the head of one value (the whole of a scalar) and returns how many values follow
    /// as its elements. One-byte heads, the bulk of real tuples, are decoded inline.
    #[inline]
    fn skip_head(&mut self) -> MpResult<u64> {
        let (&first, tail) = self.rest.split_first().ok_or(MpError::Truncated)?;
        let (skip, children) = match first {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0),
            0x90..=0x9f => (0, u64::from(first & 0x0f)),
            0x80..=0x8f => (0, 2 * u64::from(first & 0x0f)),
            0xa0..=0xbf => (usize::from(first & 0x1f), 0),
            _ => {
                return match mp::read_value(&mut self.rest)? {
                    Value::Array(n) => Ok(u64::from(n)),
                    Value::Map(n) => Ok(2 * u64::from(n)),
                    _ => Ok(0),
                };
            }
        };
        self.rest = tail.get(skip..).ok_or(MpError::Truncated)?;
        Ok(children)
    }

    /// The slow path of [`Cursor::value`] for values nested deeper than `INLINE_DEPTH`.
    #[cold]
    fn deep_value(&mut self, whole: &'a [u8]) -> MpResult<Span> {
        let len = mp::check(whole)?;
        let start = (self.packet.len() - whole.len()) as u32;
        self.rest = whole.get(len..).ok_or(MpError::Truncated)?;
        Ok(start..start + len as u32)
    }

    /// Reads a value that must be encoded as MP_UINT. The type is judged by the first byte, as
    /// Tarantool does, so a non-negative number in a signed encoding is refused.
    fn uint(&mut self) -> MpResult<u64> {
        // Positive fixints (all keys, most values) are read here; `mp` handles the rest.
        match self.rest.split_first() {
            Some((&b, tail)) if b < 0x80 => {
                self.rest = tail;
                Ok(u64::from(b))
            }
            Some((0xcc..=0xcf, _)) => mp::read_uint(&mut self.rest),
            Some(_) => Err(MpError::Type),
            None => Err(MpError::Truncated),
        }
    }

    fn uint32(&mut self) -> MpResult<u32> {
        self.uint().map(saturate)
    }

    /// Judges the type by the first byte. The common cases are matched inline: this runs for
    /// every body value.
    #[inline]
    fn expect_type(&self, expected: MpType) -> MpResult<()> {
        let &first = self.rest.first().ok_or(MpError::Truncated)?;
        let matches = match expected {
            MpType::Array => matches!(first, 0x90..=0x9f | 0xdc | 0xdd),
            MpType::Map => matches!(first, 0x80..=0x8f | 0xde | 0xdf),
            MpType::Str => matches!(first, 0xa0..=0xbf | 0xd9..=0xdb),
            other => mp::type_of(first) == other,
        };
        if matches {
            Ok(())
        } else {
            Err(MpError::Type)
        }
    }

    /// A whole value of the given type.
    fn typed(&mut self, expected: MpType) -> MpResult<Span> {
        self.expect_type(expected)?;
        self.value()
    }

    /// An MP_STR; returns the span of its payload.
    fn str_payload(&mut self) -> MpResult<Span> {
        self.expect_type(MpType::Str)?;
        let payload = mp::read_str(&mut self.rest)?;
        let end = self.pos();
        Ok(end - payload.len() as u32..end)
    }

    /// Reads the length of the body map, or None if there is no body. A body that is present
    /// but not a map is "packet body".
    fn body_map(&mut self) -> Result<Option<u32>, BoxError> {
        if self.is_empty() {
            return Ok(None);
        }
        match mp::read_value(&mut self.rest) {
            Ok(Value::Map(n)) => Ok(Some(n)),
            _ => Err(packet_body_error()),
        }
    }

    /// Validates whatever body is left (any type) and requires the packet to end with it.
    fn any_body(&mut self) -> Result<Option<Span>, BoxError> {
        if self.is_empty() {
            return Ok(None);
        }
        let body = self.value().map_err(|_| packet_body_error())?;
        self.expect_end()?;
        Ok(Some(body))
    }

    /// Garbage after the body is refused: the decoder must consume the packet exactly.
    fn expect_end(&self) -> Result<(), BoxError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(packet_body_error())
        }
    }

    /// Walks the entries of a body map (already opened by `body_map`), then requires the end.
    fn entries(
        &mut self,
        count: u32,
        mut entry: impl FnMut(&mut Self) -> MpResult<()>,
    ) -> Result<(), BoxError> {
        for _ in 0..count {
            entry(self).map_err(|_| packet_body_error())?;
        }
        self.expect_end()
    }
}

/// `packet` = the header+body bytes (after the length prefix). Validates all of it and applies
/// 2.6's rules (see the module comment and the tests for the observed cases).
pub fn decode_request(packet: &[u8]) -> Result<(Header, Request), DecodeError> {
    let Some(mut cursor) = Cursor::new(packet) else {
        return Err(DecodeError {
            header: None,
            error: packet_header_error(),
        });
    };
    let header = decode_header(&mut cursor)?;
    match decode_body(&mut cursor, header.request_type) {
        Ok(request) => Ok((header, request)),
        Err(error) => Err(DecodeError {
            header: Some(header),
            error,
        }),
    }
}

fn decode_header(cursor: &mut Cursor) -> Result<Header, DecodeError> {
    let count = match mp::read_value(&mut cursor.rest) {
        Ok(Value::Map(n)) => n,
        _ => {
            return Err(DecodeError {
                header: None,
                error: packet_header_error(),
            })
        }
    };
    let mut header = Header::default();
    for _ in 0..count {
        if header_entry(cursor, &mut header).is_err() {
            return Err(DecodeError {
                header: Some(header),
                error: packet_header_error(),
            });
        }
    }
    Ok(header)
}

/// Header keys must be unsigned; the four keys we use must hold unsigned values; any other key
/// is skipped whatever its value (2.10+ leniency).
fn header_entry(cursor: &mut Cursor, header: &mut Header) -> MpResult<()> {
    let key = cursor.uint()?;
    match u8::try_from(key) {
        Ok(key::REQUEST_TYPE) => header.request_type = cursor.uint32()?,
        Ok(key::SYNC) => header.sync = cursor.uint()?,
        Ok(key::SCHEMA_VERSION) => header.schema_version = cursor.uint()?,
        Ok(key::STREAM_ID) => header.stream_id = cursor.uint()?,
        _ => {
            cursor.value()?;
        }
    }
    Ok(())
}

fn decode_body(cursor: &mut Cursor, request_type: u32) -> Result<Request, BoxError> {
    match request_type {
        request::SELECT
        | request::INSERT
        | request::REPLACE
        | request::UPDATE
        | request::DELETE
        | request::UPSERT => decode_dml(cursor, request_type),
        request::CALL | request::CALL_16 | request::EVAL => decode_call(cursor, request_type),
        request::AUTH => decode_auth(cursor),
        request::EXECUTE | request::PREPARE => decode_sql(cursor, request_type),
        request::JOIN | request::SUBSCRIBE | request::REGISTER => {
            decode_replication(cursor, request_type)
        }
        REQUEST_ID => Ok(Request::Id {
            body: cursor.any_body()?.unwrap_or(0..0),
        }),
        request::BEGIN => Ok(Request::Begin {
            body: cursor.any_body()?.unwrap_or(0..0),
        }),
        request::COMMIT => cursor.any_body().map(|_| Request::Commit),
        request::TXN_ROLLBACK => cursor.any_body().map(|_| Request::Rollback),
        request::WATCH => Ok(Request::Watch {
            body: cursor.any_body()?.unwrap_or(0..0),
        }),
        request::UNWATCH => Ok(Request::Unwatch {
            body: cursor.any_body()?.unwrap_or(0..0),
        }),
        // These read no body in 2.6, so any well-formed body is accepted.
        request::PING => cursor.any_body().map(|_| Request::Ping),
        request::VOTE => cursor.any_body().map(|_| Request::Vote),
        request::FETCH_SNAPSHOT => cursor.any_body().map(|_| Request::FetchSnapshot),
        // 2.6 refuses any body on a NOP (a WAL-internal type), else it is unknown to clients.
        request::NOP if !cursor.is_empty() => Err(packet_body_error()),
        other => cursor.any_body().map(|_| Request::Unknown(other)),
    }
}

/// Body fields of SELECT, INSERT, REPLACE, UPDATE, DELETE and UPSERT.
#[derive(Default)]
struct DmlFields {
    space_id: Option<u32>,
    index_id: u32,
    limit: Option<u32>,
    offset: u32,
    iterator: u32,
    index_base: u32,
    key: Option<Span>,
    tuple: Option<Span>,
    ops: Option<Span>,
}

fn decode_dml(cursor: &mut Cursor, request_type: u32) -> Result<Request, BoxError> {
    let mut fields = DmlFields::default();
    // A DML request without a body is decoded as an empty map (then fails on 'space id').
    if let Some(count) = cursor.body_map()? {
        cursor.entries(count, |c| dml_entry(c, &mut fields))?;
    }
    build_dml(request_type, fields)
}

/// 2.6's DML decoder (observed on the wire, unlike its CALL and AUTH decoders): it recognises
/// a key only in the one-byte positive fixint encoding (`cc 21` is not TUPLE: it is skipped,
/// as are keys of other types), type-checks only the keys DML uses, and refuses the keys
/// 0x50..=0x52 whatever their value.
fn dml_entry(cursor: &mut Cursor, fields: &mut DmlFields) -> MpResult<()> {
    let Some(&key) = cursor.rest.first().filter(|&&b| b < 0x80) else {
        cursor.value()?;
        cursor.value()?;
        return Ok(());
    };
    cursor.rest = cursor.rest.get(1..).unwrap_or_default();
    match key {
        key::SPACE_ID => fields.space_id = Some(cursor.uint32()?),
        key::INDEX_ID => fields.index_id = cursor.uint32()?,
        key::LIMIT => fields.limit = Some(cursor.uint32()?),
        key::OFFSET => fields.offset = cursor.uint32()?,
        key::ITERATOR => fields.iterator = cursor.uint32()?,
        key::INDEX_BASE => fields.index_base = cursor.uint32()?,
        key::KEY => fields.key = Some(cursor.typed(MpType::Array)?),
        key::TUPLE => fields.tuple = Some(cursor.typed(MpType::Array)?),
        key::OPS => fields.ops = Some(cursor.typed(MpType::Array)?),
        key::TUPLE_META => {
            cursor.typed(MpType::Map)?;
        }
        key::REPLICA_ANON..=key::ERROR => return Err(MpError::Type),
        _ => {
            cursor.value()?;
        }
    }
    Ok(())
}

/// Missing mandatory keys are reported lowest key number first, as 2.6 does
/// (space id 0x10 < limit 0x12 < key 0x20 < tuple 0x21 < operations 0x28).
fn build_dml(request_type: u32, f: DmlFields) -> Result<Request, BoxError> {
    let space_id = required(f.space_id, "space id")?;
    Ok(match request_type {
        request::SELECT => Request::Select {
            space_id,
            index_id: f.index_id,
            limit: required(f.limit, "limit")?,
            offset: f.offset,
            iterator: f.iterator,
            key: required(f.key, "key")?,
        },
        request::INSERT => Request::Insert {
            space_id,
            tuple: required(f.tuple, "tuple")?,
        },
        request::REPLACE => Request::Replace {
            space_id,
            tuple: required(f.tuple, "tuple")?,
        },
        request::UPDATE => Request::Update {
            space_id,
            index_id: f.index_id,
            index_base: f.index_base,
            key: required(f.key, "key")?,
            ops: required(f.tuple, "tuple")?,
        },
        request::DELETE => Request::Delete {
            space_id,
            index_id: f.index_id,
            key: required(f.key, "key")?,
        },
        _ => Request::Upsert {
            space_id,
            index_base: f.index_base,
            tuple: required(f.tuple, "tuple")?,
            ops: required(f.ops, "operations")?,
        },
    })
}

/// Body fields of CALL, CALL_16 and EVAL (one decoder in 2.6: either request may carry both
/// names, and both are type-checked).
#[derive(Default)]
struct CallFields {
    name: Option<Span>,
    expr: Option<Span>,
    args: Option<Span>,
}

fn decode_call(cursor: &mut Cursor, request_type: u32) -> Result<Request, BoxError> {
    let count = cursor.body_map()?.ok_or_else(missing_body_error)?;
    let mut fields = CallFields::default();
    cursor.entries(count, |c| call_entry(c, &mut fields))?;
    let args = fields.args.unwrap_or(0..0);
    if request_type == request::EVAL {
        return Ok(Request::Eval {
            expr: required(fields.expr, "expression")?,
            args,
        });
    }
    let name = required(fields.name, "function name")?;
    Ok(Request::Call {
        name,
        args,
        is_16: request_type == request::CALL_16,
    })
}

/// Non-unsigned keys are an error here (observed on 2.6), unknown unsigned keys are skipped.
fn call_entry(cursor: &mut Cursor, fields: &mut CallFields) -> MpResult<()> {
    match u8::try_from(cursor.uint()?) {
        Ok(key::FUNCTION_NAME) => fields.name = Some(cursor.str_payload()?),
        Ok(key::EXPR) => fields.expr = Some(cursor.str_payload()?),
        Ok(key::TUPLE) => fields.args = Some(cursor.typed(MpType::Array)?),
        _ => {
            cursor.value()?;
        }
    }
    Ok(())
}

fn decode_auth(cursor: &mut Cursor) -> Result<Request, BoxError> {
    let count = cursor.body_map()?.ok_or_else(missing_body_error)?;
    let (mut user, mut tuple) = (None, None);
    cursor.entries(count, |c| {
        match u8::try_from(c.uint()?) {
            Ok(key::USER_NAME) => user = Some(c.str_payload()?),
            Ok(key::TUPLE) => tuple = Some(c.typed(MpType::Array)?),
            _ => {
                c.value()?;
            }
        }
        Ok(())
    })?;
    let user = required(user, "user name")?;
    let tuple = required(tuple, "tuple")?;
    let scramble = auth_scramble(cursor.packet, tuple)?;
    Ok(Request::Auth { user, scramble })
}

/// Parses the (already validated) AUTH tuple `[mechanism, scramble, ...]`. The mechanism is not
/// checked (2.6 skips it); the scramble may be MP_STR or MP_BIN and must be 20 bytes.
/// Note: 2.6 looks the user up before it parses the tuple, so for an unknown user with a
/// malformed tuple it says "not found" where this says "Invalid MsgPack".
fn auth_scramble(packet: &[u8], tuple: Span) -> Result<Option<Span>, BoxError> {
    let bytes = slice(packet, &tuple);
    let mut rest = bytes;
    let count = mp::read_array_len(&mut rest).map_err(|_| packet_body_error())?;
    if count == 0 {
        return Ok(None);
    }
    let body_error = || BoxError::invalid_msgpack("authentication request body");
    if count < 2 {
        return Err(body_error());
    }
    mp::skip(&mut rest).map_err(|_| body_error())?;
    let scramble = mp::read_str_or_bin(&mut rest)
        .map_err(|_| BoxError::invalid_msgpack("authentication scramble"))?;
    if scramble.len() != spindle_types::iproto::SCRAMBLE_SIZE {
        return Err(BoxError::invalid_msgpack("invalid scramble size"));
    }
    // The payload ends where `rest` begins; offsets fit u32 because the packet does.
    let end = tuple.start + (bytes.len() - rest.len()) as u32;
    Ok(Some(end - scramble.len() as u32..end))
}

/// EXECUTE and PREPARE need SQL_TEXT or STMT_ID; nothing else is interpreted yet. Keys that
/// are not unsigned are skipped here (observed on 2.6).
fn decode_sql(cursor: &mut Cursor, request_type: u32) -> Result<Request, BoxError> {
    let count = cursor.body_map()?.ok_or_else(missing_body_error)?;
    let mut found = false;
    cursor.entries(count, |c| {
        if c.peek_type()? == MpType::Uint {
            let key = c.uint()?;
            found |= key == u64::from(key::SQL_TEXT) || key == u64::from(key::STMT_ID);
        } else {
            c.value()?;
        }
        c.value().map(|_| ())
    })?;
    if !found {
        return Err(BoxError::missing_request_field("SQL text or stmt id"));
    }
    Ok(if request_type == request::EXECUTE {
        Request::Execute
    } else {
        Request::Prepare
    })
}

/// JOIN, SUBSCRIBE and REGISTER need a body map ("request body" if absent or not a map, as
/// 2.6 says); its contents are the relay's business.
fn decode_replication(cursor: &mut Cursor, request_type: u32) -> Result<Request, BoxError> {
    let start = cursor.pos();
    let request_body_error = || BoxError::invalid_msgpack("request body");
    if cursor.peek_type().is_ok_and(|t| t != MpType::Map) {
        cursor.value().map_err(|_| packet_body_error())?;
        cursor.expect_end()?;
        return Err(request_body_error());
    }
    let count = cursor.body_map()?.ok_or_else(request_body_error)?;
    let mut uuid = 0..0;
    cursor.entries(count, |c| {
        if c.peek_type()? == MpType::Uint && c.uint()? == u64::from(key::INSTANCE_UUID) {
            uuid = c.str_payload()?;
        } else {
            c.value()?;
        }
        Ok(())
    })?;
    let body = start..cursor.pos();
    Ok(match request_type {
        request::JOIN => Request::Join {
            instance_uuid: uuid,
        },
        request::SUBSCRIBE => Request::Subscribe { body },
        _ => Request::Register { body },
    })
}

// ---------------------------------------------------------------------------------------------
// Response encoding (server side)
// ---------------------------------------------------------------------------------------------

/// Writes the `ce <u32>` prefix placeholder; returns the packet's start offset.
pub fn begin_packet(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0xce, 0, 0, 0, 0]);
    start
}

/// Writes `ce <u32 len placeholder>` and the fixed 3-key header real Tarantool sends (§4.1:
/// `83 00 ce type 01 cf sync 05 ce schema`); returns the start offset for [`finish_response`].
pub fn begin_response(
    out: &mut Vec<u8>,
    response_type: u32,
    sync: u64,
    schema_version: u32,
) -> usize {
    let start = begin_packet(out);
    out.extend_from_slice(&[0x83, key::REQUEST_TYPE]);
    mp::write_u32_fixed(out, response_type);
    out.push(key::SYNC);
    mp::write_u64_fixed(out, sync);
    out.push(key::SCHEMA_VERSION);
    mp::write_u32_fixed(out, schema_version);
    start
}

/// Patches the length placeholder written by [`begin_response`] (or a request encoder).
// Takes the Vec, not a slice, to pair visibly with `begin_response` in callers.
#[allow(clippy::ptr_arg)]
pub fn finish_response(out: &mut Vec<u8>, start: usize) {
    let len = out.len().checked_sub(start + PREFIX_LEN);
    let len = len.and_then(|n| u32::try_from(n).ok());
    let slot = out.get_mut(start + 1..start + PREFIX_LEN);
    match (len, slot) {
        (Some(len), Some(slot)) => slot.copy_from_slice(&len.to_be_bytes()),
        // A wrong `start` (a caller bug) or a reply over 4 GiB (callers refuse those first):
        // drop the unframeable reply rather than send a corrupt length or panic.
        _ => {
            debug_assert!(
                false,
                "finish_response: bad start {start} for {} bytes",
                out.len()
            );
            out.truncate(start.min(out.len()));
        }
    }
}

/// A complete OK response with the empty body `{}` (PING, AUTH...).
pub fn encode_ok_empty(out: &mut Vec<u8>, sync: u64, schema_version: u32) {
    let start = begin_response(out, request::OK, sync, schema_version);
    out.push(0x80);
    finish_response(out, start);
}

/// `81 30 dd <u32 count>`: the body of a SELECT/DML/CALL/EVAL reply; the caller appends `count`
/// encoded items. DATA is the first and only key (net.box 2.6 relies on that).
pub fn encode_data_prefix(out: &mut Vec<u8>, count: u32) {
    out.extend_from_slice(&[0x81, key::DATA]);
    mp::write_array32_len(out, count);
}

/// What the FILE field of the error stack names; LINE is 0. Clients only require presence.
const ERROR_FILE: &str = "spindle";

/// A complete error response: type `0x8000 | code`, body
/// `{0x31: msg, 0x52: {0: [{0: type, 2: line, 1: file, 3: msg, 4: errno, 5: code [, 6: fields]}]}}`
/// with keys in exactly the order real 2.6 writes them (§4.3, §9.2).
pub fn encode_error(out: &mut Vec<u8>, sync: u64, schema_version: u32, err: &BoxError) {
    let start = begin_response(out, request::TYPE_ERROR | err.code, sync, schema_version);
    out.extend_from_slice(&[0x82, key::ERROR_24]);
    mp::write_str(out, &err.message);
    out.push(key::ERROR);
    encode_error_stack(out, err);
    finish_response(out, start);
}

/// The value of `key::ERROR`, `{0: [entry...]}`: `err` and its causes. Also the payload of
/// an MP_ERROR value.
pub fn encode_error_stack(out: &mut Vec<u8>, err: &BoxError) {
    mp::write_map_len(out, 1);
    out.push(spindle_types::iproto::error_key::STACK);
    let stack: Vec<&BoxError> = std::iter::successors(Some(err), |e| e.prev.as_deref())
        .take(ERROR_STACK_MAX)
        .collect();
    mp::write_array_len(out, stack.len() as u32);
    for entry in stack {
        encode_error_entry(out, entry);
    }
}

/// `err` as one MessagePack value of extension type 3 (MP_ERROR), as 2.10+ sends errors
/// inside CALL/EVAL results to clients that announced ERROR_EXTENSION.
pub fn encode_mp_error(out: &mut Vec<u8>, err: &BoxError) {
    let mut payload = Vec::new();
    encode_error_stack(&mut payload, err);
    mp::write_ext(out, spindle_types::iproto::MP_EXT_ERROR, &payload);
}

/// One entry of a received error stack (an MP_ERROR payload); strings as the client sent
/// them, `fields` the raw MessagePack map of the FIELDS key, if any.
#[derive(Debug, Default, PartialEq)]
pub struct ErrorEntry<'a> {
    pub kind: &'a [u8],
    pub file: &'a [u8],
    pub line: u64,
    pub message: &'a [u8],
    pub errno: u64,
    pub code: u64,
    pub fields: Option<&'a [u8]>,
}

/// Reads an error-stack map `{0: [entry...]}` (the payload of an MP_ERROR value): the entries,
/// first the error itself, then its causes. Unknown keys are skipped; a wrong type, a
/// truncated value or an empty stack is ER_INVALID_MSGPACK.
pub fn decode_error_stack(payload: &[u8]) -> Result<Vec<ErrorEntry<'_>>, BoxError> {
    use spindle_types::iproto::error_key;
    let bad = || BoxError::invalid_msgpack("MP_ERROR");
    let mut buf = payload;
    let n = mp::read_map_len(&mut buf).map_err(|_| bad())?;
    let mut entries = Vec::new();
    for _ in 0..n {
        if read_key(&mut buf).ok_or_else(bad)? != Some(u64::from(error_key::STACK)) {
            mp::skip(&mut buf).map_err(|_| bad())?;
            continue;
        }
        let len = mp::read_array_len(&mut buf).map_err(|_| bad())?;
        for i in 0..len {
            // Causes past the bound are checked but dropped, as when sending.
            let entry = decode_error_entry(&mut buf).ok_or_else(bad)?;
            if (i as usize) < ERROR_STACK_MAX {
                entries.push(entry);
            }
        }
    }
    if entries.is_empty() || !buf.is_empty() {
        return Err(bad());
    }
    Ok(entries)
}

/// A map key: Some(k) for an unsigned integer, None for anything else (skipped whole).
fn read_key(buf: &mut &[u8]) -> Option<Option<u64>> {
    let start = *buf;
    if let mp::Value::Uint(k) = mp::read_value(buf).ok()? {
        return Some(Some(k));
    }
    *buf = start;
    mp::skip(buf).ok()?;
    Some(None)
}

fn decode_error_entry<'a>(buf: &mut &'a [u8]) -> Option<ErrorEntry<'a>> {
    use spindle_types::iproto::error_key as ek;
    let n = mp::read_map_len(buf).ok()?;
    let mut e = ErrorEntry::default();
    for _ in 0..n {
        let key = read_key(buf)?.and_then(|k| u8::try_from(k).ok());
        let start = *buf;
        let value = mp::read_value(buf).ok()?;
        match (key, value) {
            (Some(ek::TYPE), mp::Value::Str(s)) => e.kind = s,
            (Some(ek::FILE), mp::Value::Str(s)) => e.file = s,
            (Some(ek::LINE), mp::Value::Uint(u)) => e.line = u,
            (Some(ek::MESSAGE), mp::Value::Str(s)) => e.message = s,
            (Some(ek::ERRNO), mp::Value::Uint(u)) => e.errno = u,
            (Some(ek::CODE), mp::Value::Uint(u)) => e.code = u,
            (Some(ek::FIELDS), mp::Value::Map(_)) => {
                *buf = start;
                mp::skip(buf).ok()?;
                e.fields = start.get(..start.len() - buf.len());
            }
            (
                Some(
                    ek::TYPE
                    | ek::FILE
                    | ek::LINE
                    | ek::MESSAGE
                    | ek::ERRNO
                    | ek::CODE
                    | ek::FIELDS,
                ),
                _,
            ) => return None,
            _ => {
                *buf = start;
                mp::skip(buf).ok()?;
            }
        }
    }
    Some(e)
}

/// Entries of an error stack sent at most (a `set_prev` chain could be long).
const ERROR_STACK_MAX: usize = 16;

fn encode_error_entry(out: &mut Vec<u8>, err: &BoxError) {
    use spindle_types::iproto::error_key as ek;
    mp::write_map_len(out, if err.access.is_some() { 7 } else { 6 });
    out.push(ek::TYPE);
    mp::write_str(out, err.kind.as_str());
    // Tarantool names the C file and line that raised the error; spindle has no such place to
    // give, and clients (tarantool-python's tests) expect a positive line.
    let (file, line) = match err.trace.as_deref() {
        Some((file, line)) => (file.as_str(), *line),
        None => (ERROR_FILE, 1),
    };
    out.push(ek::LINE);
    mp::write_uint(out, u64::from(line));
    out.push(ek::FILE);
    mp::write_str(out, file);
    out.push(ek::MESSAGE);
    mp::write_str(out, &err.message);
    out.push(ek::ERRNO);
    mp::write_uint(out, 0);
    out.push(ek::CODE);
    mp::write_uint(out, u64::from(err.code));
    if let Some(access) = &err.access {
        out.push(ek::FIELDS);
        mp::write_map_len(out, 3);
        for (name, value) in [
            ("object_type", &access.object_type),
            ("object_name", &access.object_name),
            ("access_type", &access.access_type),
        ] {
            mp::write_str(out, name);
            mp::write_str(out, value);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request encoding (client side)
// ---------------------------------------------------------------------------------------------
//
// Each encoder appends one complete packet (`ce <u32>` prefix, header `{0x00: type, 0x01: sync}`,
// body) to `out`. Keys, tuples, ops and args are raw MessagePack supplied by the caller and are
// copied as they are, so tests can also send malformed values.

/// Writes the prefix placeholder and the 2-key request header; returns the start offset.
fn begin_request(out: &mut Vec<u8>, request_type: u32, sync: u64) -> usize {
    let start = begin_packet(out);
    out.extend_from_slice(&[0x82, key::REQUEST_TYPE]);
    mp::write_uint(out, u64::from(request_type));
    out.push(key::SYNC);
    mp::write_uint(out, sync);
    start
}

fn put_uint(out: &mut Vec<u8>, key: u8, value: u64) {
    out.push(key);
    mp::write_uint(out, value);
}

fn put_raw(out: &mut Vec<u8>, key: u8, value: &[u8]) {
    out.push(key);
    out.extend_from_slice(value);
}

fn put_str(out: &mut Vec<u8>, key: u8, value: &str) {
    out.push(key);
    mp::write_str(out, value);
}

/// Any request type with an optional raw body (a complete MessagePack value, or garbage).
pub fn encode_request(out: &mut Vec<u8>, sync: u64, request_type: u32, body: Option<&[u8]>) {
    let start = begin_request(out, request_type, sync);
    out.extend_from_slice(body.unwrap_or_default());
    finish_response(out, start);
}

/// Any request in stream `stream_id` (2.10+: the header gains STREAM_ID), with an optional
/// raw body.
pub fn encode_stream_request(
    out: &mut Vec<u8>,
    sync: u64,
    stream_id: u64,
    request_type: u32,
    body: Option<&[u8]>,
) {
    let start = begin_packet(out);
    out.extend_from_slice(&[0x83, key::REQUEST_TYPE]);
    mp::write_uint(out, u64::from(request_type));
    put_uint(out, key::SYNC, sync);
    put_uint(out, key::STREAM_ID, stream_id);
    out.extend_from_slice(body.unwrap_or_default());
    finish_response(out, start);
}

/// PING without a body, as net.box sends it.
pub fn encode_ping(out: &mut Vec<u8>, sync: u64) {
    encode_request(out, sync, request::PING, None);
}

#[allow(clippy::too_many_arguments)]
pub fn encode_select(
    out: &mut Vec<u8>,
    sync: u64,
    space_id: u32,
    index_id: u32,
    iterator: u32,
    offset: u32,
    limit: u32,
    key: &[u8],
) {
    let start = begin_request(out, request::SELECT, sync);
    mp::write_map_len(out, 6);
    put_uint(out, key::SPACE_ID, space_id.into());
    put_uint(out, key::INDEX_ID, index_id.into());
    put_uint(out, key::ITERATOR, iterator.into());
    put_uint(out, key::OFFSET, offset.into());
    put_uint(out, key::LIMIT, limit.into());
    put_raw(out, key::KEY, key);
    finish_response(out, start);
}

fn encode_store(out: &mut Vec<u8>, sync: u64, request_type: u32, space_id: u32, tuple: &[u8]) {
    let start = begin_request(out, request_type, sync);
    mp::write_map_len(out, 2);
    put_uint(out, key::SPACE_ID, space_id.into());
    put_raw(out, key::TUPLE, tuple);
    finish_response(out, start);
}

pub fn encode_insert(out: &mut Vec<u8>, sync: u64, space_id: u32, tuple: &[u8]) {
    encode_store(out, sync, request::INSERT, space_id, tuple);
}

pub fn encode_replace(out: &mut Vec<u8>, sync: u64, space_id: u32, tuple: &[u8]) {
    encode_store(out, sync, request::REPLACE, space_id, tuple);
}

/// `index_base` 0 is Tarantool's default; net.box sends 1. The ops go under TUPLE (0x21).
#[allow(clippy::too_many_arguments)]
pub fn encode_update(
    out: &mut Vec<u8>,
    sync: u64,
    space_id: u32,
    index_id: u32,
    index_base: u32,
    key: &[u8],
    ops: &[u8],
) {
    let start = begin_request(out, request::UPDATE, sync);
    mp::write_map_len(out, 5);
    put_uint(out, key::SPACE_ID, space_id.into());
    put_uint(out, key::INDEX_ID, index_id.into());
    put_uint(out, key::INDEX_BASE, index_base.into());
    put_raw(out, key::KEY, key);
    put_raw(out, key::TUPLE, ops);
    finish_response(out, start);
}

pub fn encode_delete(out: &mut Vec<u8>, sync: u64, space_id: u32, index_id: u32, key: &[u8]) {
    let start = begin_request(out, request::DELETE, sync);
    mp::write_map_len(out, 3);
    put_uint(out, key::SPACE_ID, space_id.into());
    put_uint(out, key::INDEX_ID, index_id.into());
    put_raw(out, key::KEY, key);
    finish_response(out, start);
}

/// The tuple goes under TUPLE (0x21) and the ops under OPS (0x28).
pub fn encode_upsert(
    out: &mut Vec<u8>,
    sync: u64,
    space_id: u32,
    index_base: u32,
    tuple: &[u8],
    ops: &[u8],
) {
    let start = begin_request(out, request::UPSERT, sync);
    mp::write_map_len(out, 4);
    put_uint(out, key::SPACE_ID, space_id.into());
    put_uint(out, key::INDEX_BASE, index_base.into());
    put_raw(out, key::TUPLE, tuple);
    put_raw(out, key::OPS, ops);
    finish_response(out, start);
}

/// AUTH with `["chap-sha1", scramble]` (scramble as MP_STR holding raw bytes, as net.box sends
/// it), or with `[]` when `scramble` is None (the password-less guest form).
pub fn encode_auth(out: &mut Vec<u8>, sync: u64, user: &str, scramble: Option<&[u8]>) {
    let start = begin_request(out, request::AUTH, sync);
    mp::write_map_len(out, 2);
    put_str(out, key::USER_NAME, user);
    out.push(key::TUPLE);
    match scramble {
        Some(scramble) => {
            mp::write_array_len(out, 2);
            mp::write_str(out, crate::auth::CHAP_SHA1);
            mp::write_str_bytes(out, scramble);
        }
        None => mp::write_array_len(out, 0),
    }
    finish_response(out, start);
}

fn encode_named_call(
    out: &mut Vec<u8>,
    sync: u64,
    request_type: u32,
    name_key: u8,
    name: &str,
    args: &[u8],
) {
    let start = begin_request(out, request_type, sync);
    mp::write_map_len(out, 2);
    put_str(out, name_key, name);
    put_raw(out, key::TUPLE, args);
    finish_response(out, start);
}

/// CALL (type 10, "call_17"): results come back as they are.
pub fn encode_call(out: &mut Vec<u8>, sync: u64, name: &str, args: &[u8]) {
    encode_named_call(out, sync, request::CALL, key::FUNCTION_NAME, name, args);
}

/// CALL_16 (type 6): results come back wrapped as tuples.
pub fn encode_call_16(out: &mut Vec<u8>, sync: u64, name: &str, args: &[u8]) {
    encode_named_call(out, sync, request::CALL_16, key::FUNCTION_NAME, name, args);
}

pub fn encode_eval(out: &mut Vec<u8>, sync: u64, expr: &str, args: &[u8]) {
    encode_named_call(out, sync, request::EVAL, key::EXPR, expr, args);
}

// ---------------------------------------------------------------------------------------------
// Response decoding (client side)
// ---------------------------------------------------------------------------------------------

/// A decoded response. Spans index the packet given to [`decode_response`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub sync: u64,
    pub schema_version: u64,
    /// The raw header type: 0 OK, 0x80 CHUNK (push), `0x8000 | code` error.
    pub response_type: u32,
    /// 0 for OK and CHUNK, else the error code (`type & 0x7fff`). See also [`Response::is_error`].
    pub code: u32,
    /// ERROR_24 (0x31), lossily decoded as UTF-8.
    pub error_message: Option<String>,
    /// The DATA value (normally an array), if the body has one.
    pub data: Option<Span>,
    /// The whole body; empty if the packet has none.
    pub body: Span,
}

impl Response {
    /// True for error responses, including code 0 (`box.error.new` custom errors).
    pub fn is_error(&self) -> bool {
        self.response_type >= request::TYPE_ERROR
    }

    /// True for a `box.session.push` chunk, which precedes the final reply with the same sync.
    pub fn is_push(&self) -> bool {
        self.response_type == request::CHUNK
    }
}

/// Decodes a response packet (after the length prefix). Any width of integer is accepted;
/// unknown keys are skipped; a malformed packet or trailing bytes are an error.
pub fn decode_response(packet: &[u8]) -> Result<Response, MpError> {
    let mut cursor = Cursor::new(packet).ok_or(MpError::Invalid)?;
    let mut response = Response {
        sync: 0,
        schema_version: 0,
        response_type: 0,
        code: 0,
        error_message: None,
        data: None,
        body: 0..0,
    };
    let count = mp::read_map_len(&mut cursor.rest)?;
    for _ in 0..count {
        response_header_entry(&mut cursor, &mut response)?;
    }
    if response.is_error() {
        response.code = response.response_type & ERROR_CODE_MASK;
    }
    if !cursor.is_empty() {
        let start = cursor.pos();
        let count = mp::read_map_len(&mut cursor.rest)?;
        for _ in 0..count {
            response_body_entry(&mut cursor, &mut response)?;
        }
        response.body = start..cursor.pos();
    }
    if cursor.is_empty() {
        Ok(response)
    } else {
        Err(MpError::Invalid)
    }
}

fn response_header_entry(cursor: &mut Cursor, response: &mut Response) -> MpResult<()> {
    match u8::try_from(mp::read_uint(&mut cursor.rest)?) {
        Ok(key::REQUEST_TYPE) => {
            response.response_type = saturate(mp::read_uint(&mut cursor.rest)?)
        }
        Ok(key::SYNC) => response.sync = mp::read_uint(&mut cursor.rest)?,
        Ok(key::SCHEMA_VERSION) => response.schema_version = mp::read_uint(&mut cursor.rest)?,
        _ => {
            cursor.value()?;
        }
    }
    Ok(())
}

fn response_body_entry(cursor: &mut Cursor, response: &mut Response) -> MpResult<()> {
    match u8::try_from(mp::read_uint(&mut cursor.rest)?) {
        Ok(key::DATA) => response.data = Some(cursor.value()?),
        Ok(key::ERROR_24) => {
            let message = mp::read_str(&mut cursor.rest)?;
            response.error_message = Some(String::from_utf8_lossy(message).into_owned());
        }
        _ => {
            cursor.value()?;
        }
    }
    Ok(())
}
