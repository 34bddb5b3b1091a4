//! Start-up: bootstrap a new instance (catalogue plus the initial checkpoint, as Tarantool
//! does) or recover an existing one from the newest snapshot and the xlogs after it.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use spindle_xlog::{scan_dir, FileType, LogFs, Meta, Row, Vclock, XlogError, XlogReader};

use crate::bootstrap;
use crate::db::{row_to_dml, Db};

pub struct RecoveryConfig {
    pub memtx_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub force_recovery: bool,
}

pub struct Recovered {
    pub db: Db,
    /// Header vclock of the newest xlog: the next xlog's `PrevVClock`.
    pub last_xlog_vclock: Option<Vclock>,
}

#[derive(Debug)]
pub struct RecoveryError(pub String);

impl std::fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail(msg: impl Into<String>) -> RecoveryError {
    RecoveryError(msg.into())
}

pub fn recover<Fs: LogFs + Clone>(
    fs: &Fs,
    cfg: &RecoveryConfig,
) -> Result<Recovered, RecoveryError> {
    let snaps = scan_dir(fs, &cfg.memtx_dir, FileType::Snap)
        .map_err(|e| fail(format!("scan {}: {e}", cfg.memtx_dir.display())))?;
    let mut db = match snaps.last() {
        Some((_, path)) => load_snapshot(fs, path)?,
        None => bootstrap_new(fs, cfg)?,
    };
    let last_xlog_vclock = replay_xlogs(fs, cfg, &mut db)?;
    Ok(Recovered {
        db,
        last_xlog_vclock,
    })
}

fn bootstrap_new<Fs: LogFs + Clone>(fs: &Fs, cfg: &RecoveryConfig) -> Result<Db, RecoveryError> {
    let instance_uuid = uuid::Uuid::new_v4().to_string();
    let cluster_uuid = uuid::Uuid::new_v4().to_string();
    let mut db = Db::new(instance_uuid.clone());
    bootstrap::preload_catalog(&mut db).map_err(|e| fail(format!("bootstrap: {e}")))?;
    bootstrap::load_system_rows(&mut db, &cluster_uuid)
        .map_err(|e| fail(format!("bootstrap: {e}")))?;
    let view = crate::checkpoint::ReadView::capture(&db);
    let path = crate::checkpoint::write_snapshot(fs, &cfg.memtx_dir, &view)
        .map_err(|e| fail(format!("initial checkpoint: {e}")))?;
    info!(
        "bootstrapped instance {instance_uuid}, replica set {cluster_uuid}; checkpoint {}",
        path.display()
    );
    Ok(db)
}

fn load_snapshot<Fs: LogFs>(fs: &Fs, path: &Path) -> Result<Db, RecoveryError> {
    let mut reader = XlogReader::open(fs, path, FileType::Snap)
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let meta = reader.meta().clone();
    let mut db = Db::new(meta.instance_uuid.clone());
    bootstrap::preload_catalog(&mut db).map_err(|e| fail(format!("catalogue: {e}")))?;
    let mut count = 0u64;
    loop {
        match reader.next_row() {
            Ok(Some(row)) => {
                apply(&mut db, &row)
                    .map_err(|e| fail(format!("{}: row {count}: {e}", path.display())))?;
                count += 1;
            }
            Ok(None) => break,
            Err(e) => return Err(fail(format!("{}: {e}", path.display()))),
        }
    }
    if !reader.has_eof_marker() {
        return Err(fail(format!(
            "snapshot {} has no EOF marker",
            path.display()
        )));
    }
    db.vclock = meta.vclock;
    info!("loaded {count} rows from {}", path.display());
    Ok(db)
}

fn apply(db: &mut Db, row: &Row) -> spindle_types::BoxResult<()> {
    let dml = row_to_dml(row)?;
    db.apply_dml(dml).map(|_| ())
}

fn replay_xlogs<Fs: LogFs>(
    fs: &Fs,
    cfg: &RecoveryConfig,
    db: &mut Db,
) -> Result<Option<Vclock>, RecoveryError> {
    let files = scan_dir(fs, &cfg.wal_dir, FileType::Xlog)
        .map_err(|e| fail(format!("scan {}: {e}", cfg.wal_dir.display())))?;
    let start = db.vclock.signature();
    // The newest file at or before the snapshot, and everything after it.
    let first = files
        .iter()
        .rposition(|(sig, _)| *sig <= start)
        .unwrap_or(0);
    let mut last_vclock = None;
    let count = files.len();
    for (i, (_, path)) in files.iter().enumerate().skip(first) {
        let is_last = i + 1 == count;
        let meta = replay_file(fs, path, db, is_last, cfg.force_recovery)?;
        last_vclock = Some(meta.vclock);
    }
    Ok(last_vclock)
}

fn replay_file<Fs: LogFs>(
    fs: &Fs,
    path: &Path,
    db: &mut Db,
    is_last: bool,
    force: bool,
) -> Result<Meta, RecoveryError> {
    let mut reader = XlogReader::open(fs, path, FileType::Xlog)
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let meta = reader.meta().clone();
    let mut applied = 0u64;
    loop {
        match reader.next_row() {
            Ok(Some(row)) => {
                let h = &row.header;
                if h.lsn <= db.vclock.get(h.replica_id) {
                    continue;
                }
                if let Err(e) = apply(db, &row) {
                    if !force {
                        return Err(fail(format!(
                            "{}: cannot apply row {{{}: {}}}: {e}",
                            path.display(),
                            h.replica_id,
                            h.lsn
                        )));
                    }
                    warn!("skipping row {{{}: {}}}: {e}", h.replica_id, h.lsn);
                }
                db.vclock.follow(h.replica_id, h.lsn);
                applied += 1;
            }
            Ok(None) => break,
            Err(XlogError::TornTail { offset }) if is_last => {
                warn!(
                    "{}: torn tail at offset {offset} cut off (file wasn't correctly closed)",
                    path.display()
                );
                break;
            }
            Err(e) if force => {
                warn!(
                    "{}: {e}; skipping damaged data (force_recovery)",
                    path.display()
                );
                if reader.resync().is_none() {
                    break;
                }
            }
            Err(e) => return Err(fail(format!("{}: {e}", path.display()))),
        }
    }
    info!("replayed {applied} rows from {}", path.display());
    Ok(meta)
}
