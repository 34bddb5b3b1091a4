//! Checkpoints. The TX thread captures a read view — references to the immutable tuples of
//! every persistent space, in ascending space id and primary-key order, with the vclock they
//! correspond to — and hands it to a snapshot thread that writes `<signature>.snap` through
//! `.snap.inprogress`, syncs, renames, syncs the directory, and then collects old files. The
//! TX thread only ever copies tuple references; every byte of file I/O happens elsewhere.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use spindle_memtx::frozen::FrozenTuples;
use spindle_types::iproto::request;
use spindle_xlog::{scan_dir, FileType, LogFs, Meta, Row, RowHeader, Vclock, XlogWriter};

use crate::catalog::Engine;
use crate::db::Db;

/// What a snapshot contains: the state of every persistent memtx space at `vclock`.
pub struct ReadView {
    pub vclock: Vclock,
    pub instance_uuid: String,
    /// (space id, group id, tuples in primary-key order), ascending space id.
    pub spaces: Vec<(u32, u32, FrozenTuples)>,
    /// Replicas still need the xlogs from here on (set by whoever starts the snapshot).
    pub keep_vclock: Option<Vclock>,
}

impl ReadView {
    /// Captures the view on the TX thread. Cost: one pointer copied per tuple (no reference
    /// counts touched, no tuple bytes copied).
    pub fn capture(db: &Db) -> ReadView {
        let mut spaces = Vec::new();
        for id in db.catalog.ids() {
            let Some(entry) = db.catalog.get(id) else {
                continue;
            };
            if entry.def.engine != Engine::Memtx || entry.def.temporary {
                continue;
            }
            let Ok(primary) = entry.space.primary() else {
                continue;
            };
            let tuples = primary.read_view();
            spaces.push((id, entry.def.group_id, tuples));
        }
        ReadView {
            vclock: db.vclock(),
            instance_uuid: db.instance_uuid().to_string(),
            spaces,
            keep_vclock: None,
        }
    }

    pub fn rows(&self) -> usize {
        self.spaces.iter().map(|(_, _, t)| t.len()).sum()
    }
}

/// How a finished checkpoint went, reported back to the TX thread.
#[derive(Debug)]
pub struct CheckpointOutcome {
    pub result: Result<PathBuf, String>,
    pub rows: usize,
    pub seconds: f64,
}

/// Writes the view as `<signature>.snap` in `dir` (snapshot thread). Rows are INSERTs with
/// the space id as a fixed-width uint, as Tarantool writes them.
pub fn write_snapshot<Fs: LogFs + Clone>(
    fs: &Fs,
    dir: &Path,
    view: &ReadView,
) -> std::io::Result<PathBuf> {
    let meta = Meta::new(FileType::Snap, view.instance_uuid.clone(), view.vclock);
    let mut writer = XlogWriter::create(fs.clone(), dir, meta)?;
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut lsn = 0u64;
    let mut body = Vec::new();
    for (space_id, group_id, tuples) in &view.spaces {
        for tuple in tuples.iter() {
            body.clear();
            body.extend_from_slice(&[0x82, 0x10, 0xce]);
            body.extend_from_slice(&space_id.to_be_bytes());
            body.push(0x21);
            body.extend_from_slice(tuple.data());
            let header = RowHeader {
                req_type: request::INSERT,
                lsn,
                tsn: lsn,
                timestamp,
                group_id: *group_id,
                ..Default::default()
            };
            if let Err(e) = writer.append_row(&Row {
                header,
                body: body.clone(),
            }) {
                let _ = writer.discard();
                return Err(e);
            }
            lsn += 1;
        }
    }
    writer.close()
}

/// Removes files no longer needed: snapshots beyond the newest `keep`, the `.xlog`s that
/// only older checkpoints needed, and stale `.snap.inprogress` files. `keep_vclock`, when
/// given (a replica that still needs older rows), protects the xlogs from there on.
pub fn collect_garbage<Fs: LogFs>(
    fs: &Fs,
    memtx_dir: &Path,
    wal_dir: &Path,
    keep: usize,
    keep_vclock: Option<&Vclock>,
) {
    let Ok(snaps) = scan_dir(fs, memtx_dir, FileType::Snap) else {
        return;
    };
    let keep = keep.max(1);
    let Some((oldest_kept, _)) = snaps
        .len()
        .checked_sub(keep)
        .and_then(|i| snaps.get(i))
        .or(snaps.first())
    else {
        return;
    };
    let mut horizon = *oldest_kept;
    if let Some(v) = keep_vclock {
        horizon = horizon.min(v.signature());
    }
    for (sig, path) in &snaps {
        if *sig < *oldest_kept {
            remove(fs, path);
        }
    }
    if let Ok(xlogs) = scan_dir(fs, wal_dir, FileType::Xlog) {
        // The newest xlog at or before the horizon holds rows after it: keep it and later ones.
        let first_needed = xlogs
            .iter()
            .rposition(|(sig, _)| *sig <= horizon)
            .unwrap_or(0);
        for (_, path) in xlogs.iter().take(first_needed) {
            remove(fs, path);
        }
    }
    remove_stale_inprogress(fs, memtx_dir);
}

fn remove<Fs: LogFs>(fs: &Fs, path: &Path) {
    match fs.remove(path) {
        Ok(()) => info!("removed {}", path.display()),
        Err(e) => warn!("cannot remove {}: {e}", path.display()),
    }
}

/// Removes `*.snap.inprogress` left by a checkpoint a crash interrupted.
pub fn remove_stale_inprogress<Fs: LogFs>(fs: &Fs, dir: &Path) {
    let Ok(entries) = fs.list(dir) else { return };
    for path in entries {
        if path.to_string_lossy().ends_with(".snap.inprogress") {
            remove(fs, &path);
        }
    }
}

/// The whole job of the snapshot thread: write, then collect garbage.
pub fn run_checkpoint<Fs: LogFs + Clone>(
    fs: &Fs,
    memtx_dir: &Path,
    wal_dir: &Path,
    keep: usize,
    view: ReadView,
) -> CheckpointOutcome {
    let started = std::time::Instant::now();
    let rows = view.rows();
    let existing = scan_dir(fs, memtx_dir, FileType::Snap)
        .ok()
        .and_then(|snaps| {
            snaps
                .into_iter()
                .find(|(sig, _)| *sig == view.vclock.signature())
        });
    // Nothing changed since that checkpoint: it already is this snapshot (Tarantool only
    // touches the file).
    let result = match existing {
        Some((_, path)) => Ok(path),
        None => write_snapshot(fs, memtx_dir, &view).map_err(|e| e.to_string()),
    };
    let keep_vclock = view.keep_vclock;
    drop(view);
    if result.is_ok() {
        collect_garbage(fs, memtx_dir, wal_dir, keep, keep_vclock.as_ref());
    }
    CheckpointOutcome {
        result,
        rows,
        seconds: started.elapsed().as_secs_f64(),
    }
}
