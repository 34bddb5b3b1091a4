//! A fault-injecting, crash-simulating in-memory file system for durability tests.
//!
//! `FaultFs` implements `LogFs`/`LogFile` entirely in memory and models the two things a
//! crash test needs, simply but honestly:
//!
//! - **What is durable.** Every file (inode) keeps the bytes written so far — the page cache —
//!   and the image the device holds as of its last successful `sync_data`. Directory entries
//!   (creations, renames, removals) reach the device only when `sync_dir` of their directory
//!   succeeds. [`FaultFs::crash`] turns that into the file system a restarted process sees:
//!   [`CrashKind::ProcessCrash`] keeps everything written (the kernel survives the process),
//!   [`CrashKind::PowerLoss`] keeps only synced bytes and synced directory entries, optionally
//!   with a random (seeded) prefix of each file's un-synced tail on top — a torn write.
//! - **Failures.** A [`FaultPlan`] fails the Nth call of an operation, once or from then on:
//!   `write_all` (optionally after a prefix of the buffer reached the file: a short, torn
//!   write), `sync_data`, `set_len`, `create_new`/`open_append`, `rename`, `remove`, `sync_dir`
//!   and `read`. A failed `sync_data` leaves the data in the page cache but not on the device,
//!   as on Linux. [`FaultFs::corrupt`] flips bits of a file in place (media corruption).
//!
//! Clones share one state (an `Arc<Mutex<..>>`), so a test keeps a handle while the WAL thread,
//! a snapshot thread and recovery use others. Open files follow their inode across renames, as
//! file descriptors do. Directories are implicit: a directory is the set of paths whose parent
//! it is, so `list` of an unknown directory is empty rather than an error.
//!
//! Everything random (where a power loss tears a file) comes from the seed given to
//! [`FaultFs::new`], so a test that replays the same operations gets the same image.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::{LogFile, LogFs};

/// A small, fast, seedable PRNG (SplitMix64). Deterministic across platforms and versions,
/// which is all a fault plan or a workload generator needs.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: bias is below 2^-64 * n, irrelevant here.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// A uniformly chosen element; None for an empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }

    /// A new generator whose sequence does not overlap this one's in practice.
    pub fn fork(&mut self) -> SimRng {
        SimRng(self.next_u64() ^ 0x6a09_e667_f3bc_c909)
    }
}

/// The operations a fault can target; each has its own call counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `LogFile::write_all`.
    Write,
    /// `LogFile::sync_data`.
    Sync,
    /// `LogFile::set_len`.
    SetLen,
    /// `LogFs::create_new` and `LogFs::open_append`.
    Open,
    /// `LogFs::rename`.
    Rename,
    /// `LogFs::remove`.
    Remove,
    /// `LogFs::sync_dir`.
    SyncDir,
    /// `LogFs::read`.
    Read,
}

impl Op {
    pub const ALL: [Op; 8] = [
        Op::Write,
        Op::Sync,
        Op::SetLen,
        Op::Open,
        Op::Rename,
        Op::Remove,
        Op::SyncDir,
        Op::Read,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One planned failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub op: Op,
    /// Which call of `op` fails, counted from 1 since the plan was set.
    pub nth: u64,
    /// For `Op::Write`: how many bytes of the buffer reach the file before the error (a short
    /// or torn write; clamped to the buffer length). Ignored for other operations.
    pub written: usize,
    /// Fail every later call of `op` too (a dead disk), not just the `nth`.
    pub forever: bool,
}

impl Fault {
    /// The `nth` call of `op` fails, having done nothing.
    pub fn once(op: Op, nth: u64) -> Fault {
        Fault {
            op,
            nth,
            written: 0,
            forever: false,
        }
    }

    /// The `nth` `write_all` writes `written` bytes of its buffer, then fails.
    pub fn short_write(nth: u64, written: usize) -> Fault {
        Fault {
            op: Op::Write,
            nth,
            written,
            forever: false,
        }
    }

    /// The `nth` call of `op` and every later one fail.
    pub fn forever(op: Op, nth: u64) -> Fault {
        Fault {
            op,
            nth,
            written: 0,
            forever: true,
        }
    }
}

/// The faults to inject; call counters restart when a plan is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub faults: Vec<Fault>,
}

impl FaultPlan {
    pub fn none() -> FaultPlan {
        FaultPlan::default()
    }

    pub fn new(faults: Vec<Fault>) -> FaultPlan {
        FaultPlan { faults }
    }
}

/// What survives a simulated crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashKind {
    /// The process dies, the kernel does not: every byte written and every directory
    /// operation survives, synced or not.
    ProcessCrash,
    /// The machine loses power: only synced data and synced directory entries survive. With
    /// `tear`, each file additionally keeps a random prefix of what was written after its last
    /// sync (the device got part of the dirty pages).
    PowerLoss { tear: bool },
}

/// A fault that fired: which call of which operation, on which path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiredFault {
    pub fault: Fault,
    /// The call number that failed.
    pub call: u64,
    pub path: PathBuf,
}

/// One file's content.
#[derive(Clone, Debug, Default)]
struct Inode {
    /// What the page cache holds: every byte written.
    data: Vec<u8>,
    /// What the device holds, as of the last successful `sync_data`.
    synced: Vec<u8>,
    /// `data[..dirty_from] == synced[..dirty_from]`; bytes from here on may differ. Always
    /// `<= synced.len()`.
    dirty_from: usize,
}

impl Inode {
    fn sync(&mut self) {
        let keep = self.dirty_from.min(self.synced.len()).min(self.data.len());
        self.synced.truncate(keep);
        self.synced
            .extend_from_slice(self.data.get(keep..).unwrap_or_default());
        self.dirty_from = self.data.len();
    }

    /// The content after a power loss.
    fn after_power_loss(&self, tear: bool, rng: &mut SimRng) -> Vec<u8> {
        if !tear || self.data.len() <= self.dirty_from {
            return self.synced.clone();
        }
        if self.dirty_from == self.synced.len() || rng.chance(1, 2) {
            // Part of what was written since the sync reached the device.
            let cut = rng.range(self.dirty_from as u64, self.data.len() as u64) as usize;
            let mut image = self.data.get(..cut).unwrap_or_default().to_vec();
            if self.dirty_from < self.synced.len() && cut < self.synced.len() {
                // Rewritten durable data the device did not get yet keeps its old bytes.
                image.extend_from_slice(self.synced.get(cut..).unwrap_or_default());
            }
            image
        } else {
            self.synced.clone()
        }
    }
}

#[derive(Clone, Debug)]
struct State {
    /// The namespace processes see: path -> inode.
    names: BTreeMap<PathBuf, u64>,
    /// The namespace on the device, as of the last `sync_dir` of each directory.
    durable_names: BTreeMap<PathBuf, u64>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    plan: FaultPlan,
    calls: [u64; Op::ALL.len()],
    fired: Vec<FiredFault>,
    rng: SimRng,
}

impl State {
    fn new(seed: u64) -> State {
        State {
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            inodes: BTreeMap::new(),
            next_inode: 1,
            plan: FaultPlan::none(),
            calls: [0; Op::ALL.len()],
            fired: Vec::new(),
            rng: SimRng::new(seed),
        }
    }

    /// Counts a call of `op` and returns the fault planned for it, if any.
    fn check(&mut self, op: Op, path: &Path) -> Option<Fault> {
        let counter = self.calls.get_mut(op.index())?;
        *counter += 1;
        let call = *counter;
        let fault = self
            .plan
            .faults
            .iter()
            .find(|f| f.op == op && (f.nth == call || (f.forever && call > f.nth)))
            .copied()?;
        self.fired.push(FiredFault {
            fault,
            call,
            path: path.to_path_buf(),
        });
        Some(fault)
    }

    fn path_of(&self, inode: u64) -> PathBuf {
        self.names
            .iter()
            .find(|(_, i)| **i == inode)
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| PathBuf::from(format!("<inode {inode}>")))
    }

    fn inode_mut(&mut self, inode: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&inode)
            .ok_or_else(|| io::Error::other(format!("stale inode {inode}")))
    }

    /// Drops inodes no name refers to (after a crash no descriptor is open).
    fn collect_orphans(&mut self) {
        let live: std::collections::BTreeSet<u64> = self.names.values().copied().collect();
        self.inodes.retain(|ino, _| live.contains(ino));
    }
}

fn injected(op: Op, path: &Path) -> io::Error {
    io::Error::other(format!("injected {op:?} fault on {}", path.display()))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, path.display().to_string())
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// The fault-injecting file system; clones share the same files and plan.
#[derive(Clone, Debug)]
pub struct FaultFs(Arc<Mutex<State>>);

impl FaultFs {
    /// An empty file system; `seed` drives every random choice it makes (torn tails).
    pub fn new(seed: u64) -> FaultFs {
        FaultFs(Arc::new(Mutex::new(State::new(seed))))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the file system from the others.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the fault plan and restarts the call counters (faults count from now on).
    pub fn set_plan(&self, plan: FaultPlan) {
        let mut st = self.state();
        st.plan = plan;
        st.calls = [0; Op::ALL.len()];
    }

    /// Stops injecting faults.
    pub fn clear_faults(&self) {
        self.set_plan(FaultPlan::none());
    }

    /// Calls of `op` since the plan was last set.
    pub fn calls(&self, op: Op) -> u64 {
        self.state().calls.get(op.index()).copied().unwrap_or(0)
    }

    /// Every fault that fired so far, in order.
    pub fn fired(&self) -> Vec<FiredFault> {
        self.state().fired.clone()
    }

    /// The durable image after a crash of `kind`, as a new, independent file system with no
    /// faults planned. `self` is unchanged and may go on being used (by threads that have not
    /// noticed the "crash" yet); nothing they do reaches the image.
    pub fn crash(&self, kind: CrashKind) -> FaultFs {
        let mut st = self.state();
        let seed = st.rng.next_u64();
        let mut image = State::new(seed);
        image.next_inode = st.next_inode;
        match kind {
            CrashKind::ProcessCrash => {
                // The kernel keeps everything; what was not synced yet still is not.
                image.names = st.names.clone();
                image.durable_names = st.durable_names.clone();
                image.inodes = st.inodes.clone();
            }
            CrashKind::PowerLoss { tear } => {
                image.names = st.durable_names.clone();
                image.durable_names = st.durable_names.clone();
                let live: Vec<u64> = image.names.values().copied().collect();
                for ino in live {
                    let Some(inode) = st.inodes.get(&ino) else {
                        continue;
                    };
                    let inode = inode.clone();
                    let data = inode.after_power_loss(tear, &mut st.rng);
                    image.inodes.insert(
                        ino,
                        Inode {
                            dirty_from: data.len(),
                            synced: data.clone(),
                            data,
                        },
                    );
                }
            }
        }
        image.collect_orphans();
        FaultFs(Arc::new(Mutex::new(image)))
    }

    /// Flips bits of an existing file in place, in the page cache and on the device (media
    /// or firmware corruption): `content[offset] ^= mask`.
    pub fn corrupt(&self, path: &Path, offset: usize, mask: u8) -> io::Result<()> {
        let mut st = self.state();
        let ino = *st.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = st.inode_mut(ino)?;
        let mut hit = false;
        for bytes in [&mut inode.data, &mut inode.synced] {
            if let Some(b) = bytes.get_mut(offset) {
                *b ^= mask;
                hit = true;
            }
        }
        if hit {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: offset {offset} is past the end", path.display()),
            ))
        }
    }

    /// Every path, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.state().names.keys().cloned().collect()
    }

    /// What a process reads from `path` (page cache included).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state();
        let ino = st.names.get(path)?;
        st.inodes.get(ino).map(|i| i.data.clone())
    }

    /// What the device holds for the file now at `path` (its last synced image).
    pub fn synced_contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state();
        let ino = st.names.get(path)?;
        st.inodes.get(ino).map(|i| i.synced.clone())
    }

    /// True if `path` names the same file on the device (its directory entry was synced).
    pub fn is_entry_durable(&self, path: &Path) -> bool {
        let st = self.state();
        st.names.contains_key(path) && st.names.get(path) == st.durable_names.get(path)
    }

    /// Creates or replaces a file with `data`, durable at once (test set-up).
    pub fn put(&self, path: &Path, data: &[u8]) {
        let mut st = self.state();
        let ino = st.next_inode;
        st.next_inode += 1;
        st.inodes.insert(
            ino,
            Inode {
                data: data.to_vec(),
                synced: data.to_vec(),
                dirty_from: data.len(),
            },
        );
        st.names.insert(path.to_path_buf(), ino);
        st.durable_names.insert(path.to_path_buf(), ino);
    }
}

/// An open file of a `FaultFs`: a handle on an inode (it follows renames and outlives
/// removal, like a file descriptor).
#[derive(Debug)]
pub struct FaultFile {
    fs: FaultFs,
    inode: u64,
}

impl LogFile for FaultFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut st = self.fs.state();
        let path = st.path_of(self.inode);
        let fault = st.check(Op::Write, &path);
        let inode = st.inode_mut(self.inode)?;
        let end = inode.data.len();
        inode.dirty_from = inode.dirty_from.min(end);
        match fault {
            Some(f) => {
                let written = f.written.min(buf.len());
                inode
                    .data
                    .extend_from_slice(buf.get(..written).unwrap_or_default());
                Err(injected(Op::Write, &path))
            }
            None => {
                inode.data.extend_from_slice(buf);
                Ok(())
            }
        }
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut st = self.fs.state();
        let path = st.path_of(self.inode);
        if st.check(Op::Sync, &path).is_some() {
            // Linux may mark the dirty pages clean after a failed writeback: the page cache
            // keeps the data, the device never gets it.
            return Err(injected(Op::Sync, &path));
        }
        st.inode_mut(self.inode)?.sync();
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut st = self.fs.state();
        let path = st.path_of(self.inode);
        if st.check(Op::SetLen, &path).is_some() {
            return Err(injected(Op::SetLen, &path));
        }
        let len = usize::try_from(len).map_err(|_| io::Error::other("length too big"))?;
        let inode = st.inode_mut(self.inode)?;
        inode.dirty_from = inode.dirty_from.min(len).min(inode.data.len());
        inode.data.resize(len, 0);
        Ok(())
    }
}

impl LogFs for FaultFs {
    type File = FaultFile;

    fn create_new(&self, path: &Path) -> io::Result<FaultFile> {
        let mut st = self.state();
        if st.check(Op::Open, path).is_some() {
            return Err(injected(Op::Open, path));
        }
        if st.names.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        let inode = st.next_inode;
        st.next_inode += 1;
        st.inodes.insert(inode, Inode::default());
        st.names.insert(path.to_path_buf(), inode);
        Ok(FaultFile {
            fs: self.clone(),
            inode,
        })
    }

    fn open_append(&self, path: &Path) -> io::Result<FaultFile> {
        let mut st = self.state();
        if st.check(Op::Open, path).is_some() {
            return Err(injected(Op::Open, path));
        }
        let inode = *st.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(FaultFile {
            fs: self.clone(),
            inode,
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state();
        if st.check(Op::Rename, from).is_some() {
            return Err(injected(Op::Rename, from));
        }
        let inode = st.names.remove(from).ok_or_else(|| not_found(from))?;
        // rename(2) replaces an existing target atomically.
        st.names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        if st.check(Op::Remove, path).is_some() {
            return Err(injected(Op::Remove, path));
        }
        st.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state();
        if st.check(Op::SyncDir, dir).is_some() {
            return Err(injected(Op::SyncDir, dir));
        }
        st.durable_names.retain(|p, _| parent(p) != dir);
        let entries: Vec<(PathBuf, u64)> = st
            .names
            .iter()
            .filter(|(p, _)| parent(p) == dir)
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        st.durable_names.extend(entries);
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut st = self.state();
        if st.check(Op::Read, path).is_some() {
            return Err(injected(Op::Read, path));
        }
        let ino = *st.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(st
            .inodes
            .get(&ino)
            .map(|i| i.data.clone())
            .unwrap_or_default())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(self
            .state()
            .names
            .keys()
            .filter(|p| parent(p) == dir)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::XlogError;
    use crate::format::FileType;
    use crate::meta::Meta;
    use crate::reader::XlogReader;
    use crate::testutil::txn;
    use crate::vclock::Vclock;
    use crate::writer::XlogWriter;

    fn dir() -> &'static Path {
        Path::new("/d")
    }

    fn p(name: &str) -> PathBuf {
        dir().join(name)
    }

    fn file_with(fs: &FaultFs, name: &str, data: &[u8], sync: bool) -> FaultFile {
        let mut f = fs.create_new(&p(name)).unwrap();
        f.write_all(data).unwrap();
        if sync {
            f.sync_data().unwrap();
        }
        f
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (SimRng::new(7), SimRng::new(7));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut r = SimRng::new(1);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v = r.range(3, 7);
            assert!((3..=7).contains(&v));
            seen[(v - 3) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(r.below(0), 0);
        assert_eq!(r.range(5, 2), 5);
        assert_ne!(SimRng::new(1).next_u64(), SimRng::new(2).next_u64());
    }

    #[test]
    fn reads_writes_renames_and_lists() {
        let fs = FaultFs::new(1);
        let mut f = file_with(&fs, "a.tmp", b"hello", false);
        fs.rename(&p("a.tmp"), &p("a")).unwrap();
        // The open file follows its inode across the rename.
        f.write_all(b" world").unwrap();
        assert_eq!(fs.read(&p("a")).unwrap(), b"hello world");
        assert_eq!(
            fs.read(&p("a.tmp")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        f.set_len(5).unwrap();
        f.write_all(b"!").unwrap();
        assert_eq!(fs.contents(&p("a")).unwrap(), b"hello!");
        assert_eq!(
            fs.create_new(&p("a")).err().map(|e| e.kind()),
            Some(io::ErrorKind::AlreadyExists)
        );
        file_with(&fs, "b", b"", false);
        fs.put(Path::new("/other/c"), b"x");
        assert_eq!(fs.list(dir()).unwrap(), vec![p("a"), p("b")]);
        assert!(fs.list(Path::new("/none")).unwrap().is_empty());
        fs.remove(&p("b")).unwrap();
        assert_eq!(fs.list(dir()).unwrap(), vec![p("a")]);
        let mut g = fs.open_append(&p("a")).unwrap();
        g.write_all(b"?").unwrap();
        assert_eq!(fs.contents(&p("a")).unwrap(), b"hello!?");
    }

    #[test]
    fn process_crash_keeps_everything_written() {
        let fs = FaultFs::new(2);
        let mut f = file_with(&fs, "a", b"synced", true);
        f.write_all(b"+cached").unwrap();
        file_with(&fs, "new", b"unsynced dir entry", false);
        let image = fs.crash(CrashKind::ProcessCrash);
        assert_eq!(image.read(&p("a")).unwrap(), b"synced+cached");
        assert_eq!(image.read(&p("new")).unwrap(), b"unsynced dir entry");
        // The image is independent of the old fs.
        f.write_all(b"+late").unwrap();
        assert_eq!(image.read(&p("a")).unwrap(), b"synced+cached");
        // ... and still knows what was never synced: a power loss now loses it.
        let lost = image.crash(CrashKind::PowerLoss { tear: false });
        assert!(lost.read(&p("a")).is_err(), "directory never synced");
    }

    #[test]
    fn power_loss_keeps_only_synced_data_and_directory_entries() {
        let fs = FaultFs::new(3);
        let mut f = file_with(&fs, "a", b"durable", true);
        fs.sync_dir(dir()).unwrap();
        f.write_all(b" volatile").unwrap();
        let _g = file_with(&fs, "b", b"data synced, entry not", true);
        fs.rename(&p("a"), &p("renamed")).unwrap();
        let image = fs.crash(CrashKind::PowerLoss { tear: false });
        assert_eq!(image.paths(), vec![p("a")], "rename and create not synced");
        assert_eq!(image.read(&p("a")).unwrap(), b"durable");

        fs.sync_dir(dir()).unwrap();
        let image = fs.crash(CrashKind::PowerLoss { tear: false });
        assert_eq!(image.paths(), vec![p("b"), p("renamed")]);
        assert_eq!(image.read(&p("renamed")).unwrap(), b"durable");
        assert_eq!(image.read(&p("b")).unwrap(), b"data synced, entry not");

        // A removal is durable only after sync_dir too.
        fs.remove(&p("b")).unwrap();
        let image = fs.crash(CrashKind::PowerLoss { tear: false });
        assert_eq!(image.paths(), vec![p("b"), p("renamed")]);
        fs.sync_dir(dir()).unwrap();
        let image = fs.crash(CrashKind::PowerLoss { tear: false });
        assert_eq!(image.paths(), vec![p("renamed")]);
    }

    #[test]
    fn power_loss_tears_the_unsynced_tail_at_a_seeded_point() {
        let mut cuts = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let fs = FaultFs::new(seed);
            let mut f = file_with(&fs, "a", b"0123", true);
            fs.sync_dir(dir()).unwrap();
            f.write_all(b"456789").unwrap();
            let data = fs
                .crash(CrashKind::PowerLoss { tear: true })
                .read(&p("a"))
                .unwrap();
            assert!(
                b"0123456789".starts_with(&data) && data.len() >= 4,
                "{data:?}"
            );
            cuts.insert(data.len());
            // Same seed, same operations: same image.
            let again = FaultFs::new(seed);
            let mut f = file_with(&again, "a", b"0123", true);
            again.sync_dir(dir()).unwrap();
            f.write_all(b"456789").unwrap();
            let data2 = again.crash(CrashKind::PowerLoss { tear: true });
            assert_eq!(data2.read(&p("a")).unwrap(), data);
        }
        assert_eq!(cuts.len(), 7, "every cut 4..=10 happens: {cuts:?}");
    }

    #[test]
    fn truncation_below_the_synced_size_is_not_durable_until_synced() {
        let fs = FaultFs::new(4);
        let mut f = file_with(&fs, "a", b"abcdef", true);
        fs.sync_dir(dir()).unwrap();
        f.set_len(2).unwrap();
        f.write_all(b"XY").unwrap();
        assert_eq!(fs.contents(&p("a")).unwrap(), b"abXY");
        let image = fs.crash(CrashKind::PowerLoss { tear: false });
        assert_eq!(image.read(&p("a")).unwrap(), b"abcdef");
        f.sync_data().unwrap();
        assert_eq!(fs.synced_contents(&p("a")).unwrap(), b"abXY");
        let image = fs.crash(CrashKind::PowerLoss { tear: false });
        assert_eq!(image.read(&p("a")).unwrap(), b"abXY");
        for seed in 0..32 {
            let fs = FaultFs::new(seed);
            let mut f = file_with(&fs, "a", b"abcdef", true);
            fs.sync_dir(dir()).unwrap();
            f.set_len(2).unwrap();
            f.write_all(b"XYZW").unwrap();
            let data = fs
                .crash(CrashKind::PowerLoss { tear: true })
                .read(&p("a"))
                .unwrap();
            // Either the old durable image, or the new bytes up to some point over it.
            let ok: [&[u8]; 5] = [b"abcdef", b"abXdef", b"abXYef", b"abXYZf", b"abXYZW"];
            assert!(ok.contains(&data.as_slice()), "{data:?}");
        }
    }

    #[test]
    fn the_nth_call_fails_once_or_forever() {
        let fs = FaultFs::new(5);
        fs.set_plan(FaultPlan::new(vec![
            Fault::once(Op::Write, 2),
            Fault::forever(Op::Sync, 3),
        ]));
        let mut f = fs.create_new(&p("a")).unwrap();
        f.write_all(b"1").unwrap();
        assert!(f.write_all(b"2").is_err());
        f.write_all(b"3").unwrap();
        assert_eq!(fs.contents(&p("a")).unwrap(), b"13");
        f.sync_data().unwrap();
        f.sync_data().unwrap();
        for _ in 0..3 {
            assert!(f.sync_data().is_err());
        }
        assert_eq!(fs.calls(Op::Write), 3);
        assert_eq!(fs.calls(Op::Sync), 5);
        let fired = fs.fired();
        assert_eq!(fired.len(), 4);
        assert_eq!((fired[0].fault.op, fired[0].call), (Op::Write, 2));
        assert_eq!(fired[0].path, p("a"));
        assert_eq!((fired[3].fault.op, fired[3].call), (Op::Sync, 5));
        // A new plan restarts the counters.
        fs.clear_faults();
        f.sync_data().unwrap();
        assert_eq!(fs.calls(Op::Sync), 1);
    }

    #[test]
    fn a_failed_sync_keeps_the_page_cache_but_not_the_device() {
        let fs = FaultFs::new(6);
        let mut f = file_with(&fs, "a", b"old", true);
        fs.sync_dir(dir()).unwrap();
        fs.set_plan(FaultPlan::new(vec![Fault::once(Op::Sync, 1)]));
        f.write_all(b"+new").unwrap();
        assert!(f.sync_data().is_err());
        assert_eq!(fs.contents(&p("a")).unwrap(), b"old+new");
        assert_eq!(fs.synced_contents(&p("a")).unwrap(), b"old");
        let lost = fs.crash(CrashKind::PowerLoss { tear: false });
        assert_eq!(lost.read(&p("a")).unwrap(), b"old");
        let kept = fs.crash(CrashKind::ProcessCrash);
        assert_eq!(kept.read(&p("a")).unwrap(), b"old+new");
    }

    #[test]
    fn short_writes_and_other_operations_fail_as_planned() {
        let fs = FaultFs::new(7);
        fs.set_plan(FaultPlan::new(vec![
            Fault::short_write(1, 3),
            Fault::short_write(2, 100),
            Fault::once(Op::Open, 2),
            Fault::once(Op::Rename, 1),
            Fault::once(Op::SetLen, 1),
            Fault::once(Op::Remove, 1),
            Fault::once(Op::SyncDir, 1),
            Fault::once(Op::Read, 1),
        ]));
        let mut f = fs.create_new(&p("a")).unwrap();
        assert!(f.write_all(b"abcdef").is_err());
        assert_eq!(fs.contents(&p("a")).unwrap(), b"abc");
        assert!(
            f.write_all(b"xy").is_err(),
            "fails even when all of it got written"
        );
        assert_eq!(fs.contents(&p("a")).unwrap(), b"abcxy");
        assert!(fs.create_new(&p("b")).is_err());
        assert!(
            fs.list(dir()).unwrap() == vec![p("a")],
            "a failed create leaves no file"
        );
        assert!(fs.rename(&p("a"), &p("c")).is_err());
        assert!(f.set_len(0).is_err());
        assert!(fs.remove(&p("a")).is_err());
        assert!(fs.sync_dir(dir()).is_err());
        assert!(fs.read(&p("a")).is_err());
        assert_eq!(fs.read(&p("a")).unwrap(), b"abcxy");
        let image = fs.crash(CrashKind::PowerLoss { tear: false });
        assert!(
            image.paths().is_empty(),
            "the failed sync_dir made nothing durable"
        );
        assert_eq!(fs.fired().len(), 8);
    }

    #[test]
    fn corrupt_flips_bits_in_cache_and_on_the_device() {
        let fs = FaultFs::new(8);
        let _f = file_with(&fs, "a", b"abc", true);
        fs.corrupt(&p("a"), 1, 0x20).unwrap();
        assert_eq!(fs.contents(&p("a")).unwrap(), b"aBc");
        assert_eq!(fs.synced_contents(&p("a")).unwrap(), b"aBc");
        assert!(fs.corrupt(&p("a"), 3, 1).is_err());
        assert!(fs.corrupt(&p("zz"), 0, 1).is_err());
    }

    fn meta(sig: u64) -> Meta {
        let mut vclock = Vclock::new();
        vclock.follow(1, sig);
        Meta::new(
            FileType::Xlog,
            "8a2c2e4a-5f36-4a1e-9d3b-2f1c0e6b7a10",
            vclock,
        )
    }

    /// The xlog writer on top: what a torn write of the last group leaves is a torn tail the
    /// reader recognises, and a failed write is truncated away.
    #[test]
    fn xlog_writer_torn_tail_after_power_loss() {
        for seed in 0..40 {
            let fs = FaultFs::new(seed);
            let mut w = XlogWriter::create(fs.clone(), dir(), meta(0)).unwrap();
            let path = w.path().to_path_buf();
            assert!(
                fs.is_entry_durable(&path),
                "xlog header and entry synced on create"
            );
            w.append_txn(&txn(1, 3, 10));
            w.flush().unwrap();
            w.sync().unwrap();
            w.append_txn(&txn(4, 2, 3000));
            w.flush().unwrap();
            let image = fs.crash(CrashKind::PowerLoss { tear: true });
            let mut r = XlogReader::open(&image, &path, FileType::Xlog).unwrap();
            let mut lsns = Vec::new();
            let end = loop {
                match r.next_row() {
                    Ok(Some(row)) => lsns.push(row.header.lsn),
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            match end {
                None => assert!(lsns == [1, 2, 3] || lsns == [1, 2, 3, 4, 5], "{lsns:?}"),
                Some(XlogError::TornTail { .. }) => assert_eq!(lsns, [1, 2, 3]),
                Some(e) => panic!("seed {seed}: {e}"),
            }
        }
    }

    #[test]
    fn xlog_writer_truncates_a_short_write() {
        let fs = FaultFs::new(9);
        let mut w = XlogWriter::create(fs.clone(), dir(), meta(0)).unwrap();
        let path = w.path().to_path_buf();
        w.append_txn(&txn(1, 2, 10));
        w.flush().unwrap();
        let good = fs.contents(&path).unwrap();
        fs.set_plan(FaultPlan::new(vec![Fault::short_write(1, 25)]));
        w.append_txn(&txn(3, 2, 10));
        assert!(w.flush().is_err());
        assert_eq!(fs.contents(&path).unwrap(), good, "truncated back");
        assert!(!w.is_broken());
        w.append_txn(&txn(3, 1, 10));
        w.flush().unwrap();
        w.close().unwrap();
        let image = fs.crash(CrashKind::ProcessCrash);
        let mut r = XlogReader::open(&image, &path, FileType::Xlog).unwrap();
        let mut lsns = Vec::new();
        while let Some(row) = r.next_row().unwrap() {
            lsns.push(row.header.lsn);
        }
        assert_eq!(lsns, [1, 2, 3]);
        assert!(r.has_eof_marker());
    }
}
