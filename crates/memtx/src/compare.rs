//! Tarantool's ordering of MessagePack field values, and a hash consistent with it.
//!
//! One total order serves every index part type: values are first ordered by class
//! (nil < boolean < number < string < varbinary < uuid < other extensions < array < map, the
//! `scalar` order), then within the class. A typed part (`unsigned`, `string`, ...) only ever
//! holds values of one class, so the class step never decides there; `nil` sorting first is
//! what nullable parts need.
//!
//! Numbers compare exactly across encodings: unsigned, negative, float, double and decimal are
//! one class, so `2^64-1` is less than the double `2^64` and `2^53+1` lies strictly between
//! the doubles `2^53` and `2^53+2`. NaN equals NaN and is less than every other number, and
//! `-0.0 == 0`, as in Tarantool 2.6.

use crate::field_type::{EXT_DECIMAL, EXT_UUID};
use spindle_proto::mp::{self, Value};
use std::cmp::Ordering;
use std::hash::Hasher;

/// Collation ids that compare bytewise: no collation, `none` (0) and `binary` (3).
pub fn is_binary_collation(collation: Option<u32>) -> bool {
    matches!(collation, None | Some(0) | Some(3))
}

/// Most digits a Tarantool decimal may have; longer payloads are treated as opaque extensions.
const DECIMAL_DIGITS_MAX: usize = 38;

/// A decoded number of any encoding.
#[derive(Clone, Copy, Debug)]
enum Num {
    Uint(u64),
    /// Negative only.
    Int(i64),
    Float(f64),
    Decimal(Decimal),
}

/// A decimal as `(-1)^neg * digits * 10^exp`; `digits` are values 0..=9 without leading zeros.
#[derive(Clone, Copy, Debug)]
struct Decimal {
    neg: bool,
    digits: [u8; DECIMAL_DIGITS_MAX],
    len: usize,
    exp: i64,
}

impl Decimal {
    fn digits(&self) -> &[u8] {
        self.digits.get(..self.len).unwrap_or(&[])
    }
}

/// The value classes in their `scalar` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Nil,
    Bool,
    Number,
    Str,
    Bin,
    Uuid,
    Ext,
    Array,
    Map,
}

/// A field value classified for comparison. Containers keep their raw encoding.
#[derive(Clone, Copy, Debug)]
enum Item<'a> {
    Nil,
    Bool(bool),
    Num(Num),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Uuid(&'a [u8]),
    Ext(i8, &'a [u8]),
    Array(&'a [u8]),
    Map(&'a [u8]),
}

impl Item<'_> {
    fn class(&self) -> Class {
        match self {
            Item::Nil => Class::Nil,
            Item::Bool(_) => Class::Bool,
            Item::Num(_) => Class::Number,
            Item::Str(_) => Class::Str,
            Item::Bin(_) => Class::Bin,
            Item::Uuid(_) => Class::Uuid,
            Item::Ext(..) => Class::Ext,
            Item::Array(_) => Class::Array,
            Item::Map(_) => Class::Map,
        }
    }
}

/// Classifies one raw MessagePack value. A missing field (`None`) and undecodable bytes are
/// nil: tuples and keys are validated before they get here, so this is only a no-panic rule.
fn item(raw: Option<&[u8]>) -> Item<'_> {
    let Some(raw) = raw else { return Item::Nil };
    let mut cur = raw;
    match mp::read_value(&mut cur) {
        Ok(Value::Nil) | Err(_) => Item::Nil,
        Ok(Value::Bool(b)) => Item::Bool(b),
        Ok(Value::Uint(u)) => Item::Num(Num::Uint(u)),
        Ok(Value::Int(i)) => Item::Num(Num::Int(i)),
        Ok(Value::F32(f)) => Item::Num(Num::Float(f as f64)),
        Ok(Value::F64(f)) => Item::Num(Num::Float(f)),
        Ok(Value::Str(s)) => Item::Str(s),
        Ok(Value::Bin(b)) => Item::Bin(b),
        Ok(Value::Ext(t, data)) => ext_item(t, data),
        Ok(Value::Array(_)) => Item::Array(raw),
        Ok(Value::Map(_)) => Item::Map(raw),
    }
}

fn ext_item(ext_type: i8, data: &[u8]) -> Item<'_> {
    if ext_type == EXT_DECIMAL {
        if let Some(d) = decode_decimal(data) {
            return Item::Num(Num::Decimal(d));
        }
    } else if ext_type == EXT_UUID && data.len() == 16 {
        return Item::Uuid(data);
    }
    Item::Ext(ext_type, data)
}

/// Decodes Tarantool's MP_DECIMAL payload: a MessagePack integer scale, then packed BCD digits
/// whose last nibble is the sign (0xb and 0xd negative; 0xa, 0xc, 0xe, 0xf positive).
fn decode_decimal(data: &[u8]) -> Option<Decimal> {
    let mut cur = data;
    let scale = match mp::read_value(&mut cur).ok()? {
        Value::Uint(u) => i64::try_from(u).ok()?,
        Value::Int(i) => i,
        _ => return None,
    };
    let (&last, _) = cur.split_last()?;
    let neg = match last & 0x0f {
        0x0b | 0x0d => true,
        0x0a | 0x0c | 0x0e | 0x0f => false,
        _ => return None,
    };
    let mut d = Decimal {
        neg,
        digits: [0; DECIMAL_DIGITS_MAX],
        len: 0,
        exp: scale.checked_neg()?,
    };
    let nibble_count = cur.len() * 2 - 1;
    for i in 0..nibble_count {
        let byte = *cur.get(i / 2)?;
        let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
        if nibble > 9 {
            return None;
        }
        if nibble == 0 && d.len == 0 {
            continue;
        }
        *d.digits.get_mut(d.len)? = nibble;
        d.len += 1;
    }
    Some(d)
}

/// Compares two raw field values (`None` = absent field, which orders as nil). `collation`
/// applies to strings; only bytewise collations are implemented so far.
pub fn compare_fields(a: Option<&[u8]>, b: Option<&[u8]>, collation: Option<u32>) -> Ordering {
    let _ = collation;
    compare_items(&item(a), &item(b))
}

fn compare_items(a: &Item<'_>, b: &Item<'_>) -> Ordering {
    match (a, b) {
        (Item::Nil, Item::Nil) => Ordering::Equal,
        (Item::Bool(x), Item::Bool(y)) => x.cmp(y),
        (Item::Num(x), Item::Num(y)) => compare_numbers(x, y),
        (Item::Str(x), Item::Str(y))
        | (Item::Bin(x), Item::Bin(y))
        | (Item::Uuid(x), Item::Uuid(y))
        | (Item::Array(x), Item::Array(y))
        | (Item::Map(x), Item::Map(y)) => x.cmp(y),
        (Item::Ext(tx, x), Item::Ext(ty, y)) => tx.cmp(ty).then_with(|| x.cmp(y)),
        _ => a.class().cmp(&b.class()),
    }
}

fn compare_numbers(a: &Num, b: &Num) -> Ordering {
    use Num::*;
    match (*a, *b) {
        (Uint(x), Uint(y)) => x.cmp(&y),
        (Int(x), Int(y)) => x.cmp(&y),
        (Uint(_), Int(_)) => Ordering::Greater,
        (Int(_), Uint(_)) => Ordering::Less,
        (Uint(x), Float(f)) => compare_int_float(x as i128, f),
        (Int(x), Float(f)) => compare_int_float(x as i128, f),
        (Float(f), Uint(x)) => compare_int_float(x as i128, f).reverse(),
        (Float(f), Int(x)) => compare_int_float(x as i128, f).reverse(),
        (Float(x), Float(y)) => compare_floats(x, y),
        (Decimal(x), y) => compare_decimal(&x, &y),
        (x, Decimal(y)) => compare_decimal(&y, &x).reverse(),
    }
}

/// NaN is the smallest number and equal to itself; otherwise IEEE order (`-0.0 == 0.0`).
fn compare_floats(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// Exact comparison of an integer in `[-2^63, 2^64)` with a double.
fn compare_int_float(i: i128, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater;
    }
    // Outside this range the double is beyond every integer we can hold; inside it the
    // truncated double converts to i128 exactly.
    if f >= 18_446_744_073_709_551_616.0 {
        return Ordering::Less;
    }
    if f < -9_223_372_036_854_775_808.0 {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    match i.cmp(&(whole as i128)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - whole)).unwrap_or(Ordering::Equal),
        other => other,
    }
}

/// Compares a decimal with any number, exactly.
fn compare_decimal(d: &Decimal, other: &Num) -> Ordering {
    let lhs = Signed::from_decimal(d);
    match *other {
        Num::Decimal(ref e) => lhs.cmp(&Signed::from_decimal(e)),
        Num::Uint(u) => lhs.cmp(&Signed::from_int(u as i128)),
        Num::Int(i) => lhs.cmp(&Signed::from_int(i as i128)),
        Num::Float(f) if f.is_nan() => Ordering::Greater,
        Num::Float(f) if f.is_infinite() => {
            if f > 0.0 {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        Num::Float(f) => lhs.cmp(&Signed::from_float(f)),
    }
}

/// An exact finite number as decimal digits: `(-1)^neg * digits * 10^exp`, digits without
/// leading or trailing zeros (zero has no digits and is never negative).
#[derive(Debug, PartialEq, Eq)]
struct Signed {
    neg: bool,
    digits: Vec<u8>,
    exp: i128,
}

impl Signed {
    fn new(neg: bool, digits: &[u8], exp: i128) -> Signed {
        let start = digits.iter().position(|&d| d != 0).unwrap_or(digits.len());
        let end = digits
            .iter()
            .rposition(|&d| d != 0)
            .map_or(start, |p| p + 1);
        let kept = digits.get(start..end).unwrap_or(&[]);
        let trailing = (digits.len() - end.max(start)) as i128;
        if kept.is_empty() {
            return Signed {
                neg: false,
                digits: Vec::new(),
                exp: 0,
            };
        }
        Signed {
            neg,
            digits: kept.to_vec(),
            exp: exp + trailing,
        }
    }

    fn from_decimal(d: &Decimal) -> Signed {
        Signed::new(d.neg, d.digits(), d.exp as i128)
    }

    fn from_int(i: i128) -> Signed {
        let digits: Vec<u8> = i
            .unsigned_abs()
            .to_string()
            .bytes()
            .map(|b| b - b'0')
            .collect();
        Signed::new(i < 0, &digits, 0)
    }

    /// The exact decimal expansion of a finite double: `m * 2^e` is `m * 5^-e * 10^e` for
    /// negative `e`, so the expansion always terminates.
    fn from_float(f: f64) -> Signed {
        let bits = f.to_bits();
        let neg = bits >> 63 == 1;
        let biased = ((bits >> 52) & 0x7ff) as i32;
        let fraction = bits & ((1u64 << 52) - 1);
        let (mantissa, exp2) = if biased == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1u64 << 52), biased - 1075)
        };
        let mut big = BigUint::from_u64(mantissa);
        if exp2 >= 0 {
            big.mul_pow(2, exp2 as u32);
            Signed::new(neg, &big.digits(), 0)
        } else {
            big.mul_pow(5, exp2.unsigned_abs());
            Signed::new(neg, &big.digits(), exp2 as i128)
        }
    }

    /// Position of the most significant digit: the value lies in `[10^(adj-1), 10^adj)`.
    fn adjusted(&self) -> i128 {
        self.digits.len() as i128 + self.exp
    }

    fn cmp_magnitude(&self, other: &Signed) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        // Equal adjusted exponents align the digit strings at the left; a shorter string is a
        // prefix padded with zeros, hence smaller when the prefix is equal.
        self.adjusted()
            .cmp(&other.adjusted())
            .then_with(|| self.digits.cmp(&other.digits))
    }
}

impl PartialOrd for Signed {
    fn partial_cmp(&self, other: &Signed) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Signed {
    fn cmp(&self, other: &Signed) -> Ordering {
        match (self.neg, other.neg) {
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        }
    }
}

/// Just enough arbitrary precision for exact double expansions: little-endian base-10^9 limbs.
struct BigUint {
    limbs: Vec<u32>,
}

const LIMB_BASE: u64 = 1_000_000_000;

impl BigUint {
    fn from_u64(mut v: u64) -> BigUint {
        let mut limbs = Vec::new();
        while v > 0 {
            limbs.push((v % LIMB_BASE) as u32);
            v /= LIMB_BASE;
        }
        BigUint { limbs }
    }

    /// Multiplies by `base^power` (base 2 or 5), in chunks that keep each step within u64.
    fn mul_pow(&mut self, base: u64, mut power: u32) {
        let chunk_power = if base == 2 { 30 } else { 12 };
        while power > 0 {
            let step = power.min(chunk_power);
            self.mul_small(base.pow(step));
            power -= step;
        }
    }

    fn mul_small(&mut self, factor: u64) {
        let mut carry = 0u64;
        for limb in &mut self.limbs {
            let v = *limb as u64 * factor + carry;
            *limb = (v % LIMB_BASE) as u32;
            carry = v / LIMB_BASE;
        }
        while carry > 0 {
            self.limbs.push((carry % LIMB_BASE) as u32);
            carry /= LIMB_BASE;
        }
    }

    /// Decimal digits, most significant first (leading zeros included; `Signed::new` trims).
    fn digits(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.limbs.len() * 9);
        for limb in self.limbs.iter().rev() {
            let mut chunk = [0u8; 9];
            let mut v = *limb;
            for slot in chunk.iter_mut().rev() {
                *slot = (v % 10) as u8;
                v /= 10;
            }
            out.extend_from_slice(&chunk);
        }
        out
    }
}

// ---- hints ----

/// Bits of a hint below the class: the class takes the top 4.
const HINT_CLASS_SHIFT: u32 = 60;

/// An order-preserving 64-bit summary of a field value: if `hint(a) < hint(b)` then `a < b`
/// under [`compare_fields`] (equal hints decide nothing). TREE indexes keep the hint of the
/// first key part next to each tuple, so most comparisons during a search are one integer
/// comparison instead of decoding a tuple that is probably not in cache.
pub fn hint_field(raw: Option<&[u8]>, collation: Option<u32>) -> u64 {
    let value = item(raw);
    let low = match value {
        Item::Nil => 0,
        Item::Bool(b) => b as u64,
        Item::Num(n) => number_hint(&n),
        Item::Str(s) if is_binary_collation(collation) => bytes_hint(s, 7),
        Item::Str(_) => 0,
        Item::Bin(b) | Item::Uuid(b) | Item::Array(b) | Item::Map(b) => bytes_hint(b, 7),
        Item::Ext(t, data) => ((t as u8 ^ 0x80) as u64) << 48 | bytes_hint(data, 6),
    };
    (value.class() as u64) << HINT_CLASS_SHIFT | low
}

/// The first `n` (at most 7) bytes, big-endian, zero-padded: zero padding keeps a prefix
/// below its extensions, as bytewise comparison does.
fn bytes_hint(bytes: &[u8], n: usize) -> u64 {
    let mut v = 0u64;
    for i in 0..n {
        v = v << 8 | *bytes.get(i).unwrap_or(&0) as u64;
    }
    v
}

/// Numbers mapped through the nearest double (rounding is monotone) onto the order of its bit
/// pattern, cut to 60 bits. NaN, the smallest number, gets 0, below `-inf`'s hint.
fn number_hint(n: &Num) -> u64 {
    let f = match *n {
        Num::Uint(u) => u as f64,
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
        Num::Decimal(ref d) => decimal_to_f64(d),
    };
    if f.is_nan() {
        return 0;
    }
    // -0.0 equals 0.0, so it must not get a smaller hint.
    let bits = if f == 0.0 { 0 } else { f.to_bits() };
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    };
    ordered >> (64 - HINT_CLASS_SHIFT)
}

/// The double nearest to a decimal (correctly rounded by the standard parser).
fn decimal_to_f64(d: &Decimal) -> f64 {
    let s = Signed::from_decimal(d);
    if s.digits.is_empty() {
        return 0.0;
    }
    let text: String = s.digits.iter().map(|d| (b'0' + d) as char).collect();
    let sign = if s.neg { "-" } else { "" };
    format!("{sign}{text}e{}", s.exp).parse().unwrap_or(0.0)
}

// ---- hashing ----

/// Tags that keep values of different kinds from hashing alike by accident.
const TAG_NIL: u8 = 0;
const TAG_BOOL: u8 = 1;
const TAG_INT: u8 = 2;
const TAG_FLOAT: u8 = 3;
const TAG_NAN: u8 = 4;
const TAG_DECIMAL: u8 = 5;
const TAG_STR: u8 = 6;
const TAG_BIN: u8 = 7;
const TAG_UUID: u8 = 8;
const TAG_EXT: u8 = 9;
const TAG_RAW: u8 = 10;

/// Feeds one raw field value into `state` so that values equal under [`compare_fields`] hash
/// equally. Numbers hash by canonical form: integers in `[-2^63, 2^64)` as integers (whatever
/// their encoding), other values a double represents exactly as that double, the rest as
/// normalised decimals.
pub fn hash_field(raw: Option<&[u8]>, collation: Option<u32>, state: &mut impl Hasher) {
    let _ = collation;
    match item(raw) {
        Item::Nil => state.write_u8(TAG_NIL),
        Item::Bool(b) => {
            state.write_u8(TAG_BOOL);
            state.write_u8(b as u8);
        }
        Item::Num(n) => hash_number(&n, state),
        Item::Str(s) => hash_bytes(TAG_STR, s, state),
        Item::Bin(b) => hash_bytes(TAG_BIN, b, state),
        Item::Uuid(u) => hash_bytes(TAG_UUID, u, state),
        Item::Ext(t, data) => {
            state.write_u8(TAG_EXT);
            state.write_i8(t);
            hash_bytes(TAG_EXT, data, state);
        }
        Item::Array(raw) | Item::Map(raw) => hash_bytes(TAG_RAW, raw, state),
    }
}

fn hash_bytes(tag: u8, bytes: &[u8], state: &mut impl Hasher) {
    state.write_u8(tag);
    state.write_usize(bytes.len());
    state.write(bytes);
}

fn hash_number(n: &Num, state: &mut impl Hasher) {
    match *n {
        Num::Uint(u) => hash_int(u as i128, state),
        Num::Int(i) => hash_int(i as i128, state),
        Num::Float(f) => hash_float(f, state),
        Num::Decimal(ref d) => hash_decimal(d, state),
    }
}

fn hash_int(i: i128, state: &mut impl Hasher) {
    state.write_u8(TAG_INT);
    state.write_i128(i);
}

fn hash_float(f: f64, state: &mut impl Hasher) {
    if f.is_nan() {
        state.write_u8(TAG_NAN);
    } else if let Some(i) = float_as_int(f) {
        hash_int(i, state);
    } else {
        state.write_u8(TAG_FLOAT);
        state.write_u64(f.to_bits());
    }
}

/// The integer a double equals, if it is integral and within `[-2^63, 2^64)`.
fn float_as_int(f: f64) -> Option<i128> {
    let in_range = (-9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&f);
    (in_range && f.trunc() == f).then_some(f as i128)
}

fn hash_decimal(d: &Decimal, state: &mut impl Hasher) {
    let s = Signed::from_decimal(d);
    if let Some(i) = signed_as_int(&s) {
        return hash_int(i, state);
    }
    if let Some(f) = signed_as_float(&s) {
        return hash_float(f, state);
    }
    state.write_u8(TAG_DECIMAL);
    state.write_u8(s.neg as u8);
    state.write_i128(s.exp);
    state.write(&s.digits);
}

/// The integer a normalised decimal equals, if it is integral and within `[-2^63, 2^64)`.
fn signed_as_int(s: &Signed) -> Option<i128> {
    if s.exp < 0 || s.adjusted() > 20 {
        return None;
    }
    let mut v: i128 = 0;
    for &digit in &s.digits {
        v = v * 10 + digit as i128;
    }
    for _ in 0..s.exp {
        v *= 10;
    }
    if s.neg {
        v = -v;
    }
    (-(1i128 << 63)..(1i128 << 64)).contains(&v).then_some(v)
}

/// The double a decimal equals exactly, if any. Parsing rounds correctly, so the nearest
/// double is the only candidate.
fn signed_as_float(s: &Signed) -> Option<f64> {
    let text: String = s.digits.iter().map(|d| (b'0' + d) as char).collect();
    let sign = if s.neg { "-" } else { "" };
    let f: f64 = format!("{sign}{text}e{}", s.exp).parse().ok()?;
    (f.is_finite() && Signed::from_float(f) == *s).then_some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::DefaultHasher;

    fn mp_u(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        mp::write_uint(&mut out, v);
        out
    }
    fn mp_i(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        mp::write_int(&mut out, v);
        out
    }
    fn mp_f(v: f64) -> Vec<u8> {
        let mut out = Vec::new();
        mp::write_f64(&mut out, v);
        out
    }
    fn mp_f32(v: f32) -> Vec<u8> {
        let mut out = Vec::new();
        mp::write_f32(&mut out, v);
        out
    }
    fn mp_s(v: &str) -> Vec<u8> {
        let mut out = Vec::new();
        mp::write_str(&mut out, v);
        out
    }
    fn mp_b(v: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        mp::write_bin(&mut out, v);
        out
    }
    /// Decimal ext as Tarantool encodes it (captured from `msgpack.encode(decimal.new(..))`).
    fn mp_dec(hex: &str) -> Vec<u8> {
        hex.split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    }
    fn cmp(a: &[u8], b: &[u8]) -> Ordering {
        compare_fields(Some(a), Some(b), None)
    }
    fn hash(a: &[u8]) -> u64 {
        let mut h = DefaultHasher::new();
        hash_field(Some(a), None, &mut h);
        h.finish()
    }
    fn assert_equal(a: &[u8], b: &[u8]) {
        assert_eq!(cmp(a, b), Ordering::Equal, "{a:x?} vs {b:x?}");
        assert_eq!(cmp(b, a), Ordering::Equal);
        assert_eq!(hash(a), hash(b), "hash of {a:x?} vs {b:x?}");
    }
    fn assert_less(a: &[u8], b: &[u8]) {
        assert_eq!(cmp(a, b), Ordering::Less, "{a:x?} < {b:x?}");
        assert_eq!(cmp(b, a), Ordering::Greater, "{b:x?} > {a:x?}");
    }

    #[test]
    fn big_integers_against_doubles_are_exact() {
        // Orders observed in a Tarantool 2.6 `number` index (see tests/tarantool_pinned.rs).
        assert_less(&mp_u(u64::MAX), &mp_f(18_446_744_073_709_551_616.0));
        assert_equal(&mp_u(18_000_000_000_000_000_000), &mp_f(1.8e19));
        assert_less(&mp_u(17_999_999_999_999_999_999), &mp_f(1.8e19));
        assert_less(&mp_f(1.8e19), &mp_u(18_000_000_000_000_000_001));
        assert_equal(&mp_u(1 << 63), &mp_f(9_223_372_036_854_775_808.0));
        assert_less(&mp_u(i64::MAX as u64), &mp_f(9_223_372_036_854_775_808.0));
        assert_equal(&mp_i(i64::MIN), &mp_f(-9_223_372_036_854_775_808.0));
        assert_less(&mp_i(i64::MIN), &mp_i(i64::MIN + 1));
        assert_less(&mp_f(9_007_199_254_740_992.0), &mp_u(9_007_199_254_740_993));
        assert_less(&mp_u(9_007_199_254_740_993), &mp_f(9_007_199_254_740_994.0));
        assert_less(&mp_f(-9.3e18), &mp_i(i64::MIN));
    }

    #[test]
    fn signs_and_small_numbers() {
        assert_less(&mp_i(-1), &mp_u(0));
        assert_less(&mp_i(-1), &mp_u(u64::MAX));
        assert_less(&mp_f(-1.5), &mp_i(-1));
        assert_less(&mp_i(-1), &mp_f(-0.5));
        assert_equal(&mp_u(1), &mp_f(1.0));
        assert_equal(&mp_u(1), &mp_f32(1.0));
        assert_equal(&mp_f(-0.0), &mp_u(0));
        assert_less(&mp_u(1), &mp_f32(1.5));
    }

    #[test]
    fn nan_is_smallest_and_equal_to_itself() {
        assert_equal(&mp_f(f64::NAN), &mp_f32(f32::NAN));
        assert_less(&mp_f(f64::NAN), &mp_f(f64::NEG_INFINITY));
        assert_less(&mp_f(f64::NAN), &mp_i(i64::MIN));
        assert_less(&mp_f(f64::NEG_INFINITY), &mp_i(i64::MIN));
        assert_less(&mp_u(u64::MAX), &mp_f(f64::INFINITY));
    }

    #[test]
    fn decimals_compare_exactly_with_everything() {
        let d_1_25 = mp_dec("c7 03 01 02 12 5c");
        let d_minus_100 = mp_dec("c7 03 01 00 10 0d");
        let d_1e30 = mp_dec("d5 01 e2 1c");
        let d_1 = mp_dec("d5 01 00 1c");
        let d_1_0 = mp_dec("c7 03 01 01 01 0c");
        let d_0 = mp_dec("d5 01 00 0c");
        let d_minus_0 = mp_dec("d5 01 00 0d");
        assert_equal(&d_1, &mp_u(1));
        assert_equal(&d_1_0, &mp_f(1.0));
        assert_equal(&d_0, &d_minus_0);
        assert_equal(&d_0, &mp_f(-0.0));
        assert_equal(&d_1_25, &mp_f(1.25));
        assert_less(&d_minus_100, &mp_i(-1));
        assert_less(&mp_i(-101), &d_minus_100);
        assert_less(&d_1_25, &mp_f(1.5));
        assert_less(&mp_u(u64::MAX), &d_1e30);
        // The double nearest 1e30 is 1e30 + 19884624838656.
        assert_less(&d_1e30, &mp_f(1e30));
        assert_less(&d_1e30, &mp_f(f64::INFINITY));
        assert_less(&mp_f(f64::NAN), &d_minus_100);
        // 0.1 as a double is slightly above one tenth.
        let d_0_1 = mp_dec("d5 01 01 1c");
        assert_less(&d_0_1, &mp_f(0.1));
        assert_less(&mp_f(0.09999999999999999), &d_0_1);
    }

    #[test]
    fn scalar_class_order() {
        // Observed in Tarantool 2.6: nil < false < true < numbers < strings < varbinary.
        let nil = [0xc0u8];
        let ordered: Vec<Vec<u8>> = vec![
            nil.to_vec(),
            vec![0xc2],
            vec![0xc3],
            mp_f(f64::NAN),
            mp_i(-1),
            mp_dec("d5 01 e2 1c"),
            mp_s(""),
            mp_s("B"),
            mp_s("a"),
            mp_s("a\0"),
            mp_s("ab"),
            mp_s("\u{ff}"),
            mp_b(b""),
            mp_b(b"\0"),
            mp_b(b"a"),
            mp_b(b"ab"),
            mp_dec("d8 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01"),
            vec![0x90],
            vec![0x80],
        ];
        for (i, a) in ordered.iter().enumerate() {
            for b in &ordered[i + 1..] {
                assert_less(a, b);
            }
        }
        assert_eq!(compare_fields(None, Some(&nil), None), Ordering::Equal);
        assert_eq!(compare_fields(None, Some(&mp_u(0)), None), Ordering::Less);
    }

    #[test]
    fn hashes_agree_with_equality() {
        assert_equal(&mp_u(5), &mp_f32(5.0));
        assert_equal(&mp_dec("d5 01 00 1c"), &mp_u(1));
        assert_equal(&mp_dec("c7 03 01 02 12 5c"), &mp_f(1.25));
        assert_equal(&mp_f(f64::NAN), &mp_f(-f64::NAN));
        // 2^70 as a decimal equals the double 2^70.
        let mut d = vec![0xc7, 13, 0x01, 0x00];
        d.extend([
            0x01, 0x18, 0x05, 0x91, 0x62, 0x07, 0x17, 0x41, 0x13, 0x03, 0x42, 0x4c,
        ]);
        assert_equal(&d, &mp_f(1180591620717411303424.0));
        assert_ne!(hash(&mp_s("1")), hash(&mp_u(1)));
        assert_ne!(hash(&mp_s("a")), hash(&mp_b(b"a")));
    }

    #[test]
    fn hints_never_contradict_the_order() {
        let values: Vec<Vec<u8>> = vec![
            vec![0xc0],
            vec![0xc2],
            vec![0xc3],
            mp_f(f64::NAN),
            mp_f(f64::NEG_INFINITY),
            mp_i(i64::MIN),
            mp_f(-1.5),
            mp_i(-1),
            mp_f(-0.0),
            mp_u(0),
            mp_dec("d5 01 01 1c"),
            mp_f(0.1),
            mp_u(1),
            mp_f32(1.0),
            mp_dec("c7 03 01 02 12 5c"),
            mp_u(9_007_199_254_740_993),
            mp_f(9_007_199_254_740_994.0),
            mp_u(u64::MAX),
            mp_f(18_446_744_073_709_551_616.0),
            mp_dec("d5 01 e2 1c"),
            mp_f(f64::INFINITY),
            mp_s(""),
            mp_s("a"),
            mp_s("a\0"),
            mp_s("abcdefg"),
            mp_s("abcdefgh"),
            mp_s("abcdefgi"),
            mp_b(b""),
            mp_b(b"zz"),
            mp_dec("d8 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01"),
            mp_dec("d4 05 07"),
            vec![0x90],
            vec![0x80],
        ];
        for a in &values {
            for b in &values {
                let (ha, hb) = (hint_field(Some(a), None), hint_field(Some(b), None));
                if ha < hb {
                    assert_eq!(cmp(a, b), Ordering::Less, "hint order of {a:x?} < {b:x?}");
                }
                if cmp(a, b) == Ordering::Equal {
                    assert_eq!(ha, hb, "equal values {a:x?} and {b:x?} share a hint");
                }
            }
        }
        assert_eq!(hint_field(None, None), hint_field(Some(&[0xc0]), None));
    }

    /// MP_DECIMAL of `(-1)^neg * coef * 10^-scale`.
    fn mp_decimal(neg: bool, coef: u64, scale: i8) -> Vec<u8> {
        let mut payload = Vec::new();
        mp::write_int(&mut payload, scale as i64);
        let mut nibbles: Vec<u8> = coef.to_string().bytes().map(|b| b - b'0').collect();
        nibbles.push(if neg { 0x0d } else { 0x0c });
        if nibbles.len() % 2 == 1 {
            nibbles.insert(0, 0);
        }
        payload.extend(nibbles.chunks(2).map(|p| p[0] << 4 | p[1]));
        let mut out = vec![0xc7, payload.len() as u8, 0x01];
        out.extend(payload);
        out
    }

    fn any_number() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let small = -40i64..40;
        prop_oneof![
            any::<u64>().prop_map(mp_u),
            any::<i64>().prop_map(mp_i),
            any::<f64>().prop_map(mp_f),
            any::<f32>().prop_map(mp_f32),
            small.clone().prop_map(mp_i),
            small.clone().prop_map(|i| mp_f(i as f64 / 4.0)),
            small.clone().prop_map(|i| mp_f32(i as f32 / 2.0)),
            (small, 0i8..3).prop_map(|(i, s)| mp_decimal(
                i < 0,
                i.unsigned_abs() * 25u64.pow(s as u32),
                2 * s
            )),
            (any::<bool>(), 0u64..10_000_000_000_000_000_000, -30i8..30)
                .prop_map(|(n, c, s)| mp_decimal(n, c, s)),
            (0u32..64, any::<bool>()).prop_map(|(p, n)| mp_decimal(n, 1u64 << p, 0)),
            (0u32..64).prop_map(|p| mp_f((1u64 << p) as f64)),
        ]
    }

    proptest::proptest! {
        #[test]
        fn numbers_form_a_total_order_with_consistent_hashes_and_hints(
            a in any_number(), b in any_number(), c in any_number()
        ) {
            let (ab, bc, ac) = (cmp(&a, &b), cmp(&b, &c), cmp(&a, &c));
            proptest::prop_assert_eq!(cmp(&b, &a), ab.reverse());
            if ab != Ordering::Greater && bc != Ordering::Greater {
                proptest::prop_assert_ne!(ac, Ordering::Greater);
            }
            if ab == Ordering::Equal {
                proptest::prop_assert_eq!(hash(&a), hash(&b));
            }
            let (ha, hb) = (hint_field(Some(&a), None), hint_field(Some(&b), None));
            if ha < hb {
                proptest::prop_assert_eq!(ab, Ordering::Less);
            }
            if ab == Ordering::Equal {
                proptest::prop_assert_eq!(ha, hb);
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        for raw in [
            &[][..],
            &[0xc1],
            &[0xd5, 0x01],
            &[0xc7, 0x02, 0x01, 0xff, 0xff],
            &[0xcb, 1],
        ] {
            let _ = cmp(raw, &mp_u(1));
            let _ = hash(raw);
        }
    }
}
