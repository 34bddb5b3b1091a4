//! The in-memory engine (memtx). Single-threaded data structures owned by the TX thread:
//! tuples (immutable, reference-counted MessagePack arrays), key definitions and Tarantool's
//! comparison rules, TREE and HASH indexes, spaces that keep their indexes consistent, space
//! format validation and the UPDATE/UPSERT operation engine, plus frozen read views that
//! snapshot and relay threads read while TX goes on (`frozen`). Pure: no I/O, no threads.

pub mod blocks;
pub mod compare;
pub mod field_type;
pub mod format;
pub mod frozen;
pub mod index;
pub mod key_def;
mod prefetch;
pub mod space;
pub mod tuple;
pub mod update;

pub use field_type::FieldType;
