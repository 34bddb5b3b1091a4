//! Command-line options.

use crate::keys::KeyDist;
use crate::prepare::IndexKind;
use crate::workload::WorkloadKind;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;

pub const EXAMPLES: &str = "\
Examples:
  # 50 connections, one request in flight each, 10 s of primary-key SELECTs
  spindle-bench --addr 127.0.0.1:3301 --password secret -w select -c 50 -d 1 --duration 10

  # 4 connections x 64 pipelined REPLACEs on 2 threads, 1 s warmup, JSON report
  spindle-bench -p secret -w replace -c 4 -d 64 -t 2 --warmup 1 --duration 10 --json

  # YCSB A over 1M zipfian keys, exactly 5M measured requests
  spindle-bench -p secret -w ycsb-a -k 1000000 --distribution zipfian -c 64 -d 16 -n 5000000

  # fill a fresh space with 1M rows {unsigned, 25-byte string} and exit
  spindle-bench -p secret -w load -k 1000000 --fresh -c 32 -d 64

  # worst latency per second while a checkpoint is written 5 s into the run
  spindle-bench -p secret -w replace -k 1000000 -c 16 -d 16 --duration 20 \\
      --latency-log lat.txt --at 5 --at-cmd 'kill -USR1 $(pidof spindle)'

  # the same on Tarantool, timing box.snapshot()
  spindle-bench -p secret -w replace -k 1000000 -c 16 -d 16 --duration 20 \\
      --latency-log lat.txt --at 5 --at-eval 'box.snapshot()'

  # 4 x 64 pings next to 10,000 idle connections; RSS of the server while they are open
  spindle-bench -p secret -w ping -c 4 -d 64 --idle-connections 10000 --duration 5 \\
      --at 1 --at-cmd 'grep VmRSS /proc/$(pidof spindle)/status'

  # one client's PING latency next to 1000 guests that pipeline 3000 SELECTs each, never reading
  spindle-bench -p secret -w ping -c 1 -d 1 --hostile-connections 1000 --duration 5
";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Distribution {
    Uniform,
    /// YCSB's zipfian (theta --zipf-theta), hot keys scattered over the key space.
    Zipfian,
}

/// Load driver for IPROTO servers (spindle, Tarantool): many pipelined connections on a few
/// epoll threads; every reply is checked; throughput of successful requests and latency
/// percentiles from an HDR histogram.
#[derive(Parser, Debug, Clone)]
#[command(name = "spindle-bench", version, after_help = EXAMPLES)]
pub struct Args {
    /// Server address, HOST:PORT.
    #[arg(long, short = 'a', default_value = "127.0.0.1:3301")]
    pub addr: String,

    /// User for chap-sha1 authentication (sent only if --password is given).
    #[arg(long, short = 'u', default_value = "admin")]
    pub user: String,

    /// Password of --user; without it every connection stays `guest`.
    #[arg(
        long,
        short = 'p',
        env = "SPINDLE_BENCH_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,

    /// What to send.
    #[arg(long, short = 'w', value_enum, default_value_t = WorkloadKind::Select)]
    pub workload: WorkloadKind,

    /// Weights for --workload mix: select=90,replace=10 (kinds: ping select insert replace
    /// update upsert delete).
    #[arg(long)]
    pub mix: Option<String>,

    /// Connections in all.
    #[arg(long, short = 'c', default_value_t = 1)]
    pub connections: usize,

    /// Requests in flight per connection (pipelined).
    #[arg(long, short = 'd', default_value_t = 1)]
    pub depth: usize,

    /// Event-loop threads the connections are spread over [default: min(connections,
    /// max(1, CPUs / 2))].
    #[arg(long, short = 't')]
    pub threads: Option<usize>,

    /// Measured seconds (after the warmup) [default: 10, or until done for `load`].
    #[arg(long, conflicts_with = "requests")]
    pub duration: Option<f64>,

    /// Measured requests in all (after the warmup), instead of --duration.
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,

    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,

    /// Keys 0..K that reads and writes address (and that `load` inserts).
    #[arg(long, short = 'k', default_value_t = 100_000)]
    pub keys: u64,

    /// How keys are drawn for select/replace/update/upsert/delete.
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    pub distribution: Distribution,

    /// Skew of the zipfian distribution, in (0, 1).
    #[arg(long, default_value_t = 0.99)]
    pub zipf_theta: f64,

    /// Bytes of the string field of each row.
    #[arg(long, default_value_t = 25)]
    pub value_size: usize,

    /// First key of INSERTs [default: --keys for `insert`, 0 for `load`].
    #[arg(long)]
    pub insert_start: Option<u64>,

    /// Space to use; created if missing.
    #[arg(long, default_value = "bench")]
    pub space: String,

    /// Id for a space this run creates [default: the next free id, at least 512].
    #[arg(long)]
    pub space_id: Option<u32>,

    /// Primary index type of a space this run creates.
    #[arg(long, value_enum, default_value_t = IndexKind::Tree)]
    pub index: IndexKind,

    /// Drop and create the space again if it exists.
    #[arg(long)]
    pub fresh: bool,

    /// Print the report as JSON (stdout) instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Write one line per measured second (t, unix time, ok, errors, p50, p99, p99.9 and max
    /// latency) to this file as the run goes; `-` = stderr.
    #[arg(long, value_name = "FILE")]
    pub latency_log: Option<PathBuf>,

    /// Print a progress line every N seconds (stderr); 0 = never.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub progress: u64,

    /// No progress lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Seed for keys, values and mixes [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,

    /// Run --at-cmd or --at-eval this many seconds into the measured window (e.g. to measure
    /// client latency while a checkpoint is written).
    #[arg(long, requires = "at_action", value_name = "SECONDS")]
    pub at: Option<f64>,

    /// Shell command for --at (e.g. `kill -USR1 <spindle pid>` for a spindle checkpoint); its
    /// output goes to stderr.
    #[arg(long, requires = "at", group = "at_action", value_name = "CMD")]
    pub at_cmd: Option<String>,

    /// Lua expression for --at, sent as EVAL over a separate connection (e.g.
    /// `box.snapshot()` on Tarantool); the report says how long it took.
    #[arg(long, requires = "at", group = "at_action", value_name = "EXPR")]
    pub at_eval: Option<String>,

    /// Also open this many idle connections before the run (greeting read, authenticated
    /// like the others if --password is given) and hold them, sending nothing, until the end;
    /// the report says how many the server closed meanwhile (`idle_lost`). Mind `ulimit -n`.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub idle_connections: usize,

    /// Also open this many hostile connections before the run (as guest: greeting read, no
    /// AUTH); during the run each writes --hostile-depth pipelined SELECTs on `_vspace` (~30
    /// bytes each, ~1.7 KB replies) and never reads a reply. The report says how many
    /// requests were written (`hostile_sent`) and how many connections the server closed
    /// (`hostile_lost`). Mind `ulimit -n`.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub hostile_connections: usize,

    /// Requests each hostile connection pipelines.
    #[arg(long, default_value_t = 3000, value_name = "D")]
    pub hostile_depth: usize,

    /// Seconds to wait for replies still in flight at the end; the rest count as failures.
    #[arg(long, default_value_t = 10.0)]
    pub drain_timeout: f64,
}

impl Args {
    pub fn key_dist(&self) -> Result<KeyDist, String> {
        if self.keys == 0 {
            return Err("--keys must be positive".into());
        }
        match self.distribution {
            Distribution::Uniform => Ok(KeyDist::uniform(self.keys)),
            Distribution::Zipfian => KeyDist::zipfian(self.keys, self.zipf_theta),
        }
    }

    pub fn thread_count(&self) -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.threads
            .unwrap_or((cpus / 2).max(1))
            .clamp(1, self.connections.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_and_short_flags() {
        let args = Args::try_parse_from([
            "spindle-bench",
            "-w",
            "ycsb-b",
            "-c",
            "8",
            "-d",
            "4",
            "-t",
            "16",
            "-k",
            "10",
        ])
        .unwrap();
        assert_eq!(args.workload, WorkloadKind::YcsbB);
        assert_eq!(
            args.thread_count(),
            8,
            "never more threads than connections"
        );
        assert_eq!(args.value_size, 25);
        assert!(args.key_dist().is_ok());
        assert!(Args::try_parse_from(["spindle-bench", "--duration", "1", "-n", "5"]).is_err());
        assert!(Args::try_parse_from(["spindle-bench", "--at", "1"]).is_err());
        assert!(Args::try_parse_from(["spindle-bench", "--at-eval", "x"]).is_err());
        let at = ["spindle-bench", "--at", "1", "--at-eval", "box.snapshot()"];
        assert!(Args::try_parse_from(at).is_ok());
        let both = [
            "spindle-bench",
            "--at",
            "1",
            "--at-eval",
            "x",
            "--at-cmd",
            "true",
        ];
        assert!(Args::try_parse_from(both).is_err());
        assert_eq!(args.idle_connections, 0, "no idle connections unless asked");
        let idle = Args::try_parse_from(["spindle-bench", "--idle-connections", "10000"]).unwrap();
        assert_eq!(idle.idle_connections, 10_000);
        assert!(Args::try_parse_from(["spindle-bench", "--idle-connections", "-1"]).is_err());
        assert_eq!(
            args.hostile_connections, 0,
            "no hostile connections unless asked"
        );
        assert_eq!(args.hostile_depth, 3000);
        let hostile = Args::try_parse_from([
            "spindle-bench",
            "--hostile-connections",
            "1000",
            "--hostile-depth",
            "10",
        ])
        .unwrap();
        assert_eq!(
            (hostile.hostile_connections, hostile.hostile_depth),
            (1000, 10)
        );
        let zipf = Args::try_parse_from(["spindle-bench", "--distribution", "zipfian"]).unwrap();
        assert!(zipf.key_dist().unwrap().describe().starts_with("zipfian"));
    }
}
