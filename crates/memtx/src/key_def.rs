//! Key definitions: which tuple fields an index orders by, how a tuple compares with another
//! tuple or with a (possibly partial) search key, key extraction, and validation of the keys
//! that requests carry, with Tarantool 2.6's errors.
//!
//! A key in a request is a MessagePack array of part values. Select keys may be a prefix of
//! the index parts and may hold nil for nullable parts; keys of get/delete/update must be
//! exact: every part, none nil.

use crate::compare::{compare_fields, hash_field};
use crate::tuple::{Fields, Tuple};
use crate::FieldType;
use spindle_proto::mp::{self, Value};
use spindle_types::{BoxError, BoxResult};
use std::cmp::Ordering;
use std::hash::Hasher;

/// MessagePack nil, standing in for absent fields.
const NIL: &[u8] = &[0xc0];

/// One part of an index key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPart {
    /// 0-based field number in the tuple.
    pub fieldno: u32,
    pub field_type: FieldType,
    /// Nil (or an absent field) is allowed and sorts first.
    pub is_nullable: bool,
    /// Collation id from `_collation`; `None` for none.
    pub collation: Option<u32>,
}

impl KeyPart {
    /// A non-nullable part without collation.
    pub fn new(fieldno: u32, field_type: FieldType) -> KeyPart {
        KeyPart {
            fieldno,
            field_type,
            is_nullable: false,
            collation: None,
        }
    }
}

/// An ordered list of key parts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyDef {
    pub parts: Vec<KeyPart>,
}

/// The part values of a request key, as raw MessagePack values (validated by the `KeyDef`
/// methods that produce them, or extracted from a tuple).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Key<'a> {
    parts: Vec<&'a [u8]>,
}

impl<'a> Key<'a> {
    /// Splits a MessagePack array into its elements without looking at their types.
    pub fn parse(key: &'a [u8]) -> BoxResult<Key<'a>> {
        let mut cur = key;
        let count = match mp::read_value(&mut cur) {
            Ok(Value::Array(n)) => n,
            _ => return Err(BoxError::tuple_not_array()),
        };
        let mut parts = Vec::with_capacity((count as usize).min(cur.len()));
        for _ in 0..count {
            let part = mp::take_value(&mut cur).map_err(|_| BoxError::invalid_msgpack("key"))?;
            parts.push(part);
        }
        Ok(Key { parts })
    }

    /// A key made of already-split part values.
    pub fn from_parts(parts: Vec<&'a [u8]>) -> Key<'a> {
        Key { parts }
    }

    pub fn parts(&self) -> &[&'a [u8]] {
        &self.parts
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The first `n` parts.
    pub fn prefix(&self, n: usize) -> &[&'a [u8]] {
        self.parts.get(..n).unwrap_or(&self.parts)
    }
}

/// Reads fields of one tuple for parts that usually come in ascending field order, so a
/// multipart comparison walks the tuple once instead of once per part.
struct FieldCursor<'a> {
    data: &'a [u8],
    fields: Fields<'a>,
    next_fieldno: u32,
}

impl<'a> FieldCursor<'a> {
    fn new(data: &'a [u8]) -> FieldCursor<'a> {
        FieldCursor {
            data,
            fields: Fields::new(data),
            next_fieldno: 0,
        }
    }

    fn get(&mut self, fieldno: u32) -> Option<&'a [u8]> {
        if fieldno < self.next_fieldno {
            self.fields = Fields::new(self.data);
            self.next_fieldno = 0;
        }
        let skip = (fieldno - self.next_fieldno) as usize;
        self.next_fieldno = fieldno + 1;
        self.fields.nth(skip)
    }
}

impl KeyDef {
    pub fn new(parts: Vec<KeyPart>) -> KeyDef {
        KeyDef { parts }
    }

    pub fn part_count(&self) -> u32 {
        self.parts.len() as u32
    }

    /// Whether some part admits nil.
    pub fn is_nullable(&self) -> bool {
        self.parts.iter().any(|p| p.is_nullable)
    }

    /// The comparison definition of a secondary index: its own parts, then the primary key
    /// parts on fields it does not already cover. Equal secondary keys then order by primary
    /// key, which makes every entry of a non-unique index distinct.
    pub fn merge(&self, primary: &KeyDef) -> KeyDef {
        let mut parts = self.parts.clone();
        for part in &primary.parts {
            if !self.parts.iter().any(|p| p.fieldno == part.fieldno) {
                parts.push(part.clone());
            }
        }
        KeyDef { parts }
    }

    /// Whether a nullable part of `key` holds nil: such keys never collide in a unique index
    /// (nil in a non-nullable part can only come from a tuple the format should have refused,
    /// and is then compared like any value).
    pub fn has_nullable_nil(&self, key: &Key<'_>) -> bool {
        let nil = |raw: &&[u8]| raw.first() == Some(&0xc0);
        self.parts
            .iter()
            .zip(&key.parts)
            .any(|(p, raw)| p.is_nullable && nil(raw))
    }

    /// Compares two tuples on every part.
    pub fn compare(&self, a: &Tuple, b: &Tuple) -> Ordering {
        self.compare_prefix(a, b, self.parts.len())
    }

    /// Compares two tuples on the first `n` parts.
    pub fn compare_prefix(&self, a: &Tuple, b: &Tuple, n: usize) -> Ordering {
        let mut ca = FieldCursor::new(a.data());
        let mut cb = FieldCursor::new(b.data());
        for part in self.parts.iter().take(n) {
            let fa = ca.get(part.fieldno);
            let fb = cb.get(part.fieldno);
            match compare_fields(fa, fb, part.collation) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        Ordering::Equal
    }

    /// Compares a tuple with a key on the key's parts (a shorter key is a prefix: tuples
    /// matching it compare equal).
    pub fn compare_with_key(&self, tuple: &Tuple, key: &[&[u8]]) -> Ordering {
        let mut cursor = FieldCursor::new(tuple.data());
        for (part, value) in self.parts.iter().zip(key) {
            match compare_fields(cursor.get(part.fieldno), Some(value), part.collation) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        Ordering::Equal
    }

    /// The tuple's values of the first `n` parts (absent fields read as nil).
    pub fn key_of<'t>(&self, tuple: &'t Tuple, n: usize) -> Key<'t> {
        let mut cursor = FieldCursor::new(tuple.data());
        let parts = self
            .parts
            .iter()
            .take(n)
            .map(|p| cursor.get(p.fieldno).unwrap_or(NIL));
        Key {
            parts: parts.collect(),
        }
    }

    /// Extracts the key of a tuple as a MessagePack array of part values.
    pub fn extract_key(&self, tuple: &Tuple) -> Vec<u8> {
        let key = self.key_of(tuple, self.parts.len());
        let mut out = Vec::with_capacity(1 + key.parts.iter().map(|p| p.len()).sum::<usize>());
        mp::write_array_len(&mut out, key.len() as u32);
        for part in key.parts {
            out.extend_from_slice(part);
        }
        out
    }

    /// Hashes the tuple's values of every part; equal keys hash equally.
    pub fn hash_tuple(&self, tuple: &Tuple, state: &mut impl Hasher) {
        let mut cursor = FieldCursor::new(tuple.data());
        for part in &self.parts {
            hash_field(cursor.get(part.fieldno), part.collation, state);
        }
    }

    /// Hashes a full key consistently with [`KeyDef::hash_tuple`].
    pub fn hash_key(&self, key: &[&[u8]], state: &mut impl Hasher) {
        for (part, value) in self.parts.iter().zip(key) {
            hash_field(Some(value), part.collation, state);
        }
    }

    /// ER_KEY_PART_COUNT when a search key has more parts than the index.
    pub fn check_key_part_count(&self, key: &Key<'_>) -> BoxResult<()> {
        if key.len() > self.parts.len() {
            return Err(BoxError::key_part_count(
                self.part_count(),
                key.len() as u32,
            ));
        }
        Ok(())
    }

    /// ER_KEY_PART_TYPE for the first part whose value the part's type refuses (the part
    /// number in the message is 0-based). Nil passes only for nullable parts, and only when
    /// `allow_nil` (select keys; exact keys never admit nil).
    pub fn check_key_part_types(&self, key: &Key<'_>, allow_nil: bool) -> BoxResult<()> {
        for (i, (part, raw)) in self.parts.iter().zip(&key.parts).enumerate() {
            if !part_accepts(part, raw, allow_nil) {
                return Err(BoxError::key_part_type(i as u32, part.field_type.name()));
            }
        }
        Ok(())
    }

    /// Validates a select key: a prefix of the parts with acceptable types.
    pub fn validate_key<'k>(&self, key: &'k [u8]) -> BoxResult<Key<'k>> {
        let key = Key::parse(key)?;
        self.check_key_part_count(&key)?;
        self.check_key_part_types(&key, true)?;
        Ok(key)
    }

    /// Validates the key of a unique lookup (get/delete/update): ER_EXACT_MATCH unless it has
    /// exactly one value per part, then the part types with nil refused.
    pub fn validate_exact_key<'k>(&self, key: &'k [u8]) -> BoxResult<Key<'k>> {
        let key = Key::parse(key)?;
        if key.len() != self.parts.len() {
            return Err(BoxError::exact_match(self.part_count(), key.len() as u32));
        }
        self.check_key_part_types(&key, false)?;
        Ok(key)
    }
}

fn part_accepts(part: &KeyPart, raw: &[u8], allow_nil: bool) -> bool {
    let mut cur = raw;
    match mp::read_value(&mut cur) {
        Ok(Value::Nil) => allow_nil && part.is_nullable,
        Ok(value) => part.field_type.accepts(&value),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_types::error::code;

    use rmpv::Value as V;

    fn arr(items: Vec<V>) -> V {
        V::Array(items)
    }
    fn tuple(v: rmpv::Value) -> Tuple {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &v).unwrap();
        Tuple::new(&out).unwrap()
    }
    fn enc(v: rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &v).unwrap();
        out
    }
    fn two_part() -> KeyDef {
        KeyDef::new(vec![
            KeyPart::new(2, FieldType::Unsigned),
            KeyPart {
                is_nullable: true,
                ..KeyPart::new(0, FieldType::String)
            },
        ])
    }

    #[test]
    fn compares_tuples_and_prefix_keys() {
        let kd = two_part();
        let a = tuple(arr(vec![V::from("x"), V::from(0), V::from(5)]));
        let b = tuple(arr(vec![V::from("y"), V::from(0), V::from(5)]));
        assert_eq!(kd.compare(&a, &b), Ordering::Less);
        assert_eq!(kd.compare_prefix(&a, &b, 1), Ordering::Equal);
        let key = enc(arr(vec![V::from(5)]));
        let key = kd.validate_key(&key).unwrap();
        assert_eq!(kd.compare_with_key(&a, key.parts()), Ordering::Equal);
        let key6 = enc(arr(vec![V::from(6)]));
        let key6 = kd.validate_key(&key6).unwrap();
        assert_eq!(kd.compare_with_key(&a, key6.parts()), Ordering::Less);
        assert_eq!(kd.extract_key(&a), enc(arr(vec![V::from(5), V::from("x")])));
    }

    #[test]
    fn short_tuples_read_nil_for_absent_fields() {
        let kd = two_part();
        let short = tuple(arr(vec![V::from("x")]));
        assert_eq!(kd.extract_key(&short), enc(arr(vec![V::Nil, V::from("x")])));
    }

    #[test]
    fn key_errors_match_tarantool() {
        let kd = two_part();
        let too_long = enc(arr(vec![V::from(1), V::from("a"), V::from(3)]));
        let e = kd.validate_key(&too_long).unwrap_err();
        assert_eq!(e.message, "Invalid key part count (expected [0..2], got 3)");
        let bad = enc(arr(vec![V::from(1), V::from(2)]));
        let e = kd.validate_key(&bad).unwrap_err();
        assert_eq!(
            e.message,
            "Supplied key type of part 1 does not match index part type: expected string"
        );
        let nil = enc(arr(vec![V::from(1), V::Nil]));
        assert!(kd.validate_key(&nil).is_ok());
        let e = kd.validate_exact_key(&nil).unwrap_err();
        assert_eq!(e.code, code::ER_KEY_PART_TYPE);
        let short = enc(arr(vec![V::from(1)]));
        let e = kd.validate_exact_key(&short).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid key part count in an exact match (expected 2, got 1)"
        );
        assert_eq!(
            kd.validate_key(&[0x01]).unwrap_err().code,
            code::ER_TUPLE_NOT_ARRAY
        );
        assert_eq!(
            kd.validate_key(&[0x92, 0x01]).unwrap_err().code,
            code::ER_INVALID_MSGPACK
        );
    }

    #[test]
    fn merge_appends_uncovered_primary_parts() {
        let pk = KeyDef::new(vec![
            KeyPart::new(0, FieldType::Unsigned),
            KeyPart::new(1, FieldType::String),
        ]);
        let sk = KeyDef::new(vec![KeyPart::new(1, FieldType::String)]);
        let merged = sk.merge(&pk);
        let fieldnos: Vec<u32> = merged.parts.iter().map(|p| p.fieldno).collect();
        assert_eq!(fieldnos, vec![1, 0]);
    }
}
