//! Writing `.xlog` and `.snap` files (spec §2.1, §2.6, §2.7).
//!
//! Rows are buffered as whole transactions and sealed into blocks; a transaction never
//! spans blocks, so a torn tail can never leave half a transaction. `flush` hands every
//! sealed block to the file in one `write_all`, so one group commit costs one write.

use std::io;
use std::path::{Path, PathBuf};

use spindle_types::limits::{LOG_WRITEBACK_BYTES, WAL_BLOCK_BYTES_MAX};

use crate::block::BlockEncoder;
use crate::error::{XlogError, XlogResult};
use crate::format::{file_name, FileType, EOF_MARKER, INPROGRESS_SUFFIX};
use crate::fs::{LogFile, LogFs};
use crate::meta::Meta;
use crate::reader::{is_unwritten, scan_blocks, ScanEnd};
use crate::row::{encode_row, Row};

/// An open log file being appended to.
pub struct XlogWriter<Fs: LogFs> {
    fs: Fs,
    file: Fs::File,
    meta: Meta,
    /// Where the file lives now: `NAME.inprogress` for a snapshot until `close`.
    path: PathBuf,
    /// The name the file has once complete.
    final_path: PathBuf,
    /// Bytes known to be in the file: the text header plus every block written successfully.
    /// A failed write is truncated back to this.
    offset: u64,
    /// Encoded rows of whole transactions, not yet sealed into a block.
    payload: Vec<u8>,
    /// Sealed blocks waiting for `flush`.
    blocks: Vec<u8>,
    /// Where the bytes not yet handed to `start_writeback` begin.
    writeback_from: u64,
    encoder: BlockEncoder,
    /// Set when a failed write or sync left the file in an unknown state; every later
    /// operation fails, because the caller can no longer know what is durable.
    broken: bool,
}

impl<Fs: LogFs> XlogWriter<Fs> {
    /// Creates `dir/<signature>.<ext>` for `meta` (the name comes from the header vclock).
    /// The file is created as `NAME.inprogress` and never over an existing file. An xlog is
    /// renamed to its final name right after the header is durable; a snapshot keeps the
    /// `.inprogress` name until `close`, so a half-written snapshot is never mistaken for a
    /// checkpoint.
    pub fn create(fs: Fs, dir: &Path, meta: Meta) -> io::Result<Self> {
        let name = file_name(meta.vclock.signature(), meta.filetype);
        let final_path = dir.join(&name);
        let tmp_path = dir.join(format!("{name}{INPROGRESS_SUFFIX}"));
        if fs.list(dir)?.contains(&final_path) {
            // rename(2) would silently replace it.
            let msg = format!("{} already exists", final_path.display());
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, msg));
        }
        let mut file = fs.create_new(&tmp_path)?;
        let mut header = Vec::new();
        meta.encode(&mut header);
        if let Err(e) = write_header(&fs, &mut file, &header, &tmp_path, &final_path, &meta) {
            // Best effort: the original error is what matters. The final name did not exist
            // before (checked above), so removing it can only undo our own rename.
            let _ = fs.remove(&tmp_path);
            if meta.filetype == FileType::Xlog {
                let _ = fs.remove(&final_path);
            }
            return Err(e);
        }
        let path = if meta.filetype == FileType::Xlog {
            final_path.clone()
        } else {
            tmp_path
        };
        Ok(XlogWriter {
            fs,
            file,
            meta,
            path,
            final_path,
            offset: header.len() as u64,
            payload: Vec::new(),
            blocks: Vec::new(),
            writeback_from: 0,
            encoder: BlockEncoder::new(),
            broken: false,
        })
    }

    /// Reopens an xlog for appending. Only a file with nothing but its header (and maybe
    /// the EOF marker of a clean shutdown, or preallocated zeros, which are cut off) can be
    /// reopened: anything else is `NotEmpty`, and the caller starts a new file instead.
    pub fn reopen(fs: Fs, path: &Path) -> XlogResult<Self> {
        let data = fs.read(path)?;
        let (meta, header_len) = Meta::parse(&data)?;
        if meta.filetype != FileType::Xlog {
            return Err(XlogError::bad_meta("only an xlog can be reopened"));
        }
        let rest = data.get(header_len..).unwrap_or_default();
        if !is_unwritten(rest.strip_prefix(&EOF_MARKER).unwrap_or(rest)) {
            return Err(XlogError::NotEmpty {
                offset: header_len as u64,
            });
        }
        let mut file = fs.open_append(path)?;
        if !rest.is_empty() {
            file.set_len(header_len as u64)?;
        }
        Ok(XlogWriter {
            fs,
            file,
            meta,
            path: path.to_path_buf(),
            final_path: path.to_path_buf(),
            offset: header_len as u64,
            payload: Vec::new(),
            blocks: Vec::new(),
            writeback_from: 0,
            encoder: BlockEncoder::new(),
            broken: false,
        })
    }

    /// Buffers one whole transaction (WAL mode); no I/O happens until `flush`. Once the
    /// buffered rows reach `WAL_BLOCK_BYTES_MAX`, the block is sealed at this transaction
    /// boundary and later transactions go to a new block.
    pub fn append_txn(&mut self, rows: &[Row]) {
        for row in rows {
            encode_row(row, &mut self.payload);
        }
        if self.payload.len() >= WAL_BLOCK_BYTES_MAX {
            self.seal_block();
        }
    }

    /// Buffers one row in "autocommit" mode (snapshots): every row is its own transaction,
    /// and the buffer is written out whenever it reaches `WAL_BLOCK_BYTES_MAX`.
    pub fn append_row(&mut self, row: &Row) -> io::Result<()> {
        encode_row(row, &mut self.payload);
        if self.payload.len() >= WAL_BLOCK_BYTES_MAX {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every buffered transaction, in as few blocks as the size limit allows, with one
    /// `write_all`. Returns the bytes written. On failure the file is truncated back to the
    /// last good offset and the buffered transactions are dropped: the caller must roll
    /// them back. If even the truncation fails the writer is broken for good.
    pub fn flush(&mut self) -> io::Result<u64> {
        self.write_blocks(false)
    }

    /// `flush` and `sync` in one step (`wal_mode = fsync`). Everything before the blocks is
    /// durable already (the header is synced when the file is created, and every earlier
    /// write of this writer went through here), so syncing just the new range suffices. A
    /// failure breaks the writer, as a failed sync does.
    pub fn flush_durable(&mut self) -> io::Result<u64> {
        self.write_blocks(true)
    }

    fn write_blocks(&mut self, durable: bool) -> io::Result<u64> {
        self.check_usable()?;
        self.seal_block();
        if self.blocks.is_empty() {
            return Ok(0);
        }
        let written = self.blocks.len() as u64;
        let result = if durable {
            self.file.write_all_durable(&self.blocks)
        } else {
            self.file.write_all(&self.blocks)
        };
        self.blocks.clear();
        match result {
            Ok(()) => {
                self.offset += written;
                if !durable {
                    self.maybe_start_writeback();
                }
                Ok(written)
            }
            Err(e) => {
                self.truncate_to_offset();
                self.broken |= durable;
                Err(e)
            }
        }
    }

    /// Makes everything flushed so far durable. A failed sync breaks the writer: after a
    /// failed fsync the kernel may have dropped the dirty pages, so nothing can be trusted.
    pub fn sync(&mut self) -> io::Result<()> {
        self.check_usable()?;
        let result = self.file.sync_data();
        self.broken |= result.is_err();
        result
    }

    /// Starts the kernel writing back what accumulated since the last call, once there is
    /// `LOG_WRITEBACK_BYTES` of it, so that the final sync has little left to wait for.
    fn maybe_start_writeback(&mut self) {
        let pending = self.offset - self.writeback_from;
        if pending >= LOG_WRITEBACK_BYTES {
            self.file.start_writeback(self.writeback_from, pending);
            self.writeback_from = self.offset;
        }
    }

    /// Drops buffered transactions that were not flushed yet (a rollback before the write).
    pub fn discard_pending(&mut self) {
        self.payload.clear();
        self.blocks.clear();
    }

    /// Finishes the file: flushes, appends the EOF marker and syncs; a snapshot then gets its
    /// final name and the directory is synced. Returns the final path.
    pub fn close(mut self) -> io::Result<PathBuf> {
        self.flush()?;
        if let Err(e) = self.file.write_all(&EOF_MARKER) {
            self.truncate_to_offset();
            return Err(e);
        }
        self.offset += EOF_MARKER.len() as u64;
        self.file.trim()?;
        self.sync()?;
        if self.path != self.final_path {
            self.fs.rename(&self.path, &self.final_path)?;
            self.fs.sync_dir(parent_dir(&self.final_path))?;
        }
        Ok(self.final_path)
    }

    /// Abandons the file and removes it (for a snapshot that failed half-way).
    pub fn discard(self) -> io::Result<()> {
        let XlogWriter { fs, file, path, .. } = self;
        drop(file);
        fs.remove(&path)
    }

    /// Bytes in the file: header plus every block written successfully.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes buffered and not yet written (rows plus sealed blocks).
    pub fn pending_bytes(&self) -> usize {
        self.payload.len() + self.blocks.len()
    }

    /// The file's current path (`.inprogress` for an unfinished snapshot).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Whether a failed truncation or sync made the writer unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn seal_block(&mut self) {
        if !self.payload.is_empty() {
            self.encoder.encode(&self.payload, &mut self.blocks);
            self.payload.clear();
        }
    }

    /// Cuts off whatever prefix of a failed write reached the file.
    fn truncate_to_offset(&mut self) {
        self.broken |= self.file.set_len(self.offset).is_err();
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(format!(
                "{}: writer unusable after a failed truncate or sync",
                self.path.display()
            )));
        }
        Ok(())
    }
}

/// Cuts the zeros a crash left preallocated after the data of the xlog at `path` (durable
/// writes keep a file zero-filled ahead of its data, see `direct`), durably; returns the bytes
/// cut. Our readers take such zeros for the end of the data, Tarantool's for damage: once
/// cut, the file reads the same to both. A tail with anything but zeros after the data (a
/// torn write) is left alone, to recovery's rules.
pub fn cut_unwritten_tail<Fs: LogFs>(fs: &Fs, path: &Path) -> io::Result<u64> {
    let data = fs.read(path)?;
    if data.last() != Some(&0) {
        return Ok(0);
    }
    let Ok((_, header_len)) = Meta::parse(&data) else {
        return Ok(0);
    };
    let (spans, end) = scan_blocks(&data, header_len);
    let mut data_end = spans.last().map_or(header_len, |s| s.offset + s.len);
    match end {
        ScanEnd::Clean { eof_marker: true } => data_end += EOF_MARKER.len(),
        ScanEnd::Clean { eof_marker: false } => {}
        ScanEnd::Damage(_) => return Ok(0),
    }
    if data_end >= data.len() {
        return Ok(0);
    }
    let mut file = fs.open_append(path)?;
    file.set_len(data_end as u64)?;
    file.sync_data()?;
    Ok((data.len() - data_end) as u64)
}

/// Writes the header and, for an xlog, makes the file durable under its final name.
fn write_header<Fs: LogFs>(
    fs: &Fs,
    file: &mut Fs::File,
    header: &[u8],
    tmp_path: &Path,
    final_path: &Path,
    meta: &Meta,
) -> io::Result<()> {
    file.write_all(header)?;
    if meta.filetype == FileType::Xlog {
        file.sync_data()?;
        fs.rename(tmp_path, final_path)?;
        fs.sync_dir(parent_dir(final_path))?;
    }
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
