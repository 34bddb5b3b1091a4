//! The file-system seam. Every file operation the writers and readers perform goes through
//! `LogFs`/`LogFile`, so tests can substitute an implementation that fails the Nth call,
//! tears writes or drops unsynced data (style §6.4).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open log file. Writes always go to the end of the file (append semantics), so after
/// `set_len` the next write continues at the new end.
pub trait LogFile {
    /// Writes the whole buffer or fails; on failure an unknown prefix may have reached the
    /// file, which is why the writer truncates back with `set_len`.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes written data durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Truncates (or extends) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
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
pub struct OsFile(File);

impl LogFile for OsFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl LogFs for OsFs {
    type File = OsFile;

    fn create_new(&self, path: &Path) -> io::Result<OsFile> {
        OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map(OsFile)
    }

    fn open_append(&self, path: &Path) -> io::Result<OsFile> {
        OpenOptions::new().append(true).open(path).map(OsFile)
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
