//! The in-memory engine (memtx). Single-threaded data structures owned by the TX thread:
//! tuples (immutable, reference-counted MessagePack arrays), key definitions and Tarantool's
//! comparison rules, TREE and HASH indexes, spaces that keep their indexes consistent, space
//! format validation and the UPDATE/UPSERT operation engine. Pure: no I/O, no threads.

pub mod field_type;
pub mod tuple;
pub mod compare;
pub mod key_def;
pub mod index;
pub mod space;
pub mod format;
pub mod update;

pub use field_type::FieldType;
