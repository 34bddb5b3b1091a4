//! One benchmark run: prepare the space, start the workers, watch the clock (duration,
//! progress, per-second rows, `--at-cmd`/`--at-eval`), collect and merge the counts into a report.

use crate::cli::Args;
use crate::hostile::Hostile;
use crate::idle::Idle;
use crate::pipeline::MAX_DEPTH;
use crate::prepare::{self, SpaceSpec};
use crate::report::{Meta, Report, SecondRow};
use crate::stats::{SecondStats, Stats, Templates};
use crate::txn::run_txn_worker;
use crate::worker::{run_worker, Clock, RunConfig, Shared, WorkerMsg};
use crate::workload::{Op, WorkloadKind};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default measured time of a run without --duration / --requests (except `load`).
const DEFAULT_DURATION_S: f64 = 10.0;
/// How often the main thread wakes up to check the clock.
const TICK: Duration = Duration::from_millis(50);
const MAX_VALUE_SIZE: usize = 1 << 20;

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("bad --addr {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--addr {addr:?} resolves to nothing"))
}

fn seconds(what: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("{what} must be >= 0, got {value}"))
}

/// Merges the workers' seconds; a second is complete once every worker has moved past it.
struct SecondsMerger {
    through: Vec<Option<u64>>,
    done: Vec<bool>,
    pending: BTreeMap<u64, SecondStats>,
    next: u64,
    templates: Templates,
}

impl SecondsMerger {
    fn new(workers: usize, templates: &Templates) -> SecondsMerger {
        SecondsMerger {
            through: vec![None; workers],
            done: vec![false; workers],
            pending: BTreeMap::new(),
            next: 0,
            templates: templates.clone(),
        }
    }

    fn add(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Second { worker, stats } => {
                if let Some(t) = self.through.get_mut(worker) {
                    *t = Some(stats.index);
                }
                match self.pending.get_mut(&stats.index) {
                    Some(merged) => merged.merge(&stats),
                    None => {
                        self.pending.insert(stats.index, stats);
                    }
                }
            }
            WorkerMsg::Done { worker } => {
                if let Some(d) = self.done.get_mut(worker) {
                    *d = true;
                }
            }
        }
    }

    fn all_done(&self) -> bool {
        self.done.iter().all(|&d| d)
    }

    /// Complete seconds, in order.
    fn ready(&mut self) -> Vec<SecondStats> {
        let mut out = Vec::new();
        loop {
            let next = self.next;
            let complete = self
                .through
                .iter()
                .zip(&self.done)
                .all(|(through, &done)| done || through.is_some_and(|t| t >= next));
            let last = self.pending.keys().next_back().copied();
            let finished = self.all_done() && last.is_none_or(|last| next > last);
            if !complete || finished {
                return out;
            }
            let second = self
                .pending
                .remove(&next)
                .unwrap_or_else(|| SecondStats::new(next, &self.templates));
            out.push(second);
            self.next += 1;
        }
    }
}

/// Progress lines on stderr, one per `every` seconds of the measured window.
struct Progress {
    every: u64,
    rows: u64,
    ok: u64,
    errors: u64,
    max_us: f64,
    p99_us: f64,
    total_ok: u64,
    total_errors: u64,
}

impl Progress {
    fn new(every: u64) -> Progress {
        Progress {
            every,
            rows: 0,
            ok: 0,
            errors: 0,
            max_us: 0.0,
            p99_us: 0.0,
            total_ok: 0,
            total_errors: 0,
        }
    }

    fn add(&mut self, row: &SecondRow) {
        self.total_ok += row.ok;
        self.total_errors += row.errors;
        if self.every == 0 {
            return;
        }
        self.rows += 1;
        self.ok += row.ok;
        self.errors += row.errors;
        self.max_us = self.max_us.max(row.max_us);
        self.p99_us = self.p99_us.max(row.p99_us);
        if self.rows == self.every {
            let n = self.rows as f64;
            eprintln!(
                "[{:>5} s] {:>10.0} ok/s {:>8.0} err/s  p99 {:>8.0} us  max {:>9.0} us  \
                 (total ok {}, failed {})",
                row.t,
                self.ok as f64 / n,
                self.errors as f64 / n,
                self.p99_us,
                self.max_us,
                self.total_ok,
                self.total_errors
            );
            self.rows = 0;
            self.ok = 0;
            self.errors = 0;
            self.max_us = 0.0;
            self.p99_us = 0.0;
        }
    }
}

fn open_latency_log(args: &Args) -> Result<Option<Box<dyn Write>>, String> {
    let Some(path) = &args.latency_log else {
        return Ok(None);
    };
    let mut out: Box<dyn Write> = if path.as_os_str() == "-" {
        Box::new(std::io::stderr())
    } else {
        let file =
            File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Box::new(file)
    };
    writeln!(out, "{}", SecondRow::LOG_HEADER).map_err(|e| format!("latency log: {e}"))?;
    Ok(Some(out))
}

/// What `--at` runs.
#[derive(Clone, Debug)]
enum AtAction {
    /// `sh -c CMD`.
    Cmd(String),
    /// EVAL over a connection of its own.
    Eval {
        expr: String,
        addr: SocketAddr,
        user: String,
        password: Option<String>,
    },
}

impl AtAction {
    fn describe(&self) -> String {
        match self {
            AtAction::Cmd(cmd) => format!("`{cmd}`"),
            AtAction::Eval { expr, .. } => format!("EVAL `{expr}`"),
        }
    }

    fn execute(&self) -> Result<(), String> {
        match self {
            AtAction::Cmd(cmd) => {
                let status = Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(Stdio::null())
                    .stdout(Stdio::from(std::io::stderr()))
                    .status()
                    .map_err(|e| format!("cannot run: {e}"))?;
                if status.success() {
                    Ok(())
                } else {
                    Err(status.to_string())
                }
            }
            AtAction::Eval {
                expr,
                addr,
                user,
                password,
            } => {
                let (mut client, _) = prepare::connect(addr, user, password.as_deref())?;
                client
                    .eval(expr, &rmpv::Value::Array(vec![]))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Runs in a thread of its own; the thread returns how long it took and the outcome.
    fn spawn(self) -> Option<JoinHandle<(Duration, Result<(), String>)>> {
        eprintln!("spindle-bench: running {}", self.describe());
        let spawned = thread::Builder::new()
            .name("bench-at".into())
            .spawn(move || {
                let start = Instant::now();
                let result = self.execute();
                (start.elapsed(), result)
            });
        match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                eprintln!("spindle-bench: cannot start a thread for --at: {e}");
                None
            }
        }
    }
}

/// Runs the benchmark described by `args` and returns its report.
pub fn run(args: &Args) -> Result<Report, String> {
    let addr = resolve(&args.addr)?;
    if args.connections == 0 {
        return Err("--connections must be positive".into());
    }
    if args.depth == 0 || args.depth > MAX_DEPTH {
        return Err(format!("--depth must be in 1..={MAX_DEPTH}"));
    }
    if args.value_size > MAX_VALUE_SIZE {
        return Err(format!("--value-size must be at most {MAX_VALUE_SIZE}"));
    }
    let load = args.workload == WorkloadKind::Load;
    if load && args.requests.is_some() {
        return Err("--requests does not apply to `load`: it inserts exactly --keys rows".into());
    }
    let duration = match (args.duration, args.requests) {
        (Some(d), _) if d <= 0.0 => return Err("--duration must be positive".into()),
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) if load => None,
        (None, None) => Some(DEFAULT_DURATION_S),
    };
    let warmup = seconds("--warmup", args.warmup)?;
    let drain_timeout = seconds("--drain-timeout", args.drain_timeout)?;
    let at = args.at.map(|s| seconds("--at", s)).transpose()?;
    let mix = args.workload.mix(args.mix.as_deref())?;
    if mix.ops().any(Op::is_transaction) && args.requests.is_some() {
        return Err("--requests does not apply to `txn` and `counter`: give --duration".into());
    }
    let keys = args.key_dist()?;
    let threads = args.thread_count();
    let password = args.password.as_deref();

    // Preparation over one blocking connection: checks the address and the credentials too.
    let (mut client, server) = prepare::connect(&addr, &args.user, password)?;
    let space_id = if mix.uses_space() {
        let spec = SpaceSpec {
            name: args.space.clone(),
            id: args.space_id,
            index: args.index,
            fresh: args.fresh,
        };
        prepare::prepare_space(&mut client, &args.user, &spec)?.id
    } else {
        0
    };
    if mix.ops().any(|op| op == Op::Call) {
        prepare::define_function(&mut client, space_id)?;
    }
    drop(client);

    let new_keys = if load {
        let start = args.insert_start.unwrap_or(0);
        start..start.saturating_add(args.keys)
    } else {
        args.insert_start.unwrap_or(args.keys)..u64::MAX
    };
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut meta = Meta {
        workload: args.workload.name(),
        mix: mix.describe(),
        addr: addr.to_string(),
        server,
        user: if password.is_some() {
            args.user.clone()
        } else {
            "guest".into()
        },
        space: if mix.uses_space() {
            args.space.clone()
        } else {
            String::new()
        },
        space_id,
        connections: args.connections,
        depth: args.depth,
        threads,
        duration_s: duration,
        requests_limit: args.requests,
        warmup_s: warmup.as_secs_f64(),
        keys: args.keys,
        distribution: keys.describe(),
        value_size: args.value_size,
        at_action: None,
        at_ran_s: None,
        at_took_s: None,
        at_error: None,
        idle_connections: args.idle_connections,
        idle_open_s: None,
        idle_lost: None,
        hostile_connections: args.hostile_connections,
        hostile_depth: args.hostile_depth,
        hostile_open_s: None,
        hostile_sent: None,
        hostile_lost: None,
    };
    let cfg = Arc::new(RunConfig {
        addr,
        user: args.user.clone(),
        password: args.password.clone(),
        depth: args.depth,
        space_id,
        value_size: args.value_size,
        mix,
        keys,
        seed,
        drain_timeout,
        request_limit: args.requests,
        new_keys,
    });
    let at_action = match (&args.at_cmd, &args.at_eval) {
        (Some(cmd), _) => Some(AtAction::Cmd(cmd.clone())),
        (None, Some(expr)) => Some(AtAction::Eval {
            expr: expr.clone(),
            addr,
            user: args.user.clone(),
            password: args.password.clone(),
        }),
        (None, None) => None,
    };
    let mut latency_log = open_latency_log(args)?;
    let progress_every = if args.quiet { 0 } else { args.progress };
    let idle = if args.idle_connections > 0 {
        if progress_every > 0 {
            eprintln!(
                "spindle-bench: opening {} idle connections",
                args.idle_connections
            );
        }
        Idle::open(&addr, &args.user, password, args.idle_connections)?
    } else {
        Idle::default()
    };
    if !idle.is_empty() {
        meta.idle_open_s = Some(idle.opened_in.as_secs_f64());
    }
    let hostile = if args.hostile_connections > 0 {
        if args.hostile_depth == 0 {
            return Err("--hostile-depth must be positive".into());
        }
        if progress_every > 0 {
            eprintln!(
                "spindle-bench: opening {} hostile connections ({} unread SELECTs each)",
                args.hostile_connections, args.hostile_depth
            );
        }
        let hostile = Hostile::open(&addr, args.hostile_connections, args.hostile_depth)?;
        meta.hostile_open_s = Some(hostile.opened_in.as_secs_f64());
        hostile.start()?
    } else {
        Hostile::default().start()?
    };
    let report = drive(
        &cfg,
        threads,
        args.connections,
        warmup,
        duration.map(Duration::from_secs_f64),
        at.zip(at_action),
        &mut latency_log,
        progress_every,
        meta,
    );
    // Stop the writer and close the hostile connections whether or not the run succeeded.
    let hostile = hostile.finish();
    let mut report = report?;
    if args.hostile_connections > 0 {
        let outcome = hostile?;
        report.meta.hostile_sent = Some(outcome.sent);
        report.meta.hostile_lost = Some(outcome.lost);
    }
    if !idle.is_empty() {
        report.meta.idle_lost = Some(idle.lost());
    }
    drop(idle);
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn drive(
    cfg: &Arc<RunConfig>,
    threads: usize,
    connections: usize,
    warmup: Duration,
    duration: Option<Duration>,
    at: Option<(Duration, AtAction)>,
    latency_log: &mut Option<Box<dyn Write>>,
    progress_every: u64,
    mut meta: Meta,
) -> Result<Report, String> {
    let templates = Templates::new()?;
    let shared = Arc::new(Shared::default());
    let barrier = Arc::new(Barrier::new(threads + 1));
    let transactions = cfg.mix.ops().any(Op::is_transaction);
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(threads);
    let mut first = 0;
    for worker in 0..threads {
        let count = connections / threads + usize::from(worker < connections % threads);
        let ids = first..first + count;
        first += count;
        let (cfg, shared, barrier, templates, tx) = (
            cfg.clone(),
            shared.clone(),
            barrier.clone(),
            templates.clone(),
            tx.clone(),
        );
        let handle = thread::Builder::new()
            .name(format!("bench-{worker}"))
            .spawn(move || {
                if transactions {
                    run_txn_worker(worker, ids, cfg, shared, barrier, templates, tx)
                } else {
                    run_worker(worker, ids, cfg, shared, barrier, templates, tx)
                }
            });
        match handle {
            Ok(h) => handles.push(h),
            Err(e) => {
                // The barrier counts on every worker: without this one nobody gets through.
                return Err(format!("cannot start a worker thread: {e}"));
            }
        }
    }
    drop(tx);
    barrier.wait();
    let setup_error = shared.take_setup_error();
    let start = Instant::now();
    let clock = Clock::new(start, warmup);
    if setup_error.is_some() {
        shared.stop.store(true, Ordering::Relaxed);
    } else {
        let _ = shared.clock.set(clock);
    }
    barrier.wait();
    if let Some(e) = setup_error {
        for h in handles {
            let _ = h.join();
        }
        return Err(e);
    }
    if progress_every > 0 && !warmup.is_zero() {
        eprintln!(
            "spindle-bench: warming up for {:.1} s",
            warmup.as_secs_f64()
        );
    }

    let deadline = duration.map(|d| clock.measure_start + d);
    let mut at = at.map(|(after, action)| (clock.measure_start + after, action));
    let mut at_thread = None;
    let mut merger = SecondsMerger::new(threads, &templates);
    let mut progress = Progress::new(progress_every);
    let mut rows: Vec<SecondRow> = Vec::new();
    // `live`: false for the last, partial second of the run (replies drained after the end),
    // which is kept in the report and the log but not shown as progress.
    let mut emit = |second: SecondStats, rows: &mut Vec<SecondRow>, live: bool| {
        let row = SecondRow::new(&second, clock.measure_start_unix);
        if live {
            progress.add(&row);
        }
        if let Some(out) = latency_log.as_mut() {
            let _ = writeln!(out, "{}", row.log_line());
            let _ = out.flush();
        }
        rows.push(row);
    };
    loop {
        match rx.recv_timeout(TICK) {
            Ok(msg) => {
                merger.add(msg);
                while let Ok(msg) = rx.try_recv() {
                    merger.add(msg);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if merger.all_done() {
            break;
        }
        for second in merger.ready() {
            emit(second, &mut rows, true);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            shared.stop.store(true, Ordering::Relaxed);
        }
        if let Some((when, action)) = &at {
            if now >= *when {
                meta.at_action = Some(action.describe());
                meta.at_ran_s = Some(
                    now.saturating_duration_since(clock.measure_start)
                        .as_secs_f64(),
                );
                at_thread = action.clone().spawn();
                at = None;
            }
        }
    }
    let rest = merger.ready();
    let count = rest.len();
    for (i, second) in rest.into_iter().enumerate() {
        emit(second, &mut rows, i + 1 < count);
    }
    let end = Instant::now();
    let mut stats = Stats::new(&templates);
    for handle in handles {
        match handle.join() {
            Ok(worker_stats) => stats.merge(&worker_stats),
            Err(_) => return Err("a worker thread panicked".into()),
        }
    }
    if let Some(handle) = at_thread {
        match handle.join() {
            Ok((took, result)) => {
                meta.at_took_s = Some(took.as_secs_f64());
                meta.at_error = result.err();
            }
            Err(_) => meta.at_error = Some("the --at thread panicked".into()),
        }
    }
    let window_end = stats.last_completion.unwrap_or(end);
    let elapsed = window_end
        .saturating_duration_since(clock.measure_start)
        .as_secs_f64();
    Ok(Report::build(&stats, &rows, elapsed, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(index: u64, ok: u64, templates: &Templates) -> SecondStats {
        let mut s = SecondStats::new(index, templates);
        s.ok = ok;
        s
    }

    #[test]
    fn a_second_is_complete_when_every_worker_is_past_it() {
        let templates = Templates::new().unwrap();
        let mut m = SecondsMerger::new(2, &templates);
        m.add(WorkerMsg::Second {
            worker: 0,
            stats: second(0, 5, &templates),
        });
        assert!(m.ready().is_empty());
        m.add(WorkerMsg::Second {
            worker: 0,
            stats: second(1, 5, &templates),
        });
        m.add(WorkerMsg::Second {
            worker: 1,
            stats: second(0, 7, &templates),
        });
        // Both have finished second 0; worker 1 is still in second 1.
        let ready = m.ready();
        assert_eq!(ready.len(), 1);
        assert_eq!((ready[0].index, ready[0].ok), (0, 12));
        assert!(m.ready().is_empty());
        m.add(WorkerMsg::Second {
            worker: 1,
            stats: second(1, 1, &templates),
        });
        let ready = m.ready();
        assert_eq!(ready.len(), 1);
        assert_eq!((ready[0].index, ready[0].ok), (1, 6));
        m.add(WorkerMsg::Second {
            worker: 0,
            stats: second(2, 3, &templates),
        });
        m.add(WorkerMsg::Done { worker: 0 });
        m.add(WorkerMsg::Done { worker: 1 });
        let ready = m.ready();
        assert_eq!(ready.len(), 1);
        assert_eq!((ready[0].index, ready[0].ok), (2, 3));
        assert!(m.ready().is_empty());
    }
}
