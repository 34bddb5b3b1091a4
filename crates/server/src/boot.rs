//! The binary's side of `box.cfg{}` (`spindle_lua::Host`): the first call changes into
//! `work_dir`, recovers the database, starts the WAL, network and replication threads and
//! hands the TX state's parts to the Lua runtime; later calls start the listener if it was not
//! configured. What the main thread needs at exit (the network and WAL handles) is kept in
//! `Running`.

use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::info;

use spindle_box::recovery::{recover, RecoveryConfig};
use spindle_fiber::{Bus, BusReceiver};
use spindle_lua::{BootParts, Host};
use spindle_net::{ListenAddr, NetConfig, NetHandle, NetShared, NetStopper, ReplySink};
use spindle_tx::{TxHooks, TxMsg};
use spindle_wal::{SyncMode, WalConfig, WalHandle};
use spindle_xlog::OsFs;

use crate::config::{parse_listen, Config, WalModeArg};
use crate::{replication, snapshot_starter, start_checkpoint_timer};

/// The threads a booted process runs, for the signal thread and the exit path.
#[derive(Default)]
pub struct Running {
    pub booted: bool,
    pub net: Option<NetHandle>,
    pub http: Option<spindle_http::HttpHandle>,
    pub wal: Option<WalHandle>,
    pub pid_file: Option<std::path::PathBuf>,
}

pub type SharedRunning = Arc<Mutex<Running>>;

pub struct ServerHost {
    cfg: Config,
    bus: Bus<TxMsg>,
    receiver: Option<BusReceiver<TxMsg>>,
    running: SharedRunning,
    stopping: Arc<AtomicBool>,
    /// Set when the listener starts (possibly after boot): replies go through it.
    sink: Arc<OnceLock<ReplySink>>,
    shared: Option<Arc<NetShared>>,
    instance_uuid: String,
    /// The WAL's counters, for `/metrics`.
    wal_stats: Option<Arc<spindle_wal::WalStats>>,
}

impl ServerHost {
    pub fn new(
        cfg: Config,
        bus: Bus<TxMsg>,
        receiver: BusReceiver<TxMsg>,
        running: SharedRunning,
        stopping: Arc<AtomicBool>,
    ) -> ServerHost {
        ServerHost {
            cfg,
            bus,
            receiver: Some(receiver),
            running,
            stopping,
            sink: Arc::new(OnceLock::new()),
            shared: None,
            instance_uuid: String::new(),
            wal_stats: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn prepare_process(&self) -> Result<(), String> {
        if let Some(dir) = &self.cfg.work_dir {
            std::env::set_current_dir(dir)
                .map_err(|e| format!("can't chdir to '{}': {e}", dir.display()))?;
        }
        if let Some(path) = &self.cfg.log_file {
            redirect_stderr(path)?;
        }
        for dir in [&self.cfg.wal_dir, &self.cfg.memtx_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        if let Some(path) = &self.cfg.pid_file {
            std::fs::write(path, format!("{}\n", std::process::id()))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            self.lock().pid_file = Some(path.clone());
        }
        Ok(())
    }

    fn start_wal(
        &self,
        db: &spindle_box::Db,
        last: Option<spindle_xlog::Vclock>,
    ) -> Result<Option<WalHandle>, String> {
        let sync = match self.cfg.wal_mode {
            WalModeArg::None => return Ok(None),
            WalModeArg::Write => SyncMode::Write,
            WalModeArg::Fsync => SyncMode::Fsync,
        };
        let wal_cfg = WalConfig {
            dir: self.cfg.wal_dir.clone(),
            sync,
            max_size: self.cfg.wal_max_size,
            instance_uuid: db.instance_uuid().to_string(),
        };
        spindle_wal::start(OsFs, wal_cfg, db.vclock(), last, self.bus.clone())
            .map(Some)
            .map_err(|e| format!("cannot start the WAL thread: {e}"))
    }

    /// Starts the IPROTO listener on `listen`.
    fn start_net(&mut self, listen: ListenAddr) -> Result<(), String> {
        let Some(shared) = self.shared.clone() else {
            return Err("the database is not configured".into());
        };
        let net_cfg = NetConfig {
            listen: listen.clone(),
            threads: self.cfg.iproto_threads,
            net_msg_max: self.cfg.net_msg_max,
            packet_max: self.cfg.max_packet_size,
            instance_uuid: self.instance_uuid.clone(),
        };
        let net = spindle_net::start(net_cfg, shared, self.bus.clone())
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        info!(
            "listening on {} ({} iproto threads, wal_mode {:?})",
            net.local_addr, self.cfg.iproto_threads, self.cfg.wal_mode
        );
        let _ = self.sink.set(net.reply_sink());
        self.lock().net = Some(net);
        Ok(())
    }

    /// `/metrics` values published by the WAL thread (the persist stage, IPROTO and HTTP alike).
    fn more_metrics(&self) -> spindle_http::metrics::MoreMetrics {
        use spindle_http::metrics::Metric;
        let wal = self.wal_stats.clone();
        let schema_version = self.shared.as_ref().map(|s| s.schema_version.clone());
        Box::new(move || {
            let mut out = Vec::new();
            let counter = |name, help, value: &std::sync::atomic::AtomicU64| Metric {
                name,
                kind: "counter",
                help,
                value: value.load(std::sync::atomic::Ordering::Relaxed),
            };
            if let Some(w) = &wal {
                out.push(Metric {
                    name: "tnt_info_lsn",
                    kind: "gauge",
                    help: "The newest LSN written to the log",
                    value: w.written_lsn.load(std::sync::atomic::Ordering::Relaxed),
                });
                out.push(counter(
                    "spindle_wal_txns_total",
                    "Transactions written (stage: persist, IPROTO and HTTP alike)",
                    &w.txns,
                ));
                out.push(counter("spindle_wal_rows_total", "Rows written", &w.rows));
                out.push(counter(
                    "spindle_wal_writes_total",
                    "Group commits (one write per batch)",
                    &w.batches,
                ));
                out.push(counter(
                    "spindle_wal_syncs_total",
                    "Syncs to disk",
                    &w.syncs,
                ));
                out.push(counter(
                    "spindle_wal_bytes_total",
                    "Bytes written",
                    &w.bytes,
                ));
            }
            if let Some(v) = &schema_version {
                out.push(Metric {
                    name: "spindle_schema_version",
                    kind: "gauge",
                    help: "The schema version",
                    value: u64::from(v.load(std::sync::atomic::Ordering::Relaxed)),
                });
            }
            out
        })
    }

    /// Starts the HTTP commit API on `addr`.
    fn start_http(&mut self, addr: std::net::SocketAddr) -> Result<(), String> {
        let cfg = spindle_http::HttpConfig {
            listen: addr,
            body_max: self.cfg.http_max_body_size,
            idle_timeout: std::time::Duration::from_secs_f64(self.cfg.http_idle_timeout),
            window: self.cfg.http_conflict_window,
            more_metrics: self.more_metrics(),
        };
        let http = spindle_http::start(cfg, self.bus.clone())
            .map_err(|e| format!("cannot listen for HTTP on {addr}: {e}"))?;
        self.lock().http = Some(http);
        Ok(())
    }

    fn hooks(
        &self,
        wal: Option<&WalHandle>,
        schema_version: Arc<AtomicU32>,
        consumers: spindle_repl::gc::Consumers,
    ) -> TxHooks {
        let sink = self.sink.clone();
        TxHooks {
            send_replies: Arc::new(move |thread, batch| {
                if let Some(sink) = sink.get() {
                    sink.send(thread, batch);
                }
            }),
            net_threads: self.cfg.iproto_threads,
            journal: wal.map(|w| w.sender.clone()),
            schema_version,
            start_snapshot: snapshot_starter(&self.cfg, self.bus.clone(), consumers),
        }
    }
}

impl Host for ServerHost {
    fn boot(&mut self, options: &serde_json::Value) -> Result<BootParts, String> {
        self.cfg.apply_box_cfg(options)?;
        // Before the listener: the greeting announces it.
        spindle_types::compat::set_announced(self.cfg.compat_version);
        spindle_types::txn_cfg::set_mvcc(self.cfg.memtx_use_mvcc_engine);
        spindle_types::txn_cfg::set_default_isolation(self.cfg.txn_isolation);
        self.prepare_process()?;
        let bus = self.receiver.take().ok_or("box.cfg{} has already run")?;
        replication::bootstrap_if_needed(&self.cfg)?;
        let recovery_cfg = RecoveryConfig {
            memtx_dir: self.cfg.memtx_dir.clone(),
            wal_dir: self.cfg.wal_dir.clone(),
            force_recovery: self.cfg.force_recovery,
        };
        let recovered =
            recover(&OsFs, &recovery_cfg).map_err(|e| format!("recovery failed: {e}"))?;
        let mut db = recovered.db;
        db.set_read_only(self.cfg.read_only);
        info!("instance {} at vclock {}", db.instance_uuid(), db.vclock());
        self.instance_uuid = db.instance_uuid().to_string();
        let wal = self.start_wal(&db, recovered.last_xlog_vclock)?;
        self.wal_stats = wal.as_ref().map(|w| w.stats.clone());
        let schema_version = Arc::new(AtomicU32::new(db.schema_version()));
        self.shared = Some(Arc::new(NetShared {
            schema_version: schema_version.clone(),
            stop_reading: AtomicBool::new(false),
            exit: AtomicBool::new(false),
        }));
        if let Some(listen) = self.cfg.listen.clone() {
            self.start_net(listen)?;
        }
        if let Some(addr) = self.cfg.http_listen {
            self.start_http(addr)?;
        }
        if self.cfg.checkpoint_interval > 0.0 {
            start_checkpoint_timer(
                self.cfg.checkpoint_interval,
                self.bus.clone(),
                self.stopping.clone(),
            )?;
        }
        // Replicas' positions keep the xlogs they still need out of checkpoint collection.
        let consumers = spindle_repl::gc::Consumers::default();
        let hooks = self.hooks(wal.as_ref(), schema_version, consumers.clone());
        let wal_watch = wal.as_ref().map(|w| w.stats.watch.clone());
        let repl_setup = wal_watch
            .clone()
            .map(|stats| replication::setup(&self.cfg, stats, self.bus.clone(), consumers));
        replication::start_appliers(&self.cfg, &mut db, wal_watch, self.bus.clone());
        {
            let mut running = self.lock();
            running.wal = wal;
            running.booted = true;
        }
        Ok(BootParts {
            db,
            hooks,
            bus,
            admin_password: self.cfg.admin_password.clone(),
            replication: repl_setup,
        })
    }

    fn reconfigure(&mut self, changed: &serde_json::Value) -> Result<(), String> {
        let Some(map) = changed.as_object() else {
            return Ok(());
        };
        if let Some(listen) = map.get("listen") {
            let text = match listen {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let addr = text.map(|t| parse_listen(&t)).transpose()?;
            let started = self.lock().net.is_some();
            match (&addr, started) {
                (Some(addr), false) => self.start_net(addr.clone())?,
                (None, false) => {}
                (addr, true) if *addr == self.cfg.listen => {}
                _ => return Err("spindle cannot move a running listener yet".into()),
            }
            self.cfg.listen = addr;
        }
        if let Some(value) = map.get("http_listen") {
            let addr = match value {
                serde_json::Value::Null => None,
                v => Some(crate::config::parse_http_listen(
                    &v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string()),
                )?),
            };
            let started = self.lock().http.is_some();
            match (addr, started) {
                (Some(addr), false) => self.start_http(addr)?,
                (None, false) => {}
                (addr, true) if addr == self.cfg.http_listen => {}
                _ => return Err("spindle cannot move a running HTTP listener yet".into()),
            }
            self.cfg.http_listen = addr;
        }
        for (key, value) in map {
            if key != "listen" && key != "http_listen" {
                self.cfg
                    .apply_option(key, value)
                    .map_err(|e| format!("Incorrect value for option '{key}': {e}"))?;
                if key == "txn_isolation" {
                    spindle_types::txn_cfg::set_default_isolation(self.cfg.txn_isolation);
                }
            }
        }
        Ok(())
    }

    fn shutdown(&mut self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(net) = &self.lock().net {
            net.stop_reading();
        }
        if let Some(http) = &self.lock().http {
            http.stop();
        }
        self.bus.send(TxMsg::Shutdown);
    }
}

/// The network stopper of a booted process, for the signal thread.
pub fn net_stopper(running: &SharedRunning) -> Option<NetStopper> {
    let running = running.lock().unwrap_or_else(|e| e.into_inner());
    running.net.as_ref().map(|n| n.stopper())
}

/// `box.cfg.log`: the log file takes stderr's place, so everything logged goes there.
fn redirect_stderr(path: &std::path::Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
    // SAFETY: both descriptors are valid; dup2 atomically replaces fd 2 with the log file.
    if unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
        return Err(format!(
            "cannot redirect the log: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
