//! `/metrics` in Prometheus' text format, from the counters other threads publish (never a
//! round trip to TX).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use spindle_proto::kv::KvShared;

/// A value another part of the server publishes (the WAL's counters), read at each scrape.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    pub help: &'static str,
    pub value: u64,
}

/// Reads the published values of the rest of the server.
pub type MoreMetrics = Box<dyn Fn() -> Vec<Metric> + Send>;

fn family(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// The text of `/metrics`: `uptime` in seconds.
pub fn render(shared: &KvShared, uptime: u64, more: &[Metric]) -> String {
    let s = &shared.stages;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::with_capacity(2048);
    family(
        &mut out,
        "tnt_info_uptime",
        "gauge",
        "Seconds since the HTTP API started",
        uptime,
    );
    let counters = [
        (
            "spindle_http_connections_total",
            "HTTP connections accepted",
            get(&s.connections_accepted),
        ),
        (
            "spindle_http_requests_total",
            "HTTP requests received (stage: parse)",
            get(&s.requests),
        ),
        (
            "spindle_http_bad_requests_total",
            "HTTP requests answered 4xx on the HTTP thread",
            get(&s.bad_requests),
        ),
        (
            "spindle_http_timeouts_total",
            "HTTP connections closed for idleness or slowness",
            get(&s.timeouts),
        ),
        (
            "spindle_http_tx_requests_total",
            "HTTP requests handed to the TX thread (stage: sequence and resolve)",
            get(&s.sent_to_tx),
        ),
        (
            "spindle_kv_commits_total",
            "HTTP commits made durable (stage: persist)",
            get(&s.commits),
        ),
        (
            "spindle_kv_conflicts_total",
            "HTTP commits refused by a precondition",
            get(&s.conflicts),
        ),
        (
            "spindle_kv_too_old_total",
            "HTTP commits whose read version was older than the conflict window",
            get(&s.too_old),
        ),
        (
            "spindle_kv_request_id_used_total",
            "HTTP commits refused for a used request id",
            get(&s.request_id_used),
        ),
        (
            "spindle_kv_bans_total",
            "Request ids banned by /v1/status",
            get(&s.bans),
        ),
        (
            "spindle_kv_commit_failures_total",
            "HTTP commits that failed to apply or to be written",
            get(&s.commit_failures),
        ),
        (
            "spindle_kv_reads_total",
            "/v1/read and /v1/range requests served",
            get(&s.reads),
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help, value);
    }
    let gauges = [
        (
            "spindle_http_connections",
            "HTTP connections open",
            get(&s.connections_open),
        ),
        (
            "spindle_http_tx_in_flight",
            "HTTP requests in the TX thread or the WAL now (queue depth)",
            get(&s.in_tx),
        ),
        (
            "spindle_kv_durable_version",
            "The newest durable commit version",
            shared.durable(),
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help, value);
    }
    for m in more {
        family(&mut out, m.name, m.kind, m.help, m.value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_type_and_one_sample() {
        let shared = KvShared::new("L".into());
        let more = [Metric {
            name: "tnt_info_lsn",
            kind: "gauge",
            help: "LSN",
            value: 9,
        }];
        let text = render(&shared, 5, &more);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(samples.len(), types);
        assert!(text.contains("tnt_info_uptime 5\n"));
        assert!(text.contains("# TYPE tnt_info_lsn gauge\ntnt_info_lsn 9\n"));
    }
}
