//! Start-up: bootstrap a new instance (catalogue plus the initial checkpoint, as Tarantool
//! does) or recover an existing one from the newest snapshot and the xlogs after it.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use spindle_xlog::block::BlockDecompressor;
use spindle_xlog::{
    decode_block, scan_blocks, scan_dir, BlockSpan, FileType, LogFs, Meta, Row, RowRef, ScanEnd,
    Vclock, XlogError, XlogReader,
};

use crate::bootstrap;
use spindle_memtx::tuple::Tuple;

use crate::db::Db;
use crate::dml::{body_to_dml, row_to_dml, Dml};
use hashbrown::HashMap;
use spindle_memtx::space::ReplayPrep;

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
    crate::checkpoint::remove_stale_inprogress(fs, &cfg.memtx_dir);
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

/// Rows decoded per batch handed from the decoder thread to the applier.
const DECODE_BATCH: usize = 4096;
/// Batches the decoder may run ahead of the applier.
const DECODE_AHEAD: usize = 16;
/// A lower bound on an encoded row's size, to size a block's row vector.
const ROW_BYTES_MIN: usize = 24;

/// Threads that decode a file's blocks in parallel (when no damage has to be skipped).
/// Loading a snapshot leaves the consuming thread nearly idle, so every CPU decodes;
/// replaying a log keeps it busy applying, so one CPU is left to it — more decoders than
/// that only compete with it for the same cores.
fn decoders(filetype: FileType) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    match filetype {
        FileType::Snap => cpus,
        _ => cpus.saturating_sub(1),
    }
    .clamp(1, DECODERS_MAX)
}

/// More decoder threads than this bring nothing: the consumer cannot keep up.
const DECODERS_MAX: usize = 4;
/// A progress line every this many rows.
const PROGRESS_ROWS: u64 = 1_000_000;

/// What the decoder thread sends: rows, a read error (then, with `force`, more rows after
/// the damage), and how the file ended.
enum Decoded<T> {
    Batch(Vec<T>),
    Damage(XlogError),
    End { eof_marker: bool },
}

/// Decodes `data` (a whole file) on a separate thread — block checksums, decompression, row
/// decoding, `convert` — while the calling thread consumes the results in order. Reading
/// stops at the first error unless `force`, which skips to the next block.
fn stream_file<T, C, F>(
    data: Vec<u8>,
    filetype: FileType,
    force: bool,
    convert: C,
    mut consume: F,
) -> Result<(), RecoveryError>
where
    T: Send,
    C: Fn(RowRef<'_>) -> Option<T> + Send + Sync,
    F: FnMut(Decoded<T>) -> Result<(), RecoveryError>,
{
    if !force {
        return stream_parallel(data, filetype, convert, consume);
    }
    let (sender, receiver) = crossbeam_channel::bounded::<Decoded<T>>(DECODE_AHEAD);
    std::thread::scope(|scope| {
        scope.spawn(move || decode_into(data, filetype, force, &convert, &sender));
        for item in receiver.iter() {
            consume(item)?;
        }
        Ok(())
    })
}

/// One decoded block: its rows, and the error that stopped it early.
type BlockRows<T> = (Vec<T>, Option<XlogError>);

/// Decodes the blocks of `data` on `decoders` threads. Blocks are independent (each has its
/// own CRC and zstd frame), so block `i` goes to thread `i % decoders` and the caller takes
/// them back in file order: the same items, errors and end as the sequential reader.
fn stream_parallel<T, C, F>(
    data: Vec<u8>,
    filetype: FileType,
    convert: C,
    mut consume: F,
) -> Result<(), RecoveryError>
where
    T: Send,
    C: Fn(RowRef<'_>) -> Option<T> + Sync,
    F: FnMut(Decoded<T>) -> Result<(), RecoveryError>,
{
    let reader = match XlogReader::with_type(data, filetype) {
        Ok(r) => r,
        Err(e) => {
            consume(Decoded::Damage(e))?;
            return consume(Decoded::End { eof_marker: false });
        }
    };
    let bytes = reader.data();
    let (spans, end) = scan_blocks(bytes, reader.header_len() as usize);
    let workers = decoders(filetype).clamp(1, spans.len().max(1));
    std::thread::scope(|scope| {
        let mut receivers = Vec::with_capacity(workers);
        for first in 0..workers {
            let (sender, receiver) = crossbeam_channel::bounded::<BlockRows<T>>(DECODE_AHEAD);
            receivers.push(receiver);
            let (spans, convert) = (&spans, &convert);
            scope.spawn(move || {
                decode_blocks(
                    bytes,
                    spans.iter().skip(first).step_by(workers),
                    convert,
                    &sender,
                )
            });
        }
        for i in 0..spans.len() {
            let Some(Ok((rows, damage))) = receivers.get(i % workers).map(|r| r.recv()) else {
                break;
            };
            consume(Decoded::Batch(rows))?;
            if let Some(e) = damage {
                consume(Decoded::Damage(e))?;
                return consume(Decoded::End { eof_marker: false });
            }
        }
        match end {
            ScanEnd::Clean { eof_marker } => consume(Decoded::End { eof_marker }),
            ScanEnd::Damage(e) => {
                consume(Decoded::Damage(e))?;
                consume(Decoded::End { eof_marker: false })
            }
        }
    })
}

/// One decoder thread's share of the blocks; it stops at its first damaged block.
fn decode_blocks<'a, T, C: Fn(RowRef<'_>) -> Option<T>>(
    data: &[u8],
    spans: impl Iterator<Item = &'a BlockSpan>,
    convert: &C,
    out: &crossbeam_channel::Sender<BlockRows<T>>,
) {
    let mut decompressor = BlockDecompressor::default();
    let mut buf = Vec::new();
    for span in spans {
        // Rows are rarely shorter than this: one allocation per block.
        let mut rows = Vec::with_capacity(span.len / ROW_BYTES_MIN);
        let result = decode_block(data, *span, &mut decompressor, &mut buf, |row| {
            rows.extend(convert(row))
        });
        let damage = result.err();
        let stop = damage.is_some();
        if out.send((rows, damage)).is_err() || stop {
            return;
        }
    }
}

fn decode_into<T, C: Fn(RowRef<'_>) -> Option<T>>(
    data: Vec<u8>,
    filetype: FileType,
    force: bool,
    convert: &C,
    out: &crossbeam_channel::Sender<Decoded<T>>,
) {
    let mut reader = match XlogReader::with_type(data, filetype) {
        Ok(r) => r,
        Err(e) => {
            let _ = out.send(Decoded::Damage(e));
            return;
        }
    };
    let mut batch = Vec::with_capacity(DECODE_BATCH);
    loop {
        match reader.next_row_ref() {
            Ok(Some(row)) => {
                let Some(item) = convert(row) else { continue };
                batch.push(item);
                if batch.len() == DECODE_BATCH
                    && out
                        .send(Decoded::Batch(std::mem::replace(
                            &mut batch,
                            Vec::with_capacity(DECODE_BATCH),
                        )))
                        .is_err()
                {
                    return;
                }
            }
            Ok(None) => {
                let _ = out.send(Decoded::Batch(batch));
                let _ = out.send(Decoded::End {
                    eof_marker: reader.has_eof_marker(),
                });
                return;
            }
            Err(e) => {
                let _ = out.send(Decoded::Batch(std::mem::take(&mut batch)));
                let torn = matches!(e, XlogError::TornTail { .. });
                if out.send(Decoded::Damage(e)).is_err()
                    || torn
                    || !force
                    || reader.resync().is_none()
                {
                    let _ = out.send(Decoded::End { eof_marker: false });
                    return;
                }
            }
        }
    }
}

/// Logs a progress line every `PROGRESS_ROWS` rows.
struct Progress {
    what: String,
    rows: u64,
    started: std::time::Instant,
}

impl Progress {
    fn new(what: String) -> Progress {
        Progress {
            what,
            rows: 0,
            started: std::time::Instant::now(),
        }
    }

    fn add(&mut self, n: usize) {
        let before = self.rows / PROGRESS_ROWS;
        self.rows += n as u64;
        if self.rows / PROGRESS_ROWS != before {
            info!(
                "{}: {} rows, {:.0} rows/s",
                self.what,
                self.rows,
                self.rate()
            );
        }
    }

    fn rate(&self) -> f64 {
        self.rows as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }
}

/// A snapshot row as the decoder thread prepares it: the space and the ready tuple.
type SnapRow = Result<(u32, Tuple), String>;

fn snapshot_row(row: RowRef<'_>) -> Option<SnapRow> {
    Some(snapshot_tuple(row))
}

fn snapshot_tuple(row: RowRef<'_>) -> SnapRow {
    // The body was validated as well-formed MessagePack when the row was decoded.
    match body_to_dml(row.header.req_type, row.body) {
        Ok(Dml::Insert { space_id, tuple }) => Tuple::from_validated(tuple)
            .map(|t| (space_id, t))
            .map_err(|e| e.to_string()),
        Ok(_) => Err(format!(
            "unexpected row type {} in a snapshot",
            row.header.req_type
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Loads a snapshot. System rows go through the schema triggers one by one (they create the
/// spaces and indexes); the rows of each user space are collected and bulk-loaded, which
/// sorts once and builds every index in one pass instead of inserting tuple by tuple.
fn load_snapshot<Fs: LogFs>(fs: &Fs, path: &Path) -> Result<Db, RecoveryError> {
    let data = fs
        .read(path)
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let (meta, _) = Meta::parse(&data).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let mut db = Db::new(meta.instance_uuid.clone());
    bootstrap::preload_catalog(&mut db).map_err(|e| fail(format!("catalogue: {e}")))?;
    let mut progress = Progress::new(format!("loading {}", path.display()));
    let mut pending: Option<(u32, Vec<Tuple>)> = None;
    let mut eof = false;
    let at = |e: &dyn std::fmt::Display| fail(format!("{}: {e}", path.display()));
    stream_file(
        data,
        FileType::Snap,
        false,
        snapshot_row,
        |item| match item {
            Decoded::Batch(rows) => {
                progress.add(rows.len());
                for row in rows {
                    let (space_id, tuple) = row.map_err(|e| at(&e))?;
                    if space_id <= crate::catalog::sys::SYSTEM_ID_MAX {
                        flush_bulk(&mut db, &mut pending).map_err(|e| at(&e))?;
                        db.apply_dml(Dml::Insert {
                            space_id,
                            tuple: tuple.data(),
                        })
                        .map_err(|e| at(&e))?;
                    } else {
                        if pending.as_ref().is_some_and(|(id, _)| *id != space_id) {
                            flush_bulk(&mut db, &mut pending).map_err(|e| at(&e))?;
                        }
                        pending
                            .get_or_insert_with(|| (space_id, Vec::new()))
                            .1
                            .push(tuple);
                    }
                }
                Ok(())
            }
            Decoded::Damage(e) => Err(at(&e)),
            Decoded::End { eof_marker } => {
                eof = eof_marker;
                Ok(())
            }
        },
    )?;
    flush_bulk(&mut db, &mut pending).map_err(|e| at(&e))?;
    if !eof {
        return Err(fail(format!(
            "snapshot {} has no EOF marker",
            path.display()
        )));
    }
    db.set_vclock(meta.vclock);
    info!(
        "loaded {} rows from {} ({:.0} rows/s)",
        progress.rows,
        path.display(),
        progress.rate()
    );
    Ok(db)
}

fn flush_bulk(
    db: &mut Db,
    pending: &mut Option<(u32, Vec<Tuple>)>,
) -> spindle_types::BoxResult<()> {
    if let Some((space_id, tuples)) = pending.take() {
        let started = std::time::Instant::now();
        let count = tuples.len();
        db.catalog.space_mut(space_id)?.space.load(tuples)?;
        tracing::debug!(
            "space {space_id}: built indexes over {count} tuples in {:.3} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn apply(db: &mut Db, row: &Row) -> spindle_types::BoxResult<()> {
    // A NOP only moves the vclock (a master's rows can bring them).
    if row.header.req_type == spindle_types::iproto::request::NOP {
        return Ok(());
    }
    db.replay_dml(row_to_dml(row)?)
}

fn replay_xlogs<Fs: LogFs>(
    fs: &Fs,
    cfg: &RecoveryConfig,
    db: &mut Db,
) -> Result<Option<Vclock>, RecoveryError> {
    let files = scan_dir(fs, &cfg.wal_dir, FileType::Xlog)
        .map_err(|e| fail(format!("scan {}: {e}", cfg.wal_dir.display())))?;
    let start = db.vclock().signature();
    // The newest file at or before the snapshot, and everything after it.
    let first = files
        .iter()
        .rposition(|(sig, _)| *sig <= start)
        .unwrap_or(0);
    let mut last_vclock = None;
    let needed: Vec<&PathBuf> = files.iter().skip(first).map(|(_, p)| p).collect();
    let mut next = match needed.first() {
        Some(path) => Some(read_xlog(fs, path)?),
        None => None,
    };
    for (i, path) in needed.iter().enumerate() {
        let Some((data, meta)) = next.take() else {
            break;
        };
        next = match needed.get(i + 1) {
            Some(p) => Some(read_xlog(fs, p)?),
            None => None,
        };
        // A file ends where the next one starts: rows past the next file's vclock were
        // written by a group that then failed and was rolled back (the WAL cuts them off,
        // but a crash can come first); the next file holds the confirmed rows at those LSNs.
        let stop = next.as_ref().map(|(_, m)| m.vclock);
        replay_file(path, data, db, stop, cfg.force_recovery)?;
        last_vclock = Some(meta.vclock);
    }
    Ok(last_vclock)
}

fn read_xlog<Fs: LogFs>(fs: &Fs, path: &Path) -> Result<(Vec<u8>, Meta), RecoveryError> {
    let data = fs
        .read(path)
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let (meta, _) = Meta::parse(&data).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    Ok((data, meta))
}

/// Replays one xlog. A torn tail — the file ends inside a block — is a write interrupted by
/// a crash: nothing in it was acknowledged, so it is cut off with a warning. That holds for
/// any file, not only the last one: after such a crash the server went on in a new file (as
/// Tarantool does). Any other damage refuses the start unless `force`, which skips it.
fn replay_file(
    path: &Path,
    data: Vec<u8>,
    db: &mut Db,
    stop: Option<Vclock>,
    force: bool,
) -> Result<(), RecoveryError> {
    let start = db.vclock();
    let mut progress = Progress::new(format!("replaying {}", path.display()));
    let mut applied = 0u64;
    // Decoder threads check tuples and compute hints with the schema as it is now; rows
    // applied after a schema change in this file ignore that work.
    let preps = replay_preps(db);
    let schema = db.schema_version();
    stream_file(
        data,
        FileType::Xlog,
        force,
        // Rows the snapshot or an earlier file already has are dropped on the decoder
        // thread, before they are copied (the applier checks again as the vclock moves).
        |row| (row.header.lsn > start.get(row.header.replica_id)).then(|| prepare(row, &preps)),
        |item| match item {
            Decoded::Batch(rows) => {
                progress.add(rows.len());
                for row in rows {
                    if stop.is_some_and(|v| row.lsn > v.get(row.replica_id)) {
                        continue;
                    }
                    applied += replay_row(db, row, path, force, schema)?;
                }
                Ok(())
            }
            Decoded::Damage(XlogError::TornTail { offset }) => {
                warn!(
                    "{}: torn tail at offset {offset} cut off (file wasn't correctly closed)",
                    path.display()
                );
                Ok(())
            }
            Decoded::Damage(e) if force => {
                warn!(
                    "{}: {e}; skipping the damaged data (force_recovery)",
                    path.display()
                );
                Ok(())
            }
            Decoded::Damage(e) => Err(fail(format!(
                "{}: {e}; start with --force-recovery to skip the damaged data",
                path.display()
            ))),
            Decoded::End { .. } => Ok(()),
        },
    )?;
    info!(
        "replayed {applied} rows from {} ({:.0} rows/s)",
        path.display(),
        progress.rate()
    );
    Ok(())
}

/// An xlog row as a decoder thread prepares it for the applier.
struct Prepared {
    replica_id: u32,
    lsn: u64,
    op: PreparedOp,
}

enum PreparedOp {
    /// An INSERT or REPLACE whose tuple was built on the decoder thread, checked and
    /// hinted there too if the space has a `ReplayPrep`.
    Tuple {
        insert: bool,
        space_id: u32,
        tuple: Tuple,
        hint: Option<(u64, bool)>,
    },
    /// Anything else, applied from the row itself.
    Row(Row),
}

/// Builds the tuple of an INSERT or REPLACE on the decoder thread, so that the applier —
/// the critical path of WAL recovery — only links it into the indexes. A body that does not
/// parse stays a row: the applier reports it as it would any other.
/// The user spaces whose rows decoder threads can check and hint.
fn replay_preps(db: &Db) -> HashMap<u32, ReplayPrep> {
    db.catalog
        .ids()
        .into_iter()
        .filter(|id| *id > crate::catalog::sys::SYSTEM_ID_MAX)
        .filter_map(|id| Some((id, db.catalog.get(id)?.space.replay_prep()?)))
        .collect()
}

fn prepare(row: RowRef<'_>, preps: &HashMap<u32, ReplayPrep>) -> Prepared {
    let h = &row.header;
    let insert = h.req_type == spindle_types::iproto::request::INSERT;
    let tuple_op = insert || h.req_type == spindle_types::iproto::request::REPLACE;
    let op = match body_to_dml(h.req_type, row.body) {
        Ok(Dml::Insert { space_id, tuple } | Dml::Replace { space_id, tuple }) if tuple_op => {
            match Tuple::from_validated(tuple) {
                Ok(tuple) => PreparedOp::Tuple {
                    insert,
                    space_id,
                    hint: preps.get(&space_id).and_then(|p| p.prepare(&tuple).ok()),
                    tuple,
                },
                Err(_) => PreparedOp::Row(row.to_row()),
            }
        }
        _ => PreparedOp::Row(row.to_row()),
    };
    Prepared {
        replica_id: h.replica_id,
        lsn: h.lsn,
        op,
    }
}

/// Applies one logged row unless the snapshot or an earlier file already has it.
fn replay_row(
    db: &mut Db,
    row: Prepared,
    path: &Path,
    force: bool,
    schema: u32,
) -> Result<u64, RecoveryError> {
    let (replica_id, lsn) = (row.replica_id, row.lsn);
    if lsn <= db.vclock().get(replica_id) {
        return Ok(0);
    }
    let result = match row.op {
        PreparedOp::Tuple {
            insert,
            space_id,
            tuple,
            hint: Some(hint),
        } if db.schema_version() == schema => db.replay_prepared(insert, space_id, tuple, hint),
        PreparedOp::Tuple {
            insert,
            space_id,
            tuple,
            ..
        } => db.replay_tuple(insert, space_id, tuple),
        PreparedOp::Row(row) => apply(db, &row),
    };
    if let Err(e) = result {
        if !force {
            return Err(fail(format!(
                "{}: cannot apply row {{{replica_id}: {lsn}}}: {e}",
                path.display(),
            )));
        }
        warn!("skipping row {{{replica_id}: {lsn}}}: {e}");
    }
    db.follow(replica_id, lsn);
    Ok(1)
}
