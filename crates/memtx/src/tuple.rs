//! Tuples: immutable MessagePack arrays shared by reference count between every index of a
//! space, the transaction that created them and (later) the snapshot thread.
//!
//! The representation is a newtype over `Arc<[u8]>` so that it can become a thinner
//! single-pointer layout later without touching callers. Cloning a tuple is one atomic
//! increment; the bytes are validated once, at construction, so readers may decode fields
//! without re-checking well-formedness (they still never panic on bad bytes).

use spindle_proto::mp::{self, Value};
use spindle_types::{BoxError, BoxResult};
use std::fmt;
use std::sync::Arc;

/// An immutable, validated MessagePack array.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tuple(Arc<[u8]>);

impl Tuple {
    /// Validates `data` (exactly one well-formed MessagePack value, which must be an array)
    /// and copies it into a new tuple.
    pub fn new(data: &[u8]) -> BoxResult<Tuple> {
        check_array(data)?;
        Ok(Tuple(Arc::from(data)))
    }

    /// For bytes already validated as exactly one well-formed MessagePack value (a log row
    /// body checked on read): only checks that the value is an array.
    pub fn from_validated(data: &[u8]) -> BoxResult<Tuple> {
        match data.first() {
            Some(0x90..=0x9f | 0xdc | 0xdd) => Ok(Tuple(Arc::from(data))),
            _ => Err(BoxError::tuple_not_array()),
        }
    }

    /// Like [`Tuple::new`], but reuses the vector's allocation when it has no spare capacity.
    pub fn from_vec(data: Vec<u8>) -> BoxResult<Tuple> {
        check_array(&data)?;
        Ok(Tuple(Arc::from(data)))
    }

    /// The whole MessagePack array.
    pub fn data(&self) -> &[u8] {
        &self.0
    }

    /// Size of the MessagePack encoding in bytes (Tarantool's `bsize`).
    pub fn bsize(&self) -> usize {
        self.0.len()
    }

    /// Number of fields (elements of the array).
    pub fn field_count(&self) -> u32 {
        let mut cur = self.data();
        match mp::read_value(&mut cur) {
            Ok(Value::Array(n)) => n,
            _ => 0,
        }
    }

    /// The raw bytes of field `fieldno` (0-based), or `None` past the end.
    pub fn field(&self, fieldno: u32) -> Option<&[u8]> {
        field_of(self.data(), fieldno)
    }

    /// The fields in order, as raw MessagePack values.
    pub fn fields(&self) -> Fields<'_> {
        Fields::new(self.data())
    }

    /// Whether both handles share one allocation (the same stored tuple).
    pub fn ptr_eq(a: &Tuple, b: &Tuple) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// Bytes this tuple occupies on the heap, including the reference counts.
    pub fn heap_size(&self) -> usize {
        self.0.len() + 2 * std::mem::size_of::<usize>()
    }
}

impl fmt::Debug for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tuple(")?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// Checks that `data` is exactly one well-formed MessagePack array.
fn check_array(data: &[u8]) -> BoxResult<()> {
    if mp::peek_type(data) != Ok(mp::MpType::Array) {
        return Err(BoxError::tuple_not_array());
    }
    match mp::check(data) {
        Ok(len) if len == data.len() => Ok(()),
        _ => Err(BoxError::invalid_msgpack("tuple")),
    }
}

/// The raw bytes of element `fieldno` of the MessagePack array `array`.
pub(crate) fn field_of(array: &[u8], fieldno: u32) -> Option<&[u8]> {
    Fields::new(array).nth(fieldno as usize)
}

/// Iterator over the elements of a MessagePack array, yielding each element's raw bytes.
/// Stops early (without panicking) if the bytes are malformed.
pub struct Fields<'a> {
    rest: &'a [u8],
    remaining: u32,
}

impl<'a> Fields<'a> {
    /// Starts at the array header of `array`; a non-array yields nothing.
    pub fn new(array: &'a [u8]) -> Fields<'a> {
        let mut rest = array;
        let remaining = match mp::read_value(&mut rest) {
            Ok(Value::Array(n)) => n,
            _ => 0,
        };
        Fields { rest, remaining }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        match mp::take_value(&mut self.rest) {
            Ok(v) => Some(v),
            Err(_) => {
                self.remaining = 0;
                None
            }
        }
    }

    fn nth(&mut self, n: usize) -> Option<&'a [u8]> {
        for _ in 0..n {
            if self.remaining == 0 {
                return None;
            }
            self.remaining -= 1;
            if mp::skip(&mut self.rest).is_err() {
                self.remaining = 0;
                return None;
            }
        }
        self.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_types::error::code;

    #[test]
    fn validates_and_reads_fields() {
        // [1, "ab", [2]]
        let t = Tuple::new(&[0x93, 0x01, 0xa2, b'a', b'b', 0x91, 0x02]).unwrap();
        assert_eq!(t.field_count(), 3);
        assert_eq!(t.field(0), Some(&[0x01][..]));
        assert_eq!(t.field(1), Some(&[0xa2, b'a', b'b'][..]));
        assert_eq!(t.field(2), Some(&[0x91, 0x02][..]));
        assert_eq!(t.field(3), None);
        assert_eq!(t.fields().count(), 3);
    }

    #[test]
    fn rejects_non_arrays_and_garbage() {
        assert_eq!(
            Tuple::new(&[0x01]).unwrap_err().code,
            code::ER_TUPLE_NOT_ARRAY
        );
        assert_eq!(Tuple::new(&[]).unwrap_err().code, code::ER_TUPLE_NOT_ARRAY);
        assert_eq!(
            Tuple::new(&[0x92, 0x01]).unwrap_err().code,
            code::ER_INVALID_MSGPACK
        );
        assert_eq!(
            Tuple::new(&[0x91, 0x01, 0x02]).unwrap_err().code,
            code::ER_INVALID_MSGPACK
        );
    }

    #[test]
    fn is_send_sync_and_small() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Tuple>();
        assert_eq!(
            std::mem::size_of::<Tuple>(),
            2 * std::mem::size_of::<usize>()
        );
        assert_eq!(
            std::mem::size_of::<Option<Tuple>>(),
            std::mem::size_of::<Tuple>()
        );
    }
}
