//! The final report (a table or JSON) and the per-second rows (latency log, progress).

use crate::stats::{ErrorCount, OpStats, SecondStats, Stats};
use crate::workload::ALL_OPS;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;

/// What was run, echoed in the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Meta {
    pub workload: String,
    pub mix: String,
    pub addr: String,
    /// From the greeting, e.g. `Tarantool 2.6.0`.
    pub server: String,
    pub user: String,
    pub space: String,
    pub space_id: u32,
    pub connections: usize,
    pub depth: usize,
    pub threads: usize,
    pub duration_s: Option<f64>,
    pub requests_limit: Option<u64>,
    pub warmup_s: f64,
    pub keys: u64,
    pub distribution: String,
    pub value_size: usize,
    /// `--at-cmd` / `--at-eval`: what ran, when (seconds into the measured window), how long
    /// it took, and its error if it failed.
    pub at_action: Option<String>,
    pub at_ran_s: Option<f64>,
    pub at_took_s: Option<f64>,
    pub at_error: Option<String>,
    /// `--idle-connections`: how many were held open, how long opening them took, and how
    /// many of them the server had closed by the end.
    pub idle_connections: usize,
    pub idle_open_s: Option<f64>,
    pub idle_lost: Option<usize>,
    /// `--hostile-connections`: how many were opened, the requests each was to pipeline, how
    /// long opening them took, how many requests were written whole in all, and how many of
    /// the connections the server had closed by the end.
    pub hostile_connections: usize,
    pub hostile_depth: usize,
    pub hostile_open_s: Option<f64>,
    pub hostile_sent: Option<u64>,
    pub hostile_lost: Option<usize>,
}

/// Latency percentiles of successful requests, microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl Latency {
    fn from_ns(hist: &Histogram<u64>) -> Latency {
        if hist.is_empty() {
            return Latency::default();
        }
        Latency {
            min: us(hist.min()),
            mean: hist.mean() / 1000.0,
            p50: us(hist.value_at_quantile(0.5)),
            p90: us(hist.value_at_quantile(0.9)),
            p99: us(hist.value_at_quantile(0.99)),
            p999: us(hist.value_at_quantile(0.999)),
            max: us(hist.max()),
        }
    }
}

/// Counts and latencies of one request kind or of all of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// `ok + errors`.
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// Successes that found no tuple.
    pub empty: u64,
    /// Successful requests per second of the measured window (failures never count).
    pub throughput_rps: f64,
    pub latency_us: Latency,
}

impl Summary {
    fn new(ok: u64, errors: u64, empty: u64, hist: &Histogram<u64>, elapsed_s: f64) -> Summary {
        Summary {
            requests: ok + errors,
            ok,
            errors,
            empty,
            throughput_rps: if elapsed_s > 0.0 {
                ok as f64 / elapsed_s
            } else {
                0.0
            },
            latency_us: Latency::from_ns(hist),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpRow {
    pub op: String,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ErrorRow {
    pub what: String,
    pub code: Option<u32>,
    pub count: u64,
    pub message: String,
}

impl From<&ErrorCount> for ErrorRow {
    fn from(e: &ErrorCount) -> ErrorRow {
        ErrorRow {
            what: e.what.clone(),
            code: e.code,
            count: e.count,
            message: e.message.clone(),
        }
    }
}

/// One second of the measured window, all threads merged.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SecondRow {
    /// Seconds since the window's start at the end of this second (1 = the first second).
    pub t: u64,
    /// Wall-clock start of this second (Unix time, seconds), to line up with server logs.
    pub unix_s: f64,
    pub ok: u64,
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// The worst latency of a request that completed in this second.
    pub max_us: f64,
}

impl SecondRow {
    pub fn new(second: &SecondStats, window_start_unix_s: f64) -> SecondRow {
        let max_us = us(second.max_ns);
        // The coarse histogram reports bucket tops: never above the exact maximum.
        let q = |q| (second.hist.value_at_quantile(q) as f64).min(max_us);
        let empty = second.hist.is_empty();
        SecondRow {
            t: second.index + 1,
            unix_s: window_start_unix_s + second.index as f64,
            ok: second.ok,
            errors: second.errors,
            p50_us: if empty { 0.0 } else { q(0.5) },
            p99_us: if empty { 0.0 } else { q(0.99) },
            p999_us: if empty { 0.0 } else { q(0.999) },
            max_us,
        }
    }

    pub const LOG_HEADER: &'static str = "# t_s unix_s ok errors p50_us p99_us p999_us max_us";

    /// One line of `--latency-log`.
    pub fn log_line(&self) -> String {
        format!(
            "{} {:.3} {} {} {:.0} {:.0} {:.0} {:.1}",
            self.t,
            self.unix_s,
            self.ok,
            self.errors,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub meta: Meta,
    /// Length of the measured window: from the end of the warmup to the last reply.
    pub elapsed_s: f64,
    pub total: Summary,
    pub ops: Vec<OpRow>,
    pub errors: Vec<ErrorRow>,
    /// The worst of the per-second maxima and when it happened (`t` of its second).
    pub worst_second: Option<SecondRow>,
    pub per_second: Vec<SecondRow>,
}

impl Report {
    pub fn build(stats: &Stats, seconds: &[SecondRow], elapsed_s: f64, meta: Meta) -> Report {
        let mut total_hist: Option<Histogram<u64>> = None;
        let mut ops = Vec::new();
        let (mut ok, mut errors, mut empty) = (0, 0, 0);
        for (op, op_stats) in ALL_OPS.iter().zip(&stats.ops) {
            let OpStats {
                ok: o,
                errors: e,
                empty: m,
                hist,
            } = op_stats;
            if o + e == 0 {
                continue;
            }
            ok += o;
            errors += e;
            empty += m;
            match &mut total_hist {
                None => total_hist = Some(hist.clone()),
                Some(total) => {
                    if total.add(hist).is_err() {
                        for v in hist.iter_recorded() {
                            total.saturating_record_n(v.value_iterated_to(), v.count_at_value());
                        }
                    }
                }
            }
            ops.push(OpRow {
                op: op.name().to_string(),
                summary: Summary::new(*o, *e, *m, hist, elapsed_s),
            });
        }
        let total = match &total_hist {
            Some(hist) => Summary::new(ok, errors, empty, hist, elapsed_s),
            None => Summary::default(),
        };
        let mut error_rows: Vec<ErrorRow> = stats.errors.values().map(ErrorRow::from).collect();
        error_rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.what.cmp(&b.what)));
        let worst_second = seconds
            .iter()
            .filter(|s| s.ok > 0)
            .max_by(|a, b| a.max_us.total_cmp(&b.max_us))
            .cloned();
        Report {
            meta,
            elapsed_s,
            total,
            ops,
            errors: error_rows,
            worst_second,
            per_second: seconds.to_vec(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub fn to_table(&self) -> String {
        let m = &self.meta;
        let mut out = String::new();
        let limit = match (m.duration_s, m.requests_limit) {
            (_, Some(n)) => format!("{n} requests"),
            (Some(d), None) => format!("{d} s"),
            (None, None) => "until done".into(),
        };
        let space = if m.space.is_empty() {
            String::new()
        } else {
            format!(", space {} (id {})", m.space, m.space_id)
        };
        let _ = writeln!(
            out,
            "spindle-bench: {} ({}) against {} [{}]{space}",
            m.workload, m.mix, m.addr, m.server
        );
        let _ = writeln!(
            out,
            "  {} connections x depth {} on {} threads, {limit}, warmup {} s, keys {} {}, value {} B",
            m.connections, m.depth, m.threads, m.warmup_s, m.keys, m.distribution, m.value_size
        );
        let _ = writeln!(out, "  measured {:.3} s", self.elapsed_s);
        if m.idle_connections > 0 {
            let opened = m.idle_open_s.map_or("?".into(), |t| format!("{t:.3}"));
            let lost = m.idle_lost.map_or("?".into(), |n| n.to_string());
            let _ = writeln!(
                out,
                "  {} idle connections held (opened in {opened} s), {lost} closed by the server",
                m.idle_connections
            );
        }
        if m.hostile_connections > 0 {
            let opened = m.hostile_open_s.map_or("?".into(), |t| format!("{t:.3}"));
            let sent = m.hostile_sent.map_or("?".into(), |n| n.to_string());
            let lost = m.hostile_lost.map_or("?".into(), |n| n.to_string());
            let _ = writeln!(
                out,
                "  {} hostile guest connections x {} unread SELECTs (opened in {opened} s): \
                 {sent} requests written, {lost} connections closed by the server",
                m.hostile_connections, m.hostile_depth
            );
        }
        if let (Some(action), Some(at)) = (&m.at_action, m.at_ran_s) {
            let took = m.at_took_s.map_or("?".into(), |t| format!("{t:.3}"));
            let _ = write!(out, "  ran {action} at {at:.3} s, took {took} s");
            match &m.at_error {
                Some(e) => {
                    let _ = writeln!(out, ", FAILED: {e}");
                }
                None => {
                    let _ = writeln!(out);
                }
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<8} {:>11} {:>11} {:>9} {:>9} {:>11} {:>9} {:>9} {:>9} {:>10} {:>10}",
            "op",
            "requests",
            "ok",
            "errors",
            "empty",
            "ok/s",
            "p50 us",
            "p90 us",
            "p99 us",
            "p99.9 us",
            "max us"
        );
        let row = |out: &mut String, name: &str, s: &Summary| {
            let l = &s.latency_us;
            let _ = writeln!(
                out,
                "{:<8} {:>11} {:>11} {:>9} {:>9} {:>11.0} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>10.1}",
                name,
                s.requests,
                s.ok,
                s.errors,
                s.empty,
                s.throughput_rps,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max
            );
        };
        for op in &self.ops {
            row(&mut out, &op.op, &op.summary);
        }
        if self.ops.len() != 1 {
            row(&mut out, "total", &self.total);
        }
        if let Some(worst) = &self.worst_second {
            let _ = writeln!(
                out,
                "\nworst second: t={} s, max {:.1} us, p99 {:.0} us, {} ok",
                worst.t, worst.max_us, worst.p99_us, worst.ok
            );
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "\nfailed requests (not counted as throughput):");
            for e in &self.errors {
                let _ = writeln!(out, "  {:>10}  {}: {}", e.count, e.what, e.message);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Failure, Outcome, Templates};
    use crate::workload::Op;
    use std::time::Instant;

    fn sample() -> Report {
        let templates = Templates::new().unwrap();
        let mut stats = Stats::new(&templates);
        let now = Instant::now();
        stats.roll(0);
        for i in 1..=1000u64 {
            stats.record(
                Op::Select,
                i * 1000,
                Outcome::Ok { empty: i % 10 == 0 },
                now,
            );
        }
        for _ in 0..100 {
            stats.record(Op::Update, 50_000, Outcome::Ok { empty: false }, now);
        }
        for _ in 0..5 {
            let failure = Failure::Server {
                code: 3,
                message: "Duplicate key exists".into(),
            };
            stats.record(Op::Update, 1, Outcome::Failed(failure), now);
        }
        let mut seconds = stats.roll(1);
        let mut second = seconds.remove(0);
        second.max_ns = 1_000_000;
        let rows = vec![SecondRow::new(&second, 1_700_000_000.0)];
        let meta = Meta {
            workload: "ycsb-a".into(),
            mix: "select 50%, update 50%".into(),
            connections: 4,
            depth: 8,
            threads: 2,
            hostile_connections: 1000,
            hostile_depth: 3000,
            hostile_open_s: Some(0.5),
            hostile_sent: Some(2_999_000),
            hostile_lost: Some(0),
            ..Meta::default()
        };
        Report::build(&stats, &rows, 2.0, meta)
    }

    #[test]
    fn totals_percentiles_and_throughput() {
        let r = sample();
        assert_eq!(r.total.ok, 1100);
        assert_eq!(r.total.errors, 5);
        assert_eq!(r.total.requests, 1105);
        assert_eq!(r.total.empty, 100);
        assert_eq!(r.total.throughput_rps, 550.0);
        let select = &r.ops[0].summary;
        assert_eq!(r.ops[0].op, "select");
        assert!(
            (select.latency_us.p50 - 500.0).abs() < 1.0,
            "{:?}",
            select.latency_us
        );
        assert!((select.latency_us.p99 - 990.0).abs() < 1.0);
        assert!((select.latency_us.max - 1000.0).abs() < 1.0);
        assert!((select.latency_us.min - 1.0).abs() < 0.01);
        let update = &r.ops[1].summary;
        assert_eq!((update.ok, update.errors), (100, 5));
        assert_eq!(update.throughput_rps, 50.0);
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors[0].count, 5);
        assert_eq!(r.worst_second.as_ref().map(|s| s.t), Some(1));
    }

    #[test]
    fn table_has_a_row_per_kind_and_the_errors() {
        let table = sample().to_table();
        for needle in [
            "ycsb-a",
            "p50 us",
            "p99 us",
            "p99.9 us",
            "max us",
            "ok/s",
            "select",
            "update",
            "total",
            "failed requests",
            "server error 3: Duplicate key exists",
            "worst second",
            "4 connections x depth 8 on 2 threads",
            "1000 hostile guest connections x 3000 unread SELECTs",
            "2999000 requests written, 0 connections closed by the server",
        ] {
            assert!(table.contains(needle), "no {needle:?} in\n{table}");
        }
    }

    #[test]
    fn json_has_the_documented_fields() {
        let json: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(json["workload"], "ycsb-a");
        assert_eq!(json["connections"], 4);
        assert_eq!(json["total"]["ok"], 1100);
        assert_eq!(json["total"]["errors"], 5);
        assert_eq!(json["total"]["throughput_rps"], 550.0);
        for key in ["min", "mean", "p50", "p90", "p99", "p999", "max"] {
            assert!(json["total"]["latency_us"][key].is_number(), "{key}");
        }
        assert_eq!(json["ops"][0]["op"], "select");
        assert_eq!(json["ops"][1]["errors"], 5);
        assert_eq!(json["errors"][0]["code"], 3);
        assert_eq!(json["per_second"][0]["t"], 1);
        assert_eq!(json["per_second"][0]["max_us"], 1000.0);
        assert!(json["elapsed_s"].is_number());
        assert_eq!(json["hostile_connections"], 1000);
        assert_eq!(json["hostile_depth"], 3000);
        assert_eq!(json["hostile_sent"], 2_999_000);
        assert_eq!(json["hostile_lost"], 0);
        assert_eq!(json["idle_lost"], serde_json::Value::Null);
    }

    #[test]
    fn latency_log_lines() {
        let row = SecondRow {
            t: 3,
            unix_s: 1.5,
            ok: 10,
            errors: 1,
            p50_us: 20.0,
            p99_us: 30.0,
            p999_us: 40.0,
            max_us: 55.34,
        };
        assert_eq!(row.log_line(), "3 1.500 10 1 20 30 40 55.3");
        assert!(SecondRow::LOG_HEADER.starts_with('#'));
    }

    #[test]
    fn empty_run_reports_zero() {
        let templates = Templates::new().unwrap();
        let stats = Stats::new(&templates);
        let r = Report::build(&stats, &[], 0.0, Meta::default());
        assert_eq!(r.total, Summary::default());
        assert!(r.to_table().contains("total"));
    }
}
