//! End to end: `spindle-bench` against a real spindle server and a real Tarantool 2.6, with
//! short runs of every basic shape (load, ping, select, replace) whose JSON reports are
//! checked, runs next to idle connections (`--idle-connections`) and next to clients that never
//! read (`--hostile-connections`), and a run that provokes errors (INSERT of existing keys) to
//! check that failures are counted as failures and never as throughput.
//!
//! The spindle binary: `$SPINDLE_BIN`, else `target/{release,debug}/spindle` of the target
//! directory this test was built in (or of the workspace), else it is built with
//! `cargo build -p spindle`. Tarantool (`tarantool` on PATH) is required: a missing binary
//! fails the test with instructions, never a skip.

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const PASSWORD: &str = "pw";
const BENCH: &str = env!("CARGO_BIN_EXE_spindle-bench");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(kind: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("spindle-bench-{kind}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A server process in its own directory, killed on drop.
struct Server {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Server {
    fn wait_ready(mut self) -> Server {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("server exited early ({status}): {}", self.logs());
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return self;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not listen on {}: {}", self.addr, self.logs());
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["stderr.log", "tarantool.log"] {
            if let Ok(text) = std::fs::read_to_string(self.dir.join(name)) {
                out += &format!("\n--- {name}:\n{text}");
            }
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `<target>/<profile>`: where this package's binary was built.
fn profile_dir() -> PathBuf {
    Path::new(BENCH).parent().unwrap().to_path_buf()
}

fn spindle_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SPINDLE_BIN") {
        return PathBuf::from(path);
    }
    let profile = profile_dir();
    let target = profile.parent().unwrap().to_path_buf();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        profile.join("spindle"),
        target.join("release/spindle"),
        target.join("debug/spindle"),
        workspace.join("target/release/spindle"),
        workspace.join("target/debug/spindle"),
    ];
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return found.clone();
    }
    let release = profile.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&workspace)
        .args(["build", "-p", "spindle", "--target-dir"])
        .arg(&target);
    if release {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build -p spindle");
    assert!(status.success(), "cargo build -p spindle failed");
    let built = profile.join("spindle");
    assert!(built.is_file(), "no {} after the build", built.display());
    built
}

fn start_spindle() -> Server {
    let dir = temp_dir("spindle");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(spindle_bin())
        .arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(&dir)
        .args(["--wal-mode", "write", "--admin-password", PASSWORD])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .expect("spawn spindle");
    Server { child, dir, addr }.wait_ready()
}

fn start_tarantool() -> Server {
    match Command::new("tarantool").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "this test needs a real Tarantool 2.6 (`tarantool` on PATH): {other:?}. Install it \
             with `apt-get install -y tarantool` (or `make deps`) and re-run."
        ),
    }
    let dir = temp_dir("tarantool");
    let port = free_port();
    let script = format!(
        r#"
        local fiber = require('fiber')
        -- Never outlive the test run, even if the test process is killed.
        fiber.create(function() fiber.sleep(300) os.exit(1) end)
        box.cfg{{work_dir = '{dir}', log = '{dir}/tarantool.log', wal_mode = 'write'}}
        box.schema.user.passwd('admin', '{PASSWORD}')
        box.cfg{{listen = '127.0.0.1:{port}'}}
        "#,
        dir = dir.display(),
    );
    let script_path = dir.join("init.lua");
    std::fs::write(&script_path, script).unwrap();
    let child = Command::new("tarantool")
        .arg(&script_path)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .expect("spawn tarantool");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    Server { child, dir, addr }.wait_ready()
}

fn bench_raw(server: &Server, args: &[&str]) -> Output {
    Command::new(BENCH)
        .args([
            "--addr",
            &server.addr.to_string(),
            "--password",
            PASSWORD,
            "-q",
        ])
        .args(args)
        .env_remove("SPINDLE_BENCH_PASSWORD")
        .output()
        .expect("run spindle-bench")
}

/// Runs the bench with `--json` and returns the parsed report.
fn bench(server: &Server, args: &[&str]) -> Value {
    let out = bench_raw(server, &[args, &["--json"]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "spindle-bench {args:?} failed ({}):\n{stdout}\n{stderr}{}",
        out.status,
        server.logs()
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}) from {args:?}:\n{stdout}\n{stderr}"))
}

fn assert_clean(report: &Value, what: &str) {
    let total = &report["total"];
    assert!(
        total["throughput_rps"].as_f64().unwrap() > 0.0,
        "{what}: no throughput: {report:#}"
    );
    assert!(total["ok"].as_u64().unwrap() > 0, "{what}: {report:#}");
    assert_eq!(total["errors"], 0, "{what}: {report:#}");
    assert_eq!(report["errors"], Value::Array(vec![]), "{what}");
    let latency = &total["latency_us"];
    let (p50, p99, max) = (
        latency["p50"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
        latency["max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{what}: {latency}");
}

/// The same scenario against either server.
fn exercise(server: &Server) {
    const KEYS: &str = "2000";
    // Fill a fresh space.
    let load = bench(
        server,
        &[
            "-w", "load", "-k", KEYS, "--fresh", "-c", "4", "-d", "32", "-t", "2",
        ],
    );
    assert_clean(&load, "load");
    assert_eq!(load["total"]["ok"], 2000);
    assert_eq!(load["workload"], "load");
    assert_eq!(load["ops"][0]["op"], "insert");

    let ping = bench(server, &["-w", "ping", "--duration", "1"]);
    assert_clean(&ping, "ping");
    assert_eq!(ping["connections"], 1);
    assert!(!ping["per_second"].as_array().unwrap().is_empty());

    // Every key was loaded, so no SELECT comes back empty.
    let select = bench(
        server,
        &[
            "-w",
            "select",
            "-k",
            KEYS,
            "-c",
            "4",
            "-d",
            "8",
            "-t",
            "2",
            "--duration",
            "1",
        ],
    );
    assert_clean(&select, "select");
    assert_eq!(select["total"]["empty"], 0, "{select:#}");
    assert_eq!(select["threads"], 2);

    let log = std::env::temp_dir().join(format!(
        "spindle-bench-latency-{}-{}.log",
        std::process::id(),
        server.addr.port()
    ));
    let replace = bench(
        server,
        &[
            "-w",
            "replace",
            "-k",
            KEYS,
            "-c",
            "2",
            "-d",
            "16",
            "--duration",
            "1",
            "--distribution",
            "zipfian",
            "--latency-log",
            log.to_str().unwrap(),
        ],
    );
    assert_clean(&replace, "replace");
    assert_eq!(replace["distribution"], "zipfian(0.99)");
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("# t_s"), "{text}");
    let first: Vec<&str> = lines.next().unwrap().split(' ').collect();
    assert_eq!(first.len(), 8, "{text}");
    assert_eq!(first[0], "1");

    // Loading the same keys again: every INSERT fails with ER_TUPLE_FOUND (3).
    let dup = bench(server, &["-w", "load", "-k", KEYS, "-c", "2", "-d", "64"]);
    assert_eq!(dup["total"]["ok"], 0, "{dup:#}");
    assert_eq!(dup["total"]["errors"], 2000, "{dup:#}");
    assert_eq!(dup["total"]["throughput_rps"], 0.0, "{dup:#}");
    assert_eq!(dup["errors"][0]["code"], 3, "{dup:#}");
    assert_eq!(dup["errors"][0]["count"], 2000, "{dup:#}");
    assert!(
        dup["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Duplicate key"),
        "{dup:#}"
    );
    // A mix where only some requests fail: exactly the failures are missing from `ok`.
    let mixed = bench(
        server,
        &[
            "-w",
            "mix",
            "--mix",
            "insert=1,select=1",
            "--insert-start",
            "0",
            "-k",
            KEYS,
            "-n",
            "400",
            "-c",
            "2",
            "-d",
            "4",
        ],
    );
    let insert = mixed["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "insert")
        .unwrap();
    let select = mixed["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "select")
        .unwrap();
    assert_eq!(insert["ok"], 0, "{mixed:#}");
    assert!(insert["errors"].as_u64().unwrap() > 0, "{mixed:#}");
    assert_eq!(select["errors"], 0, "{mixed:#}");
    assert_eq!(mixed["total"]["requests"], 400, "{mixed:#}");
    assert_eq!(mixed["total"]["ok"], select["ok"], "{mixed:#}");

    // Idle connections: opened before the run, held (none lost), echoed in the report; the
    // busy connection next to them works as usual.
    let idle = bench(
        server,
        &["-w", "ping", "--duration", "1", "--idle-connections", "200"],
    );
    assert_clean(&idle, "ping next to idle connections");
    assert_eq!(idle["idle_connections"], 200, "{idle:#}");
    assert_eq!(idle["idle_lost"], 0, "{idle:#}");
    assert!(idle["idle_open_s"].as_f64().unwrap() > 0.0, "{idle:#}");
    let out = bench_raw(
        server,
        &["-w", "ping", "-n", "100", "--idle-connections", "10"],
    );
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("10 idle connections held") && table.contains("0 closed by the server"),
        "{table}"
    );

    // Hostile connections: guests that pipeline SELECTs on `_vspace` and never read a reply.
    // Here every request fits in the socket buffers: all are written, none is lost, and the
    // ping next to them is answered as usual.
    let hostile = bench(
        server,
        &[
            "-w",
            "ping",
            "--duration",
            "1",
            "--hostile-connections",
            "20",
            "--hostile-depth",
            "200",
        ],
    );
    assert_clean(&hostile, "ping next to hostile connections");
    assert_eq!(hostile["hostile_connections"], 20, "{hostile:#}");
    assert_eq!(hostile["hostile_depth"], 200, "{hostile:#}");
    assert_eq!(hostile["hostile_sent"], 4000, "{hostile:#}");
    assert_eq!(hostile["hostile_lost"], 0, "{hostile:#}");
    assert!(
        hostile["hostile_open_s"].as_f64().unwrap() > 0.0,
        "{hostile:#}"
    );

    // The human-readable table.
    let out = bench_raw(server, &["-w", "ping", "-n", "100"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    for needle in ["ok/s", "p99 us", "p99.9 us", "max us", "ping"] {
        assert!(table.contains(needle), "{table}");
    }
}

#[test]
fn against_spindle() {
    let server = start_spindle();
    exercise(&server);
}

#[test]
fn against_tarantool() {
    let server = start_tarantool();
    exercise(&server);
}

#[test]
fn wrong_password_and_dead_address_fail_cleanly() {
    let server = start_tarantool();
    let out = Command::new(BENCH)
        .args([
            "--addr",
            &server.addr.to_string(),
            "--password",
            "nope",
            "-w",
            "ping",
        ])
        .args(["--duration", "1", "-q"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Incorrect password"), "{stderr}");
    drop(server);
    let port = free_port();
    let out = Command::new(BENCH)
        .args(["--addr", &format!("127.0.0.1:{port}"), "-w", "ping", "-q"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}
