//! Every on-disk constant of the format in one table (spec Appendix A), plus the two tiny
//! functions that are part of the format itself: the checksum and the file name.

use std::fmt;

/// Magic of a plain block, as the big-endian bytes on disk `d5 ba 0b ab`.
pub const ROW_MAGIC: [u8; 4] = [0xd5, 0xba, 0x0b, 0xab];
/// Magic of a zstd-compressed block: `d5 ba 0b ba`.
pub const ZROW_MAGIC: [u8; 4] = [0xd5, 0xba, 0x0b, 0xba];
/// The EOF marker written when a file is closed normally: `d5 10 ad ed`.
pub const EOF_MARKER: [u8; 4] = [0xd5, 0x10, 0xad, 0xed];
/// Every block starts with a fixed header of exactly this many bytes (padding included).
pub const FIXHEADER_SIZE: usize = 19;
/// Blocks whose fixed header plus payload reach this size are zstd-compressed.
pub const COMPRESS_THRESHOLD: usize = 2048;
/// zstd level Tarantool uses for blocks.
pub const ZSTD_LEVEL: i32 = 3;
/// Largest block payload a reader accepts (`IPROTO_BODY_LEN_MAX`).
pub const BLOCK_LEN_MAX: u64 = 1 << 31;
/// Largest decompressed payload accepted, so a hostile zstd frame cannot exhaust memory.
pub const BLOCK_DECOMPRESSED_MAX: u64 = 1 << 31;
/// Format version written in the second header line.
pub const META_VERSION: &str = "0.13";
/// Format versions a reader accepts.
pub const META_VERSIONS_ACCEPTED: [&str; 2] = ["0.12", "0.13"];
/// Tarantool's `xlog_open` reads at most this many header bytes; our writer stays below it.
pub const META_LEN_MAX: usize = 1024 + 834;
/// Longest accepted filetype line (Tarantool's limit is "shorter than 10 bytes").
pub const META_FILETYPE_LEN_MAX: usize = 9;
/// Informational server version written on the `Version:` header line.
pub const SERVER_VERSION: &str = concat!("spindle-", env!("CARGO_PKG_VERSION"));
/// Suffix of a file that is still being written.
pub const INPROGRESS_SUFFIX: &str = ".inprogress";

const _: () = assert!(COMPRESS_THRESHOLD > FIXHEADER_SIZE);
const _: () = assert!(spindle_types::limits::WAL_BLOCK_BYTES_MAX > COMPRESS_THRESHOLD);

/// The two kinds of file this crate reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    /// A write-ahead log segment (`.xlog`, filetype line `XLOG`).
    Xlog,
    /// A checkpoint (`.snap`, filetype line `SNAP`).
    Snap,
}

impl FileType {
    /// The filetype line of the text header.
    pub fn header_name(self) -> &'static str {
        match self {
            FileType::Xlog => "XLOG",
            FileType::Snap => "SNAP",
        }
    }

    /// The file name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            FileType::Xlog => "xlog",
            FileType::Snap => "snap",
        }
    }

    /// Inverse of `header_name`.
    pub fn from_header_name(name: &str) -> Option<FileType> {
        match name {
            "XLOG" => Some(FileType::Xlog),
            "SNAP" => Some(FileType::Snap),
            _ => None,
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.header_name())
    }
}

/// The final file name of a file whose header vclock has this signature (spec §2.1):
/// 20 zero-padded digits, a dot, the extension.
pub fn file_name(signature: u64, filetype: FileType) -> String {
    format!("{signature:020}.{}", filetype.extension())
}

/// Tarantool's block checksum: CRC-32C (Castagnoli) with initial register 0 and no final
/// XOR (spec §2.4). The standard CRC-32C inverts on both ends, so undo both inversions.
pub fn crc32c_tarantool(data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!0, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_not_the_standard_crc32c() {
        // "123456789" is the classic check string; the standard CRC-32C is 0xe3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_ne!(crc32c_tarantool(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c_tarantool(b""), 0);
    }

    #[test]
    fn file_names_are_zero_padded() {
        assert_eq!(file_name(13, FileType::Xlog), "00000000000000000013.xlog");
        assert_eq!(file_name(0, FileType::Snap), "00000000000000000000.snap");
    }
}
