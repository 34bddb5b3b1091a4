//! Test helpers: an in-memory `LogFs` with injectable faults, and row builders.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use spindle_proto::mp;

use crate::fs::{LogFile, LogFs};
use crate::row::{Row, RowHeader};

#[derive(Default)]
struct MemState {
    /// Directory entries: name -> inode. Open files hold the inode, so they follow renames
    /// as real file descriptors do.
    names: BTreeMap<PathBuf, u64>,
    inodes: BTreeMap<u64, Vec<u8>>,
    next_inode: u64,
    /// The next `write_all` writes this many bytes of its buffer, then fails.
    fail_next_write: Option<usize>,
    fail_set_len: bool,
    fail_sync: bool,
}

/// An in-memory file system; clones share the same files.
#[derive(Clone, Default)]
pub struct MemFs(Arc<Mutex<MemState>>);

impl MemFs {
    fn state(&self) -> MutexGuard<'_, MemState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state();
        st.names
            .get(path)
            .and_then(|ino| st.inodes.get(ino))
            .cloned()
    }

    /// Replaces the bytes of an existing file (a crash's leftovers, say).
    pub fn set_contents(&self, path: &Path, data: Vec<u8>) {
        let mut st = self.state();
        if let Some(ino) = st.names.get(path).copied() {
            st.inodes.insert(ino, data);
        }
    }

    pub fn fail_next_write(&self, written_prefix: usize) {
        self.state().fail_next_write = Some(written_prefix);
    }

    pub fn fail_set_len(&self, fail: bool) {
        self.state().fail_set_len = fail;
    }

    pub fn fail_sync(&self, fail: bool) {
        self.state().fail_sync = fail;
    }
}

fn injected() -> io::Error {
    io::Error::other("injected fault")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, path.display().to_string())
}

pub struct MemFile {
    fs: MemFs,
    inode: u64,
}

impl LogFile for MemFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut st = self.fs.state();
        let fail = st.fail_next_write.take();
        let file = st.inodes.entry(self.inode).or_default();
        match fail {
            Some(prefix) => {
                file.extend_from_slice(buf.get(..prefix).unwrap_or(buf));
                Err(injected())
            }
            None => {
                file.extend_from_slice(buf);
                Ok(())
            }
        }
    }

    fn sync_data(&mut self) -> io::Result<()> {
        if self.fs.state().fail_sync {
            return Err(injected());
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut st = self.fs.state();
        if st.fail_set_len {
            return Err(injected());
        }
        st.inodes
            .entry(self.inode)
            .or_default()
            .resize(len as usize, 0);
        Ok(())
    }
}

impl LogFs for MemFs {
    type File = MemFile;

    fn create_new(&self, path: &Path) -> io::Result<MemFile> {
        let mut st = self.state();
        if st.names.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
        }
        st.next_inode += 1;
        let inode = st.next_inode;
        st.names.insert(path.to_path_buf(), inode);
        st.inodes.insert(inode, Vec::new());
        Ok(MemFile {
            fs: self.clone(),
            inode,
        })
    }

    fn open_append(&self, path: &Path) -> io::Result<MemFile> {
        let inode = *self
            .state()
            .names
            .get(path)
            .ok_or_else(|| not_found(path))?;
        Ok(MemFile {
            fs: self.clone(),
            inode,
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state();
        let inode = st.names.remove(from).ok_or_else(|| not_found(from))?;
        st.names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.state()
            .names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.contents(path).ok_or_else(|| not_found(path))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(self
            .state()
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }
}

/// `{0x10: space, 0x21: [id, filler]}`, an INSERT/REPLACE body.
pub fn tuple_body(space: u64, id: u64, filler_len: usize) -> Vec<u8> {
    let mut b = Vec::new();
    mp::write_map_len(&mut b, 2);
    mp::write_uint(&mut b, 0x10);
    mp::write_uint(&mut b, space);
    mp::write_uint(&mut b, 0x21);
    mp::write_array_len(&mut b, 2);
    mp::write_uint(&mut b, id);
    mp::write_str(&mut b, &"x".repeat(filler_len));
    b
}

/// A transaction of `len` INSERT rows from replica 1 starting at `first_lsn`.
pub fn txn(first_lsn: u64, len: usize, filler_len: usize) -> Vec<Row> {
    (0..len as u64)
        .map(|i| Row {
            header: RowHeader {
                req_type: 2,
                replica_id: 1,
                lsn: first_lsn + i,
                timestamp: 1_600_000_000.25,
                tsn: first_lsn,
                is_commit: i + 1 == len as u64,
                ..RowHeader::default()
            },
            body: tuple_body(512, first_lsn + i, filler_len),
        })
        .collect()
}
