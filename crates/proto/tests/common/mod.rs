//! Helpers shared by the proto test files: building packets from `rmpv` values.

#![allow(dead_code, clippy::unwrap_used)]

use rmpv::Value;

/// Encodes one value.
pub fn enc(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

/// A map with unsigned keys, in the given order.
pub fn map(entries: &[(u64, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

/// Header + optional body, concatenated (a packet without its length prefix).
pub fn packet(header: &[(u64, Value)], body: Option<Value>) -> Vec<u8> {
    let mut out = enc(&map(header));
    if let Some(body) = body {
        out.extend(enc(&body));
    }
    out
}

pub fn arr(items: Vec<Value>) -> Value {
    Value::Array(items)
}

pub fn s(text: &str) -> Value {
    Value::from(text)
}

pub fn u(n: u64) -> Value {
    Value::from(n)
}

/// Strips the `ce <u32>` prefix written by the encoders, checking that it is right.
pub fn unframe(framed: &[u8]) -> &[u8] {
    assert_eq!(framed[0], 0xce);
    let len = u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize;
    assert_eq!(
        len,
        framed.len() - 5,
        "length prefix must cover header+body exactly"
    );
    &framed[5..]
}

/// Decodes the value that `span` covers in `packet`.
pub fn value_at(packet: &[u8], span: &std::ops::Range<u32>) -> Value {
    let mut bytes = &packet[span.start as usize..span.end as usize];
    let v = rmpv::decode::read_value(&mut bytes).unwrap();
    assert!(bytes.is_empty(), "span must cover exactly one value");
    v
}

pub fn bytes_at<'a>(packet: &'a [u8], span: &std::ops::Range<u32>) -> &'a [u8] {
    &packet[span.start as usize..span.end as usize]
}
