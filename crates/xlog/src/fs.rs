//! The file-system seam. Every file operation the writers and readers perform goes through
//! `LogFs`/`LogFile`, so tests can substitute an implementation that fails the Nth call,
//! tears writes or drops unsynced data (style §6.4).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::direct::DirectLog;

/// An open log file. Writes always go to the end of the file (append semantics), so after
/// `set_len` the next write continues at the new end.
pub trait LogFile {
    /// Writes the whole buffer or fails; on failure an unknown prefix may have reached the
    /// file, which is why the writer truncates back with `set_len`.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes written data durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// `write_all` and `sync_data` of the data just written, in one step where the system
    /// has one. Only for a file whose earlier contents are durable already: the real file
    /// system syncs just this write's range.
    fn write_all_durable(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_all(buf)?;
        self.sync_data()
    }
    /// Truncates (or extends) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Asks the system to start writing `len` bytes from `offset` to the device, without
    /// waiting and without any durability promise (a hint; may do nothing).
    fn start_writeback(&mut self, _offset: u64, _len: u64) {}
    /// Gives back space reserved past the written data, so that the file ends where its
    /// data does (closing a file; see `direct`).
    fn trim(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The directory operations around log files. Implementations are cheap handles (`OsFs` is
/// a unit struct; a fault-injecting one would be an `Arc`), passed by value to writers.
pub trait LogFs: Send {
    type File: LogFile + Send;
    /// Creates a file that must not exist yet (`O_CREAT|O_EXCL`), opened for appending.
    fn create_new(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing file for appending.
    fn open_append(&self, path: &Path) -> io::Result<Self::File>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes renames and creations in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The whole content of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Paths of the entries of `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
}

/// The real file system through `std::fs`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFs;

/// A file of `OsFs`.
#[derive(Debug)]
pub struct OsFile {
    file: File,
    mode: WriteMode,
}

/// How an `OsFile` writes: appending until its first durable write, then (where the file
/// system allows) overwriting preallocated zeros through `O_DIRECT` (see `direct`).
#[derive(Debug)]
enum WriteMode {
    Append,
    Direct(DirectLog),
    /// The file system refused `O_DIRECT`: durable writes append too.
    AppendOnly,
}

impl OsFile {
    fn new(file: File) -> OsFile {
        OsFile {
            file,
            mode: WriteMode::Append,
        }
    }

    /// `pwritev2(RWF_DSYNC)` at the end of an appending file: one syscall and one device
    /// flush instead of `write` plus `fdatasync`. Falls back to the two calls where the
    /// kernel or file system refuses the flag.
    fn append_durable(&mut self, mut buf: &[u8]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        while !buf.is_empty() {
            let iov = libc::iovec {
                iov_base: buf.as_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
            // SAFETY: `iov` points at `buf`, which is live and at least `iov_len` bytes long
            // for the whole call; the kernel only reads from it. Offset -1 writes at the file
            // position (the end: the file is opened for appending).
            let n = unsafe { libc::pwritev2(self.file.as_raw_fd(), &iov, 1, -1, libc::RWF_DSYNC) };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => {
                        self.file.write_all(buf)?;
                        return self.file.sync_data();
                    }
                    _ => return Err(err),
                }
            }
            buf = buf.get(n as usize..).unwrap_or_default();
        }
        Ok(())
    }

    /// The file system accepted `O_DIRECT` but refuses the writes: append instead, if no
    /// direct write went through yet (otherwise the error stands).
    fn give_up_direct(&mut self, err: io::Error, buf: &[u8]) -> io::Result<()> {
        let WriteMode::Direct(log) = std::mem::replace(&mut self.mode, WriteMode::AppendOnly)
        else {
            return Err(err);
        };
        if !log.untried() {
            self.mode = WriteMode::Direct(log);
            return Err(err);
        }
        log.disable(&self.file)?;
        self.append_durable(buf)
    }
}

impl LogFile for OsFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.mode {
            WriteMode::Direct(log) => log.write(&self.file, buf, false),
            WriteMode::Append | WriteMode::AppendOnly => self.file.write_all(buf),
        }
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The first durable write switches the file to direct overwrites of preallocated
    /// zeros (see `direct`); where that is refused, it appends with `RWF_DSYNC`.
    fn write_all_durable(&mut self, buf: &[u8]) -> io::Result<()> {
        if let WriteMode::Append = self.mode {
            self.mode = match DirectLog::enable(&self.file)? {
                Some(log) => WriteMode::Direct(log),
                None => WriteMode::AppendOnly,
            };
        }
        let result = match &mut self.mode {
            WriteMode::Direct(log) => log.write(&self.file, buf, true),
            WriteMode::Append | WriteMode::AppendOnly => return self.append_durable(buf),
        };
        match result {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.give_up_direct(e, buf),
            other => other,
        }
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        match &mut self.mode {
            WriteMode::Direct(log) => log.set_len(&self.file, len),
            WriteMode::Append | WriteMode::AppendOnly => self.file.set_len(len),
        }
    }

    fn trim(&mut self) -> io::Result<()> {
        match &mut self.mode {
            WriteMode::Direct(log) => log.trim(&self.file),
            WriteMode::Append | WriteMode::AppendOnly => Ok(()),
        }
    }

    fn start_writeback(&mut self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: a plain syscall on a descriptor we own; no memory is passed. Its result is
        // ignored: this is only a hint, and the final sync reports real errors.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
    }
}

impl LogFs for OsFs {
    type File = OsFile;

    fn create_new(&self, path: &Path) -> io::Result<OsFile> {
        // Readable too: switching to direct writes reads the partial last page back.
        OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(path)
            .map(OsFile::new)
    }

    fn open_append(&self, path: &Path) -> io::Result<OsFile> {
        OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map(OsFile::new)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.path()))
            .collect()
    }
}

/// Shared handles: lets a test keep a reference to its fault-injecting fs while a writer
/// owns another.
impl<T: LogFs + Sync> LogFs for Arc<T> {
    type File = T::File;

    fn create_new(&self, path: &Path) -> io::Result<Self::File> {
        (**self).create_new(path)
    }

    fn open_append(&self, path: &Path) -> io::Result<Self::File> {
        (**self).open_append(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        (**self).rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        (**self).remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        (**self).sync_dir(dir)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        (**self).read(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        (**self).list(dir)
    }
}
