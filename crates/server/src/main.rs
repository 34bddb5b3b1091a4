//! The `spindle` binary. The only place that knows every thread: it resolves the
//! configuration, recovers the database, starts the WAL thread and the network threads, runs
//! the TX thread, and orders the shutdown on SIGTERM/SIGINT: stop accepting and reading,
//! let in-flight commits finish, close the log, flush replies, exit. SIGUSR1 and the
//! checkpoint timer ask the TX thread for a checkpoint. `spindle cat` is `spindle_cat::run`.

mod config;
mod replication;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tracing::{error, info};

use config::{Cli, Command, Config, ServeArgs, WalModeArg};
use spindle_box::checkpoint::{run_checkpoint, ReadView};
use spindle_box::recovery::{recover, RecoveryConfig};
use spindle_fiber::{spawn_cord, Bus};
use spindle_net::{NetConfig, NetShared, NetStopper};
use spindle_tx::{TxHooks, TxMsg};
use spindle_types::limits::TX_FIBER_STACK_WORDS;
use spindle_wal::{SyncMode, WalConfig};
use spindle_xlog::OsFs;

/// mimalloc keeps no per-block header (a 40-byte tuple takes 40 bytes, not 48) and serves
/// each thread from its own pages: fewer bytes per tuple and cheaper allocation on the TX
/// thread's hot path than glibc malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Cat(args) => spindle_cat::run(args),
        Command::Connect(args) => spindle_connect::run(args),
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn serve(args: ServeArgs) -> ExitCode {
    let cfg = match Config::resolve(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("spindle: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg.log_level);
    block_shutdown_signals();
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cfg: Config) -> Result<(), String> {
    for dir in [&cfg.wal_dir, &cfg.memtx_dir] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let fs = OsFs;
    let recovery_cfg = RecoveryConfig {
        memtx_dir: cfg.memtx_dir.clone(),
        wal_dir: cfg.wal_dir.clone(),
        force_recovery: cfg.force_recovery,
    };
    replication::bootstrap_if_needed(&cfg)?;
    let recovered = recover(&fs, &recovery_cfg).map_err(|e| format!("recovery failed: {e}"))?;
    let mut db = recovered.db;
    db.set_read_only(cfg.read_only);
    info!("instance {} at vclock {}", db.instance_uuid(), db.vclock());
    let (bus, bus_receiver) = Bus::<TxMsg>::new().map_err(|e| format!("bus: {e}"))?;

    let wal = match cfg.wal_mode {
        WalModeArg::None => None,
        mode => {
            let wal_cfg = WalConfig {
                dir: cfg.wal_dir.clone(),
                sync: if mode == WalModeArg::Fsync {
                    SyncMode::Fsync
                } else {
                    SyncMode::Write
                },
                max_size: cfg.wal_max_size,
                instance_uuid: db.instance_uuid().to_string(),
            };
            let vclock = db.vclock();
            let handle =
                spindle_wal::start(fs, wal_cfg, vclock, recovered.last_xlog_vclock, bus.clone())
                    .map_err(|e| format!("cannot start the WAL thread: {e}"))?;
            Some(handle)
        }
    };

    let schema_version = Arc::new(AtomicU32::new(db.schema_version()));
    let shared = Arc::new(NetShared {
        schema_version: schema_version.clone(),
        stop_reading: AtomicBool::new(false),
        exit: AtomicBool::new(false),
    });
    let net_cfg = NetConfig {
        listen: cfg.listen,
        threads: cfg.iproto_threads,
        net_msg_max: cfg.net_msg_max,
        packet_max: cfg.max_packet_size,
        instance_uuid: db.instance_uuid().to_string(),
    };
    let net = spindle_net::start(net_cfg, shared, bus.clone())
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    info!(
        "listening on {} ({} iproto threads, wal_mode {:?})",
        net.local_addr, cfg.iproto_threads, cfg.wal_mode
    );
    let stopping = Arc::new(AtomicBool::new(false));
    start_signal_thread(net.stopper(), bus.clone(), stopping.clone())?;
    if cfg.checkpoint_interval > 0.0 {
        start_checkpoint_timer(cfg.checkpoint_interval, bus.clone(), stopping)?;
    }

    let consumers = spindle_repl::gc::Consumers::default();
    let wal_watch = wal.as_ref().map(|w| w.stats.watch.clone());
    let repl_setup = wal_watch
        .clone()
        .map(|stats| replication::setup(&cfg, stats, bus.clone(), consumers.clone()));
    replication::start_appliers(&cfg, &mut db, wal_watch, bus.clone());
    let sink = net.reply_sink();
    let hooks = TxHooks {
        send_replies: Arc::new(move |thread, batch| sink.send(thread, batch)),
        net_threads: cfg.iproto_threads,
        journal: wal.as_ref().map(|w| w.sender.clone()),
        schema_version,
        start_snapshot: snapshot_starter(&cfg, bus.clone(), consumers),
    };
    let admin_password = cfg.admin_password.clone();
    let tx_result = spindle_fiber::run_tx(TX_FIBER_STACK_WORDS, 64, move || {
        spindle_tx::run_with(
            db,
            hooks,
            bus_receiver,
            admin_password,
            repl_setup,
            spindle_lua::runtime,
        )
    });
    net.shutdown();
    if let Some(wal) = wal {
        let stats = wal.stats.clone();
        wal.join();
        info!("wal stats: {}", stats.summary());
    }
    tx_result.map_err(|_| "the TX thread panicked".to_string())?;
    info!("stopped");
    Ok(())
}

/// Starts a snapshot thread per checkpoint: it writes the file, collects old files and
/// reports back to the TX thread.
fn snapshot_starter(
    cfg: &Config,
    bus: Bus<TxMsg>,
    consumers: spindle_repl::gc::Consumers,
) -> Box<dyn Fn(ReadView) + Send> {
    let (memtx_dir, wal_dir, keep) = (
        cfg.memtx_dir.clone(),
        cfg.wal_dir.clone(),
        cfg.checkpoint_count,
    );
    Box::new(move |mut view| {
        // Xlogs a replica has not acknowledged yet stay (§6.3).
        view.keep_vclock = consumers.min();
        let (memtx_dir, wal_dir, bus) = (memtx_dir.clone(), wal_dir.clone(), bus.clone());
        let spawned = spawn_cord("snapshot", move || {
            let outcome = run_checkpoint(&OsFs, &memtx_dir, &wal_dir, keep, view);
            bus.send(TxMsg::CheckpointDone(outcome));
        });
        if let Err(e) = spawned {
            error!("cannot start the snapshot thread: {e}");
        }
    })
}

/// Asks for a checkpoint every `interval` seconds until shutdown.
fn start_checkpoint_timer(
    interval: f64,
    bus: Bus<TxMsg>,
    stopping: Arc<AtomicBool>,
) -> Result<(), String> {
    let step = Duration::from_millis(200);
    let period = Duration::from_secs_f64(interval);
    spawn_cord("checkpoint-timer", move || loop {
        let started = Instant::now();
        while started.elapsed() < period {
            if stopping.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(step.min(period));
        }
        if !bus.send(TxMsg::Checkpoint) {
            return;
        }
    })
    .map(|_| ())
    .map_err(|e| format!("cannot start the checkpoint timer: {e}"))
}

const HANDLED_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1];

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the signal numbers are valid constants.
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in HANDLED_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
    }
    set
}

/// Blocks SIGTERM/SIGINT in this thread and every thread started after it, so only the
/// signal thread receives them (via sigwait).
fn block_shutdown_signals() {
    let set = signal_set();
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// SIGUSR1 asks for a checkpoint; SIGTERM/SIGINT start the shutdown.
fn start_signal_thread(
    net: NetStopper,
    bus: Bus<TxMsg>,
    stopping: Arc<AtomicBool>,
) -> Result<(), String> {
    spawn_cord("signal", move || {
        let set = signal_set();
        loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is initialised and `sig` is a valid out-pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                continue;
            }
            if sig == libc::SIGUSR1 {
                bus.send(TxMsg::Checkpoint);
                continue;
            }
            info!("signal {sig} received, shutting down");
            stopping.store(true, Ordering::Relaxed);
            net.stop_reading();
            bus.send(TxMsg::Shutdown);
            return;
        }
    })
    .map(|_| ())
    .map_err(|e| format!("cannot start the signal thread: {e}"))
}
