//! Wiring replication into start-up: bootstrap an empty data directory from a master (JOIN),
//! give the TX thread what relays need, start one applier per upstream, and keep the xlogs
//! replicas still need out of the checkpoint garbage collection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use spindle_box::checkpoint::{write_snapshot, ReadView};
use spindle_box::{Db, Dml, Txn};
use spindle_fiber::Bus;
use spindle_repl::applier::{ApplierConfig, JoinRow, Uri};
use spindle_repl::gc::Consumers;
use spindle_repl::relay::RelayEnv;
use spindle_repl::WalWatch;
use spindle_tx::replication::sink;
use spindle_tx::{ReplSetup, TxMsg};
use spindle_types::limits::APPLIER_BACKOFF_MAX_SECS;
use spindle_xlog::{scan_dir, FileType, LogFs, OsFs};

use crate::config::Config;

fn timeout(cfg: &Config) -> Duration {
    Duration::from_secs_f64(cfg.replication_timeout)
}

/// With upstreams configured and no snapshot yet, this instance is a new replica: it takes
/// its whole database from the first upstream instead of bootstrapping its own.
pub fn bootstrap_if_needed(cfg: &Config) -> Result<(), String> {
    let Some(master) = cfg.replication.first() else {
        return Ok(());
    };
    let snaps = scan_dir(&OsFs, &cfg.memtx_dir, FileType::Snap)
        .map_err(|e| format!("scan {}: {e}", cfg.memtx_dir.display()))?;
    if !snaps.is_empty() {
        return Ok(());
    }
    info!("empty data directory: joining {}", master.display());
    bootstrap_replica(&OsFs, &cfg.memtx_dir, master, timeout(cfg)).map(|_| ())
}

/// What the TX thread needs to serve replicas.
pub fn setup(cfg: &Config, wal: Arc<WalWatch>, bus: Bus<TxMsg>, consumers: Consumers) -> ReplSetup {
    ReplSetup {
        relay: RelayEnv {
            wal_dir: cfg.wal_dir.clone(),
            timeout: timeout(cfg),
            wal,
            consumers,
            sink: sink(move |event| bus.send(TxMsg::Repl(event))),
        },
    }
}

/// Starts an applier thread per upstream.
pub fn start_appliers(cfg: &Config, db: &mut Db, wal: Option<Arc<WalWatch>>, bus: Bus<TxMsg>) {
    if cfg.replication.is_empty() {
        return;
    }
    let Some(wal) = wal else {
        warn!("replication needs a WAL: wal_mode none cannot follow a master");
        return;
    };
    db.identify();
    let cluster = db.cluster_uuid();
    for uri in &cfg.replication {
        let bus = bus.clone();
        let applier = ApplierConfig {
            uri: uri.clone(),
            timeout: timeout(cfg),
            instance_uuid: db.instance_uuid().to_string(),
            cluster_uuid: cluster.clone(),
            own_id: db.replica_id(),
            wal: wal.clone(),
            sink: sink(move |event| bus.send(TxMsg::Repl(event))),
        };
        if let Err(e) = spindle_repl::applier::start(applier) {
            warn!("cannot start the applier for {}: {e}", uri.display());
        }
    }
}

/// Joins `uri` (retrying with backoff until it succeeds) and writes the result as this
/// instance's first checkpoint in `memtx_dir`, as a Tarantool replica does after JOIN. Runs
/// on the start-up thread, before the TX thread exists: it blocks and sleeps.
fn bootstrap_replica<Fs: LogFs + Clone>(
    fs: &Fs,
    memtx_dir: &Path,
    uri: &Uri,
    timeout: Duration,
) -> Result<PathBuf, String> {
    let instance_uuid = uuid::Uuid::new_v4().to_string();
    let mut backoff = timeout;
    loop {
        match join_once(uri, timeout, &instance_uuid) {
            Ok(db) => {
                let view = ReadView::capture(&db);
                let path = write_snapshot(fs, memtx_dir, &view)
                    .map_err(|e| format!("first checkpoint after JOIN: {e}"))?;
                info!(
                    "joined {} as instance {instance_uuid} at {}; checkpoint {}",
                    uri.display(),
                    db.vclock(),
                    path.display()
                );
                return Ok(path);
            }
            Err(e) => {
                warn!("JOIN from {} failed: {e}; retrying", uri.display());
                std::thread::sleep(backoff);
                backoff = backoff
                    .mul_f64(2.0)
                    .min(Duration::from_secs_f64(APPLIER_BACKOFF_MAX_SECS));
            }
        }
    }
}

/// One JOIN attempt: the master's catalogue and data into a fresh Db.
fn join_once(uri: &Uri, timeout: Duration, instance_uuid: &str) -> Result<Db, String> {
    let mut db = Db::new(instance_uuid.to_string());
    spindle_box::bootstrap::preload_catalog(&mut db).map_err(|e| e.to_string())?;
    let joined = spindle_repl::applier::join(uri, timeout, instance_uuid, &mut |row| match row {
        JoinRow::Snapshot { space_id, tuple } => db
            .apply_dml(Dml::Insert { space_id, tuple })
            .map(|_| ())
            .map_err(|e| format!("initial JOIN row of space {space_id}: {e}")),
        JoinRow::Logged(row) => {
            let h = row.header;
            if h.lsn <= db.vclock().get(h.replica_id) {
                return Ok(());
            }
            // Applied, never logged here: the first checkpoint holds the result.
            db.apply_row(&mut Txn::new(), row.to_row())
                .map_err(|e| format!("final JOIN row {{{}: {}}}: {e}", h.replica_id, h.lsn))?;
            db.follow(h.replica_id, h.lsn);
            Ok(())
        }
    })
    .map_err(|e| e.to_string())?;
    // The vclock of the read view plus the final stage's rows.
    for (id, lsn) in joined.vclock.iter() {
        db.follow(id, lsn);
    }
    Ok(db)
}
