//! Wiring replication into start-up: bootstrap an empty data directory from a master (JOIN),
//! give the TX thread what relays need, start one applier per upstream, and keep the xlogs
//! replicas still need out of the checkpoint garbage collection.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use spindle_fiber::Bus;
use spindle_repl::applier::ApplierConfig;
use spindle_repl::gc::Consumers;
use spindle_repl::relay::RelayEnv;
use spindle_repl::WalWatch;
use spindle_tx::db::Db;
use spindle_tx::replication::{bootstrap_replica, cluster_uuid, identify, sink, ReplSetup};
use spindle_tx::TxMsg;
use spindle_xlog::{scan_dir, FileType, OsFs};

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
    identify(db);
    let cluster = cluster_uuid(db);
    for uri in &cfg.replication {
        let bus = bus.clone();
        let applier = ApplierConfig {
            uri: uri.clone(),
            timeout: timeout(cfg),
            instance_uuid: db.instance_uuid.clone(),
            cluster_uuid: cluster.clone(),
            own_id: db.replica_id,
            wal: wal.clone(),
            sink: sink(move |event| bus.send(TxMsg::Repl(event))),
        };
        if let Err(e) = spindle_repl::applier::start(applier) {
            warn!("cannot start the applier for {}: {e}", uri.display());
        }
    }
}
