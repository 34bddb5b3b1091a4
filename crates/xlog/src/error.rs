//! Errors of the file format layer, classified by what the caller must do about them.

use std::fmt;
use std::io;

/// Everything that can go wrong while reading or writing an `.xlog`/`.snap` file.
///
/// Recovery treats the variants differently (see the spec, §8.3): a `TornTail` at the end of
/// the last xlog is a normal crash artefact and is dropped silently, while `Corrupt` in the
/// middle of a file stops startup unless `force_recovery` lets the caller `resync`.
#[derive(Debug)]
pub enum XlogError {
    /// The operating system refused a file operation.
    Io(io::Error),
    /// The text header is missing, malformed, of an unsupported version or of the wrong type.
    BadMeta { reason: String },
    /// A vclock in text or MessagePack form is malformed.
    BadVclock { reason: String },
    /// A row (xrow) could not be decoded. Raised by `decode_row`; the reader wraps it in
    /// `Corrupt` with the offset of the block that holds the row.
    BadRow { reason: String },
    /// Damage inside the file: bad magic, broken fixed header, CRC mismatch, a zstd frame
    /// that does not decode, or an undecodable row inside a complete block. `offset` is the
    /// file offset of the block.
    Corrupt { offset: u64, reason: String },
    /// The file ends inside a block (its fixed header, its payload or the EOF marker): the
    /// tail after the last complete block, typically left by a crash mid-write. `offset` is
    /// where the incomplete block starts, i.e. the end of the good data.
    TornTail { offset: u64 },
    /// Bytes follow the EOF marker that starts at `offset`.
    DataAfterEof { offset: u64 },
    /// `XlogWriter::reopen` was asked to append to a file that already holds rows; only a
    /// header-only file may be reopened. `offset` is the end of its text header.
    NotEmpty { offset: u64 },
}

impl XlogError {
    pub(crate) fn bad_meta(reason: impl Into<String>) -> Self {
        XlogError::BadMeta {
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_vclock(reason: impl Into<String>) -> Self {
        XlogError::BadVclock {
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_row(reason: impl Into<String>) -> Self {
        XlogError::BadRow {
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(offset: u64, reason: impl Into<String>) -> Self {
        XlogError::Corrupt {
            offset,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for XlogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XlogError::Io(e) => write!(f, "I/O error: {e}"),
            XlogError::BadMeta { reason } => write!(f, "invalid xlog header: {reason}"),
            XlogError::BadVclock { reason } => write!(f, "invalid vclock: {reason}"),
            XlogError::BadRow { reason } => write!(f, "invalid row: {reason}"),
            XlogError::Corrupt { offset, reason } => {
                write!(f, "corrupt block at offset {offset}: {reason}")
            }
            XlogError::TornTail { offset } => {
                write!(
                    f,
                    "file ends inside the block at offset {offset} (torn tail)"
                )
            }
            XlogError::DataAfterEof { offset } => {
                write!(f, "data after the eof marker at offset {offset}")
            }
            XlogError::NotEmpty { offset } => {
                write!(
                    f,
                    "file holds data after its header (offset {offset}); cannot reopen"
                )
            }
        }
    }
}

impl std::error::Error for XlogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            XlogError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for XlogError {
    fn from(e: io::Error) -> Self {
        XlogError::Io(e)
    }
}

pub type XlogResult<T> = Result<T, XlogError>;
