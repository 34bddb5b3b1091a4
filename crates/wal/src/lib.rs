//! The WAL thread. It takes every journal batch queued since its last write (group commit),
//! stamps the rows, appends them to the current `.xlog` as whole transactions, syncs per
//! `wal_mode` (`write`: the write itself; `fsync`: plus fdatasync), and answers the TX thread
//! with one "written up to LSN" message per group. A failed write or sync cuts the file back
//! to its last confirmed byte (durably, before TX answers ER_WAL_IO, so a restart never
//! replays a rolled-back transaction), fails the whole epoch (TX rolls back everything it had
//! in flight) and the thread carries on with a fresh file. Files rotate at `wal_max_size`;
//! the shutdown request closes the current file with its EOF marker.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use tracing::{error, info, warn};

use spindle_fiber::{spawn_cord, Bus};
use spindle_xlog::format::INPROGRESS_SUFFIX;
use spindle_xlog::journal::{Acks, JournalReply, JournalRequest, JournalTxn, LiveEnd, WalTip};
use spindle_xlog::{
    cut_unwritten_tail, file_name, scan_dir, FileType, LogFile, LogFs, Meta, Vclock, XlogWriter,
};

/// The WAL's "new rows" notification: the vclock written so far, and where the data of the
/// file being written ends.
pub type WalWatch = spindle_fiber::Watch<WalTip>;

/// Whether each group commit is fdatasync'ed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    Write,
    Fsync,
}

#[derive(Clone, Debug)]
pub struct WalConfig {
    pub dir: PathBuf,
    pub sync: SyncMode,
    pub max_size: u64,
    pub instance_uuid: String,
}

/// Counters the server reports (commits per fsync is rows/transactions over syncs).
#[derive(Default, Debug)]
pub struct WalStats {
    pub txns: AtomicU64,
    pub rows: AtomicU64,
    pub batches: AtomicU64,
    pub syncs: AtomicU64,
    pub bytes: AtomicU64,
    /// Highest LSN written; relays will follow it.
    pub written_lsn: AtomicU64,
    /// The vclock written so far, published after every write (relays, appliers' ACKs).
    pub watch: Arc<WalWatch>,
}

impl WalStats {
    pub fn summary(&self) -> String {
        format!(
            "rows={} batches={} fsyncs={} txns={} bytes={}",
            self.rows.load(Ordering::Relaxed),
            self.batches.load(Ordering::Relaxed),
            self.syncs.load(Ordering::Relaxed),
            self.txns.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

pub struct WalHandle {
    pub sender: Sender<JournalRequest>,
    pub stats: Arc<WalStats>,
    thread: JoinHandle<()>,
}

impl WalHandle {
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Starts the WAL thread. `vclock` is the instance vclock after recovery; `prev` is the
/// header vclock of the newest existing xlog (written as `PrevVClock` of the next file).
pub fn start<M, Fs>(
    fs: Fs,
    cfg: WalConfig,
    vclock: Vclock,
    prev: Option<Vclock>,
    bus: Bus<M>,
) -> io::Result<WalHandle>
where
    M: From<JournalReply> + Send + 'static,
    Fs: LogFs + Clone + 'static,
{
    if let Err(e) = cut_newest_tail(&fs, &cfg.dir) {
        warn!("could not cut the preallocated tail of the newest xlog: {e}");
    }
    let (sender, receiver) = crossbeam_channel::unbounded();
    let stats = Arc::new(WalStats::default());
    stats.watch.publish(WalTip { vclock, live: None });
    let wal = Wal {
        fs,
        cfg,
        vclock,
        prev,
        writer: None,
        failed_epoch: None,
        dirty: None,
        confirmed: 0,
        stats: stats.clone(),
    };
    let thread = spawn_cord("wal", move || wal.run(receiver, bus))?;
    Ok(WalHandle {
        sender,
        stats,
        thread,
    })
}

/// Cuts the preallocated zeros a crash left at the end of the newest xlog (see
/// `spindle_xlog::cut_unwritten_tail`).
fn cut_newest_tail<Fs: LogFs>(fs: &Fs, dir: &Path) -> io::Result<()> {
    let Some((_, path)) = scan_dir(fs, dir, FileType::Xlog)?.pop() else {
        return Ok(());
    };
    let cut = cut_unwritten_tail(fs, &path)?;
    if cut > 0 {
        info!("cut {cut} preallocated bytes off {}", path.display());
    }
    Ok(())
}

struct Wal<Fs: LogFs + Clone> {
    fs: Fs,
    cfg: WalConfig,
    vclock: Vclock,
    prev: Option<Vclock>,
    writer: Option<XlogWriter<Fs>>,
    failed_epoch: Option<u64>,
    /// A file a failed write or sync left unconfirmed bytes in, and the length of its
    /// confirmed part. It is cut back (and the cut synced) before anything else is written,
    /// so recovery never replays a rolled-back transaction.
    dirty: Option<(PathBuf, u64)>,
    /// Length of the current file before the group being written.
    confirmed: u64,
    stats: Arc<WalStats>,
}

/// The writes of one epoch taken in one go, with the acks to run once they are durable.
struct Batch {
    epoch: u64,
    txns: Vec<JournalTxn>,
    acks: Vec<Acks>,
}

impl<Fs: LogFs + Clone> Wal<Fs> {
    fn run<M: From<JournalReply>>(mut self, receiver: Receiver<JournalRequest>, bus: Bus<M>) {
        while let Ok(first) = receiver.recv() {
            let mut shutdown = false;
            // Everything queued since the last write is one group: one write, one sync. A
            // checkpoint marker ends a group: it must see every write queued before it.
            let mut group: Vec<Batch> = Vec::new();
            for request in std::iter::once(first).chain(receiver.try_iter()) {
                match request {
                    JournalRequest::Write { epoch, txns, acks }
                        if self.failed_epoch != Some(epoch) =>
                    {
                        match group.last_mut() {
                            Some(b) if b.epoch == epoch => b.txns.extend(txns),
                            _ => group.push(Batch {
                                epoch,
                                txns,
                                acks: Vec::new(),
                            }),
                        }
                        if let (Some(acks), Some(b)) = (acks, group.last_mut()) {
                            b.acks.push(acks);
                        }
                    }
                    JournalRequest::Write { .. } => {}
                    JournalRequest::Checkpoint { epoch } => {
                        self.write_all(std::mem::take(&mut group), &bus);
                        let ok = self.failed_epoch != Some(epoch);
                        if ok {
                            // The next file starts at the checkpoint vclock, opened now rather
                            // than at the next write: recovery from this checkpoint then starts
                            // at that file and never re-reads the log before it.
                            self.close();
                            if let Err(e) = self.writer_or_create() {
                                warn!("cannot open the next WAL file yet: {e}");
                            }
                        }
                        bus.send(M::from(JournalReply::CheckpointReady { ok }));
                    }
                    JournalRequest::Shutdown => shutdown = true,
                }
            }
            self.write_all(group, &bus);
            if shutdown {
                self.close();
                bus.send(M::from(JournalReply::Closed));
                return;
            }
        }
        self.close();
    }

    fn write_all<M: From<JournalReply>>(&mut self, group: Vec<Batch>, bus: &Bus<M>) {
        for Batch { epoch, txns, acks } in group {
            if self.failed_epoch == Some(epoch) {
                continue;
            }
            let reply = self.write_group(epoch, txns);
            if matches!(reply, JournalReply::Written { .. }) {
                for Acks(ack) in acks {
                    ack();
                }
            }
            bus.send(M::from(reply));
        }
    }

    fn write_group(&mut self, epoch: u64, mut txns: Vec<JournalTxn>) -> JournalReply {
        let first_seq = txns.first().map_or(0, |t| t.seq);
        match self.write_txns(&mut txns) {
            Ok(last_lsn) => {
                self.account(&txns);
                self.stats.written_lsn.store(last_lsn, Ordering::Release);
                self.stats.watch.publish(self.tip());
                JournalReply::Written {
                    seq: txns.last().map_or(first_seq, |t| t.seq),
                }
            }
            Err(e) => {
                error!("WAL write failed: {e}");
                self.failed_epoch = Some(epoch);
                // A new file is started for the next epoch; the failed one is cut back to
                // its confirmed length first (see `dirty`).
                if let Some(w) = self.writer.take() {
                    self.dirty = Some((w.path().to_path_buf(), self.confirmed));
                }
                // Before TX answers ER_WAL_IO: the rolled-back rows must not be replayed
                // after a restart. If the cut fails, it is retried before the next write.
                if let Err(e) = self.cut_dirty() {
                    error!("cannot cut the failed WAL file back: {e}");
                }
                JournalReply::Failed {
                    epoch,
                    seq: first_seq,
                    error: e.to_string(),
                }
            }
        }
    }

    fn write_txns(&mut self, txns: &mut [JournalTxn]) -> io::Result<u64> {
        self.cut_dirty()?;
        self.maybe_rotate();
        let stats = self.stats.clone();
        let fsync = self.cfg.sync == SyncMode::Fsync;
        self.confirmed = self.writer_or_create()?.offset();
        let writer = self.writer_or_create()?;
        let now = now_seconds();
        let mut last_lsn = 0;
        for txn in txns.iter_mut() {
            for row in txn.rows.iter_mut() {
                row.header.timestamp = now;
                last_lsn = row.header.lsn;
            }
            writer.append_txn(&txn.rows);
        }
        let bytes = if fsync {
            let bytes = writer.flush_durable()?;
            stats.syncs.fetch_add(1, Ordering::Relaxed);
            bytes
        } else {
            writer.flush()?
        };
        stats.bytes.fetch_add(bytes, Ordering::Relaxed);
        for txn in txns.iter() {
            for row in &txn.rows {
                self.vclock.follow(row.header.replica_id, row.header.lsn);
            }
        }
        Ok(last_lsn)
    }

    fn tip(&self) -> WalTip {
        WalTip {
            vclock: self.vclock,
            live: self.writer.as_ref().map(|w| LiveEnd {
                signature: w.meta().vclock.signature(),
                end: w.offset(),
            }),
        }
    }

    fn account(&self, txns: &[JournalTxn]) {
        let rows: usize = txns.iter().map(|t| t.rows.len()).sum();
        self.stats
            .txns
            .fetch_add(txns.len() as u64, Ordering::Relaxed);
        self.stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Cuts the file a failed write left unconfirmed bytes in back to its confirmed length,
    /// durably. Until that succeeds nothing else is written.
    fn cut_dirty(&mut self) -> io::Result<()> {
        if let Some((path, len)) = &self.dirty {
            let mut file = self.fs.open_append(path)?;
            file.set_len(*len)?;
            file.sync_data()?;
            info!("cut {} back to {len} bytes", path.display());
            self.dirty = None;
        }
        Ok(())
    }

    /// Frees the name of the file for our vclock. Whatever holds it has nothing confirmed: a
    /// row in `<vclock>.xlog` would be past the vclock (rolled back, or a torn tail recovery
    /// cut off) — typically it is just a header, left by a failed first write or a crash right
    /// after the file was created; and `.xlog.inprogress` never holds a row (a crash between
    /// its creation and its rename). The first is kept as `.corrupted`, the second removed.
    fn clear_name(&mut self) -> io::Result<()> {
        let name = file_name(self.vclock.signature(), FileType::Xlog);
        let path = self.cfg.dir.join(&name);
        let tmp = self.cfg.dir.join(format!("{name}{INPROGRESS_SUFFIX}"));
        let entries = self.fs.list(&self.cfg.dir)?;
        if entries.contains(&path) {
            let aside = self.cfg.dir.join(format!("{name}.corrupted"));
            self.fs.rename(&path, &aside)?;
            warn!(
                "moved {} aside to {}: nothing in it is confirmed",
                path.display(),
                aside.display()
            );
        }
        if entries.contains(&tmp) {
            self.fs.remove(&tmp)?;
            warn!("removed the stale {}", tmp.display());
        }
        self.fs.sync_dir(&self.cfg.dir)
    }

    fn writer_or_create(&mut self) -> io::Result<&mut XlogWriter<Fs>> {
        if self.writer.is_none() {
            let mut meta = Meta::new(FileType::Xlog, self.cfg.instance_uuid.clone(), self.vclock);
            meta.prev_vclock = self.prev;
            let writer = match XlogWriter::create(self.fs.clone(), &self.cfg.dir, meta.clone()) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    self.clear_name()?;
                    XlogWriter::create(self.fs.clone(), &self.cfg.dir, meta)?
                }
                other => other?,
            };
            info!("opened {}", writer.path().display());
            self.prev = Some(self.vclock);
            self.writer = Some(writer);
        }
        self.writer
            .as_mut()
            .ok_or_else(|| io::Error::other("no WAL file"))
    }

    fn maybe_rotate(&mut self) {
        if self
            .writer
            .as_ref()
            .is_some_and(|w| w.offset() >= self.cfg.max_size)
        {
            self.close();
        }
    }

    fn close(&mut self) {
        if let Some(writer) = self.writer.take() {
            let path = writer.path().to_path_buf();
            match writer.close() {
                Ok(_) => self.stats.syncs.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    error!("closing {} failed: {e}", path.display());
                    0
                }
            };
            // Readers of the file drop the published end now (its EOF marker lies past it).
            self.stats.watch.publish(self.tip());
        }
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
