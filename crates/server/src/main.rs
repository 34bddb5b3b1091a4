//! The `spindle` binary. The only place that knows every thread: it resolves the
//! configuration, recovers the database, starts the WAL thread and the network threads, runs
//! the TX thread, and orders the shutdown on SIGTERM/SIGINT: stop accepting and reading,
//! let in-flight commits finish, close the log, flush replies, exit. SIGUSR1 and the
//! checkpoint timer ask the TX thread for a checkpoint. `spindle cat` is `spindle_cat::run`.

mod boot;
mod config;
mod replication;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tracing::{error, info};

use boot::{ServerHost, SharedRunning};
use config::{Cli, Command, Config, ServeArgs};
use spindle_box::checkpoint::{run_checkpoint, ReadView};
use spindle_fiber::{spawn_cord, Bus};
use spindle_lua::Start;
use spindle_tx::TxMsg;
use spindle_types::limits::TX_FIBER_STACK_WORDS;
use spindle_xlog::OsFs;

/// mimalloc keeps no per-block header (a 40-byte tuple takes 40 bytes, not 48) and serves
/// each thread from its own pages: fewer bytes per tuple and cheaper allocation on the TX
/// thread's hot path than glibc malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(script) = script_argument(&argv) {
        init_logging("info");
        block_shutdown_signals();
        let start = Start::Script {
            path: script.into(),
            args: argv.get(2..).unwrap_or_default().to_vec(),
            binary: argv.first().cloned().unwrap_or_default(),
        };
        return run(Config::script_defaults(), start);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Cat(args) => spindle_cat::run(args),
        Command::Connect(args) => spindle_connect::run(args),
    }
}

/// `spindle SCRIPT.lua ARGS...`: the first argument is a file, not a subcommand or a flag.
fn script_argument(argv: &[String]) -> Option<&str> {
    let first = argv.get(1)?;
    let is_command = ["serve", "cat", "connect", "help"].contains(&first.as_str());
    if is_command || first.starts_with('-') {
        return None;
    }
    (first.ends_with(".lua") || std::path::Path::new(first).is_file()).then_some(first)
}

/// may reports every socket it registers at INFO (each console or `socket` connection):
/// its own messages are shown from WARN up unless the level names `may` itself.
const MAY_DIRECTIVE: &str = "may=warn";

fn init_logging(level: &str) {
    let mut filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if !level.contains("may") {
        if let Ok(directive) = MAY_DIRECTIVE.parse() {
            filter = filter.add_directive(directive);
        }
    }
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
    let start = Start::Serve {
        options: cfg.box_cfg(),
        console: cfg.console_listen.clone(),
    };
    run(cfg, start)
}

/// Runs the TX thread (the Lua runtime's first fiber boots the database through
/// `boot::ServerHost`), then stops the threads it started.
fn run(cfg: Config, start: Start) -> ExitCode {
    let (bus, receiver) = match Bus::<TxMsg>::new() {
        Ok(pair) => pair,
        Err(e) => {
            error!("bus: {e}");
            return ExitCode::FAILURE;
        }
    };
    let running = SharedRunning::default();
    let stopping = Arc::new(AtomicBool::new(false));
    if let Err(e) = start_signal_thread(running.clone(), bus.clone(), stopping.clone()) {
        error!("{e}");
        return ExitCode::FAILURE;
    }
    let host = ServerHost::new(cfg, bus, receiver, running.clone(), stopping);
    let tx_result = spindle_fiber::run_tx(TX_FIBER_STACK_WORDS, 64, move || {
        spindle_lua::run_main(Box::new(host), start)
    });
    let mut running = running.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(net) = running.net.take() {
        net.shutdown();
    }
    if let Some(wal) = running.wal.take() {
        let stats = wal.stats.clone();
        wal.join();
        info!("wal stats: {}", stats.summary());
    }
    if let Some(path) = running.pid_file.take() {
        let _ = std::fs::remove_file(path);
    }
    match tx_result {
        Ok(0) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(_) => {
            error!("the TX thread panicked");
            ExitCode::FAILURE
        }
    }
}

/// Starts a snapshot thread per checkpoint: it writes the file, collects old files and
/// reports back to the TX thread.
pub(crate) fn snapshot_starter(
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
pub(crate) fn start_checkpoint_timer(
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

/// SIGUSR1 asks for a checkpoint; SIGTERM/SIGINT start the shutdown (before `box.cfg{}`
/// there is nothing to stop: the process exits at once).
fn start_signal_thread(
    running: SharedRunning,
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
            let booted = running.lock().map(|r| r.booted).unwrap_or(true);
            if !booted {
                std::process::exit(0);
            }
            stopping.store(true, Ordering::Relaxed);
            if let Some(net) = boot::net_stopper(&running) {
                net.stop_reading();
            }
            bus.send(TxMsg::Shutdown);
            return;
        }
    })
    .map(|_| ())
    .map_err(|e| format!("cannot start the signal thread: {e}"))
}
