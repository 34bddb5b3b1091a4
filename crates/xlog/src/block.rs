//! Blocks ("xlog tx", spec §2.3–§2.5): a 19-byte fixed header followed by a payload of whole
//! rows, stored plain or as one zstd frame.

use std::io::Read;

use spindle_proto::mp;

use crate::format::{
    crc32c_tarantool, BLOCK_DECOMPRESSED_MAX, BLOCK_LEN_MAX, COMPRESS_THRESHOLD, FIXHEADER_SIZE,
    ROW_MAGIC, ZROW_MAGIC, ZSTD_LEVEL,
};

/// Turns payloads into blocks. Keeps one zstd context alive, because the WAL compresses a
/// block per group commit and building a context costs more than compressing a small block.
pub struct BlockEncoder {
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl BlockEncoder {
    pub fn new() -> BlockEncoder {
        BlockEncoder {
            compressor: zstd::bulk::Compressor::new(ZSTD_LEVEL).ok(),
        }
    }

    /// Appends one block holding `payload` (concatenated encoded rows) to `out`. Payloads
    /// that reach the compression threshold are stored as a zstd frame; if compression is
    /// unavailable the block is written plain, which every reader also accepts.
    pub fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if FIXHEADER_SIZE + payload.len() >= COMPRESS_THRESHOLD {
            if let Some(frame) = self
                .compressor
                .as_mut()
                .and_then(|c| c.compress(payload).ok())
            {
                encode_stored(ZROW_MAGIC, &frame, out);
                return;
            }
        }
        encode_stored(ROW_MAGIC, payload, out);
    }
}

impl Default for BlockEncoder {
    fn default() -> Self {
        BlockEncoder::new()
    }
}

/// Appends a fixed header describing `stored` (the payload as it lies on disk) and `stored`.
fn encode_stored(magic: [u8; 4], stored: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&magic);
    mp::write_uint(out, stored.len() as u64);
    mp::write_uint(out, 0); // CRC32P: always 0, never checked.
    mp::write_uint(out, u64::from(crc32c_tarantool(stored)));
    // Pad to exactly 19 bytes with a fixstr of zeros; at most 15 bytes are used above, so
    // the pad is 4..=12 bytes and fits a fixstr header.
    let used = out.len() - start;
    assert!(used < FIXHEADER_SIZE, "fixed header overflow: {used} bytes");
    let pad = FIXHEADER_SIZE - used;
    out.push(0xa0 | (pad - 1) as u8);
    out.resize(start + FIXHEADER_SIZE, 0);
    out.extend_from_slice(stored);
}

/// The integers of a fixed header, after the magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixHeader {
    /// Whether the payload is a zstd frame.
    pub compressed: bool,
    /// Bytes of stored payload after the fixed header.
    pub len: u64,
    /// Tarantool-variant CRC-32C of the stored payload.
    pub crc32c: u32,
}

/// Decodes a complete 19-byte fixed header whose magic is a block magic. The error is the
/// reason to report as corruption.
pub fn decode_fixheader(header: &[u8; FIXHEADER_SIZE]) -> Result<FixHeader, String> {
    let (magic, mut cur) = header.split_at(4);
    let compressed = match magic {
        m if m == ROW_MAGIC => false,
        m if m == ZROW_MAGIC => true,
        m => return Err(format!("bad magic {m:02x?}")),
    };
    let broken = |what: &str| format!("broken fixed header: {what}");
    let len = mp::read_uint(&mut cur).map_err(|_| broken("length"))?;
    mp::read_uint(&mut cur).map_err(|_| broken("previous crc"))?;
    let crc = mp::read_uint(&mut cur).map_err(|_| broken("crc"))?;
    // Whatever follows must be exactly one MessagePack value ending at byte 19, or nothing.
    if !cur.is_empty() && mp::check(cur) != Ok(cur.len()) {
        return Err(broken("padding"));
    }
    if len > BLOCK_LEN_MAX {
        return Err(format!("block length {len} too large"));
    }
    let crc32c = u32::try_from(crc).map_err(|_| broken("crc out of range"))?;
    Ok(FixHeader {
        compressed,
        len,
        crc32c,
    })
}

/// Checks the Tarantool-variant CRC of a stored (possibly compressed) payload.
pub fn check_crc(head: &FixHeader, stored: &[u8]) -> Result<(), String> {
    let actual = crc32c_tarantool(stored);
    if actual != head.crc32c {
        return Err(format!(
            "checksum mismatch: stored {:#010x}, computed {actual:#010x}",
            head.crc32c
        ));
    }
    Ok(())
}

/// Streams one zstd frame; the frame may omit its content size, as Tarantool's do.
/// A zstd decompression context and output buffer reused across blocks (creating a context
/// per block dominated decoding small blocks).
pub struct BlockDecompressor {
    ctx: Option<zstd::bulk::Decompressor<'static>>,
}

impl Default for BlockDecompressor {
    fn default() -> Self {
        BlockDecompressor {
            ctx: zstd::bulk::Decompressor::new().ok(),
        }
    }
}

impl BlockDecompressor {
    /// Decompresses one block's frame into `out` (cleared first). The frame carries no
    /// content size, so the output buffer grows until the frame fits, up to the limit.
    pub fn decompress_into(&mut self, stored: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let Some(ctx) = self.ctx.as_mut() else {
            *out = decompress(stored)?;
            return Ok(());
        };
        let mut capacity = out
            .capacity()
            .max(stored.len().saturating_mul(4))
            .max(256 * 1024);
        loop {
            out.clear();
            out.reserve(capacity);
            match ctx.decompress_to_buffer(stored, out) {
                Ok(_) => return Ok(()),
                Err(_) if (capacity as u64) < BLOCK_DECOMPRESSED_MAX => {
                    capacity = capacity
                        .saturating_mul(2)
                        .min(BLOCK_DECOMPRESSED_MAX as usize);
                }
                Err(e) => return Err(format!("zstd: {e}")),
            }
        }
    }
}

pub fn decompress(stored: &[u8]) -> Result<Vec<u8>, String> {
    let decoder =
        zstd::stream::read::Decoder::with_buffer(stored).map_err(|e| format!("zstd: {e}"))?;
    let mut out = Vec::new();
    decoder
        .take(BLOCK_DECOMPRESSED_MAX + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    if out.len() as u64 > BLOCK_DECOMPRESSED_MAX {
        return Err("decompressed block too large".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unpack_payload(head: &FixHeader, stored: &[u8]) -> Result<Vec<u8>, String> {
        check_crc(head, stored)?;
        if head.compressed {
            decompress(stored)
        } else {
            Ok(stored.to_vec())
        }
    }

    fn header_of(block: &[u8]) -> FixHeader {
        let head: [u8; FIXHEADER_SIZE] = block[..FIXHEADER_SIZE].try_into().unwrap();
        decode_fixheader(&head).unwrap()
    }

    /// Spec §2.8: the first block of a fresh instance, byte for byte.
    #[test]
    fn annotated_first_block_is_byte_exact() {
        let payload = [
            0x84, 0x00, 0x03, 0x02, 0x01, 0x03, 0x01, 0x04, 0xcb, 0x41, 0xda, 0xc0, 0x4a, 0xb5,
            0x6a, 0x27, 0x69, 0x82, 0x10, 0xcd, 0x01, 0x38, 0x21, 0x95, 0x01, 0x00, 0xa4, 0x72,
            0x6f, 0x6c, 0x65, 0x03, 0x04,
        ];
        assert_eq!(payload.len(), 0x21);
        assert_eq!(crc32c_tarantool(&payload), 0x33bd_38a5);
        let mut out = Vec::new();
        BlockEncoder::new().encode(&payload, &mut out);
        let expected_head = [
            0xd5, 0xba, 0x0b, 0xab, 0x21, 0x00, 0xce, 0x33, 0xbd, 0x38, 0xa5, 0xa7, 0, 0, 0, 0, 0,
            0, 0,
        ];
        assert_eq!(&out[..FIXHEADER_SIZE], &expected_head);
        assert_eq!(&out[FIXHEADER_SIZE..], &payload);
    }

    /// Spec §2.3: a header with a 2-byte length shrinks the padding.
    #[test]
    fn wide_length_shrinks_padding() {
        let head = [
            0xd5, 0xba, 0x0b, 0xba, 0xcd, 0x06, 0xe4, 0x00, 0xce, 0x9b, 0x5e, 0x0e, 0x81, 0xa5, 0,
            0, 0, 0, 0,
        ];
        let fix = decode_fixheader(&head).unwrap();
        assert_eq!(
            fix,
            FixHeader {
                compressed: true,
                len: 0x06e4,
                crc32c: 0x9b5e_0e81
            }
        );
    }

    #[test]
    fn small_blocks_stay_plain_and_big_ones_compress() {
        let mut enc = BlockEncoder::new();
        let small = vec![0x80u8; COMPRESS_THRESHOLD - FIXHEADER_SIZE - 1];
        let mut out = Vec::new();
        enc.encode(&small, &mut out);
        assert_eq!(&out[..4], &ROW_MAGIC);
        assert_eq!(out.len(), FIXHEADER_SIZE + small.len());

        let big = vec![0x80u8; COMPRESS_THRESHOLD - FIXHEADER_SIZE];
        let mut out = Vec::new();
        enc.encode(&big, &mut out);
        assert_eq!(&out[..4], &ZROW_MAGIC);
        let head = header_of(&out);
        assert_eq!(head.len as usize, out.len() - FIXHEADER_SIZE);
        assert_eq!(unpack_payload(&head, &out[FIXHEADER_SIZE..]).unwrap(), big);
    }

    #[test]
    fn broken_fixed_headers_are_refused() {
        let mut good = Vec::new();
        BlockEncoder::new().encode(&[0x80], &mut good);
        let mut bad_magic = good.clone();
        bad_magic[3] = 0xac;
        let mut crc_bytes = Vec::new();
        mp::write_uint(&mut crc_bytes, u64::from(crc32c_tarantool(&[0x80])));
        let pad_at = 4 + 1 + 1 + crc_bytes.len();
        assert_eq!(good[pad_at] & 0xe0, 0xa0, "fixstr header of the padding");
        let mut bad_pad = good.clone();
        bad_pad[pad_at] = 0xbf; // the fixstr now claims more bytes than remain
        let mut bad_len = good.clone();
        bad_len[4] = 0xc1;
        for bad in [bad_magic, bad_pad, bad_len] {
            let head: [u8; FIXHEADER_SIZE] = bad[..FIXHEADER_SIZE].try_into().unwrap();
            assert!(decode_fixheader(&head).is_err());
        }
        let head = header_of(&good);
        assert!(unpack_payload(&head, &[0x81])
            .unwrap_err()
            .contains("checksum"));
    }

    proptest! {
        #[test]
        fn blocks_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..6000),
                             repeat in 1usize..4) {
            // Repeating makes some payloads compressible, so both magics are exercised.
            let payload = payload.repeat(repeat);
            let mut out = Vec::new();
            BlockEncoder::new().encode(&payload, &mut out);
            let head = header_of(&out);
            prop_assert_eq!(head.compressed, payload.len() + FIXHEADER_SIZE >= COMPRESS_THRESHOLD);
            prop_assert_eq!(head.len as usize + FIXHEADER_SIZE, out.len());
            prop_assert_eq!(unpack_payload(&head, &out[FIXHEADER_SIZE..]).unwrap(), payload);
        }

        #[test]
        fn garbage_headers_never_panic(bytes in proptest::array::uniform19(any::<u8>()),
                                       compressed in any::<bool>(),
                                       stored in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_fixheader(&bytes);
            let head = FixHeader { compressed, len: stored.len() as u64,
                                   crc32c: crc32c_tarantool(&stored) };
            let _ = unpack_payload(&head, &stored);
        }
    }
}
