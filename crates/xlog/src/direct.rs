//! Durable appends by overwriting: the `wal_mode = fsync` write path of a real log file.
//!
//! Appending to a file makes every `fdatasync` commit the file system journal, because the
//! file grew. Overwriting blocks that already exist needs only the data write and a cache
//! flush. On our disk (ext4 on virtio) a 2–4 KiB append plus sync took 150–200 µs and 60–70
//! µs of CPU; an `O_DIRECT` `RWF_DSYNC` overwrite took 90–110 µs and 38 µs of CPU.
//!
//! So once a file is written durably it switches to `O_DIRECT` and is kept zero-filled
//! `LOG_PREALLOC_BYTES` ahead of the data. Each write rewrites the partial last page together
//! with the new bytes, page-aligned, in one `pwritev2(RWF_DSYNC)`. Bytes past the written end
//! are zeros; readers take an all-zero rest of a file as the end of what was written, and
//! closing the file cuts them off (`trim`), so a cleanly closed file is byte-for-byte what an
//! appending writer leaves.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use spindle_types::limits::LOG_PREALLOC_BYTES;

/// Alignment of every direct write: offset, length and buffer address. A 4 KiB page covers
/// both 512-byte and 4 KiB logical block sizes.
pub(crate) const PAGE: usize = 4096;

/// A page-aligned window into an over-allocated buffer (no `unsafe` allocation needed).
#[derive(Debug, Default)]
struct Staging {
    buf: Vec<u8>,
    /// Where the aligned window starts in `buf`.
    start: usize,
}

impl Staging {
    /// An aligned window of `len` bytes (a multiple of `PAGE`) whose first `keep` bytes are
    /// those of the previous window.
    fn window(&mut self, len: usize, keep: usize) -> &mut [u8] {
        if self.buf.len() < self.start + len {
            let mut buf = vec![0u8; len + PAGE];
            let start = buf.as_ptr().align_offset(PAGE);
            if let (Some(dst), Some(src)) = (
                buf.get_mut(start..start + keep),
                self.buf.get(self.start..self.start + keep),
            ) {
                dst.copy_from_slice(src);
            }
            *self = Staging { buf, start };
        }
        self.buf
            .get_mut(self.start..self.start + len)
            .unwrap_or_default()
    }
}

/// The state of a file written through `O_DIRECT` (see the module comment).
#[derive(Debug)]
pub(crate) struct DirectLog {
    /// Bytes of log data: the logical end of the file.
    end: u64,
    /// The file's length: zeros from `end` up to here.
    len: u64,
    staging: Staging,
    /// Bytes of the partial last page (`end % PAGE`), kept at the start of the staging window.
    head: usize,
    /// A direct write succeeded.
    wrote: bool,
}

impl DirectLog {
    /// Switches `file` (opened for reading and appending, every byte of it log data) to
    /// direct, positioned writes. `Ok(None)` when the file system does not do `O_DIRECT`
    /// (tmpfs, for one): the caller keeps appending.
    pub(crate) fn enable(file: &File) -> io::Result<Option<DirectLog>> {
        let end = file.metadata()?.len();
        let mut log = DirectLog {
            end,
            len: end,
            staging: Staging::default(),
            head: 0,
            wrote: false,
        };
        log.load_head(file)?;
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own, with integer arguments only.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        // Positioned writes need O_APPEND off: with it, Linux ignores pwrite's offset.
        let direct = (flags | libc::O_DIRECT) & !libc::O_APPEND;
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, direct) } < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EINVAL | libc::EOPNOTSUPP) => Ok(None),
                _ => Err(err),
            };
        }
        Ok(Some(log))
    }

    /// Goes back to appending: cuts the zeros and restores `O_APPEND` without `O_DIRECT`. For
    /// a file system that took the flag but refuses the writes (EINVAL).
    pub(crate) fn disable(self, file: &File) -> io::Result<()> {
        file.set_len(self.end)?;
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own, with integer arguments only.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        if flags < 0
            || unsafe {
                libc::fcntl(
                    fd,
                    libc::F_SETFL,
                    (flags | libc::O_APPEND) & !libc::O_DIRECT,
                )
            } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether nothing was written since the switch (a refusal now means the file system
    /// does not do direct writes at all, not that one write failed).
    pub(crate) fn untried(&self) -> bool {
        !self.wrote
    }

    /// Reads the partial last page into the staging window (after a switch or a cut).
    fn load_head(&mut self, file: &File) -> io::Result<()> {
        self.head = (self.end % PAGE as u64) as usize;
        let start = self.end - self.head as u64;
        let window = self.staging.window(PAGE, 0);
        let mut done = 0;
        while done < self.head {
            // The whole page is read so that the read stays aligned under O_DIRECT; the
            // file ends inside it, so only `head` bytes come back.
            match file.read_at(
                window.get_mut(done..).unwrap_or_default(),
                start + done as u64,
            ) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes `data` at the logical end; `dsync` makes it durable before returning. On
    /// failure nothing is known about the pages written; the caller cuts back with `set_len`.
    pub(crate) fn write(&mut self, file: &File, data: &[u8], dsync: bool) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let start = self.end - self.head as u64;
        let total = self.head + data.len();
        let padded = total.div_ceil(PAGE) * PAGE;
        self.extend(file, start + padded as u64)?;
        let window = self.staging.window(padded, self.head);
        if let Some(dst) = window.get_mut(self.head..total) {
            dst.copy_from_slice(data);
        }
        if let Some(pad) = window.get_mut(total..) {
            pad.fill(0);
        }
        write_at(file, window, start, dsync)?;
        self.wrote = true;
        self.end += data.len() as u64;
        let last_page = total / PAGE * PAGE;
        window.copy_within(last_page..total, 0);
        self.head = total - last_page;
        Ok(())
    }

    /// Zero-fills the file up to at least `need` bytes, in `LOG_PREALLOC_BYTES` steps. Not
    /// synced: the first durable write into the new range commits the new length with it.
    fn extend(&mut self, file: &File, need: u64) -> io::Result<()> {
        if need <= self.len {
            return Ok(());
        }
        let step = LOG_PREALLOC_BYTES;
        let from = self.len.div_ceil(PAGE as u64) * PAGE as u64;
        let to = need.div_ceil(step) * step;
        // The page holding the old length (if partial) is the one the data write rewrites.
        let mut zeros = Staging::default();
        let chunk = (to - from).min(step) as usize;
        let zeros = zeros.window(chunk, 0);
        let mut at = from;
        while at < to {
            let n = ((to - at) as usize).min(zeros.len());
            write_at(file, zeros.get(..n).unwrap_or_default(), at, false)?;
            at += n as u64;
        }
        self.len = to;
        Ok(())
    }

    /// Cuts the file (and the log) to `len` bytes.
    pub(crate) fn set_len(&mut self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)?;
        self.end = len;
        self.len = len;
        self.load_head(file)
    }

    /// Gives back the zeros past the logical end.
    pub(crate) fn trim(&mut self, file: &File) -> io::Result<()> {
        if self.len > self.end {
            file.set_len(self.end)?;
            self.len = self.end;
        }
        Ok(())
    }
}

/// `pwritev2` of a whole aligned buffer at `offset`, with `RWF_DSYNC` if `dsync`.
fn write_at(file: &File, mut buf: &[u8], mut offset: u64, dsync: bool) -> io::Result<()> {
    let flags = if dsync { libc::RWF_DSYNC } else { 0 };
    while !buf.is_empty() {
        let iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let off =
            i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `iov` points at `buf`, live and `iov_len` bytes long for the whole call;
        // the kernel only reads from it.
        let n = unsafe { libc::pwritev2(file.as_raw_fd(), &iov, 1, off, flags) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // A direct write stops short only at a block boundary; anything else means the
        // device misbehaved, and the caller cuts the file back.
        let n = n as usize;
        if n == 0 || (!n.is_multiple_of(PAGE) && n < buf.len()) {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("direct write stopped after {n} bytes"),
            ));
        }
        buf = buf.get(n..).unwrap_or_default();
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Giving up on direct writes (a file system refusing them) leaves an appending file
    /// that ends at the data, zeros cut.
    #[test]
    fn disabling_goes_back_to_appending_at_the_data_end() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .unwrap()
        };
        let mut file = open();
        file.write_all(b"header").unwrap();
        let mut log = DirectLog::enable(&file)
            .unwrap()
            .expect("the temp dir's file system does direct I/O (tmpfs does not)");
        log.extend(&file, 10).unwrap();
        assert!(file.metadata().unwrap().len() > 10);
        assert!(log.untried());
        log.disable(&file).unwrap();
        file.write_all(b" and more").unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"header and more");
    }

    #[test]
    fn staging_windows_are_aligned_and_keep_their_head() {
        let mut s = Staging::default();
        let w = s.window(PAGE, 0);
        assert_eq!(w.as_ptr() as usize % PAGE, 0);
        w[..3].copy_from_slice(b"abc");
        let w = s.window(8 * PAGE, 3);
        assert_eq!(w.as_ptr() as usize % PAGE, 0);
        assert_eq!(&w[..3], b"abc");
        assert_eq!(w.len(), 8 * PAGE);
    }
}
