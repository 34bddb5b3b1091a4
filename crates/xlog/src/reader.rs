//! Reading `.xlog` and `.snap` files block by block (spec §2.3–§2.7, §8.3).
//!
//! The reader tells apart the three ways a file can end badly: a torn tail (`TornTail`: the
//! file stops inside a block, which a crash mid-write leaves behind), damage (`Corrupt`: bad
//! magic, broken fixed header, CRC mismatch, undecodable row) and bytes after the EOF marker
//! (`DataAfterEof`). Zeros where a block would start are the preallocated, never written
//! part of a file a crash left open (see `direct`): the end of the data if nothing but zeros
//! follows, a torn tail otherwise. Errors are sticky: calling again returns the same error until the
//! caller `resync`s past the damage (force-recovery mode).

use std::ops::Range;
use std::path::Path;

use crate::block::{check_crc, decode_fixheader, BlockDecompressor, FixHeader};
use crate::error::{XlogError, XlogResult};
use crate::format::{FileType, EOF_MARKER, FIXHEADER_SIZE, ROW_MAGIC, ZROW_MAGIC};
use crate::fs::LogFs;
use crate::meta::Meta;
use crate::row::{decode_row, decode_row_ref, Row, RowRef};

/// All rows of one block.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// File offset of the block's fixed header.
    pub offset: u64,
    /// Whether the payload was stored as a zstd frame.
    pub compressed: bool,
    pub rows: Vec<Row>,
}

/// Where the rows of the block being read live.
enum Payload {
    /// A plain block: a range of the file bytes.
    Plain(Range<usize>),
    /// A decompressed zstd block.
    Owned(Vec<u8>),
}

/// The block whose rows are being handed out.
struct CurrentBlock {
    offset: u64,
    compressed: bool,
    payload: Payload,
    /// Offset of the next row inside the payload.
    cursor: usize,
}

/// A file held in memory, read row by row or block by block.
pub struct XlogReader {
    data: Vec<u8>,
    meta: Meta,
    header_len: usize,
    /// Offset of the next block to load.
    pos: usize,
    current: Option<CurrentBlock>,
    eof_marker: bool,
    decompressor: BlockDecompressor,
    /// The buffer of the last decompressed block, reused for the next one.
    spare: Vec<u8>,
}

impl XlogReader {
    /// Parses the header of `data` (a whole file of either type).
    pub fn new(data: Vec<u8>) -> XlogResult<XlogReader> {
        let (meta, header_len) = Meta::parse(&data)?;
        Ok(XlogReader {
            data,
            meta,
            header_len,
            pos: header_len,
            current: None,
            eof_marker: false,
            decompressor: BlockDecompressor::default(),
            spare: Vec::new(),
        })
    }

    /// Like `new`, but the header's filetype must be `expected` (Tarantool's
    /// ER_INVALID_XLOG_TYPE).
    pub fn with_type(data: Vec<u8>, expected: FileType) -> XlogResult<XlogReader> {
        let reader = XlogReader::new(data)?;
        if reader.meta.filetype != expected {
            return Err(XlogError::bad_meta(format!(
                "filetype {} where {expected} was expected",
                reader.meta.filetype
            )));
        }
        Ok(reader)
    }

    /// Reads the file at `path` through `fs` and checks its filetype.
    pub fn open<Fs: LogFs + ?Sized>(
        fs: &Fs,
        path: &Path,
        expected: FileType,
    ) -> XlogResult<XlogReader> {
        XlogReader::with_type(fs.read(path)?, expected)
    }

    /// The whole file.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Length of the text header: the offset of the first block.
    pub fn header_len(&self) -> u64 {
        self.header_len as u64
    }

    /// Offset of the next block not yet loaded. After a clean end it is the file length;
    /// after an error it is the offset of the offending block.
    pub fn offset(&self) -> u64 {
        self.pos as u64
    }

    /// Offset of the block whose rows `next_row` is handing out, if any.
    pub fn block_offset(&self) -> Option<u64> {
        self.current.as_ref().map(|c| c.offset)
    }

    /// Whether the EOF marker has been reached (meaningful once reading returned `None`).
    pub fn has_eof_marker(&self) -> bool {
        self.eof_marker
    }

    /// The next row, `None` at the end of data (check `has_eof_marker`).
    pub fn next_row(&mut self) -> XlogResult<Option<Row>> {
        loop {
            if let Some(row) = self.next_row_in_block()? {
                return Ok(Some(row));
            }
            if !self.load_block()? {
                return Ok(None);
            }
        }
    }

    /// Like [`XlogReader::next_row`], but the body borrows the block instead of being
    /// copied: the fast path for recovery.
    pub fn next_row_ref(&mut self) -> XlogResult<Option<RowRef<'_>>> {
        while !self.has_row_in_block() {
            if !self.load_block()? {
                return Ok(None);
            }
        }
        let XlogReader { data, current, .. } = self;
        let Some(cur) = current.as_mut() else {
            return Ok(None);
        };
        let payload = match &cur.payload {
            Payload::Plain(range) => data.get(range.clone()).unwrap_or_default(),
            Payload::Owned(bytes) => bytes.as_slice(),
        };
        let mut tail = payload.get(cur.cursor..).unwrap_or_default();
        let before = tail.len();
        match decode_row_ref(&mut tail) {
            Ok(row) => {
                cur.cursor += before - tail.len();
                Ok(Some(row))
            }
            Err(e) => Err(XlogError::corrupt(
                cur.offset,
                format!("row at payload byte {}: {e}", cur.cursor),
            )),
        }
    }

    /// Whether the current block has rows left; an exhausted block is dropped (its buffer
    /// kept for the next decompression).
    fn has_row_in_block(&mut self) -> bool {
        let left = match &self.current {
            Some(cur) => {
                let len = match &cur.payload {
                    Payload::Plain(range) => range.len(),
                    Payload::Owned(bytes) => bytes.len(),
                };
                cur.cursor < len
            }
            None => return false,
        };
        if !left {
            if let Some(CurrentBlock {
                payload: Payload::Owned(buf),
                ..
            }) = self.current.take()
            {
                self.spare = buf;
            }
        }
        left
    }

    /// The rest of the current block, or the next whole block; `None` at the end of data.
    pub fn next_block(&mut self) -> XlogResult<Option<Block>> {
        if self.current.is_none() && !self.load_block()? {
            return Ok(None);
        }
        let (offset, compressed) = match &self.current {
            Some(c) => (c.offset, c.compressed),
            None => return Ok(None),
        };
        let mut rows = Vec::new();
        while let Some(row) = self.next_row_in_block()? {
            rows.push(row);
        }
        Ok(Some(Block {
            offset,
            compressed,
            rows,
        }))
    }

    /// Skips damage after an error, as `force_recovery` does (spec §8.3). After a bad row the
    /// rest of its block is dropped (its length is trustworthy: the CRC matched). Otherwise
    /// the file is scanned forward from just past the failing offset for the next block
    /// magic or EOF marker. Returns the offset reading resumes at, or `None` when no magic
    /// remains (reading then ends without an EOF marker).
    pub fn resync(&mut self) -> Option<u64> {
        if self.current.take().is_some() {
            return Some(self.pos as u64);
        }
        let from = self.pos.saturating_add(1).min(self.data.len());
        match find_magic(self.data.get(from..).unwrap_or_default()) {
            Some(found) => {
                self.pos = from + found;
                Some(self.pos as u64)
            }
            None => {
                self.pos = self.data.len();
                None
            }
        }
    }

    /// Decodes the next row of the current block; `None` (and the block is dropped) when the
    /// block is exhausted.
    fn next_row_in_block(&mut self) -> XlogResult<Option<Row>> {
        let Some(cur) = &mut self.current else {
            return Ok(None);
        };
        let payload = match &cur.payload {
            Payload::Plain(range) => self.data.get(range.clone()).unwrap_or_default(),
            Payload::Owned(bytes) => bytes.as_slice(),
        };
        let rest = payload.get(cur.cursor..).unwrap_or_default();
        if rest.is_empty() {
            if let Some(CurrentBlock {
                payload: Payload::Owned(buf),
                ..
            }) = self.current.take()
            {
                self.spare = buf;
            }
            return Ok(None);
        }
        let mut tail = rest;
        match decode_row(&mut tail) {
            Ok(row) => {
                cur.cursor += rest.len() - tail.len();
                Ok(Some(row))
            }
            Err(e) => Err(XlogError::corrupt(
                cur.offset,
                format!("row at payload byte {}: {e}", cur.cursor),
            )),
        }
    }

    /// Loads the block at `pos` into `current`. `false` at the end of data or at the EOF
    /// marker. On error `pos` stays at the offending block.
    fn load_block(&mut self) -> XlogResult<bool> {
        let offset = self.pos as u64;
        let rest = self.data.get(self.pos..).unwrap_or_default();
        match classify_magic(rest) {
            Magic::End => return Ok(false),
            Magic::Partial | Magic::Zeros => return Err(XlogError::TornTail { offset }),
            Magic::Unknown => return Err(XlogError::corrupt(offset, bad_magic(rest))),
            Magic::Eof if !after_eof_is_unwritten(rest) => {
                return Err(XlogError::DataAfterEof { offset })
            }
            Magic::Eof => {
                self.eof_marker = true;
                self.pos = self.data.len();
                return Ok(false);
            }
            Magic::Block => {}
        }
        let (head, stored) = split_block(rest, offset)?;
        check_crc(&head, stored).map_err(|reason| XlogError::corrupt(offset, reason))?;
        let start = self.pos + FIXHEADER_SIZE;
        let end = start + stored.len();
        let payload = if head.compressed {
            let mut out = match self.current.take() {
                Some(CurrentBlock {
                    payload: Payload::Owned(buf),
                    ..
                }) => buf,
                _ => std::mem::take(&mut self.spare),
            };
            self.decompressor
                .decompress_into(stored, &mut out)
                .map_err(|r| XlogError::corrupt(offset, r))?;
            Payload::Owned(out)
        } else {
            Payload::Plain(start..end)
        };
        self.current = Some(CurrentBlock {
            offset,
            compressed: head.compressed,
            payload,
            cursor: 0,
        });
        self.pos = end;
        Ok(true)
    }
}

/// Where one block lies in a file, found from its fixed header alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSpan {
    /// Offset of the fixed header.
    pub offset: usize,
    /// Bytes of the block, fixed header included.
    pub len: usize,
}

/// How a scan of the block sequence ended.
#[derive(Debug)]
pub enum ScanEnd {
    /// The data ended cleanly, after the EOF marker or without one.
    Clean { eof_marker: bool },
    /// The block sequence breaks here (what `XlogReader` would report at that block).
    Damage(XlogError),
}

/// Finds every block of a file from `from` (the end of the text header) without checking
/// or decoding any payload, so the blocks can be decoded in parallel. Stops at the first
/// break in the sequence, exactly where a sequential reader would stop.
pub fn scan_blocks(data: &[u8], from: usize) -> (Vec<BlockSpan>, ScanEnd) {
    let mut spans = Vec::new();
    let mut pos = from;
    loop {
        let offset = pos as u64;
        let rest = data.get(pos..).unwrap_or_default();
        let end = match classify_magic(rest) {
            Magic::End => ScanEnd::Clean { eof_marker: false },
            Magic::Partial | Magic::Zeros => ScanEnd::Damage(XlogError::TornTail { offset }),
            Magic::Unknown => ScanEnd::Damage(XlogError::corrupt(offset, bad_magic(rest))),
            Magic::Eof if !after_eof_is_unwritten(rest) => {
                ScanEnd::Damage(XlogError::DataAfterEof { offset })
            }
            Magic::Eof => ScanEnd::Clean { eof_marker: true },
            Magic::Block => match split_block(rest, offset) {
                Ok((_, stored)) => {
                    let len = FIXHEADER_SIZE + stored.len();
                    spans.push(BlockSpan { offset: pos, len });
                    pos += len;
                    continue;
                }
                Err(e) => ScanEnd::Damage(e),
            },
        };
        return (spans, end);
    }
}

/// Checks one block's CRC, decompresses it if needed (into `buf`, reused across calls) and
/// hands each row to `row`. Rows before a bad row are handed out before the error.
pub fn decode_block(
    data: &[u8],
    span: BlockSpan,
    decompressor: &mut BlockDecompressor,
    buf: &mut Vec<u8>,
    mut row: impl FnMut(RowRef<'_>),
) -> XlogResult<()> {
    let offset = span.offset as u64;
    let rest = data.get(span.offset..).unwrap_or_default();
    let (head, stored) = split_block(rest, offset)?;
    check_crc(&head, stored).map_err(|reason| XlogError::corrupt(offset, reason))?;
    let payload = if head.compressed {
        decompressor
            .decompress_into(stored, buf)
            .map_err(|r| XlogError::corrupt(offset, r))?;
        buf.as_slice()
    } else {
        stored
    };
    let mut tail = payload;
    while !tail.is_empty() {
        let at = payload.len() - tail.len();
        match decode_row_ref(&mut tail) {
            Ok(r) => row(r),
            Err(e) => {
                return Err(XlogError::corrupt(
                    offset,
                    format!("row at payload byte {at}: {e}"),
                ))
            }
        }
    }
    Ok(())
}

/// Splits a block (starting with a block magic) into its decoded fixed header and stored
/// payload. A block cut short is a torn tail, not damage.
fn split_block(rest: &[u8], offset: u64) -> XlogResult<(FixHeader, &[u8])> {
    let head_bytes: &[u8; FIXHEADER_SIZE] = rest
        .get(..FIXHEADER_SIZE)
        .and_then(|h| h.try_into().ok())
        .ok_or(XlogError::TornTail { offset })?;
    let head = decode_fixheader(head_bytes).map_err(|r| XlogError::corrupt(offset, r))?;
    let stored = usize::try_from(head.len)
        .ok()
        .and_then(|len| rest.get(FIXHEADER_SIZE..FIXHEADER_SIZE.checked_add(len)?))
        .ok_or(XlogError::TornTail { offset })?;
    Ok((head, stored))
}

/// What the bytes at a block boundary start with.
enum Magic {
    /// No bytes at all, or only zeros: preallocated space nothing was written to.
    End,
    /// Zeros, then something else: a write a crash cut short (see `direct`).
    Zeros,
    /// Fewer than 4 bytes, all a prefix of some magic: a cut-off block or EOF marker.
    Partial,
    Eof,
    Block,
    Unknown,
}

fn classify_magic(rest: &[u8]) -> Magic {
    let magics = [ROW_MAGIC, ZROW_MAGIC, EOF_MARKER];
    match rest.get(..4) {
        _ if is_unwritten(rest) => Magic::End,
        Some([0, 0, 0, 0]) => Magic::Zeros,
        None if magics.iter().any(|m| m.starts_with(rest)) => Magic::Partial,
        None => Magic::Unknown,
        Some(m) if m == EOF_MARKER => Magic::Eof,
        Some(m) if m == ROW_MAGIC || m == ZROW_MAGIC => Magic::Block,
        Some(_) => Magic::Unknown,
    }
}

/// Whether `bytes` hold nothing written: empty, or the zeros of preallocated space.
pub fn is_unwritten(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Whether what follows an EOF marker at the start of `rest` is nothing, or preallocated
/// zeros a crash kept from being cut off.
fn after_eof_is_unwritten(rest: &[u8]) -> bool {
    is_unwritten(rest.get(EOF_MARKER.len()..).unwrap_or_default())
}

fn bad_magic(rest: &[u8]) -> String {
    format!("bad magic {:02x?}", rest.get(..4).unwrap_or(rest))
}

/// Offset of the first block magic or EOF marker in `bytes`.
fn find_magic(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == ROW_MAGIC || w == ZROW_MAGIC || w == EOF_MARKER)
}
