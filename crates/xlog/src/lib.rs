//! Tarantool 2.6 `.xlog` and `.snap` files: the pure file format, with no threads.
//!
//! This crate owns the bytes on disk and nothing else (spec: shared docs
//! `xlog-and-replication.md` §1–§3, §7, §8.3):
//! - `vclock`: the vector clock, its text form (headers) and wire form (replication);
//! - `row`: xrow headers and bodies, including the TSN/COMMIT transaction encoding;
//! - `meta`: the text header every file starts with;
//! - `block`: the 19-byte block header, the Tarantool CRC-32C variant and zstd blocks;
//! - `writer`/`reader`: appending whole transactions to a file and reading it back with
//!   precise errors (torn tail vs. corruption vs. data after the EOF marker);
//! - `fs`: the `LogFs`/`LogFile` seam all file I/O goes through, so tests can inject faults;
//! - `direct`: durable writes that overwrite preallocated zeros through `O_DIRECT`;
//! - `dir`: finding `<signature>.xlog`/`.snap` files;
//! - `journal`: the TX → WAL request and WAL → TX reply types, kept here so TX depends on
//!   the row format only, never on the WAL thread.
//!
//! Threads, group commit scheduling, rotation policy and recovery decisions belong to the
//! WAL and recovery code that uses this crate.

pub mod block;
pub mod dir;
mod direct;
pub mod error;
pub mod faultfs;
pub mod format;
pub mod fs;
pub mod journal;
pub mod meta;
pub mod reader;
pub mod row;
pub mod vclock;
pub mod writer;

pub use block::BlockEncoder;
pub use dir::{parse_file_name, scan_dir};
pub use error::{XlogError, XlogResult};
pub use format::{crc32c_tarantool, file_name, FileType};
pub use fs::{LogFile, LogFs, OsFile, OsFs};
pub use meta::Meta;
pub use reader::{decode_block, scan_blocks, Block, BlockSpan, ScanEnd, XlogReader};
pub use row::{decode_row, decode_row_ref, encode_row, encode_row_parts, Row, RowHeader, RowRef};
pub use vclock::{Vclock, VCLOCK_MAX};
pub use writer::{cut_unwritten_tail, XlogWriter};

#[cfg(test)]
mod file_tests;
#[cfg(test)]
mod testutil;
