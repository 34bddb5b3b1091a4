//! `spindle cat` against `tarantoolctl cat` of the installed Tarantool 2.6, on files written
//! three ways: with `spindle_xlog::XlogWriter` (every DML body shape spindle logs, a 3-row
//! transaction, a zstd block, a snapshot, exotic MessagePack), by the `spindle` binary itself
//! (DDL and DML over IPROTO, a SIGUSR1 checkpoint, SIGTERM), and by a real `tarantool`.
//!
//! The outputs must be byte-for-byte equal in all three formats (yaml, json, lua), with and
//! without filters; the JSON rows are also checked against what was written. Damaged files
//! (torn tail, flipped bytes, bad magic, random mutations, hostile nesting) must give the
//! documented exit codes and never a panic.
//!
//! Tarantool (`tarantool` and `tarantoolctl` on PATH) is required: a missing binary fails the
//! test with instructions, never a skip.

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rmpv::Value;
use serde_json::Value as Json;
use spindle_client::Client;
use spindle_proto::mp;
use spindle_xlog::{crc32c_tarantool, FileType, Meta, OsFs, Row, RowHeader, Vclock, XlogReader};

const SPINDLE: &str = env!("CARGO_BIN_EXE_spindle");
const INSTALL_HINT: &str =
    "Tarantool 2.6 (`tarantool` and `tarantoolctl`) is required: apt-get install -y tarantool";
const UUID: &str = "1b0e8f5c-2a53-4c2e-9d0e-6f7d3a1b2c3d";

// ----------------------------------------------------------------------------------------
// helpers

struct TempDir(PathBuf);

impl TempDir {
    fn new(kind: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "spindle-cat-test-{kind}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn require_tarantool() {
    for tool in ["tarantool", "tarantoolctl"] {
        let probe = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(e) = probe {
            panic!("cannot run `{tool}`: {e}. {INSTALL_HINT}");
        }
    }
}

fn spindle_cat(args: &[&str]) -> Output {
    Command::new(SPINDLE)
        .arg("cat")
        .args(args)
        .output()
        .unwrap()
}

fn tarantoolctl_cat(args: &[&str]) -> Output {
    match Command::new("tarantoolctl").arg("cat").args(args).output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run tarantoolctl: {e}. {INSTALL_HINT}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The "Processing file '...'" lines both tools print on stderr.
fn processing_lines(stderr: &[u8]) -> Vec<String> {
    text(stderr)
        .lines()
        .filter(|l| l.starts_with("Processing file"))
        .map(str::to_string)
        .collect()
}

fn first_difference(ours: &[u8], theirs: &[u8]) -> String {
    let (a, b) = (text(ours), text(theirs));
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    for i in 0..la.len().max(lb.len()) {
        let (x, y) = (la.get(i), lb.get(i));
        if x != y {
            let cut = |s: Option<&&str>| s.map(|s| s.chars().take(300).collect::<String>());
            return format!(
                "first difference at line {}:\n  spindle:      {:?}\n  tarantoolctl: {:?}",
                i + 1,
                cut(x),
                cut(y)
            );
        }
    }
    format!(
        "outputs differ only in trailing bytes ({} vs {} bytes)",
        ours.len(),
        theirs.len()
    )
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs both tools with the same arguments (in yaml, json and lua) and requires the same
/// stdout, byte for byte, and the same "Processing file" lines. Returns the JSON stdout.
fn assert_same(files: &[&Path], extra: &[&str]) -> Vec<u8> {
    let mut json = Vec::new();
    for format in ["yaml", "json", "lua"] {
        let mut args = vec!["--format", format];
        args.extend_from_slice(extra);
        args.extend(files.iter().map(|f| path_str(f)));
        let theirs = tarantoolctl_cat(&args);
        assert!(
            theirs.status.success(),
            "tarantoolctl cat {args:?} failed: {}",
            text(&theirs.stderr)
        );
        let ours = spindle_cat(&args);
        assert!(
            ours.status.success(),
            "spindle cat {args:?} failed: {}",
            text(&ours.stderr)
        );
        assert!(
            ours.stdout == theirs.stdout,
            "spindle cat {args:?} differs from tarantoolctl: {}",
            first_difference(&ours.stdout, &theirs.stdout)
        );
        assert_eq!(
            processing_lines(&ours.stderr),
            processing_lines(&theirs.stderr),
            "{args:?}"
        );
        if format == "json" {
            json = ours.stdout;
        }
    }
    json
}

/// Every `.xlog`/`.snap` in `dir`, in name order.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(".xlog") || name.ends_with(".snap")
        })
        .collect();
    files.sort();
    files
}

/// Compares every file alone (all formats, with and without system spaces) and all of
/// them in one invocation.
fn assert_dir_same(dir: &Path) -> Vec<PathBuf> {
    let files = log_files(dir);
    assert!(!files.is_empty(), "no log files in {}", dir.display());
    for f in &files {
        assert_same(&[f], &[]);
        assert_same(&[f], &["--show-system"]);
    }
    let all: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    assert_same(&all, &[]);
    files
}

/// The JSON records of `spindle cat --format json` output (each line one object).
fn json_rows(stdout: &[u8]) -> Vec<Json> {
    text(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect()
}

/// rmpv -> the JSON tarantoolctl prints (plain values only).
fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => {
            if let Some(u) = i.as_u64() {
                Json::from(u)
            } else {
                Json::from(i.as_i64().unwrap())
            }
        }
        Value::F64(f) => Json::from(*f),
        Value::String(s) => Json::from(s.as_str().unwrap()),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap().to_string(), to_json(v)))
                .collect(),
        ),
        other => panic!("no plain JSON form for {other:?}"),
    }
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn s(x: &str) -> Value {
    Value::from(x)
}

fn arr(items: Vec<Value>) -> Value {
    Value::Array(items)
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (s(k), v)).collect())
}

// Bodies in exactly the shapes spindle logs (crates/tx/src/db.rs).

fn body_tuple(space: u32, tuple: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    mp::write_map_len(&mut out, 2);
    mp::write_uint(&mut out, 0x10);
    mp::write_uint(&mut out, u64::from(space));
    mp::write_uint(&mut out, 0x21);
    out.extend(encode(tuple));
    out
}

fn body_key(space: u32, index: Option<u32>, key: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let index = index.filter(|i| *i != 0);
    mp::write_map_len(&mut out, 2 + u32::from(index.is_some()));
    mp::write_uint(&mut out, 0x10);
    mp::write_uint(&mut out, u64::from(space));
    if let Some(i) = index {
        mp::write_uint(&mut out, 0x11);
        mp::write_uint(&mut out, u64::from(i));
    }
    mp::write_uint(&mut out, 0x20);
    out.extend(encode(key));
    out
}

fn body_update(space: u32, index_base: u32, key: &Value, ops: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    mp::write_map_len(&mut out, 3 + u32::from(index_base != 0));
    mp::write_uint(&mut out, 0x10);
    mp::write_uint(&mut out, u64::from(space));
    if index_base != 0 {
        mp::write_uint(&mut out, 0x15);
        mp::write_uint(&mut out, u64::from(index_base));
    }
    mp::write_uint(&mut out, 0x20);
    out.extend(encode(key));
    mp::write_uint(&mut out, 0x21);
    out.extend(encode(ops));
    out
}

fn body_upsert(space: u32, index_base: u32, tuple: &Value, ops: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    mp::write_map_len(&mut out, 3 + u32::from(index_base != 0));
    mp::write_uint(&mut out, 0x10);
    mp::write_uint(&mut out, u64::from(space));
    if index_base != 0 {
        mp::write_uint(&mut out, 0x15);
        mp::write_uint(&mut out, u64::from(index_base));
    }
    mp::write_uint(&mut out, 0x28);
    out.extend(encode(ops));
    mp::write_uint(&mut out, 0x21);
    out.extend(encode(tuple));
    out
}

/// A snapshot body as Tarantool writes it: space id always `ce` + 4 bytes.
fn snap_body(space: u32, tuple: &Value) -> Vec<u8> {
    let mut out = vec![0x82, 0x10, 0xce];
    out.extend_from_slice(&space.to_be_bytes());
    out.push(0x21);
    out.extend(encode(tuple));
    out
}

const INSERT: u32 = 2;
const REPLACE: u32 = 3;
const UPDATE: u32 = 4;
const DELETE: u32 = 5;
const UPSERT: u32 = 9;
const NOP: u32 = 12;

fn row(req_type: u32, lsn: u64, tsn: u64, is_commit: bool, body: Vec<u8>) -> Row {
    Row {
        header: RowHeader {
            req_type,
            replica_id: 1,
            lsn,
            timestamp: 1_700_000_000.0 + lsn as f64 * 0.125 + 0.000_123,
            tsn,
            is_commit,
            ..RowHeader::default()
        },
        body,
    }
}

fn single(req_type: u32, lsn: u64, body: Vec<u8>) -> Row {
    row(req_type, lsn, lsn, true, body)
}

/// What the JSON record of a row must contain.
struct Expect {
    lsn: u64,
    typ: &'static str,
    space: u64,
    fields: Vec<(&'static str, Value)>,
}

fn check_rows(json: &[Json], expected: &[Expect]) {
    assert_eq!(json.len(), expected.len(), "row count; got {json:#?}");
    for (rec, exp) in json.iter().zip(expected) {
        let header = &rec["HEADER"];
        assert_eq!(header["lsn"], Json::from(exp.lsn), "{rec}");
        assert_eq!(header["type"], Json::from(exp.typ), "{rec}");
        assert_eq!(rec["BODY"]["space_id"], Json::from(exp.space), "{rec}");
        for (name, value) in &exp.fields {
            assert_eq!(rec["BODY"][*name], to_json(value), "{name} of {rec}");
        }
    }
}

/// The xlog and snapshot written with `XlogWriter`, and what `--space 512` must show.
fn write_spindle_files(dir: &Path) -> Vec<Expect> {
    let t1 = arr(vec![
        Value::from(1),
        s("one"),
        Value::F64(1.5),
        Value::from(-3),
        Value::Boolean(true),
        Value::Nil,
        map(vec![
            ("a", Value::from(1)),
            ("b", arr(vec![Value::from(2), Value::from(3)])),
        ]),
    ]);
    let t2 = arr(vec![
        Value::from(2),
        s("two"),
        s("yes"),
        s(""),
        s("1.5"),
        s("with space"),
        s("multi\nline"),
        s("it's \"quoted\""),
        s("ünïcode"),
    ]);
    let ops3 = arr(vec![
        arr(vec![s("="), Value::from(1), s("uno")]),
        arr(vec![s("+"), Value::from(2), Value::from(1)]),
    ]);
    let ops4 = arr(vec![arr(vec![s("="), Value::from(2), s("dos")])]);
    let t7 = arr(vec![Value::from(3), s("three")]);
    let ops7 = arr(vec![arr(vec![s("+"), Value::from(0), Value::from(1)])]);
    let big = arr(vec![Value::from(11), s(&"x".repeat(3000))]);
    let exotic = arr(vec![
        Value::Binary(vec![0xff, 0x00, 0x01, 0x80]),
        Value::F32(0.1),
        Value::from(u64::MAX),
        Value::from(i64::MIN),
        Value::Ext(1, vec![0x01, 0x01, 0x5c]),
        Value::Ext(
            2,
            vec![
                0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4,
                0x30, 0xc8,
            ],
        ),
        Value::F64(f64::NAN),
        Value::F64(f64::INFINITY),
        Value::F64(-0.0),
        Value::F64(1e100),
        Value::F64(0.1 + 0.2),
        s("😀 emoji"),
        s("\u{1}ctl\ttab"),
        s(" lead"),
        s("trail "),
        s("a: b"),
        s("- x"),
        s("#c"),
        s("k:v"),
        s("null"),
        s("0x1F"),
        s(&"word ".repeat(40)),
        Value::Map(
            [
                "z", "y", "x", "w", "v", "u", "t", "space_id", "tuple", "lsn", "10", "",
            ]
            .iter()
            .enumerate()
            .map(|(i, k)| (s(k), Value::from(i)))
            .collect(),
        ),
        Value::Map(vec![
            (Value::from(1), s("one")),
            (Value::from(-1), s("minus")),
            (Value::from(100), s("hundred")),
        ]),
        arr((0..40).map(|i| Value::from(1000 + i)).collect()),
        Value::Map(vec![]),
        arr(vec![]),
    ]);

    let mut meta = Meta::new(FileType::Xlog, UUID, Vclock::new());
    meta.vclock.set(1, 0);
    let mut w = spindle_xlog::XlogWriter::create(OsFs, dir, meta).unwrap();
    let txns: Vec<Vec<Row>> = vec![
        vec![single(INSERT, 1, body_tuple(512, &t1))],
        vec![single(REPLACE, 2, body_tuple(512, &t2))],
        vec![single(
            UPDATE,
            3,
            body_update(512, 0, &arr(vec![Value::from(1)]), &ops3),
        )],
        vec![single(
            UPDATE,
            4,
            body_update(512, 1, &arr(vec![Value::from(2)]), &ops4),
        )],
        vec![single(
            DELETE,
            5,
            body_key(512, None, &arr(vec![Value::from(2)])),
        )],
        vec![single(
            DELETE,
            6,
            body_key(512, Some(1), &arr(vec![s("one")])),
        )],
        vec![single(UPSERT, 7, body_upsert(512, 0, &t7, &ops7))],
        vec![
            row(
                INSERT,
                8,
                8,
                false,
                body_tuple(512, &arr(vec![Value::from(10)])),
            ),
            row(
                INSERT,
                9,
                8,
                false,
                body_tuple(512, &arr(vec![Value::from(11)])),
            ),
            row(
                REPLACE,
                10,
                8,
                true,
                body_tuple(512, &arr(vec![Value::from(12)])),
            ),
        ],
        vec![single(INSERT, 11, body_tuple(512, &big))],
        vec![single(
            INSERT,
            12,
            body_tuple(
                280,
                &arr(vec![
                    Value::from(512),
                    Value::from(1),
                    s("test"),
                    s("memtx"),
                    Value::from(0),
                    Value::Map(vec![]),
                    arr(vec![]),
                ]),
            ),
        )],
        vec![single(INSERT, 13, body_tuple(513, &exotic))],
        vec![single(NOP, 14, Vec::new())],
        vec![single(UPSERT, 15, body_upsert(512, 1, &t7, &ops4))],
    ];
    for txn in &txns {
        w.append_txn(txn);
        w.flush().unwrap();
    }
    let xlog = w.close().unwrap();

    // The 3000-byte row must have gone into a zstd block.
    let mut reader = XlogReader::new(std::fs::read(&xlog).unwrap()).unwrap();
    let mut compressed = 0;
    while let Some(block) = reader.next_block().unwrap() {
        compressed += usize::from(block.compressed);
    }
    assert_eq!(compressed, 1, "exactly one zstd block expected");

    let mut snap_meta = Meta::new(FileType::Snap, UUID, Vclock::new());
    snap_meta.vclock.set(1, 15);
    let mut w = spindle_xlog::XlogWriter::create(OsFs, dir, snap_meta).unwrap();
    let snap_rows = [
        (272, arr(vec![s("cluster"), s(UUID)])),
        (
            272,
            arr(vec![
                s("version"),
                Value::from(2),
                Value::from(6),
                Value::from(0),
            ]),
        ),
        (
            280,
            arr(vec![
                Value::from(512),
                Value::from(1),
                s("test"),
                s("memtx"),
            ]),
        ),
        (512, arr(vec![Value::from(1), s("uno")])),
        (512, arr(vec![Value::from(3), s("three")])),
        (512, big.clone()),
        (513, exotic.clone()),
    ];
    for (lsn, (space, tuple)) in snap_rows.iter().enumerate() {
        let header = RowHeader {
            req_type: INSERT,
            lsn: lsn as u64,
            timestamp: 1_700_000_100.5,
            tsn: lsn as u64,
            ..RowHeader::default()
        };
        w.append_row(&Row {
            header,
            body: snap_body(*space, tuple),
        })
        .unwrap();
    }
    w.close().unwrap();

    let exp = |lsn, typ, fields: Vec<(&'static str, Value)>| Expect {
        lsn,
        typ,
        space: 512,
        fields,
    };
    vec![
        exp(1, "INSERT", vec![("tuple", t1)]),
        exp(2, "REPLACE", vec![("tuple", t2)]),
        exp(
            3,
            "UPDATE",
            vec![("key", arr(vec![Value::from(1)])), ("tuple", ops3)],
        ),
        exp(
            4,
            "UPDATE",
            vec![
                ("key", arr(vec![Value::from(2)])),
                ("index_base", Value::from(1)),
                ("tuple", ops4.clone()),
            ],
        ),
        exp(5, "DELETE", vec![("key", arr(vec![Value::from(2)]))]),
        exp(
            6,
            "DELETE",
            vec![("key", arr(vec![s("one")])), ("index_id", Value::from(1))],
        ),
        exp(
            7,
            "UPSERT",
            vec![("tuple", t7.clone()), ("operations", ops7)],
        ),
        exp(8, "INSERT", vec![("tuple", arr(vec![Value::from(10)]))]),
        exp(9, "INSERT", vec![("tuple", arr(vec![Value::from(11)]))]),
        exp(10, "REPLACE", vec![("tuple", arr(vec![Value::from(12)]))]),
        exp(11, "INSERT", vec![("tuple", big)]),
        exp(
            15,
            "UPSERT",
            vec![
                ("tuple", t7),
                ("operations", ops4),
                ("index_base", Value::from(1)),
            ],
        ),
    ]
}

// ----------------------------------------------------------------------------------------
// 1. files written with XlogWriter

#[test]
fn spindle_written_files_print_like_tarantoolctl() {
    require_tarantool();
    let dir = TempDir::new("writer");
    let expected = write_spindle_files(dir.path());
    let files = assert_dir_same(dir.path());
    let xlog = files
        .iter()
        .find(|f| f.extension().unwrap() == "xlog")
        .unwrap();

    // The rows are the ones written.
    let json = assert_same(&[xlog], &["--space", "512"]);
    check_rows(&json_rows(&json), &expected);
    let with_system = json_rows(&assert_same(&[xlog], &["--space", "512", "--space", "280"]));
    assert_eq!(
        with_system.len(),
        expected.len() + 1,
        "the _space row is shown with --space"
    );

    // The 3-row transaction carries tsn on every row and commit on the last.
    let txn: Vec<Json> = json_rows(&json)
        .into_iter()
        .filter(|r| (8..=10).contains(&r["HEADER"]["lsn"].as_u64().unwrap()))
        .collect();
    assert!(txn.iter().all(|r| r["HEADER"]["tsn"] == 8));
    assert_eq!(txn[2]["HEADER"]["commit"], Json::Bool(true));
    assert!(txn[0]["HEADER"].get("commit").is_none());

    // YAML of the exotic row, as tarantoolctl prints it (compared with it above too):
    // binary as !!binary, float32 widened, 64-bit extremes, decimal and UUID plain,
    // characters libyaml cannot print double-quoted and escaped, wrapping at 80 columns.
    let yaml = spindle_cat(&["--space", "513", "--to", "14", path_str(xlog)]);
    let yaml = text(&yaml.stdout);
    for piece in [
        "tuple: [!!binary /wABgA==, 0.10000000149012, 18446744073709551615,",
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8, nan, inf, 0, 1e+100, 0.3,",
        "0.3, \"\\U0001F600\n      emoji\", \"\\x01ctl\\ttab\", ' lead', 'trail ',",
        "{1: 'one', 100: 'hundred', -1: 'minus'}",
    ] {
        assert!(yaml.contains(piece), "{piece:?} not in {yaml}");
    }
}

// ----------------------------------------------------------------------------------------
// 2. files written by the spindle binary

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(data: &Path, log: PathBuf) -> (Server, SocketAddr) {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(SPINDLE)
            .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(data)
            .args([
                "--wal-mode",
                "write",
                "--admin-password",
                "pw",
                "--log-level",
                "info",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("spindle exited early ({status}): {}", server.logs());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return (server, addr);
            }
            assert!(
                Instant::now() < deadline,
                "spindle did not listen: {}",
                server.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }

    fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "spindle exit {status}: {}", self.logs());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "spindle ignored SIGTERM: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn snap_count(dir: &Path) -> usize {
    log_files(dir)
        .iter()
        .filter(|f| f.extension().unwrap() == "snap")
        .count()
}

#[test]
fn files_of_the_spindle_binary_print_like_tarantoolctl() {
    require_tarantool();
    let work = TempDir::new("server");
    let data = work.path().join("data");
    let (server, addr) = Server::start(&data, work.path().join("spindle.log"));
    let mut c = Client::connect(addr).unwrap();
    c.auth("admin", "pw").unwrap();
    let space_row = arr(vec![
        Value::from(512),
        Value::from(1),
        s("test"),
        s("memtx"),
        Value::from(0),
        Value::Map(vec![]),
        arr(vec![]),
    ]);
    let index_row = arr(vec![
        Value::from(512),
        Value::from(0),
        s("pk"),
        s("tree"),
        map(vec![("unique", Value::Boolean(true))]),
        arr(vec![arr(vec![Value::from(0), s("unsigned")])]),
    ]);
    c.insert(280, &space_row).unwrap();
    c.insert(288, &index_row).unwrap();
    let t1 = arr(vec![
        Value::from(1),
        s("one"),
        Value::F64(1.5),
        map(vec![("k", s("v"))]),
    ]);
    let t2 = arr(vec![Value::from(2), s(&"y".repeat(2500))]);
    let t3 = arr(vec![Value::from(3), s("three")]);
    let ops_upd = arr(vec![arr(vec![s("="), Value::from(1), s("uno")])]);
    let ops_ups = arr(vec![arr(vec![s("="), Value::from(1), s("tres")])]);
    c.insert(512, &t1).unwrap();
    c.replace(512, &t2).unwrap();
    c.update(512, 0, &arr(vec![Value::from(1)]), &ops_upd)
        .unwrap();
    c.upsert(512, &t3, &ops_ups).unwrap();
    c.delete(512, 0, &arr(vec![Value::from(2)])).unwrap();

    // A checkpoint, so the snapshot holds user data too.
    let snaps_before = snap_count(&data);
    server.signal(libc::SIGUSR1);
    let deadline = Instant::now() + Duration::from_secs(15);
    while snap_count(&data) == snaps_before {
        assert!(
            Instant::now() < deadline,
            "no snapshot after SIGUSR1: {}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let t4 = arr(vec![Value::from(4), s("after the checkpoint")]);
    c.insert(512, &t4).unwrap();
    drop(c);
    server.stop();

    let files = assert_dir_same(&data);
    let xlogs: Vec<&Path> = files
        .iter()
        .filter(|f| f.extension().unwrap() == "xlog")
        .map(PathBuf::as_path)
        .collect();
    let json = assert_same(&xlogs, &["--space", "512"]);
    let rows = json_rows(&json);
    let first = rows[0]["HEADER"]["lsn"].as_u64().unwrap();
    let exp = |i: u64, typ, fields: Vec<(&'static str, Value)>| Expect {
        lsn: first + i,
        typ,
        space: 512,
        fields,
    };
    check_rows(
        &rows,
        &[
            exp(0, "INSERT", vec![("tuple", t1)]),
            exp(1, "REPLACE", vec![("tuple", t2)]),
            exp(
                2,
                "UPDATE",
                vec![("key", arr(vec![Value::from(1)])), ("tuple", ops_upd)],
            ),
            exp(3, "UPSERT", vec![("tuple", t3), ("operations", ops_ups)]),
            exp(4, "DELETE", vec![("key", arr(vec![Value::from(2)]))]),
            exp(5, "INSERT", vec![("tuple", t4)]),
        ],
    );
    // The DDL rows are system rows: shown with --show-system only.
    let ddl = json_rows(&assert_same(&xlogs, &["--space", "280", "--space", "288"]));
    assert_eq!(ddl.len(), 2, "{ddl:?}");
    // The checkpoint holds the user rows as INSERTs.
    let snap = files
        .iter()
        .rev()
        .find(|f| f.extension().unwrap() == "snap")
        .unwrap();
    let snap_rows = json_rows(&assert_same(&[snap], &["--space", "512"]));
    let tuples: Vec<&Json> = snap_rows.iter().map(|r| &r["BODY"]["tuple"]).collect();
    assert_eq!(tuples.len(), 2, "{snap_rows:?}");
    assert!(snap_rows.iter().all(|r| r["HEADER"]["type"] == "INSERT"));
}

// ----------------------------------------------------------------------------------------
// 3. files written by Tarantool

const TARANTOOL_SCRIPT: &str = r#"
box.cfg{listen = nil, log_level = 1, checkpoint_count = 10}
local s = box.schema.space.create('test')
s:create_index('pk')
local l = box.schema.space.create('loc', {is_local = true})
l:create_index('pk')
s:insert{1, 'one', 1.5, -3, true, {a = 1, b = {2, 3}}, box.NULL}
s:insert{2, string.rep('x', 3000)}
s:replace{3, 'three', 1e100, 0.1, 18446744073709551615ULL, -9223372036854775808LL}
s:update(1, {{'=', 2, 'upd'}, {'+', 4, 1}})
s:delete(2)
s:upsert({5, 'five'}, {{'=', 2, 'x'}})
box.begin()
s:insert{10, 'a'}
s:insert{11, 'b\nc\'d"e'}
s:insert{12, 'ünï', 'yes', 'null', '', ' lead', '1', '1.5', '~', 'true', 'emoji 😀', 'tab\t', 'ctl\1'}
box.commit()
box.begin() s:insert{13} l:insert{1} box.commit()
s:before_replace(function(old, new) if new and new[1] == 99 then return nil end end)
s:insert{99}
box.snapshot()
s:insert{20, {}, {1}, {[1] = 2, [3] = 4}, 1/0, -1/0, 0/0, 2^53, 1e15, 1e16, 123.456, -0.0}
s:insert{21, require('decimal').new('1.5'), require('decimal').new('-0.001'),
         require('decimal').new('1e10'), require('uuid').fromstr('6ba7b810-9dad-11d1-80b4-00c04fd430c8')}
s:insert{22, {z = 1, y = 2, x = 3, w = 4, v = 5, u = 6, t = 7, s = 8, r = 9, q = 10},
         {[1] = 'a', [2] = 'b', [5] = 'c'}, {['1'] = 1, [2] = 2}, {[-1] = 'neg', [0] = 'zero'},
         string.rep('word ', 40), {string.rep('abc ', 30)}}
local t = {23}
for i = 1, 60 do t[#t + 1] = i * 1000 end
s:insert(t)
math.randomseed(7)
local chars = {'a', 'Z', ' ', '-', ':', '#', '?', "'", '"', '\\', '/', '\n', '0', '.', 'e',
               '[', '{', ',', '&', '*', '!', '|', '>', '%', '@', '`', '~', 'ü', '€'}
local function rstr()
    local out = {}
    for i = 1, math.random(0, 12) do out[i] = chars[math.random(#chars)] end
    return table.concat(out)
end
for i = 100, 160 do
    local m = {}
    for j = 1, math.random(0, 9) do m[rstr()] = math.random(3) == 1 and rstr() or j end
    s:replace{i, rstr(), m, {rstr(), math.random() * 10 ^ math.random(-8, 18)}}
end
os.exit(0)
"#;

fn run_tarantool(dir: &Path) {
    std::fs::write(dir.join("init.lua"), TARANTOOL_SCRIPT).unwrap();
    let out = match Command::new("tarantool")
        .arg("init.lua")
        .current_dir(dir)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("cannot run tarantool: {e}. {INSTALL_HINT}"),
    };
    assert!(
        out.status.success(),
        "tarantool failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn tarantool_written_files_print_like_tarantoolctl() {
    require_tarantool();
    let dir = TempDir::new("tarantool");
    run_tarantool(dir.path());
    let files = assert_dir_same(dir.path());
    assert!(
        files
            .iter()
            .filter(|f| f.extension().unwrap() == "snap")
            .count()
            >= 2
    );
    assert!(
        files
            .iter()
            .filter(|f| f.extension().unwrap() == "xlog")
            .count()
            >= 2
    );

    // Spot checks of the rows themselves (the first xlog has no NaN, which JSON lacks).
    let xlog = &files[1];
    let rows =
        json_rows(&spindle_cat(&["--format", "json", "--space", "512", path_str(xlog)]).stdout);
    let types: Vec<&str> = rows
        .iter()
        .map(|r| r["HEADER"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types[..6],
        ["INSERT", "INSERT", "REPLACE", "UPDATE", "DELETE", "UPSERT"]
    );
    assert_eq!(rows[3]["BODY"]["index_base"], Json::from(1));
    assert_eq!(rows[3]["BODY"]["key"], serde_json::json!([1]));
    assert_eq!(
        rows[3]["BODY"]["tuple"],
        serde_json::json!([["=", 2, "upd"], ["+", 4, 1]])
    );
    assert_eq!(
        rows[5]["BODY"]["operations"],
        serde_json::json!([["=", 2, "x"]])
    );
    assert_eq!(rows[5]["BODY"]["tuple"], serde_json::json!([5, "five"]));
    let txn: Vec<&Json> = rows
        .iter()
        .filter(|r| r["HEADER"].get("tsn").is_some())
        .collect();
    assert_eq!(
        txn.len(),
        4,
        "3-row transaction plus the global row of the mixed one"
    );
    assert_eq!(txn[2]["HEADER"]["commit"], Json::Bool(true));
}

// ----------------------------------------------------------------------------------------
// 4. filters

#[test]
fn filters_match_tarantoolctl() {
    require_tarantool();
    let dir = TempDir::new("filters");
    run_tarantool(dir.path());
    let files = log_files(dir.path());
    let xlogs: Vec<&Path> = files
        .iter()
        .filter(|f| f.extension().unwrap() == "xlog")
        .map(PathBuf::as_path)
        .collect();
    let cases: &[&[&str]] = &[
        &["--space", "512"],
        &["--space", "512", "--space", "280"],
        &["--space", "513"],
        &["--show-system", "--space", "280"],
        &["--show-system"],
        &["--from", "5", "--to", "9"],
        &["--to", "3", "--show-system"],
        &["--from", "1000"],
        &["--from", "12"],
        &["--replica", "1"],
        &["--replica", "1", "--to", "7"],
        &["--replica", "1", "--replica", "2", "--from", "4"],
        &["--replica", "2"],
        &[
            "--space",
            "512",
            "--from",
            "4",
            "--to",
            "12",
            "--replica",
            "1",
        ],
    ];
    for case in cases {
        assert_same(&xlogs, case);
    }
    // --from is inclusive, --to exclusive (checked on the first xlog: JSON has no NaN).
    let first = xlogs[0];
    let all: Vec<u64> = json_rows(&assert_same(&[first], &["--space", "512"]))
        .iter()
        .map(|r| r["HEADER"]["lsn"].as_u64().unwrap())
        .collect();
    let (from, to) = (all[1], all[4]);
    let (from_s, to_s) = (from.to_string(), to.to_string());
    let json = json_rows(&assert_same(
        &[first],
        &["--space", "512", "--from", &from_s, "--to", &to_s],
    ));
    let lsns: Vec<u64> = json
        .iter()
        .map(|r| r["HEADER"]["lsn"].as_u64().unwrap())
        .collect();
    assert_eq!(lsns, all[1..4]);
    // Local rows have no replica id: --replica hides them.
    let local = json_rows(&assert_same(&[first], &["--space", "513"]));
    assert!(local.iter().any(|r| r["HEADER"]["group_id"] == 1));
    assert!(json_rows(&assert_same(
        &[first],
        &["--space", "513", "--replica", "1"]
    ))
    .is_empty());
    // The snapshot: only system rows unless asked.
    let snap = &files[0];
    assert_eq!(spindle_cat(&[path_str(snap)]).stdout, b"");
    assert_same(&[snap], &["--show-system", "--from", "3", "--to", "20"]);
}

// ----------------------------------------------------------------------------------------
// 5. damaged files

/// Offsets of the blocks of a file, their row counts, and the offset where its EOF marker
/// (if any) starts.
fn block_offsets(bytes: &[u8]) -> (Vec<u64>, Vec<usize>, u64) {
    let mut reader = XlogReader::new(bytes.to_vec()).unwrap();
    let mut offsets = Vec::new();
    let mut rows = Vec::new();
    while let Some(block) = reader.next_block().unwrap() {
        offsets.push(block.offset);
        rows.push(block.rows.len());
    }
    let end = if reader.has_eof_marker() {
        bytes.len() as u64 - 4
    } else {
        bytes.len() as u64
    };
    (offsets, rows, end)
}

/// Rewrites the fixed header of the plain block at `offset` (payload `len` bytes) with a
/// correct CRC, so that damage inside the payload reaches the row decoder.
fn fix_crc(bytes: &mut [u8], offset: usize, len: usize) {
    let payload = bytes[offset + 19..offset + 19 + len].to_vec();
    let mut h = bytes[offset..offset + 4].to_vec();
    mp::write_uint(&mut h, len as u64);
    mp::write_uint(&mut h, 0);
    mp::write_uint(&mut h, u64::from(crc32c_tarantool(&payload)));
    let pad = 19 - h.len();
    h.push(0xa0 | (pad - 1) as u8);
    h.resize(19, 0);
    bytes[offset..offset + 19].copy_from_slice(&h);
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Exit 0 or 1, never a panic (101) or a signal.
fn assert_no_crash(path: &Path, what: &str) {
    for format in ["yaml", "json", "lua"] {
        let out = spindle_cat(&["--format", format, "--show-system", path_str(path)]);
        let code = out.status.code();
        assert!(
            matches!(code, Some(0) | Some(1)),
            "{what} ({format}): exit {:?}: {}",
            out.status,
            text(&out.stderr)
        );
        assert!(
            !text(&out.stderr).contains("panicked"),
            "{what}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn damaged_files() {
    require_tarantool();
    let dir = TempDir::new("damaged");
    write_spindle_files(dir.path());
    let files = log_files(dir.path());
    let xlog = files
        .iter()
        .find(|f| f.extension().unwrap() == "xlog")
        .unwrap();
    let good = std::fs::read(xlog).unwrap();
    let (blocks, rows_per_block, end) = block_offsets(&good);
    assert!(blocks.len() >= 10);
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let write = |name: &str, bytes: &[u8]| -> PathBuf {
        let p = work.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };

    // Torn tail: the rows before the cut are printed, a warning, exit 0; tarantoolctl
    // silently prints the same rows.
    let cut = blocks[blocks.len() - 1] as usize + 25;
    let torn = write("torn.xlog", &good[..cut]);
    let json = assert_same(&[&torn], &["--show-system"]);
    let rows_before_last: usize = rows_per_block[..blocks.len() - 1].iter().sum();
    assert_eq!(text(&json).lines().count(), rows_before_last);
    let out = spindle_cat(&[path_str(&torn)]);
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("torn tail") && err.contains("torn.xlog"),
        "{err}"
    );
    assert!(
        err.contains(&format!("offset {}", blocks[blocks.len() - 1])),
        "{err}"
    );

    // A flipped byte in the payload of block 3: rows before it, then an error naming the
    // file and the block offset, exit 1. With --skip-corrupt the output is tarantoolctl's
    // (which skips damaged blocks silently).
    let mut bad = good.clone();
    bad[blocks[3] as usize + 22] ^= 0x55;
    let corrupt = write("corrupt.xlog", &bad);
    let out = spindle_cat(&["--format", "json", "--show-system", path_str(&corrupt)]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("corrupt.xlog") && err.contains(&format!("offset {}", blocks[3])),
        "{err}"
    );
    assert_eq!(
        json_rows(&out.stdout).len(),
        rows_per_block[..3].iter().sum::<usize>()
    );
    let theirs = tarantoolctl_cat(&["--format", "json", "--show-system", path_str(&corrupt)]);
    assert!(theirs.stdout.starts_with(&out.stdout));
    for format in ["yaml", "json", "lua"] {
        let args = [
            "--format",
            format,
            "--show-system",
            "--skip-corrupt",
            path_str(&corrupt),
        ];
        let ours = spindle_cat(&args);
        assert!(ours.status.success(), "{}", text(&ours.stderr));
        assert!(text(&ours.stderr).contains("warning"));
        let theirs = tarantoolctl_cat(&["--format", format, "--show-system", path_str(&corrupt)]);
        assert!(
            ours.stdout == theirs.stdout,
            "{}",
            first_difference(&ours.stdout, &theirs.stdout)
        );
    }
    // The YAML document is closed even when printing stops at damage.
    let out = spindle_cat(&["--show-system", path_str(&corrupt)]);
    assert!(text(&out.stdout).ends_with("...\n\n"));

    // A broken block magic in the middle.
    let mut bad = good.clone();
    bad[blocks[5] as usize] = b'X';
    let magic = write("magic.xlog", &bad);
    let out = spindle_cat(&[path_str(&magic)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("offset {}", blocks[5])));
    let ours = spindle_cat(&["--skip-corrupt", "--format", "json", path_str(&magic)]);
    let theirs = tarantoolctl_cat(&["--format", "json", path_str(&magic)]);
    assert!(ours.status.success());
    assert!(
        ours.stdout == theirs.stdout,
        "{}",
        first_difference(&ours.stdout, &theirs.stdout)
    );

    // Missing file: error, exit 1, the files after it are not printed (as tarantoolctl).
    let missing = work.join("missing.xlog");
    let out = spindle_cat(&[path_str(&missing), path_str(xlog)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot open") && text(&out.stderr).contains("missing.xlog")
    );
    assert!(out.stdout.is_empty());
    assert!(!tarantoolctl_cat(&[path_str(&missing)]).status.success());

    // Not a log file.
    let junk = write("junk.xlog", b"hello, world\n\nnot a log\n");
    let out = spindle_cat(&[path_str(&junk)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a Tarantool .xlog/.snap file"),
        "{}",
        text(&out.stderr)
    );
    assert!(!tarantoolctl_cat(&[path_str(&junk)]).status.success());
    let empty = write("empty.snap", b"");
    assert_eq!(spindle_cat(&[path_str(&empty)]).status.code(), Some(1));

    // Hostile nesting inside a valid block: an error, not a stack overflow. 400 levels print.
    for (depth, ok) in [(400usize, true), (200_000, false)] {
        let mut tuple = vec![0x91u8; depth];
        tuple.push(0x01);
        let mut body = vec![0x82, 0x10, 0xcd, 0x02, 0x00, 0x21, 0x91];
        body.extend(&tuple);
        let mut meta = Meta::new(FileType::Xlog, UUID, Vclock::new());
        meta.vclock.set(1, depth as u64);
        let sub = work.join(format!("deep{depth}"));
        std::fs::create_dir_all(&sub).unwrap();
        let mut w = spindle_xlog::XlogWriter::create(OsFs, &sub, meta).unwrap();
        w.append_txn(&[single(INSERT, depth as u64 + 1, body)]);
        let path = w.close().unwrap();
        let out = spindle_cat(&["--format", "json", path_str(&path)]);
        assert_eq!(
            out.status.success(),
            ok,
            "depth {depth}: {}",
            text(&out.stderr)
        );
        assert_no_crash(&path, "deep nesting");
    }

    // Random damage: flipped bytes, cuts, garbage; and payload damage behind a valid CRC.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..60 {
        let mut bytes = good.clone();
        match i % 4 {
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            1 => bytes.truncate(rng.below(bytes.len())),
            2 => {
                let at = rng.below(bytes.len());
                let junk: Vec<u8> = (0..1 + rng.below(40)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, junk);
            }
            _ => {
                // Damage a row inside a plain block and fix its CRC.
                let k = rng.below(blocks.len());
                let start = blocks[k] as usize;
                let stop = blocks.get(k + 1).map_or(end as usize, |&b| b as usize);
                if good[start..start + 4] != [0xd5, 0xba, 0x0b, 0xab] {
                    continue;
                }
                let len = stop - start - 19;
                for _ in 0..1 + rng.below(3) {
                    let at = start + 19 + rng.below(len);
                    bytes[at] = rng.next() as u8;
                }
                fix_crc(&mut bytes, start, len);
            }
        }
        let path = write(&format!("fuzz{i}.xlog"), &bytes);
        assert_no_crash(&path, &format!("mutation {i}"));
    }
}
