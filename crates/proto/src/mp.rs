//! A zero-copy MessagePack cursor. Reads never allocate and never panic: every read checks
//! the remaining length and returns `MpError` on truncated or malformed input. Writers append
//! to a caller-owned `Vec<u8>` using the smallest encoding, except the `*_fixed` forms that
//! Tarantool's fixed-layout headers use.

use spindle_types::limits::MP_DEPTH_MAX;

/// Malformed or truncated MessagePack, or a value of an unexpected type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MpError {
    /// The buffer ended inside a value.
    Truncated,
    /// 0xc1 (never used) or nesting beyond `MP_DEPTH_MAX`.
    Invalid,
    /// Well-formed, but not the type the caller asked for.
    Type,
}

pub type MpResult<T> = Result<T, MpError>;

/// The head of one MessagePack value. Containers report only their length: the elements
/// follow in the buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Nil,
    Bool(bool),
    Uint(u64),
    /// Only negative integers (non-negative ones decode as `Uint`).
    Int(i64),
    F32(f32),
    F64(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Array(u32),
    Map(u32),
    Ext(i8, &'a [u8]),
}

/// The MessagePack type family of a value, from its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MpType {
    Nil,
    Bool,
    Uint,
    Int,
    Float,
    Double,
    Str,
    Bin,
    Array,
    Map,
    Ext,
}

pub fn type_of(byte: u8) -> MpType {
    match byte {
        0x00..=0x7f | 0xcc..=0xcf => MpType::Uint,
        0x80..=0x8f | 0xde | 0xdf => MpType::Map,
        0x90..=0x9f | 0xdc | 0xdd => MpType::Array,
        0xa0..=0xbf | 0xd9..=0xdb => MpType::Str,
        0xc0 | 0xc1 => MpType::Nil,
        0xc2 | 0xc3 => MpType::Bool,
        0xc4..=0xc6 => MpType::Bin,
        0xc7..=0xc9 | 0xd4..=0xd8 => MpType::Ext,
        0xca => MpType::Float,
        0xcb => MpType::Double,
        0xd0..=0xd3 | 0xe0..=0xff => MpType::Int,
    }
}

#[inline]
fn take<'a>(buf: &mut &'a [u8], n: usize) -> MpResult<&'a [u8]> {
    if buf.len() < n {
        return Err(MpError::Truncated);
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

#[inline]
fn take_u8(buf: &mut &[u8]) -> MpResult<u8> {
    let (&b, tail) = buf.split_first().ok_or(MpError::Truncated)?;
    *buf = tail;
    Ok(b)
}

#[inline]
fn take_be<const N: usize>(buf: &mut &[u8]) -> MpResult<[u8; N]> {
    let bytes = take(buf, N)?;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

fn take_len(buf: &mut &[u8], width: usize) -> MpResult<usize> {
    Ok(match width {
        1 => take_u8(buf)? as usize,
        2 => u16::from_be_bytes(take_be(buf)?) as usize,
        _ => u32::from_be_bytes(take_be(buf)?) as usize,
    })
}

/// Reads the head of the next value and advances past it (past the payload for scalars,
/// strings, binaries and extensions; past only the length for arrays and maps).
pub fn read_value<'a>(buf: &mut &'a [u8]) -> MpResult<Value<'a>> {
    let b = take_u8(buf)?;
    Ok(match b {
        0x00..=0x7f => Value::Uint(b as u64),
        0x80..=0x8f => Value::Map((b & 0x0f) as u32),
        0x90..=0x9f => Value::Array((b & 0x0f) as u32),
        0xa0..=0xbf => Value::Str(take(buf, (b & 0x1f) as usize)?),
        0xc0 => Value::Nil,
        0xc1 => return Err(MpError::Invalid),
        0xc2 => Value::Bool(false),
        0xc3 => Value::Bool(true),
        0xc4..=0xc6 => {
            let n = take_len(buf, 1 << (b - 0xc4))?;
            Value::Bin(take(buf, n)?)
        }
        0xc7..=0xc9 => {
            let n = take_len(buf, 1 << (b - 0xc7))?;
            let t = take_u8(buf)? as i8;
            Value::Ext(t, take(buf, n)?)
        }
        0xca => Value::F32(f32::from_be_bytes(take_be(buf)?)),
        0xcb => Value::F64(f64::from_be_bytes(take_be(buf)?)),
        0xcc => Value::Uint(take_u8(buf)? as u64),
        0xcd => Value::Uint(u16::from_be_bytes(take_be(buf)?) as u64),
        0xce => Value::Uint(u32::from_be_bytes(take_be(buf)?) as u64),
        0xcf => Value::Uint(u64::from_be_bytes(take_be(buf)?)),
        0xd0 => int_value(take_u8(buf)? as i8 as i64),
        0xd1 => int_value(i16::from_be_bytes(take_be(buf)?) as i64),
        0xd2 => int_value(i32::from_be_bytes(take_be(buf)?) as i64),
        0xd3 => int_value(i64::from_be_bytes(take_be(buf)?)),
        0xd4..=0xd8 => {
            let t = take_u8(buf)? as i8;
            Value::Ext(t, take(buf, 1 << (b - 0xd4))?)
        }
        0xd9..=0xdb => {
            let n = take_len(buf, 1 << (b - 0xd9))?;
            Value::Str(take(buf, n)?)
        }
        0xdc => Value::Array(u16::from_be_bytes(take_be(buf)?) as u32),
        0xdd => Value::Array(u32::from_be_bytes(take_be(buf)?)),
        0xde => Value::Map(u16::from_be_bytes(take_be(buf)?) as u32),
        0xdf => Value::Map(u32::from_be_bytes(take_be(buf)?)),
        0xe0..=0xff => Value::Int(b as i8 as i64),
    })
}

/// Signed encodings of non-negative numbers are legal MessagePack; normalise them.
#[inline]
fn int_value(v: i64) -> Value<'static> {
    if v >= 0 {
        Value::Uint(v as u64)
    } else {
        Value::Int(v)
    }
}

/// Byte length of a big-endian length field at `buf[at..at + width]`.
#[inline]
fn len_at(buf: &[u8], at: usize, width: usize) -> MpResult<usize> {
    let bytes = buf.get(at..at + width).ok_or(MpError::Truncated)?;
    Ok(bytes.iter().fold(0usize, |n, &b| (n << 8) | b as usize))
}

/// Steps over the head of the next value — and over the payload of a scalar, string,
/// binary or extension — without decoding it; returns how many elements a container head
/// announces (twice the pairs for a map). The hot path of `skip` and `check`: the same
/// bytes and errors as `read_value`, minus building a `Value`.
#[inline]
fn skip_head(buf: &mut &[u8]) -> MpResult<u64> {
    let b = *buf.first().ok_or(MpError::Truncated)?;
    let (len, children) = match b {
        0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (1, 0),
        0x80..=0x8f => (1, 2 * (b & 0x0f) as u64),
        0x90..=0x9f => (1, (b & 0x0f) as u64),
        0xa0..=0xbf => (1 + (b & 0x1f) as usize, 0),
        0xc1 => return Err(MpError::Invalid),
        0xc4 | 0xd9 => (2 + len_at(buf, 1, 1)?, 0),
        0xc5 | 0xda => (3 + len_at(buf, 1, 2)?, 0),
        0xc6 | 0xdb => (5 + len_at(buf, 1, 4)?, 0),
        0xc7 => (3 + len_at(buf, 1, 1)?, 0),
        0xc8 => (4 + len_at(buf, 1, 2)?, 0),
        0xc9 => (6 + len_at(buf, 1, 4)?, 0),
        0xcc | 0xd0 => (2, 0),
        0xcd | 0xd1 => (3, 0),
        0xca | 0xce | 0xd2 => (5, 0),
        0xcb | 0xcf | 0xd3 => (9, 0),
        0xd4..=0xd8 => (2 + (1 << (b - 0xd4)), 0),
        0xdc => (3, len_at(buf, 1, 2)? as u64),
        0xdd => (5, len_at(buf, 1, 4)? as u64),
        0xde => (3, 2 * len_at(buf, 1, 2)? as u64),
        0xdf => (5, 2 * len_at(buf, 1, 4)? as u64),
    };
    *buf = buf.get(len..).ok_or(MpError::Truncated)?;
    Ok(children)
}

/// Skips one whole value, including nested elements. Iterative, so hostile nesting cannot
/// overflow the stack; the element count is bounded by the buffer length.
pub fn skip(buf: &mut &[u8]) -> MpResult<()> {
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        pending += skip_head(buf)?;
        if pending > buf.len() as u64 {
            return Err(MpError::Truncated);
        }
    }
    Ok(())
}

/// Nesting levels `check` tracks without allocating.
const CHECK_INLINE_DEPTH: usize = 16;

/// Validates one complete value at the start of `buf` (depth-limited) and returns its length.
pub fn check(buf: &[u8]) -> MpResult<usize> {
    let mut cur = buf;
    // Elements still due at each enclosing level: inline for ordinary depths, spilling to
    // the heap only for deep values.
    let mut inline = [0u64; CHECK_INLINE_DEPTH];
    let mut spill: Vec<u64> = Vec::new();
    let mut depth = 0usize;
    let mut pending: u64 = 1;
    loop {
        while pending == 0 {
            if depth == 0 {
                return Ok(buf.len() - cur.len());
            }
            depth -= 1;
            pending = match inline.get(depth) {
                Some(&p) => p,
                None => spill.pop().unwrap_or(0),
            };
        }
        pending -= 1;
        let children = skip_head(&mut cur)?;
        if children > cur.len() as u64 {
            return Err(MpError::Truncated);
        }
        if children > 0 {
            if depth >= MP_DEPTH_MAX {
                return Err(MpError::Invalid);
            }
            match inline.get_mut(depth) {
                Some(slot) => *slot = pending,
                None => spill.push(pending),
            }
            depth += 1;
            pending = children;
        }
    }
}

/// Returns the bytes of the next whole value and advances past it.
pub fn take_value<'a>(buf: &mut &'a [u8]) -> MpResult<&'a [u8]> {
    let start = *buf;
    skip(buf)?;
    Ok(&start[..start.len() - buf.len()])
}

pub fn read_uint(buf: &mut &[u8]) -> MpResult<u64> {
    match read_value(buf)? {
        Value::Uint(v) => Ok(v),
        _ => Err(MpError::Type),
    }
}

/// Reads any integer (unsigned or negative) as i128-free pair: Ok(i64) only if it fits.
pub fn read_int(buf: &mut &[u8]) -> MpResult<i64> {
    match read_value(buf)? {
        Value::Uint(v) => i64::try_from(v).map_err(|_| MpError::Type),
        Value::Int(v) => Ok(v),
        _ => Err(MpError::Type),
    }
}

pub fn read_array_len(buf: &mut &[u8]) -> MpResult<u32> {
    match read_value(buf)? {
        Value::Array(n) => Ok(n),
        _ => Err(MpError::Type),
    }
}

pub fn read_map_len(buf: &mut &[u8]) -> MpResult<u32> {
    match read_value(buf)? {
        Value::Map(n) => Ok(n),
        _ => Err(MpError::Type),
    }
}

pub fn read_str<'a>(buf: &mut &'a [u8]) -> MpResult<&'a [u8]> {
    match read_value(buf)? {
        Value::Str(s) => Ok(s),
        _ => Err(MpError::Type),
    }
}

/// Reads a string or binary (the chap-sha1 scramble arrives as either).
pub fn read_str_or_bin<'a>(buf: &mut &'a [u8]) -> MpResult<&'a [u8]> {
    match read_value(buf)? {
        Value::Str(s) | Value::Bin(s) => Ok(s),
        _ => Err(MpError::Type),
    }
}

pub fn read_bool(buf: &mut &[u8]) -> MpResult<bool> {
    match read_value(buf)? {
        Value::Bool(b) => Ok(b),
        _ => Err(MpError::Type),
    }
}

/// Peeks at the type of the next value without consuming it.
pub fn peek_type(buf: &[u8]) -> MpResult<MpType> {
    buf.first().map(|&b| type_of(b)).ok_or(MpError::Truncated)
}

// ---- writers ----

pub fn write_nil(out: &mut Vec<u8>) {
    out.push(0xc0);
}

pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.push(if v { 0xc3 } else { 0xc2 });
}

pub fn write_uint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else if v <= u8::MAX as u64 {
        out.extend_from_slice(&[0xcc, v as u8]);
    } else if v <= u16::MAX as u64 {
        out.push(0xcd);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= u32::MAX as u64 {
        out.push(0xce);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Writes a signed integer; non-negative values use the unsigned encodings, as Tarantool does.
pub fn write_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        write_uint(out, v as u64);
    } else if v >= -32 {
        out.push(v as i8 as u8);
    } else if v >= i8::MIN as i64 {
        out.extend_from_slice(&[0xd0, v as i8 as u8]);
    } else if v >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(v as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub fn write_u32_fixed(out: &mut Vec<u8>, v: u32) {
    out.push(0xce);
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn write_u64_fixed(out: &mut Vec<u8>, v: u64) {
    out.push(0xcf);
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn write_f32(out: &mut Vec<u8>, v: f32) {
    out.push(0xca);
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    out.push(0xcb);
    out.extend_from_slice(&v.to_be_bytes());
}

fn write_len(
    out: &mut Vec<u8>,
    len: usize,
    fix: Option<(u8, usize)>,
    m8: Option<u8>,
    m16: u8,
    m32: u8,
) {
    match fix {
        Some((base, max)) if len <= max => out.push(base | len as u8),
        _ => {
            if let (Some(m8), true) = (m8, len <= u8::MAX as usize) {
                out.extend_from_slice(&[m8, len as u8]);
            } else if len <= u16::MAX as usize {
                out.push(m16);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                out.push(m32);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
    }
}

pub fn write_str_len(out: &mut Vec<u8>, len: usize) {
    write_len(out, len, Some((0xa0, 31)), Some(0xd9), 0xda, 0xdb);
}

pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_str_bytes(out, s.as_bytes());
}

/// Writes an MP_STR holding arbitrary bytes (Tarantool strings are not required to be UTF-8).
pub fn write_str_bytes(out: &mut Vec<u8>, s: &[u8]) {
    write_str_len(out, s.len());
    out.extend_from_slice(s);
}

pub fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    write_len(out, b.len(), None, Some(0xc4), 0xc5, 0xc6);
    out.extend_from_slice(b);
}

/// An extension value: the smallest header for `data`'s length, the type, the data.
pub fn write_ext(out: &mut Vec<u8>, kind: i8, data: &[u8]) {
    match data.len() {
        1 => out.push(0xd4),
        2 => out.push(0xd5),
        4 => out.push(0xd6),
        8 => out.push(0xd7),
        16 => out.push(0xd8),
        n if n <= 0xff => out.extend_from_slice(&[0xc7, n as u8]),
        n if n <= 0xffff => {
            out.push(0xc8);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0xc9);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    out.push(kind as u8);
    out.extend_from_slice(data);
}

pub fn write_array_len(out: &mut Vec<u8>, len: u32) {
    write_len(out, len as usize, Some((0x90, 15)), None, 0xdc, 0xdd);
}

pub fn write_map_len(out: &mut Vec<u8>, len: u32) {
    write_len(out, len as usize, Some((0x80, 15)), None, 0xde, 0xdf);
}

pub fn write_array32_len(out: &mut Vec<u8>, len: u32) {
    out.push(0xdd);
    out.extend_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_value() -> impl Strategy<Value = rmpv::Value> {
        let leaf = prop_oneof![
            Just(rmpv::Value::Nil),
            any::<bool>().prop_map(rmpv::Value::from),
            any::<u64>().prop_map(rmpv::Value::from),
            any::<i64>().prop_map(rmpv::Value::from),
            any::<f64>().prop_map(rmpv::Value::from),
            ".{0,40}".prop_map(rmpv::Value::from),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(rmpv::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20).prop_map(rmpv::Value::Array),
                proptest::collection::vec((inner.clone(), inner), 0..6).prop_map(rmpv::Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn check_and_skip_agree_with_rmpv(v in arb_value()) {
            let mut buf = Vec::new();
            rmpv::encode::write_value(&mut buf, &v).unwrap();
            prop_assert_eq!(check(&buf), Ok(buf.len()));
            let mut cur = &buf[..];
            skip(&mut cur).unwrap();
            prop_assert!(cur.is_empty());
            // Every strict prefix is truncated, never accepted.
            for cut in 0..buf.len() {
                prop_assert!(check(&buf[..cut]).is_err());
            }
        }

        #[test]
        fn ints_round_trip(v in any::<i64>()) {
            let mut buf = Vec::new();
            write_int(&mut buf, v);
            let mut cur = &buf[..];
            prop_assert_eq!(read_int(&mut cur), Ok(v));
            let parsed = rmpv::decode::read_value(&mut &buf[..]).unwrap();
            prop_assert_eq!(parsed.as_i64(), Some(v));
        }

        #[test]
        fn uints_round_trip(v in any::<u64>()) {
            let mut buf = Vec::new();
            write_uint(&mut buf, v);
            prop_assert_eq!(read_uint(&mut &buf[..]), Ok(v));
        }

        #[test]
        fn skip_head_agrees_with_read_value(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let (mut a, mut b) = (&bytes[..], &bytes[..]);
            let by_value = read_value(&mut a).map(|v| match v {
                Value::Array(n) => n as u64,
                Value::Map(n) => 2 * n as u64,
                _ => 0,
            });
            let by_head = skip_head(&mut b);
            prop_assert_eq!(by_value, by_head);
            if by_head.is_ok() {
                prop_assert_eq!(a.len(), b.len());
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = check(&bytes);
            let _ = skip(&mut &bytes[..]);
        }

        #[test]
        fn lengths_round_trip(n in 0usize..100_000) {
            let s = "x".repeat(n);
            let mut buf = Vec::new();
            write_str(&mut buf, &s);
            write_array_len(&mut buf, n as u32);
            write_map_len(&mut buf, n as u32);
            write_bin(&mut buf, s.as_bytes());
            let mut cur = &buf[..];
            prop_assert_eq!(read_str(&mut cur).unwrap().len(), n);
            prop_assert_eq!(read_array_len(&mut cur), Ok(n as u32));
            prop_assert_eq!(read_map_len(&mut cur), Ok(n as u32));
            prop_assert_eq!(read_str_or_bin(&mut cur).unwrap().len(), n);
        }
    }

    #[test]
    fn deep_nesting_is_handled_without_recursion() {
        let mut buf = vec![0x91u8; 100_000];
        assert!(check(&buf).is_err());
        assert!(skip(&mut &buf[..]).is_err());
        buf.push(0x01);
        assert_eq!(check(&buf), Ok(buf.len()));
        assert!(skip(&mut &buf[..]).is_ok());
    }
}
