//! Following the WAL from files on disk, the way a Tarantool relay does (§6.2): start at the
//! newest `.xlog` whose vclock is not ahead of the reader's, hand out every row after the
//! reader's vclock, move from file to file, and at the live end wait for the WAL thread to
//! write more.
//!
//! Files that are no longer the newest are sealed — the WAL never writes or cuts a file once
//! it has created the next one — and are memory-mapped. The newest file is still growing (and
//! a failed write may cut it back), so it is read with `pread` from the current offset: a
//! mapping of it could fault (SIGBUS) if the WAL truncated it underneath. A durably written
//! file is zero-filled ahead of its data, so the live file is read only up to the end the
//! WAL last published, and zeros where a block would start mean "not written (yet)".

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use tracing::{info, warn};

use spindle_types::limits::RELAY_READ_WINDOW;
use spindle_types::BoxError;
use spindle_xlog::block::{check_crc, decode_fixheader, BlockDecompressor};
use spindle_xlog::format::{EOF_MARKER, FIXHEADER_SIZE, META_LEN_MAX, ROW_MAGIC, ZROW_MAGIC};
use spindle_xlog::journal::LiveEnd;
use spindle_xlog::{decode_row_ref, scan_dir, FileType, Meta, OsFs, RowRef, Vclock};

/// Why following stopped for good.
#[derive(Debug)]
pub enum FollowError {
    /// Rows the reader needs are gone (collected or never written here).
    Gap(BoxError),
    /// A damaged file or an I/O error.
    Io(String),
}

impl std::fmt::Display for FollowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FollowError::Gap(e) => f.write_str(&e.message),
            FollowError::Io(e) => f.write_str(e),
        }
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> FollowError {
    FollowError::Io(format!("{}: {e}", path.display()))
}

enum Source {
    /// A sealed file, mapped whole.
    Mapped(Mmap),
    /// The live file: up to `window` bytes from `base`, as of the last read. The window
    /// bounds each read (a relay far behind in a large live file must not copy the rest of
    /// the file for every batch); it doubles when one block does not fit.
    Tail {
        file: File,
        base: u64,
        buf: Vec<u8>,
        window: usize,
    },
}

struct OpenFile {
    path: PathBuf,
    signature: u64,
    source: Source,
    /// Absolute offset of the next block.
    pos: u64,
    /// A newer file appeared while this one was the live file: one more full read, then
    /// move on even without an EOF marker (a crash left it torn).
    draining: bool,
}

impl OpenFile {
    /// The bytes from `pos` on, up to `live.end` if that is this file's published end.
    fn available(&mut self, live: Option<LiveEnd>) -> io::Result<&[u8]> {
        let signature = self.signature;
        match &mut self.source {
            Source::Mapped(map) => Ok(map.get(self.pos as usize..).unwrap_or_default()),
            Source::Tail {
                file,
                base,
                buf,
                window,
            } => {
                let mut len = file.metadata()?.len();
                if let Some(live) = live.filter(|l| l.signature == signature) {
                    len = len.min(live.end);
                }
                let want = len.saturating_sub(self.pos).min(*window as u64) as usize;
                if *base != self.pos || want > buf.len() {
                    buf.resize(want, 0);
                    let n = read_full_at(file, buf, self.pos)?;
                    buf.truncate(n);
                    *base = self.pos;
                }
                Ok(buf.as_slice())
            }
        }
    }
}

impl OpenFile {
    /// The read window of a live file.
    fn window(&self) -> Option<usize> {
        match &self.source {
            Source::Tail { window, .. } => Some(*window),
            Source::Mapped(_) => None,
        }
    }

    /// The bytes read last may change: read again next time.
    fn forget_read(&mut self) {
        if let Source::Tail { base, .. } = &mut self.source {
            *base = u64::MAX;
        }
    }

    /// A block larger than the window: read twice as much next time.
    fn grow_window(&mut self) {
        if let Source::Tail { window, base, .. } = &mut self.source {
            *window = window.saturating_mul(2);
            *base = u64::MAX;
        }
    }
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let target = buf.get_mut(done..).unwrap_or_default();
        match file.read_at(target, offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// What one call to [`Follower::poll`] achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Rows read (handed out or skipped as already known).
    pub rows: usize,
    /// The reader is at the live end: nothing more until the WAL writes.
    pub caught_up: bool,
}

pub struct Follower {
    dir: PathBuf,
    /// Every row up to this vclock has been handed out or was known to the reader.
    pub vclock: Vclock,
    file: Option<OpenFile>,
    /// Signature of the last file read to its end.
    last_signature: Option<u64>,
    decompressor: BlockDecompressor,
    payload: Vec<u8>,
    /// Where the WAL last said the data of the file it writes ends.
    live: Option<LiveEnd>,
}

impl Follower {
    pub fn new(dir: &Path, from: Vclock) -> Follower {
        Follower {
            dir: dir.to_path_buf(),
            vclock: from,
            file: None,
            last_signature: None,
            decompressor: BlockDecompressor::default(),
            payload: Vec::new(),
            live: None,
        }
    }

    /// What the WAL published last (read together with the watch generation waited on).
    pub fn set_live_end(&mut self, live: Option<LiveEnd>) {
        self.live = live;
    }

    /// Hands out rows after `vclock` to `visit`, up to about `max_rows` rows read. Rows of
    /// one block are handed out together, so a transaction (never split across blocks)
    /// is never cut by a batch boundary.
    pub fn poll(
        &mut self,
        max_rows: usize,
        visit: &mut dyn FnMut(&RowRef<'_>),
    ) -> Result<Progress, FollowError> {
        let mut progress = Progress::default();
        while progress.rows < max_rows {
            if self.file.is_none() && !self.open_next()? {
                progress.caught_up = true;
                return Ok(progress);
            }
            match self.read_blocks(max_rows - progress.rows, visit)? {
                Some(rows) => progress.rows += rows,
                None => {
                    progress.caught_up = true;
                    return Ok(progress);
                }
            }
        }
        Ok(progress)
    }

    /// Reads complete blocks of the open file. `Some(rows)` when it read something or moved
    /// to another file; `None` when there is nothing new yet.
    fn read_blocks(
        &mut self,
        budget: usize,
        visit: &mut dyn FnMut(&RowRef<'_>),
    ) -> Result<Option<usize>, FollowError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(Some(0));
        };
        let path = file.path.clone();
        let window = file.window();
        let data = file.available(self.live).map_err(|e| io_err(&path, e))?;
        let window_full = window.is_some_and(|w| data.len() >= w);
        let mut offset = 0usize;
        let mut rows = 0usize;
        let mut ended = false;
        let mut unwritten = false;
        while rows < budget {
            let rest = data.get(offset..).unwrap_or_default();
            if rest.len() >= 4 && rest.get(..4) == Some(&EOF_MARKER[..]) {
                ended = true;
                break;
            }
            if rest.get(..4) == Some(&[0; 4][..]) {
                // Preallocated space: not written yet, or never (a crash left it open). The
                // zeros read may turn into data, so the read cannot be reused.
                unwritten = true;
                break;
            }
            let Some((len, stored_at)) = complete_block(rest).map_err(|e| io_err(&path, e))? else {
                break;
            };
            let block = rest.get(..len).unwrap_or_default();
            rows += decode_block(
                block,
                stored_at,
                &mut self.decompressor,
                &mut self.payload,
                &mut self.vclock,
                visit,
            )
            .map_err(|e| io_err(&path, e))?;
            offset += len;
        }
        file.pos += offset as u64;
        if unwritten {
            file.forget_read();
        }
        if offset == 0 && window_full {
            file.grow_window();
            return Ok(Some(rows));
        }
        if ended || (offset == 0 && self.newer_file_exists(&path)?) {
            return self.finish_file(ended).map(|()| Some(rows));
        }
        Ok(if offset == 0 { None } else { Some(rows) })
    }

    /// The open file has no more rows (EOF marker, or a newer file exists and a last read
    /// found nothing more): close it.
    fn finish_file(&mut self, eof_marker: bool) -> Result<(), FollowError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        if !eof_marker && !file.draining && matches!(file.source, Source::Tail { .. }) {
            // The WAL may have written the last blocks just before creating the next
            // file: read once more before leaving.
            file.draining = true;
            return Ok(());
        }
        if !eof_marker {
            warn!(
                "{} ends without an EOF marker; continuing with the next file",
                file.path.display()
            );
        }
        self.last_signature = Some(file.signature);
        self.file = None;
        Ok(())
    }

    fn newer_file_exists(&self, path: &Path) -> Result<bool, FollowError> {
        let Some(file) = &self.file else {
            return Ok(false);
        };
        let files = scan_dir(&OsFs, &self.dir, FileType::Xlog).map_err(|e| io_err(path, e))?;
        Ok(files.iter().any(|(sig, _)| *sig > file.signature))
    }

    /// Opens the file to read next; false when there is none yet.
    fn open_next(&mut self) -> Result<bool, FollowError> {
        let files = scan_dir(&OsFs, &self.dir, FileType::Xlog).map_err(|e| io_err(&self.dir, e))?;
        let Some(index) = self.pick(&files)? else {
            return Ok(false);
        };
        let Some((signature, path)) = files.get(index) else {
            return Ok(false);
        };
        let meta = read_meta(path)?;
        if !not_ahead(&meta.vclock, &self.vclock) {
            return Err(self.gap(&meta.vclock));
        }
        let sealed = index + 1 < files.len();
        let (source, header_len) = open_source(path, sealed)?;
        info!("relay: reading {}", path.display());
        self.file = Some(OpenFile {
            path: path.clone(),
            signature: *signature,
            source,
            pos: header_len,
            draining: false,
        });
        Ok(true)
    }

    /// Index of the file to open: after a finished file, the next one; at the start, the
    /// newest whose vclock is not ahead of ours (the oldest one, to report the gap, if all
    /// are ahead).
    fn pick(&self, files: &[(u64, PathBuf)]) -> Result<Option<usize>, FollowError> {
        if let Some(last) = self.last_signature {
            return Ok(files.iter().position(|(sig, _)| *sig > last));
        }
        for (i, (_, path)) in files.iter().enumerate().rev() {
            if not_ahead(&read_meta(path)?.vclock, &self.vclock) {
                return Ok(Some(i));
            }
        }
        Ok((!files.is_empty()).then_some(0))
    }

    fn gap(&self, to: &Vclock) -> FollowError {
        FollowError::Gap(BoxError::xlog_gap(
            &format!("{} {}", self.vclock.signature(), self.vclock),
            &format!("{} {}", to.signature(), to),
        ))
    }
}

/// Whether a file starting at `file` holds no row the reader at `reader` would miss.
fn not_ahead(file: &Vclock, reader: &Vclock) -> bool {
    matches!(
        file.compare_ignore0(reader),
        Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
    )
}

fn read_meta(path: &Path) -> Result<Meta, FollowError> {
    let mut head = vec![0u8; META_LEN_MAX];
    let mut file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(head.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(path, e)),
        }
    }
    head.truncate(filled);
    Meta::parse(&head)
        .map(|(meta, _)| meta)
        .map_err(|e| io_err(path, e))
}

fn open_source(path: &Path, sealed: bool) -> Result<(Source, u64), FollowError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    if sealed {
        // SAFETY: a sealed xlog is never written, truncated or renamed over again (see the
        // module comment); unlinking it (GC) keeps the mapping valid.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io_err(path, e))?;
        let (_, header_len) = Meta::parse(&map).map_err(|e| io_err(path, e))?;
        return Ok((Source::Mapped(map), header_len as u64));
    }
    let mut head = vec![0u8; META_LEN_MAX];
    let n = read_full_at(&file, &mut head, 0).map_err(|e| io_err(path, e))?;
    head.truncate(n);
    let (_, header_len) = Meta::parse(&head).map_err(|e| io_err(path, e))?;
    let source = Source::Tail {
        file,
        base: u64::MAX,
        buf: Vec::new(),
        window: RELAY_READ_WINDOW,
    };
    Ok((source, header_len as u64))
}

/// If `rest` starts with a whole block: (block length, offset of its stored payload).
/// `None` when the block is not completely written yet.
fn complete_block(rest: &[u8]) -> Result<Option<(usize, usize)>, String> {
    let Some(magic) = rest.get(..4) else {
        return Ok(None);
    };
    if magic != ROW_MAGIC && magic != ZROW_MAGIC {
        return Err(format!("bad magic {magic:02x?}"));
    }
    let Some(head) = rest.get(..FIXHEADER_SIZE) else {
        return Ok(None);
    };
    let head: &[u8; FIXHEADER_SIZE] = head.try_into().map_err(|_| "short header".to_string())?;
    let fix = decode_fixheader(head)?;
    let len = usize::try_from(fix.len).map_err(|_| "block too long".to_string())?;
    let total = FIXHEADER_SIZE.saturating_add(len);
    if rest.len() < total {
        return Ok(None);
    }
    Ok(Some((total, FIXHEADER_SIZE)))
}

/// Checks and decodes one block, handing out rows after `vclock` and advancing it.
fn decode_block(
    block: &[u8],
    stored_at: usize,
    decompressor: &mut BlockDecompressor,
    payload: &mut Vec<u8>,
    vclock: &mut Vclock,
    visit: &mut dyn FnMut(&RowRef<'_>),
) -> Result<usize, String> {
    let head: &[u8; FIXHEADER_SIZE] = block
        .get(..FIXHEADER_SIZE)
        .and_then(|h| h.try_into().ok())
        .ok_or("short block")?;
    let fix = decode_fixheader(head)?;
    let stored = block.get(stored_at..).unwrap_or_default();
    check_crc(&fix, stored)?;
    let mut rows_bytes: &[u8] = if fix.compressed {
        decompressor.decompress_into(stored, payload)?;
        payload
    } else {
        stored
    };
    let mut rows = 0;
    while !rows_bytes.is_empty() {
        let row = decode_row_ref(&mut rows_bytes).map_err(|e| e.to_string())?;
        rows += 1;
        let h = &row.header;
        if h.lsn > vclock.get(h.replica_id) {
            visit(&row);
            vclock.follow(h.replica_id, h.lsn);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_types::iproto::request;
    use spindle_xlog::{Row, RowHeader, XlogWriter};

    const UUID: &str = "11111111-2222-3333-4444-555555555555";

    fn row(lsn: u64) -> Row {
        Row {
            header: RowHeader {
                req_type: request::REPLACE,
                replica_id: 1,
                lsn,
                tsn: lsn,
                timestamp: 1.0,
                ..Default::default()
            },
            body: vec![0x82, 0x10, 0xcd, 0x02, 0x00, 0x21, 0x91, lsn as u8 & 0x7f],
        }
    }

    fn vclock(lsn: u64) -> Vclock {
        let mut v = Vclock::new();
        v.set(1, lsn);
        v
    }

    /// Writes rows `from..=to` into a new xlog starting at vclock {1: from - 1}; the writer
    /// stays open (the live file).
    fn xlog(dir: &Path, from: u64, to: u64) -> XlogWriter<OsFs> {
        let meta = Meta::new(FileType::Xlog, UUID, vclock(from - 1));
        let mut w = XlogWriter::create(OsFs, dir, meta).expect("create");
        for lsn in from..=to {
            w.append_txn(&[row(lsn)]);
        }
        w.flush().expect("flush");
        w
    }

    fn sealed(dir: &Path, from: u64, to: u64) {
        xlog(dir, from, to).close().expect("close");
    }

    fn drain(f: &mut Follower) -> Result<Vec<u64>, FollowError> {
        let mut lsns = Vec::new();
        loop {
            let p = f.poll(3, &mut |r| lsns.push(r.header.lsn))?;
            if p.caught_up {
                return Ok(lsns);
            }
        }
    }

    #[test]
    fn follows_sealed_files_then_the_live_one() {
        let dir = tempfile::tempdir().expect("dir");
        sealed(dir.path(), 1, 10);
        let mut live = xlog(dir.path(), 11, 15);
        let mut f = Follower::new(dir.path(), vclock(4));
        assert_eq!(drain(&mut f).expect("rows"), (5..=15).collect::<Vec<_>>());
        for lsn in 16..=18 {
            live.append_txn(&[row(lsn)]);
        }
        live.flush().expect("flush");
        assert_eq!(drain(&mut f).expect("rows"), vec![16, 17, 18]);
        assert_eq!(f.vclock.get(1), 18);
    }

    #[test]
    fn a_live_file_larger_than_the_read_window_is_read_in_steps() {
        let dir = tempfile::tempdir().expect("dir");
        let mut live = xlog(dir.path(), 1, 1);
        let mut lsn = 1;
        while live.offset() < 3 * RELAY_READ_WINDOW as u64 / 2 {
            let rows: Vec<Row> = (1..=1000).map(|i| row(lsn + i)).collect();
            live.append_txn(&rows);
            live.flush().expect("flush");
            lsn += 1000;
        }
        let mut f = Follower::new(dir.path(), vclock(0));
        let mut seen = 0u64;
        loop {
            let p = f.poll(100_000, &mut |_| seen += 1).expect("rows");
            if p.caught_up {
                break;
            }
        }
        assert_eq!(seen, lsn);
        assert_eq!(f.vclock.get(1), lsn);
    }

    #[test]
    fn moves_on_when_the_live_file_is_rotated() {
        let dir = tempfile::tempdir().expect("dir");
        let mut first = xlog(dir.path(), 1, 3);
        let mut f = Follower::new(dir.path(), vclock(0));
        assert_eq!(drain(&mut f).expect("rows"), vec![1, 2, 3]);
        first.append_txn(&[row(4)]);
        first.flush().expect("flush");
        first.close().expect("close");
        xlog(dir.path(), 5, 6);
        assert_eq!(drain(&mut f).expect("rows"), vec![4, 5, 6]);
    }

    #[test]
    fn a_block_still_being_written_is_left_for_later() {
        let dir = tempfile::tempdir().expect("dir");
        let w = xlog(dir.path(), 1, 2);
        let path = w.path().to_path_buf();
        let full = std::fs::read(&path).expect("read");
        let mut f = Follower::new(dir.path(), vclock(0));
        assert_eq!(drain(&mut f).expect("rows"), vec![1, 2]);
        // Append a copy of the last block, cut short: not yet complete, so not read.
        let meta_len = Meta::parse(&full).expect("meta").1;
        let block = full.get(meta_len..).expect("blocks").to_vec();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        std::io::Write::write_all(&mut file, &block[..block.len() - 1]).expect("write");
        assert_eq!(drain(&mut f).expect("rows"), Vec::<u64>::new());
    }

    #[test]
    fn rows_that_are_gone_are_a_gap() {
        let dir = tempfile::tempdir().expect("dir");
        sealed(dir.path(), 50, 60);
        let mut f = Follower::new(dir.path(), vclock(10));
        match drain(&mut f) {
            Err(FollowError::Gap(e)) => {
                assert!(
                    e.message.starts_with("Missing .xlog file between LSN"),
                    "{e}"
                );
                assert_eq!(e.kind, spindle_types::ErrorKind::XlogGapError);
            }
            other => panic!("expected a gap, got {other:?}"),
        }
    }

    #[test]
    fn garbage_in_a_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("dir");
        let w = xlog(dir.path(), 1, 2);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(w.path())
            .expect("open");
        std::io::Write::write_all(&mut file, b"not a block at all").expect("write");
        let mut f = Follower::new(dir.path(), vclock(0));
        assert!(matches!(drain(&mut f), Err(FollowError::Io(_))));
    }

    /// A durably written live file is zero-filled ahead of its data: the follower reads up
    /// to the end the WAL published and takes zeros for "not written yet"; once the file is
    /// sealed with its zeros still there (a crash), it moves on to the next file.
    #[test]
    fn preallocated_zeros_are_unwritten_space() {
        let dir = tempfile::tempdir().expect("dir");
        let meta = Meta::new(FileType::Xlog, UUID, vclock(0));
        let mut w = XlogWriter::create(OsFs, dir.path(), meta).expect("create");
        let signature = w.meta().vclock.signature();
        for lsn in 1..=3 {
            w.append_txn(&[row(lsn)]);
            w.flush_durable().expect("write");
        }
        let mut f = Follower::new(dir.path(), vclock(0));
        // Without the published end the zeros are read, and recognised.
        assert_eq!(drain(&mut f).expect("rows"), vec![1, 2, 3]);
        w.append_txn(&[row(4)]);
        w.flush_durable().expect("write");
        // A stale published end holds the new row back until the next publication.
        let stale = w.offset() - 1;
        f.set_live_end(Some(LiveEnd {
            signature,
            end: stale,
        }));
        assert_eq!(drain(&mut f).expect("rows"), Vec::<u64>::new());
        f.set_live_end(Some(LiveEnd {
            signature,
            end: w.offset(),
        }));
        assert_eq!(drain(&mut f).expect("rows"), vec![4]);
        // The crash: the file stays zero-filled, and the next one starts.
        drop(w);
        sealed(dir.path(), 5, 6);
        assert_eq!(drain(&mut f).expect("rows"), vec![5, 6]);
    }
}
