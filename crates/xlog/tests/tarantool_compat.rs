//! Compatibility with the real Tarantool 2.6 (`/usr/bin/tarantool`, `/usr/bin/tarantoolctl`):
//! files we write must be readable by `tarantoolctl cat` and recoverable by Tarantool, and
//! files Tarantool writes must be readable by us. The tools are required: a missing binary
//! fails the test instead of skipping it.

use std::path::{Path, PathBuf};
use std::process::Command;

use spindle_proto::mp::{self, Value};
use spindle_xlog::{
    cut_unwritten_tail, scan_dir, FileType, Meta, OsFs, Row, RowHeader, Vclock, XlogError,
    XlogReader, XlogWriter,
};

const TARANTOOL: &str = "/usr/bin/tarantool";
const TARANTOOLCTL: &str = "/usr/bin/tarantoolctl";
const SPACE: u64 = 512;
const BIG_LEN: usize = 3000;

const INSERT: u32 = 2;
const REPLACE: u32 = 3;
const UPDATE: u32 = 4;
const DELETE: u32 = 5;
const UPSERT: u32 = 9;

fn require_tools() {
    for tool in [TARANTOOL, TARANTOOLCTL] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run `apt-get install -y tarantool` (these tests never skip)"
        );
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a Lua script with `box.cfg{work_dir = dir}` prepended; returns its stdout.
fn run_tarantool(dir: &Path, script: &str) -> String {
    let lua = format!(
        "box.cfg{{work_dir = '{}', log = 'tarantool.log'}}\n{script}\nos.exit(0)\n",
        dir.display()
    );
    let path = dir.join("script.lua");
    std::fs::write(&path, lua).expect("write script");
    run(Command::new(TARANTOOL).arg(&path).current_dir(dir))
}

// ---- bodies in the §3.3 shapes ----

fn key_uint(b: &mut Vec<u8>, k: u64, v: u64) {
    mp::write_uint(b, k);
    mp::write_uint(b, v);
}

fn tuple(b: &mut Vec<u8>, id: u64, text: &str) {
    mp::write_array_len(b, 2);
    mp::write_uint(b, id);
    mp::write_str(b, text);
}

/// `{0x10: space, 0x21: [id, text]}` (INSERT/REPLACE).
fn insert_body(id: u64, text: &str) -> Vec<u8> {
    let mut b = Vec::new();
    mp::write_map_len(&mut b, 2);
    key_uint(&mut b, 0x10, SPACE);
    mp::write_uint(&mut b, 0x21);
    tuple(&mut b, id, text);
    b
}

/// The ops list `[['=', 2, text]]`.
fn set_field_2(b: &mut Vec<u8>, text: &str) {
    mp::write_array_len(b, 1);
    mp::write_array_len(b, 3);
    mp::write_str(b, "=");
    mp::write_uint(b, 2);
    mp::write_str(b, text);
}

/// `{0x10: space, 0x15: 1, 0x20: [id], 0x21: ops}`: UPDATE ops live under TUPLE.
fn update_body(id: u64, text: &str) -> Vec<u8> {
    let mut b = Vec::new();
    mp::write_map_len(&mut b, 4);
    key_uint(&mut b, 0x10, SPACE);
    key_uint(&mut b, 0x15, 1);
    mp::write_uint(&mut b, 0x20);
    mp::write_array_len(&mut b, 1);
    mp::write_uint(&mut b, id);
    mp::write_uint(&mut b, 0x21);
    set_field_2(&mut b, text);
    b
}

/// `{0x10: space, 0x20: [id]}`.
fn delete_body(id: u64) -> Vec<u8> {
    let mut b = Vec::new();
    mp::write_map_len(&mut b, 2);
    key_uint(&mut b, 0x10, SPACE);
    mp::write_uint(&mut b, 0x20);
    mp::write_array_len(&mut b, 1);
    mp::write_uint(&mut b, id);
    b
}

/// `{0x10: space, 0x15: 1, 0x28: ops, 0x21: tuple}`.
fn upsert_body(id: u64, text: &str) -> Vec<u8> {
    let mut b = Vec::new();
    mp::write_map_len(&mut b, 4);
    key_uint(&mut b, 0x10, SPACE);
    key_uint(&mut b, 0x15, 1);
    mp::write_uint(&mut b, 0x28);
    set_field_2(&mut b, "ignored");
    mp::write_uint(&mut b, 0x21);
    tuple(&mut b, id, text);
    b
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(1.0)
}

/// Transactions from replica 1 starting at `first_lsn`: single rows of each DML type, one
/// three-row transaction and one ~3 KiB row (a zstd block). Returns them with the expected
/// final content of the space, given a space holding nothing before.
fn sample_txns(first_lsn: u64) -> (Vec<Vec<Row>>, Vec<(u64, String)>) {
    let big = "b".repeat(BIG_LEN);
    let bodies: Vec<Vec<(u32, Vec<u8>)>> = vec![
        vec![(INSERT, insert_body(10, "ten"))],
        vec![
            (INSERT, insert_body(11, "a")),
            (REPLACE, insert_body(12, "b")),
            (INSERT, insert_body(13, &big)),
        ],
        vec![(UPDATE, update_body(10, "TEN"))],
        vec![(DELETE, delete_body(11))],
        vec![(UPSERT, upsert_body(14, "u"))],
    ];
    let ts = now();
    let mut lsn = first_lsn;
    let txns = bodies
        .into_iter()
        .map(|txn| {
            let tsn = lsn;
            let count = txn.len();
            txn.into_iter()
                .enumerate()
                .map(|(i, (req_type, body))| {
                    let header = RowHeader {
                        req_type,
                        replica_id: 1,
                        lsn,
                        timestamp: ts,
                        tsn,
                        is_commit: i + 1 == count,
                        ..RowHeader::default()
                    };
                    lsn += 1;
                    Row { header, body }
                })
                .collect()
        })
        .collect();
    let expected = vec![
        (10, "TEN".to_string()),
        (12, "b".to_string()),
        (13, big),
        (14, "u".to_string()),
    ];
    (txns, expected)
}

/// Writes each transaction as `wal_mode = fsync` does (`flush_durable`: one `pwritev2` with
/// `RWF_DSYNC`), so the tools below check that path's bytes.
fn write_xlog(dir: &Path, meta: Meta, txns: &[Vec<Row>]) -> PathBuf {
    let mut w = XlogWriter::create(OsFs, dir, meta).expect("create xlog");
    for txn in txns {
        w.append_txn(txn);
        w.flush_durable().expect("durable flush");
    }
    w.close().expect("close")
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Extracts the number after `"key":` in a JSON line printed by `tarantoolctl cat`.
fn json_number(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = line
        .get(at..)?
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn json_str<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let rest = line.get(at..)?;
    rest.get(..rest.find('"')?)
}

/// `tarantoolctl cat --format json` as `(lsn, type, space_id)` per row.
fn cat_json(path: &Path) -> Vec<(u64, String, u64)> {
    let out = run(Command::new(TARANTOOLCTL)
        .arg("cat")
        .arg(path)
        .args(["--format", "json"]));
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let lsn = json_number(l, "lsn").unwrap_or(0);
            let kind = json_str(l, "type").unwrap_or("?").to_string();
            (lsn, kind, json_number(l, "space_id").unwrap_or(0))
        })
        .collect()
}

#[test]
fn tarantoolctl_cat_reads_our_xlog_and_snap() {
    require_tools();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut vclock = Vclock::new();
    vclock.set(1, 100);
    let (txns, _) = sample_txns(101);
    let path = write_xlog(tmp.path(), Meta::new(FileType::Xlog, uuid(), vclock), &txns);
    assert!(path.ends_with("00000000000000000100.xlog"));
    let (_, ours, compressed) = read_all(&path, FileType::Xlog);
    assert_eq!(ours, txns.concat());
    assert_eq!(
        compressed, 1,
        "the transaction with the 3 KiB row is a zstd block"
    );

    let rows = cat_json(&path);
    let names = [
        "INSERT", "INSERT", "REPLACE", "INSERT", "UPDATE", "DELETE", "UPSERT",
    ];
    let expected: Vec<(u64, String, u64)> = (101..)
        .zip(names)
        .map(|(lsn, name)| (lsn, name.to_string(), SPACE))
        .collect();
    assert_eq!(rows, expected);
    // The yaml form (the default) accepts the file too, and shows transaction markers.
    let yaml = run(Command::new(TARANTOOLCTL).arg("cat").arg(&path));
    assert!(
        yaml.contains("commit: true") && yaml.contains("tsn: 102"),
        "{yaml}"
    );
    assert!(
        yaml.contains(&"b".repeat(BIG_LEN)),
        "the zstd block decodes"
    );

    // A snapshot: INSERT rows with an in-file row counter as lsn, as Tarantool writes them.
    let snap_meta = Meta::new(FileType::Snap, uuid(), vclock);
    let mut w = XlogWriter::create(OsFs, tmp.path(), snap_meta).expect("create snap");
    for n in 0..50u64 {
        let body = insert_body(n, &"s".repeat(100));
        let header = RowHeader {
            req_type: INSERT,
            lsn: n,
            tsn: n,
            timestamp: 1.0,
            ..Default::default()
        };
        w.append_row(&Row { header, body }).expect("append");
    }
    let snap = w.close().expect("close snap");
    let rows = cat_json(&snap);
    assert_eq!(rows.len(), 50);
    assert!(rows
        .iter()
        .all(|(_, kind, space)| kind == "INSERT" && *space == SPACE));
}

/// Reads every row of a file, checking it ends cleanly with the EOF marker.
fn read_all(path: &Path, filetype: FileType) -> (Meta, Vec<Row>, usize) {
    let mut r = XlogReader::open(&OsFs, path, filetype).expect("open");
    let mut rows = Vec::new();
    let mut compressed = 0;
    while let Some(block) = r.next_block().expect("read block") {
        compressed += usize::from(block.compressed);
        rows.extend(block.rows);
    }
    assert!(r.has_eof_marker(), "{} has no EOF marker", path.display());
    (r.meta().clone(), rows, compressed)
}

/// The `(id, text)` tuple of an INSERT/REPLACE body in space 512, if it is one.
fn user_tuple(row: &Row) -> Option<(u64, String)> {
    let mut cur = &row.body[..];
    let mut space = None;
    let mut found = None;
    for _ in 0..mp::read_map_len(&mut cur).ok()? {
        match mp::read_uint(&mut cur).ok()? {
            0x10 => space = Some(mp::read_uint(&mut cur).ok()?),
            0x21 => {
                let mut t = cur;
                mp::skip(&mut cur).ok()?;
                if mp::read_array_len(&mut t).ok()? == 2 {
                    let id = mp::read_uint(&mut t).ok()?;
                    if let Value::Str(s) = mp::read_value(&mut t).ok()? {
                        found = Some((id, String::from_utf8_lossy(s).into_owned()));
                    }
                }
            }
            _ => mp::skip(&mut cur).ok()?,
        }
    }
    (space == Some(SPACE)).then_some(found).flatten()
}

#[test]
fn we_read_files_written_by_tarantool() {
    require_tools();
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = r#"
        local s = box.schema.space.create('test')
        s:create_index('pk')
        s:insert{1, 'one'}
        s:insert{2, string.rep('x', 3000)}
        s:insert{3, 'three'}
        box.snapshot()
        box.begin() s:insert{4, 'a'} s:replace{5, 'b'} s:insert{6, 'c'} box.commit()
        s:update(1, {{'=', 2, 'uno'}})
        s:upsert({7, 'seven'}, {{'=', 2, 'x'}})
        s:delete(3)
        s:insert{8, string.rep('y', 5000)}
        print(box.info.lsn)
    "#;
    let last_lsn: u64 = run_tarantool(tmp.path(), script)
        .trim()
        .parse()
        .expect("lsn");

    // The newest snapshot holds the three tuples inserted before box.snapshot().
    let snaps = scan_dir(&OsFs, tmp.path(), FileType::Snap).expect("scan");
    let (_, snap_path) = snaps.last().expect("a snapshot");
    let (meta, rows, compressed) = read_all(snap_path, FileType::Snap);
    assert_eq!(meta.filetype, FileType::Snap);
    assert_eq!(
        meta.vclock.signature(),
        snaps.last().map(|s| s.0).unwrap_or(0)
    );
    assert!(
        rows.iter().all(|r| r.header.req_type == INSERT),
        "snapshot rows are INSERTs"
    );
    let user: Vec<(u64, String)> = rows.iter().filter_map(user_tuple).collect();
    let big = "x".repeat(3000);
    let want = vec![(1, "one".to_string()), (2, big), (3, "three".to_string())];
    assert_eq!(user, want);
    assert!(compressed > 0, "a 3 KiB tuple makes a zstd block");

    // The xlogs after the snapshot hold the later statements, in order.
    let mut after = Vec::new();
    for (sig, path) in scan_dir(&OsFs, tmp.path(), FileType::Xlog).expect("scan") {
        let (meta, rows, _) = read_all(&path, FileType::Xlog);
        assert_eq!(
            meta.vclock.signature(),
            sig,
            "file name = header vclock signature"
        );
        after.extend(
            rows.into_iter()
                .filter(|r| r.header.lsn > meta_lsn(snap_path)),
        );
    }
    let kinds: Vec<(u32, u64, bool)> = after
        .iter()
        .map(|r| (r.header.req_type, r.header.tsn, r.header.is_commit))
        .collect();
    let first = meta_lsn(snap_path) + 1;
    let expected = vec![
        (INSERT, first, false),
        (REPLACE, first, false),
        (INSERT, first, true),
        (UPDATE, first + 3, true),
        (UPSERT, first + 4, true),
        (DELETE, first + 5, true),
        (INSERT, first + 6, true),
    ];
    assert_eq!(kinds, expected);
    assert_eq!(after.last().map(|r| r.header.lsn), Some(last_lsn));
    assert_eq!(user_tuple(&after[6]), Some((8, "y".repeat(5000))));
}

/// The LSN of replica 1 in a file's header vclock.
fn meta_lsn(path: &Path) -> u64 {
    XlogReader::open(&OsFs, path, FileType::Snap)
        .map(|r| r.meta().vclock.get(1))
        .unwrap_or(0)
}

/// The end vclock of an xlog: its header vclock advanced by every row in it.
fn end_vclock(path: &Path) -> (Vclock, Vclock) {
    let mut r = XlogReader::open(&OsFs, path, FileType::Xlog).expect("open");
    let start = r.meta().vclock;
    let mut end = start;
    while let Some(row) = r.next_row().expect("row") {
        end.follow(row.header.replica_id, row.header.lsn);
    }
    (start, end)
}

/// A Tarantool data directory with a space `test`; returns the header-only xlog Tarantool
/// left at shutdown.
fn tarantool_dir_with_a_space(dir: &Path) -> PathBuf {
    run_tarantool(dir, "box.schema.space.create('test'):create_index('pk')");
    let xlogs = scan_dir(&OsFs, dir, FileType::Xlog).expect("scan");
    let (_, last) = xlogs.last().expect("tarantool wrote an xlog");
    last.clone()
}

/// Starts Tarantool on `dir` and checks it recovered exactly `expected` in space `test`, at
/// `lsn`.
fn assert_tarantool_recovers(dir: &Path, expected: &[(u64, String)], lsn: u64) {
    let out = run_tarantool(
        dir,
        "for _, t in box.space.test:pairs() do print(t[1] .. ' ' .. t[2]) end \
         print('lsn ' .. box.info.lsn)",
    );
    let mut want: Vec<String> = expected.iter().map(|(id, s)| format!("{id} {s}")).collect();
    want.push(format!("lsn {lsn}"));
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

#[test]
fn tarantool_recovers_from_our_xlog() {
    require_tools();
    let tmp = tempfile::tempdir().expect("tempdir");
    // Append after what Tarantool wrote, as our WAL will: first into the header-only file
    // Tarantool leaves at shutdown (reopened), then into a new file chained to it by
    // PrevVClock.
    let last = &tarantool_dir_with_a_space(tmp.path());
    let (start, end) = end_vclock(last);
    assert_eq!(start, end, "tarantool's last xlog is header-only");
    let (txns, expected) = sample_txns(end.get(1) + 1);
    let (first_part, second_part) = txns.split_at(2);
    let mut writer = XlogWriter::reopen(OsFs, last).expect("reopen the header-only xlog");
    for txn in first_part {
        writer.append_txn(txn);
    }
    writer.flush().expect("flush");
    let reopened = writer.close().expect("close");
    assert!(matches!(
        XlogWriter::reopen(OsFs, &reopened),
        Err(XlogError::NotEmpty { .. })
    ));

    let (_, mid) = end_vclock(&reopened);
    let instance = XlogReader::open(&OsFs, last, FileType::Xlog).expect("open");
    let mut meta = Meta::new(FileType::Xlog, instance.meta().instance_uuid.clone(), mid);
    meta.prev_vclock = Some(start);
    let second = write_xlog(tmp.path(), meta, second_part);
    assert_eq!(
        scan_dir(&OsFs, tmp.path(), FileType::Xlog)
            .expect("scan")
            .last()
            .map(|f| &f.1),
        Some(&second)
    );
    assert_tarantool_recovers(tmp.path(), &expected, end.get(1) + 7);
}

/// A crash in `wal_mode = fsync` leaves the file being written zero-filled past its data
/// (durable writes overwrite preallocated space). Tarantool takes those zeros for damage;
/// once our WAL's startup step has cut them, Tarantool recovers every row.
#[test]
fn tarantool_recovers_from_our_crashed_xlog_once_cut() {
    require_tools();
    let tmp = tempfile::tempdir().expect("tempdir");
    let last = &tarantool_dir_with_a_space(tmp.path());
    let (_, end) = end_vclock(last);
    let (txns, expected) = sample_txns(end.get(1) + 1);
    let mut writer = XlogWriter::reopen(OsFs, last).expect("reopen the header-only xlog");
    for txn in &txns {
        writer.append_txn(txn);
        writer.flush_durable().expect("durable flush");
    }
    let data_end = writer.offset();
    drop(writer);
    let len = std::fs::metadata(last).expect("stat").len();
    assert!(
        len > data_end,
        "zero-filled ahead: {len} bytes for {data_end}"
    );

    assert_eq!(
        cut_unwritten_tail(&OsFs, last).expect("cut"),
        len - data_end
    );
    assert_eq!(std::fs::metadata(last).expect("stat").len(), data_end);
    assert_eq!(cut_unwritten_tail(&OsFs, last).expect("cut again"), 0);
    assert_tarantool_recovers(tmp.path(), &expected, end.get(1) + 7);
}
