//! UPDATE and UPSERT operations (`= + - & | ^ : ! #`) on MessagePack tuples, with Tarantool
//! 2.6's argument, overflow and field-number rules. (Stub signatures; implementation pending.)

use crate::format::TupleFormat;
use spindle_types::{BoxError, BoxResult};

/// Applies an UPDATE operation list (`ops`: a MessagePack array of operation arrays) to
/// `tuple` (a MessagePack array) and returns the new tuple's bytes. Any failing operation
/// fails the whole update and leaves nothing changed. `format` resolves field names.
pub fn apply_update(
    tuple: &[u8],
    ops: &[u8],
    index_base: u32,
    format: &TupleFormat,
) -> BoxResult<Vec<u8>> {
    let _ = (tuple, ops, index_base, format);
    Err(BoxError::unknown())
}

/// Checks an UPSERT operation list for errors that Tarantool reports even when the tuple does
/// not exist yet (malformed ops, unknown op codes, wrong arity).
pub fn check_upsert_ops(ops: &[u8], index_base: u32) -> BoxResult<()> {
    let _ = (ops, index_base);
    Ok(())
}

/// Applies UPSERT operations to an existing tuple. Errors in individual operations are
/// skipped (the operation is ignored), as Tarantool does; returns the new tuple's bytes.
pub fn apply_upsert(
    tuple: &[u8],
    ops: &[u8],
    index_base: u32,
    format: &TupleFormat,
) -> Vec<u8> {
    let _ = (ops, index_base, format);
    tuple.to_vec()
}
