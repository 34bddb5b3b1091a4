//! Deterministic regressions for the WAL thread's handling of I/O faults, found by the crash
//! loop: the WAL is driven directly with journal requests (one group per request, no TX
//! thread, no timing), on `FaultFs`, and the result is checked through real recovery.
//!
//! - a failed first write to a fresh xlog must not wedge the WAL ("<sig>.xlog already
//!   exists" on every later write);
//! - a failed fdatasync must not leave the rolled-back rows in the file, where recovery would
//!   replay them and then skip the acknowledged rows that reused their LSNs;
//! - a restart next to a stale `<vclock>.xlog` (header only) or `.xlog.inprogress` must be able
//!   to write.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use spindle_box::recovery::{recover, RecoveryConfig};
use spindle_fiber::{Bus, BusReceiver};
use spindle_proto::mp;
use spindle_types::iproto::{request, IteratorType};
use spindle_wal::{SyncMode, WalConfig, WalHandle};
use spindle_xlog::faultfs::{CrashKind, Fault, FaultFs, FaultPlan, Op};
use spindle_xlog::journal::{JournalReply, JournalRequest, JournalTxn};
use spindle_xlog::{FileType, LogFile, LogFs, Meta, Row, RowHeader, Vclock};

const DIR: &str = "/wal";
/// `_schema`: a system space whose rows need no schema set-up.
const SCHEMA: u32 = 272;

fn cfg() -> RecoveryConfig {
    RecoveryConfig {
        memtx_dir: PathBuf::from(DIR),
        wal_dir: PathBuf::from(DIR),
        force_recovery: false,
    }
}

/// A one-row transaction: `_schema:replace{key, val}` at `lsn`.
fn txn(lsn: u64, key: &str, val: u64) -> JournalTxn {
    let mut body = Vec::new();
    mp::write_map_len(&mut body, 2);
    mp::write_uint(&mut body, 0x10);
    mp::write_uint(&mut body, SCHEMA.into());
    mp::write_uint(&mut body, 0x21);
    mp::write_array_len(&mut body, 2);
    mp::write_str(&mut body, key);
    mp::write_uint(&mut body, val);
    JournalTxn {
        seq: lsn,
        rows: vec![Row {
            header: RowHeader {
                req_type: request::REPLACE,
                replica_id: 1,
                lsn,
                tsn: lsn,
                is_commit: true,
                ..RowHeader::default()
            },
            body,
        }],
    }
}

struct Wal {
    handle: WalHandle,
    replies: BusReceiver<JournalReply>,
}

impl Wal {
    /// Recovers `fs` (bootstrapping an empty one) and starts the WAL thread on it.
    fn start(fs: &FaultFs, sync: SyncMode) -> (Wal, Vclock) {
        let rec = recover(fs, &cfg()).expect("recovery");
        let (bus, replies) = Bus::<JournalReply>::new().expect("bus");
        let wal_cfg = WalConfig {
            dir: PathBuf::from(DIR),
            sync,
            max_size: 1 << 30,
            instance_uuid: rec.db.instance_uuid().to_string(),
        };
        let handle = spindle_wal::start(
            fs.clone(),
            wal_cfg,
            rec.db.vclock(),
            rec.last_xlog_vclock,
            bus,
        )
        .expect("WAL thread");
        (Wal { handle, replies }, rec.db.vclock())
    }

    /// Sends one group and waits for its answer.
    fn write(&self, epoch: u64, txns: Vec<JournalTxn>) -> JournalReply {
        self.handle
            .sender
            .send(JournalRequest::Write {
                epoch,
                txns,
                acks: None,
            })
            .expect("WAL queue");
        self.reply()
    }

    fn reply(&self) -> JournalReply {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = self.replies.try_recv() {
                return r;
            }
            assert!(Instant::now() < deadline, "no answer from the WAL thread");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn shutdown(self) {
        self.handle
            .sender
            .send(JournalRequest::Shutdown)
            .expect("WAL queue");
        assert!(matches!(self.reply(), JournalReply::Closed));
        self.handle.join();
    }
}

/// `_schema[key]`'s value after recovering `fs`.
fn recovered(fs: &FaultFs, key: &str) -> Option<u64> {
    let rec = recover(fs, &cfg()).expect("recovery");
    let mut k = Vec::new();
    mp::write_array_len(&mut k, 1);
    mp::write_str(&mut k, key);
    let space = &rec.db.space(SCHEMA).expect("_schema").space;
    let found = space.select(0, IteratorType::Eq, &k, 0, 1).expect("select");
    found.first().map(|t| {
        let mut cur = t.data();
        mp::read_array_len(&mut cur).expect("tuple");
        mp::read_str(&mut cur).expect("key");
        mp::read_uint(&mut cur).expect("value")
    })
}

fn written(reply: &JournalReply) -> bool {
    matches!(reply, JournalReply::Written { .. })
}

#[test]
fn a_failed_first_write_to_a_new_xlog_does_not_wedge_the_wal() {
    let fs = FaultFs::new(1);
    let (wal, vclock) = Wal::start(&fs, SyncMode::Write);
    let lsn = vclock.get(1) + 1;
    // Call 1 writes the new file's header, call 2 is the first group.
    fs.set_plan(FaultPlan::new(vec![Fault::once(Op::Write, 2)]));
    let r = wal.write(0, vec![txn(lsn, "a", 1)]);
    assert!(matches!(r, JournalReply::Failed { epoch: 0, .. }), "{r:?}");
    // TX rolls back and reuses the LSN in a new epoch: the WAL must take it.
    let r = wal.write(1, vec![txn(lsn, "a", 2)]);
    assert!(written(&r), "{r:?}");
    assert!(written(&wal.write(1, vec![txn(lsn + 1, "b", 3)])));
    wal.shutdown();
    assert_eq!(recovered(&fs, "a"), Some(2));
    assert_eq!(recovered(&fs, "b"), Some(3));
}

#[test]
fn a_failed_fdatasync_leaves_no_rolled_back_rows_behind() {
    for crash in [
        CrashKind::ProcessCrash,
        CrashKind::PowerLoss { tear: false },
    ] {
        let fs = FaultFs::new(2);
        let (wal, vclock) = Wal::start(&fs, SyncMode::Fsync);
        let lsn = vclock.get(1) + 1;
        assert!(written(&wal.write(0, vec![txn(lsn, "a", 1)])));
        // Sync calls so far: the file's header (1) and the first group (2).
        fs.set_plan(FaultPlan::new(vec![Fault::once(Op::Sync, 1)]));
        let r = wal.write(0, vec![txn(lsn + 1, "a", 2), txn(lsn + 2, "b", 2)]);
        assert!(matches!(r, JournalReply::Failed { .. }), "{r:?}");
        // TX has answered ER_WAL_IO: a crash now must not bring the rows back.
        let image = fs.crash(crash);
        assert_eq!(recovered(&image, "a"), Some(1), "{crash:?}");
        assert_eq!(recovered(&image, "b"), None, "{crash:?}");
        // The next epoch reuses the LSNs; after a restart those rows must win.
        assert!(written(&wal.write(1, vec![txn(lsn + 1, "b", 7)])));
        wal.shutdown();
        assert_eq!(recovered(&fs, "a"), Some(1), "{crash:?}");
        assert_eq!(recovered(&fs, "b"), Some(7), "{crash:?}");
    }
}

#[test]
fn a_restart_next_to_a_stale_file_named_after_the_vclock_can_write() {
    let fs = FaultFs::new(3);
    let (wal, vclock) = Wal::start(&fs, SyncMode::Write);
    let lsn = vclock.get(1) + 1;
    assert!(written(&wal.write(0, vec![txn(lsn, "a", 1)])));
    wal.shutdown();
    // A crash right after the WAL created its next file: a header-only `<vclock>.xlog` (and
    // a crash between creating a file and renaming it: a stale `.inprogress`).
    let rec = recover(&fs, &cfg()).unwrap();
    let name = spindle_xlog::file_name(rec.db.vclock().signature(), FileType::Xlog);
    let mut header = Vec::new();
    Meta::new(
        FileType::Xlog,
        rec.db.instance_uuid().to_string(),
        rec.db.vclock(),
    )
    .encode(&mut header);
    fs.put(&Path::new(DIR).join(&name), &header);
    let stale = Path::new(DIR).join(format!("{name}.inprogress"));
    let mut f = fs.create_new(&stale).unwrap();
    f.write_all(&header).unwrap();
    drop(rec);

    let (wal, vclock) = Wal::start(&fs, SyncMode::Write);
    assert_eq!(vclock.get(1), lsn);
    let r = wal.write(0, vec![txn(lsn + 1, "a", 2)]);
    assert!(written(&r), "{r:?}");
    wal.shutdown();
    assert_eq!(recovered(&fs, "a"), Some(2));
    assert!(!fs.paths().contains(&stale));
}
