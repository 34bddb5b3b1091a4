//! The replica side (§5.1): per upstream, a reader thread that connects, authenticates and
//! SUBSCRIBEs from the local WAL vclock, hands whole transactions to the TX thread, and
//! reconnects with backoff after any failure; and an ACK writer thread that reports the
//! local WAL vclock after every write and at least every `replication_timeout`. `join` is
//! the bootstrap of an empty instance (JOIN, §5.3).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use spindle_fiber::spawn_cord;
use spindle_proto::greeting::decode_greeting;
use spindle_proto::mp;
use spindle_types::iproto::{key, request, GREETING_SIZE, REPLICA_ID_LIMIT};
use spindle_types::limits::{
    APPLIER_BACKOFF_MAX_SECS, APPLIER_BATCH_ROWS_MAX, APPLIER_QUEUE_ROWS_MAX,
    REPLICATION_DISCONNECT_FACTOR,
};
use spindle_types::BoxError;
use spindle_xlog::{Row, RowRef, Vclock};

use crate::status::{Direction, PeerState, PeerStatus};
use crate::wire::{self, PacketReader};
use crate::{EventSink, ReplEvent, WalWatch};

/// `[user[:password]@]host:port`, as `box.cfg.replication` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    pub user: Option<String>,
    pub password: String,
    pub host: String,
    pub port: u16,
}

impl Uri {
    pub fn parse(text: &str) -> Result<Uri, String> {
        let text = text.trim();
        let (auth, addr) = match text.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, text),
        };
        let (host, port) = match addr.rsplit_once(':') {
            Some((h, p)) => (if h.is_empty() { "127.0.0.1" } else { h }, p),
            None => ("127.0.0.1", addr),
        };
        let port = port
            .parse()
            .map_err(|_| format!("bad port in replication URI '{text}'"))?;
        let (user, password) = match auth {
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), p.to_string()),
                None => (Some(a.to_string()), String::new()),
            },
            None => (None, String::new()),
        };
        Ok(Uri {
            user,
            password,
            host: host.replace("localhost", "127.0.0.1"),
            port,
        })
    }

    /// `user:password@host:port`, as given to `box.cfg.replication` (parses back the same).
    pub fn full(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}:{}@{}:{}", self.password, self.host, self.port),
            None => format!("{}:{}", self.host, self.port),
        }
    }

    /// `user@host:port`: for logs and status (never the password).
    pub fn display(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}:{}", self.host, self.port),
            None => format!("{}:{}", self.host, self.port),
        }
    }

    fn addr(&self) -> io::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("cannot resolve {}", self.host)))
    }
}

/// Shared between an applier thread and the TX thread.
#[derive(Debug, Default)]
pub struct ApplierLink {
    /// Rows handed to TX and not yet durable (or dropped).
    pub queued: AtomicUsize,
    /// Set by TX when applying failed: the applier reconnects and resumes from the WAL.
    pub restart: AtomicBool,
}

/// An upstream to follow.
#[derive(Clone)]
pub struct ApplierConfig {
    pub uri: Uri,
    pub timeout: Duration,
    pub instance_uuid: String,
    pub cluster_uuid: String,
    pub own_id: u32,
    /// The local WAL's written vclock.
    pub wal: Arc<WalWatch>,
    pub sink: EventSink,
}

impl ApplierConfig {
    fn disconnect_timeout(&self) -> Duration {
        self.timeout.mul_f64(REPLICATION_DISCONNECT_FACTOR)
    }

    fn report(&self, state: PeerState, lag: f64, error: Option<String>) {
        let mut status = PeerStatus::new(Direction::Upstream, &self.uri.display(), state);
        status.vclock = self.wal.current().1.vclock;
        status.lag = lag;
        status.error = error;
        (self.sink)(ReplEvent::Status(status));
    }
}

/// Starts the applier thread of one upstream.
pub fn start(cfg: ApplierConfig) -> io::Result<()> {
    let name = format!("applier-{}", cfg.uri.port);
    spawn_cord(&name, move || run(cfg)).map(|_| ())
}

fn run(cfg: ApplierConfig) {
    let link = Arc::new(ApplierLink::default());
    let mut backoff = cfg.timeout;
    loop {
        cfg.report(PeerState::Connecting, 0.0, None);
        let started = Instant::now();
        let result = follow(&cfg, &link);
        let error = match result {
            Ok(()) => "the master closed the connection".to_string(),
            Err(e) => e.to_string(),
        };
        warn!("applier {}: {error}; reconnecting", cfg.uri.display());
        cfg.report(PeerState::Stopped, 0.0, Some(error));
        // A session that ran a while resets the backoff.
        if started.elapsed() > cfg.disconnect_timeout() {
            backoff = cfg.timeout;
        }
        std::thread::sleep(backoff);
        backoff = backoff
            .mul_f64(2.0)
            .min(Duration::from_secs_f64(APPLIER_BACKOFF_MAX_SECS));
        wait_drained(&cfg, &link);
        link.restart.store(false, Ordering::SeqCst);
    }
}

/// Waits until every row handed to TX is durable or dropped, so the next SUBSCRIBE starts
/// right after the last row this instance has.
fn wait_drained(cfg: &ApplierConfig, link: &ApplierLink) {
    let deadline = Instant::now() + cfg.disconnect_timeout();
    while link.queued.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        let (gen, _) = cfg.wal.current();
        cfg.wal.wait_change(gen, Duration::from_millis(50));
    }
}

/// A connected, authenticated session.
pub struct Session {
    pub reader: PacketReader,
    pub stream: TcpStream,
    pub master_uuid: String,
}

/// Connects, reads the greeting, sends VOTE and AUTH.
pub fn connect(uri: &Uri, timeout: Duration, own_uuid: &str) -> io::Result<Session> {
    let stream = TcpStream::connect_timeout(&uri.addr()?, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut greeting = [0u8; GREETING_SIZE];
    (&stream).read_exact(&mut greeting)?;
    let greeting =
        decode_greeting(&greeting).ok_or_else(|| wire::invalid("not a Tarantool greeting"))?;
    if greeting.protocol != "Binary" {
        return Err(wire::invalid("the peer does not speak IPROTO"));
    }
    if greeting.instance_uuid == own_uuid {
        return Err(io::Error::other(BoxError::connection_to_self().message));
    }
    let mut session = Session {
        reader: PacketReader::new(stream.try_clone()?, Vec::new()),
        stream,
        master_uuid: greeting.instance_uuid.clone(),
    };
    let mut out = Vec::new();
    wire::encode_request(&mut out, request::VOTE, |_| {});
    session.call(
        &mut out,
        &[spindle_types::error::code::ER_UNKNOWN_REQUEST_TYPE],
    )?;
    if let Some(user) = &uri.user {
        let scramble = spindle_proto::auth::scramble(&greeting.salt, &uri.password);
        spindle_proto::iproto::encode_auth(&mut out, 0, user, Some(&scramble));
        session.call(&mut out, &[])?;
    }
    Ok(session)
}

impl Session {
    /// Sends `out` and reads one reply; an error reply fails unless its code is tolerated.
    fn call(&mut self, out: &mut Vec<u8>, tolerated: &[u32]) -> io::Result<()> {
        wire::send_all(&mut self.stream, out)?;
        let packet = self.reader.read_packet()?;
        let row = wire::decode_packet(packet)?;
        match wire::packet_error(&row) {
            Some(e) if !tolerated.contains(&e.code) => Err(box_error(e)),
            _ => Ok(()),
        }
    }
}

fn box_error(e: BoxError) -> io::Error {
    io::Error::other(format!("{} (code {})", e.message, e.code))
}

/// One subscription, until it fails.
fn follow(cfg: &ApplierConfig, link: &Arc<ApplierLink>) -> io::Result<()> {
    let mut session = connect(&cfg.uri, cfg.timeout, &cfg.instance_uuid)?;
    let vclock = cfg.wal.current().1.vclock;
    let mut out = Vec::new();
    wire::encode_subscribe(
        &mut out,
        &cfg.cluster_uuid,
        &cfg.instance_uuid,
        &vclock,
        cfg.own_id,
    );
    wire::send_all(&mut session.stream, &mut out)?;
    session
        .stream
        .set_read_timeout(Some(cfg.disconnect_timeout()))?;
    let packet = session.reader.read_packet()?;
    let row = wire::decode_packet(packet)?;
    if let Some(e) = wire::packet_error(&row) {
        return Err(box_error(e));
    }
    check_cluster(cfg, row.body)?;
    info!(
        "applier {}: subscribed from {vclock} to master {} (id {})",
        cfg.uri.display(),
        session.master_uuid,
        row.header.replica_id
    );
    cfg.report(PeerState::Following, 0.0, None);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_ack_writer(cfg, session.stream.try_clone()?, stop.clone());
    let result = read_stream(cfg, link, &mut session.reader);
    stop.store(true, Ordering::SeqCst);
    let _ = session.stream.shutdown(std::net::Shutdown::Both);
    if let Ok(handle) = writer {
        let _ = handle.join();
    }
    result
}

fn check_cluster(cfg: &ApplierConfig, body: &[u8]) -> io::Result<()> {
    let mut result = Ok(());
    wire::for_each_body_key(body, |k, value| {
        if k == u64::from(key::CLUSTER_UUID) {
            let theirs = wire::str_value(value)?;
            if theirs != cfg.cluster_uuid {
                let e = BoxError::replicaset_uuid_mismatch(&cfg.cluster_uuid, &theirs);
                result = Err(box_error(e));
            }
        }
        Ok(())
    })?;
    result
}

/// Reads rows, collects whole transactions and hands them to TX in batches.
fn read_stream(
    cfg: &ApplierConfig,
    link: &Arc<ApplierLink>,
    reader: &mut PacketReader,
) -> io::Result<()> {
    let mut txn: Vec<Row> = Vec::new();
    let mut batch: Vec<Row> = Vec::new();
    let mut last_report = Instant::now();
    loop {
        if link.restart.load(Ordering::SeqCst) {
            return Err(io::Error::other("applying a transaction failed"));
        }
        let packet = reader.read_packet()?;
        let row = wire::decode_packet(packet)?;
        if let Some(e) = wire::packet_error(&row) {
            return Err(box_error(e));
        }
        let h = row.header;
        if h.timestamp > 0.0 && last_report.elapsed() >= cfg.timeout {
            cfg.report(
                PeerState::Following,
                (wire::now() - h.timestamp).max(0.0),
                None,
            );
            last_report = Instant::now();
        }
        // lsn 0: a heartbeat (the ACK writer answers on its own schedule).
        if h.lsn != 0 {
            check_row(&row, txn.first())?;
            let commit = h.is_commit;
            txn.push(row.to_row());
            if commit {
                batch.append(&mut txn);
            }
        }
        // Whatever packet came last, rows must not wait for the next data row.
        let more = reader.has_packet();
        if !batch.is_empty() && (!more || batch.len() >= APPLIER_BATCH_ROWS_MAX) {
            hand_over(cfg, link, std::mem::take(&mut batch))?;
        }
    }
}

/// The checks a 2.6 applier makes on the stream (§5.6).
fn check_row(row: &RowRef<'_>, txn_first: Option<&Row>) -> io::Result<()> {
    let h = &row.header;
    if h.replica_id == 0 || h.replica_id >= REPLICA_ID_LIMIT {
        return Err(wire::invalid(format!(
            "row from replica id {}",
            h.replica_id
        )));
    }
    match txn_first {
        None if h.tsn != h.lsn => Err(wire::invalid(format!(
            "transaction {} does not start at its first row {}",
            h.tsn, h.lsn
        ))),
        Some(first) if first.header.tsn != h.tsn || first.header.replica_id != h.replica_id => {
            Err(wire::invalid("interleaving transactions"))
        }
        _ => Ok(()),
    }
}

/// Sends a batch to TX, first waiting while too many rows are still on their way to disk.
fn hand_over(cfg: &ApplierConfig, link: &Arc<ApplierLink>, rows: Vec<Row>) -> io::Result<()> {
    let started = Instant::now();
    let mut warned = false;
    while link.queued.load(Ordering::SeqCst) >= APPLIER_QUEUE_ROWS_MAX {
        if link.restart.load(Ordering::SeqCst) {
            return Err(io::Error::other("applying a transaction failed"));
        }
        if !warned && started.elapsed() > cfg.disconnect_timeout() {
            warn!(
                "applier {}: {} rows still on their way to the WAL; waiting",
                cfg.uri.display(),
                link.queued.load(Ordering::SeqCst)
            );
            warned = true;
        }
        let (gen, _) = cfg.wal.current();
        cfg.wal.wait_change(gen, Duration::from_millis(20));
    }
    link.queued.fetch_add(rows.len(), Ordering::SeqCst);
    let event = ReplEvent::Apply {
        link: link.clone(),
        rows,
    };
    if (cfg.sink)(event) {
        Ok(())
    } else {
        Err(io::Error::other("the TX thread is gone"))
    }
}

/// ACKs `{VCLOCK: local WAL vclock}` after every local WAL write and at least every
/// `replication_timeout`.
fn start_ack_writer(
    cfg: &ApplierConfig,
    mut stream: TcpStream,
    stop: Arc<AtomicBool>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let cfg = cfg.clone();
    stream.set_write_timeout(Some(cfg.disconnect_timeout()))?;
    spawn_cord("applier-ack", move || {
        let mut out = Vec::new();
        let (mut gen, mut tip) = cfg.wal.current();
        while !stop.load(Ordering::SeqCst) {
            wire::encode_vclock_ok(&mut out, 0, &tip.vclock);
            if stream.write_all(&out).is_err() {
                return;
            }
            out.clear();
            (gen, tip) = cfg.wal.wait_change(gen, cfg.timeout);
        }
    })
}

/// What the JOIN stream delivers, in order.
pub enum JoinRow<'a> {
    /// A tuple of the master's read view (initial stage).
    Snapshot { space_id: u32, tuple: &'a [u8] },
    /// A logged row after the read view (final stage).
    Logged(RowRef<'a>),
}

/// The end of a JOIN.
pub struct Joined {
    pub vclock: Vclock,
    pub master_uuid: String,
}

/// Bootstraps from `uri` with JOIN: every row goes to `on_row`; returns the vclock at the
/// end of the final stage.
pub fn join(
    uri: &Uri,
    timeout: Duration,
    instance_uuid: &str,
    on_row: &mut dyn FnMut(JoinRow<'_>) -> Result<(), String>,
) -> io::Result<Joined> {
    let mut session = connect(uri, timeout, instance_uuid)?;
    let mut out = Vec::new();
    wire::encode_join(&mut out, instance_uuid);
    wire::send_all(&mut session.stream, &mut out)?;
    let disconnect = timeout.mul_f64(REPLICATION_DISCONNECT_FACTOR);
    session.stream.set_read_timeout(Some(disconnect))?;
    let mut markers = 0;
    let mut vclock = Vclock::new();
    while markers < 3 {
        let packet = session.reader.read_packet()?;
        let row = wire::decode_packet(packet)?;
        if let Some(e) = wire::packet_error(&row) {
            return Err(box_error(e));
        }
        if row.header.req_type == request::OK {
            vclock = wire::body_vclock(row.body)?.unwrap_or(vclock);
            markers += 1;
            continue;
        }
        let item = if markers == 1 {
            let (space_id, tuple) = insert_body(row.body)?;
            JoinRow::Snapshot { space_id, tuple }
        } else {
            JoinRow::Logged(row)
        };
        on_row(item).map_err(io::Error::other)?;
    }
    Ok(Joined {
        vclock,
        master_uuid: session.master_uuid,
    })
}

/// `{SPACE_ID, TUPLE}` of an initial-join INSERT.
fn insert_body(body: &[u8]) -> io::Result<(u32, &[u8])> {
    let mut cur = body;
    let count = mp::read_map_len(&mut cur).map_err(|_| wire::invalid("join row body"))?;
    let (mut space, mut tuple) = (None, None);
    for _ in 0..count {
        let k = mp::read_uint(&mut cur).map_err(|_| wire::invalid("join row key"))?;
        let value = mp::take_value(&mut cur).map_err(|_| wire::invalid("join row value"))?;
        if k == u64::from(key::SPACE_ID) {
            let mut v = value;
            space = mp::read_uint(&mut v)
                .ok()
                .and_then(|s| u32::try_from(s).ok());
        } else if k == u64::from(key::TUPLE) {
            tuple = Some(value);
        }
    }
    match (space, tuple) {
        (Some(s), Some(t)) => Ok((s, t)),
        _ => Err(wire::invalid("join row without space id or tuple")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_like_box_cfg() {
        let u = Uri::parse("admin:pw@127.0.0.1:3301").expect("uri");
        assert_eq!(u.user.as_deref(), Some("admin"));
        assert_eq!(u.password, "pw");
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 3301));
        assert_eq!(u.display(), "admin@127.0.0.1:3301");
        let u = Uri::parse("3302").expect("uri");
        assert_eq!((u.user, u.port), (None, 3302));
        assert!(Uri::parse("host:notaport").is_err());
    }

    #[test]
    fn stream_checks_reject_bad_transactions() {
        let mut h = spindle_xlog::RowHeader {
            req_type: request::INSERT,
            replica_id: 1,
            lsn: 5,
            tsn: 4,
            ..Default::default()
        };
        let row = RowRef {
            header: h,
            body: &[],
        };
        assert!(check_row(&row, None).is_err());
        h.tsn = 5;
        h.replica_id = 40;
        assert!(check_row(
            &RowRef {
                header: h,
                body: &[]
            },
            None
        )
        .is_err());
        h.replica_id = 1;
        assert!(check_row(
            &RowRef {
                header: h,
                body: &[]
            },
            None
        )
        .is_ok());
    }

    /// A row followed at once by a heartbeat (both in one read) reaches TX without waiting
    /// for another data row.
    #[test]
    fn rows_followed_by_a_heartbeat_are_handed_over() {
        use std::sync::Mutex;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut master = TcpStream::connect(addr).expect("connect");
        let (replica_side, _) = listener.accept().expect("accept");
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        let cfg = ApplierConfig {
            uri: Uri::parse("127.0.0.1:1").expect("uri"),
            timeout: Duration::from_secs(1),
            instance_uuid: String::new(),
            cluster_uuid: String::new(),
            own_id: 2,
            wal: Arc::new(WalWatch::default()),
            sink: Arc::new(move |e| {
                if let ReplEvent::Apply { rows, .. } = e {
                    seen.lock().expect("lock").extend(rows);
                }
                true
            }),
        };
        let mut out = Vec::new();
        let header = spindle_xlog::RowHeader {
            req_type: request::REPLACE,
            replica_id: 1,
            lsn: 7,
            tsn: 7,
            timestamp: 1.0,
            ..Default::default()
        };
        wire::encode_wal_row(
            &mut out,
            &RowRef {
                header,
                body: &[0x80],
            },
        );
        wire::encode_heartbeat(&mut out, 0, 1);
        master.write_all(&out).expect("write");
        drop(master);
        let link = Arc::new(ApplierLink::default());
        let mut reader = PacketReader::new(replica_side, Vec::new());
        assert!(
            read_stream(&cfg, &link, &mut reader).is_err(),
            "ends at EOF"
        );
        let rows = got.lock().expect("lock");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].header.lsn, 7);
    }

    #[test]
    fn error_kind_names_survive() {
        assert_eq!(
            spindle_types::ErrorKind::XlogGapError.as_str(),
            "XlogGapError"
        );
    }
}
