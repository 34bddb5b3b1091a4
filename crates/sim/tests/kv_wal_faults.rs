//! HTTP commits (`tx::kv`) across a failed WAL write, on the real TX runtime and WAL thread
//! over `FaultFs`, driven with `proto::kv` messages as the HTTP thread sends them: the
//! rolled-back commit is answered "unavailable", its version is handed out again (versions
//! stay gapless), preconditions see no trace of it, and recovery finds exactly the
//! acknowledged commits.

use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use spindle_box::recovery::{recover, RecoveryConfig};
use spindle_fiber::Bus;
use spindle_proto::kv::{
    CommitRequest, KvAnswer, KvCall, KvEvent, KvRequest, KvShared, Operation, Precondition,
};
use spindle_proto::mp;
use spindle_tx::dispatch::dispatch;
use spindle_tx::state::install;
use spindle_tx::{Builtin, Tx, TxHooks, TxMsg};
use spindle_types::iproto::IteratorType;
use spindle_types::limits::TX_FIBER_STACK_WORDS;
use spindle_wal::{SyncMode, WalConfig};
use spindle_xlog::faultfs::{Fault, FaultFs, FaultPlan, Op};

const DIR: &str = "/kv";
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

fn cfg() -> RecoveryConfig {
    RecoveryConfig {
        memtx_dir: PathBuf::from(DIR),
        wal_dir: PathBuf::from(DIR),
        force_recovery: false,
    }
}

/// Plays the HTTP thread.
struct Client {
    bus: Bus<TxMsg>,
    sender: Sender<(u64, KvAnswer)>,
    answers: Receiver<(u64, KvAnswer)>,
    next: u64,
}

impl Client {
    fn ask(&mut self, request: KvRequest) -> KvAnswer {
        self.next += 1;
        let token = self.next;
        let send = self.sender.clone();
        self.bus.send(TxMsg::Kv(KvEvent::Call(KvCall {
            token,
            request,
            answer: Arc::new(move |t, a| {
                let _ = send.send((t, a));
            }),
        })));
        let (got, answer) = self
            .answers
            .recv_timeout(ANSWER_TIMEOUT)
            .expect("TX answers every HTTP request");
        assert_eq!(got, token);
        answer
    }

    fn commit(&mut self, id: &str, key: &str, read: Option<(&str, u64)>) -> KvAnswer {
        let preconditions = read
            .map(|(k, version)| {
                vec![Precondition::PointRead {
                    key: k.as_bytes().to_vec(),
                    version,
                }]
            })
            .unwrap_or_default();
        self.ask(KvRequest::Commit(CommitRequest {
            request_id: id.to_string(),
            read_version: 0,
            preconditions,
            operations: vec![Operation::Write {
                key: key.as_bytes().to_vec(),
                value: id.as_bytes().to_vec(),
            }],
        }))
    }
}

/// `_kv_commit`'s (version, request id) rows and `_kv`'s keys after recovering `fs`.
fn recovered(fs: &FaultFs) -> (Vec<(u64, String)>, Vec<String>) {
    let rec = recover(fs, &cfg()).expect("recovery");
    let spaces = spindle_box::kv::find(&rec.db).expect("the keyspace is in the log");
    let all = |space: u32| {
        rec.db
            .space(space)
            .expect("space")
            .space
            .select(0, IteratorType::All, &[0x90], 0, u32::MAX)
            .expect("select")
    };
    let commits = all(spaces.commits)
        .iter()
        .map(|t| {
            let mut f = t.field(0).expect("version");
            let version = mp::read_uint(&mut f).expect("uint");
            let mut f = t.field(1).expect("request id");
            let id = mp::read_str(&mut f).expect("str");
            (version, String::from_utf8_lossy(id).into_owned())
        })
        .collect();
    let keys = all(spaces.data)
        .iter()
        .map(|t| {
            let mut f = t.field(0).expect("key");
            String::from_utf8_lossy(mp::read_str_or_bin(&mut f).expect("bin")).into_owned()
        })
        .collect();
    (commits, keys)
}

#[test]
fn a_failed_wal_write_hands_its_version_out_again() {
    let fs = FaultFs::new(17);
    let run_fs = fs.clone();
    let result = spindle_fiber::run_tx(TX_FIBER_STACK_WORDS, 64, move || {
        let fs = run_fs;
        let rec = recover(&fs, &cfg()).expect("bootstrap");
        let db = rec.db;
        let (bus, bus_receiver) = Bus::<TxMsg>::new().expect("bus");
        let wal_cfg = WalConfig {
            dir: PathBuf::from(DIR),
            sync: SyncMode::Write,
            max_size: 1 << 30,
            instance_uuid: db.instance_uuid().to_string(),
        };
        let wal = spindle_wal::start(
            fs.clone(),
            wal_cfg,
            db.vclock(),
            rec.last_xlog_vclock,
            bus.clone(),
        )
        .expect("WAL thread");
        let hooks = TxHooks {
            send_replies: Arc::new(|_, _| {}),
            net_threads: 1,
            journal: Some(wal.sender.clone()),
            schema_version: Arc::new(AtomicU32::new(0)),
            start_snapshot: Box::new(|_| {}),
        };
        let tx = install(Tx::new(db, hooks));
        let shared = Arc::new(KvShared::new("leader".into()));
        bus.send(TxMsg::Kv(KvEvent::Enable {
            shared: shared.clone(),
            window: 100,
        }));
        let (sender, answers) = crossbeam_channel::unbounded();
        let mut client = Client {
            bus: bus.clone(),
            sender,
            answers,
            next: 0,
        };
        let driver_fs = fs.clone();
        let driver = std::thread::spawn(move || {
            let mut seen = Vec::new();
            seen.push(client.commit("first", "a", None));
            // The next write fails: the commit in it is rolled back.
            driver_fs.set_plan(FaultPlan::new(vec![Fault::once(Op::Write, 1)]));
            seen.push(client.commit("lost", "b", None));
            driver_fs.clear_faults();
            // `b` was never written: a precondition on it at version 1 holds.
            seen.push(client.commit("second", "c", Some(("b", 1))));
            seen.push(client.commit("third", "b", Some(("c", 2))));
            seen.push(client.ask(KvRequest::Read { key: b"b".to_vec() }));
            client.bus.send(TxMsg::Shutdown);
            seen
        });
        dispatch(tx, bus_receiver, &Builtin);
        wal.join();
        let seen = driver.join().expect("driver");
        (seen, shared.durable())
    });
    let (seen, durable) = result.expect("TX thread");
    assert_eq!(seen.first(), Some(&KvAnswer::Committed { version: 1 }));
    assert!(
        matches!(seen.get(1), Some(KvAnswer::Unavailable(_))),
        "{seen:?}"
    );
    assert_eq!(seen.get(2), Some(&KvAnswer::Committed { version: 2 }));
    assert_eq!(seen.get(3), Some(&KvAnswer::Committed { version: 3 }));
    assert_eq!(
        seen.get(4),
        Some(&KvAnswer::Value {
            version: 3,
            value: Some(b"third".to_vec())
        })
    );
    assert_eq!(durable, 3);
    let (commits, keys) = recovered(&fs);
    assert_eq!(
        commits,
        vec![
            (1, "first".to_string()),
            (2, "second".to_string()),
            (3, "third".to_string())
        ]
    );
    assert_eq!(keys, vec!["a", "b", "c"]);
}
