//! The master side: one relay thread per replica connection (§5.3, §5.6, §6).

use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use tracing::{info, warn};

use spindle_fiber::spawn_cord;
use spindle_memtx::frozen::FrozenTuples;
use spindle_proto::iproto::decode_request;
use spindle_types::iproto::request;
use spindle_types::limits::{
    RELAY_ACK_POLL_MS, RELAY_FINAL_JOIN_WAIT_SECS, RELAY_LAG_SAMPLES_MAX,
    RELAY_NEXT_REQUEST_WAIT_SECS, RELAY_ROWS_PER_POLL as ROWS_PER_POLL, RELAY_SEND_BUFFER,
    REPLICATION_DISCONNECT_FACTOR,
};
use spindle_types::BoxError;
use spindle_xlog::{RowHeader, RowRef, Vclock};

use crate::follow::{FollowError, Follower};
use crate::status::{Direction, PeerState, PeerStatus};
use crate::wire::{self, PacketReader};
use crate::{EventSink, Handoff, ReplEvent, WalWatch};

/// What every relay needs from the server.
#[derive(Clone)]
pub struct RelayEnv {
    pub wal_dir: PathBuf,
    /// `replication_timeout`: heartbeat interval.
    pub timeout: Duration,
    /// The WAL's written vclock.
    pub wal: Arc<WalWatch>,
    pub consumers: crate::gc::Consumers,
    pub sink: EventSink,
}

impl RelayEnv {
    fn disconnect_timeout(&self) -> Duration {
        self.timeout.mul_f64(REPLICATION_DISCONNECT_FACTOR)
    }

    fn watch(&self) -> &WalWatch {
        &self.wal
    }

    fn report(&self, uuid: &str, state: PeerState, vclock: Vclock, error: Option<String>) {
        self.report_lag(uuid, state, vclock, 0.0, error);
    }

    fn report_lag(
        &self,
        uuid: &str,
        state: PeerState,
        vclock: Vclock,
        lag: f64,
        error: Option<String>,
    ) {
        let mut status = PeerStatus::new(Direction::Downstream, uuid, state);
        status.vclock = vclock;
        status.lag = lag;
        status.error = error;
        (self.sink)(ReplEvent::Status(status));
    }
}

/// A JOIN to serve: the read view for the initial stage, and (later, once the replica is in
/// `_cluster`) the vclock that ends it.
pub struct JoinJob {
    pub handoff: Handoff,
    pub user: u32,
    pub replica_uuid: String,
    pub spaces: Vec<(u32, FrozenTuples)>,
    pub start: Vclock,
    pub stop: Receiver<Result<Vclock, BoxError>>,
}

/// A SUBSCRIBE to serve, already checked by the TX thread.
pub struct SubscribeJob {
    pub handoff: Handoff,
    pub replica_uuid: String,
    pub replica_vclock: Vclock,
    pub id_filter: Vec<u32>,
    pub master_id: u32,
    pub master_vclock: Vclock,
    pub cluster_uuid: String,
}

pub fn spawn_join(env: RelayEnv, job: JoinJob) -> io::Result<()> {
    spawn_cord("relay-join", move || {
        let uuid = job.replica_uuid.clone();
        let vclock = job.start;
        if let Err(e) = serve_join(&env, job) {
            warn!("relay: JOIN of {uuid} failed: {e}");
            env.report(&uuid, PeerState::Stopped, vclock, Some(e.to_string()));
        }
    })
    .map(|_| ())
}

pub fn spawn_subscribe(env: RelayEnv, job: SubscribeJob) -> io::Result<()> {
    spawn_cord("relay", move || {
        let uuid = job.replica_uuid.clone();
        let vclock = job.replica_vclock;
        let result = serve_subscribe(&env, job);
        let error = match result {
            Ok(()) => None,
            Err(e) => Some(e.to_string()),
        };
        info!(
            "relay: {uuid} disconnected: {}",
            error.as_deref().unwrap_or("closed")
        );
        env.report(&uuid, PeerState::Stopped, vclock, error);
    })
    .map(|_| ())
}

fn serve_join(env: &RelayEnv, job: JoinJob) -> io::Result<()> {
    let JoinJob {
        handoff,
        user,
        replica_uuid,
        spaces,
        start,
        stop,
    } = job;
    let sync = handoff.header.sync;
    let mut stream = handoff.stream;
    stream.set_write_timeout(Some(env.disconnect_timeout()))?;
    env.report(&replica_uuid, PeerState::Joining, start, None);
    let mut out = handoff.output;
    wire::encode_vclock_ok(&mut out, sync, &start);
    let mut rows = 0usize;
    for (space_id, tuples) in spaces {
        for tuple in tuples.iter() {
            wire::encode_join_row(&mut out, sync, space_id, tuple.data());
            rows += 1;
            if out.len() >= RELAY_SEND_BUFFER {
                wire::send_all(&mut stream, &mut out)?;
            }
        }
    }
    wire::send_all(&mut stream, &mut out)?;
    info!("relay: initial JOIN of {replica_uuid}: {rows} rows at {start}");
    let stop = match stop.recv() {
        Ok(Ok(stop)) => stop,
        Ok(Err(e)) => {
            wire::encode_error(&mut out, sync, &e);
            wire::send_all(&mut stream, &mut out)?;
            return Err(io::Error::other(e.message));
        }
        Err(_) => return Err(io::Error::other("the TX thread went away")),
    };
    wire::encode_vclock_ok(&mut out, sync, &stop);
    final_stage(env, &mut stream, &mut out, start, stop)?;
    wire::encode_vclock_ok(&mut out, sync, &stop);
    wire::send_all(&mut stream, &mut out)?;
    info!("relay: final JOIN of {replica_uuid} done at {stop}");
    next_request(env, stream, handoff.input, user)
}

/// Streams the logged rows in (start, stop] from the xlog files.
fn final_stage(
    env: &RelayEnv,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    start: Vclock,
    stop: Vclock,
) -> io::Result<()> {
    let mut follower = Follower::new(&env.wal_dir, start);
    let deadline = Instant::now() + Duration::from_secs(RELAY_FINAL_JOIN_WAIT_SECS);
    loop {
        let (gen, tip) = env.watch().current();
        follower.set_live_end(tip.live);
        let progress = follower
            .poll(ROWS_PER_POLL, &mut |row| {
                if row.header.lsn <= stop.get(row.header.replica_id) {
                    push_row(out, row);
                }
            })
            .map_err(follow_error)?;
        wire::send_all(stream, out)?;
        if matches!(
            stop.compare_ignore0(&follower.vclock),
            Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
        ) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "rows up to {stop} never reached the WAL (read up to {})",
                follower.vclock
            )));
        }
        if progress.caught_up {
            env.watch()
                .wait_change(gen, Duration::from_millis(RELAY_ACK_POLL_MS));
        }
    }
}

fn follow_error(e: FollowError) -> io::Error {
    io::Error::other(e.to_string())
}

/// Reads the replica's next request (SUBSCRIBE after JOIN) and hands the connection back
/// to the TX thread, which checks it and starts the subscription.
fn next_request(env: &RelayEnv, stream: TcpStream, input: Vec<u8>, user: u32) -> io::Result<()> {
    let wait = Duration::from_secs(RELAY_NEXT_REQUEST_WAIT_SECS).max(env.disconnect_timeout());
    stream.set_read_timeout(Some(wait))?;
    let mut reader = PacketReader::new(stream, input);
    let packet = match reader.read_packet() {
        Ok(p) => p.to_vec(),
        // A replica may close after JOIN and subscribe on a new connection.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(e) => return Err(e),
    };
    let (header, request) = decode_request(&packet).map_err(|e| wire::invalid(e.error.message))?;
    let (stream, input) = reader.into_parts();
    stream.set_read_timeout(None)?;
    let handoff = Handoff {
        header,
        request,
        packet,
        stream,
        output: Vec::new(),
        input,
    };
    (env.sink)(ReplEvent::Next { user, handoff });
    Ok(())
}

/// Appends a WAL row for the stream: local rows stay home; a GROUP_LOCAL row of another
/// instance travels as a NOP so the transaction keeps its end (§5.6).
fn push_row(out: &mut Vec<u8>, row: &RowRef<'_>) {
    let h = &row.header;
    if h.replica_id == 0 {
        return;
    }
    if h.group_id != 0 {
        let nop = RowHeader {
            req_type: request::NOP,
            group_id: 0,
            ..*h
        };
        wire::encode_wal_row(
            out,
            &RowRef {
                header: nop,
                body: &[],
            },
        );
        return;
    }
    wire::encode_wal_row(out, row);
}

/// The subscription: rows from the replica's vclock on, heartbeats, ACKs.
fn serve_subscribe(env: &RelayEnv, job: SubscribeJob) -> io::Result<()> {
    let SubscribeJob {
        handoff,
        replica_uuid,
        replica_vclock,
        id_filter,
        master_id,
        master_vclock,
        cluster_uuid,
    } = job;
    let sync = handoff.header.sync;
    let mut stream = handoff.stream;
    stream.set_write_timeout(Some(env.disconnect_timeout()))?;
    let mut out = handoff.output;
    wire::encode_subscribe_ok(&mut out, sync, master_id, &master_vclock, &cluster_uuid);
    wire::encode_heartbeat(&mut out, sync, master_id);
    wire::send_all(&mut stream, &mut out)?;
    info!("relay: {replica_uuid} subscribed from {replica_vclock}");
    env.report(&replica_uuid, PeerState::Following, replica_vclock, None);
    let mut link = RelayLink {
        env,
        uuid: replica_uuid,
        sync,
        master_id,
        reader: PacketReader::new(stream.try_clone()?, handoff.input),
        last_sent: Instant::now(),
        last_heard: Instant::now(),
        acked: replica_vclock,
        unacked: VecDeque::new(),
        last_polled: Instant::now(),
    };
    let ack_poll = Duration::from_millis(RELAY_ACK_POLL_MS);
    let mut follower = Follower::new(&env.wal_dir, replica_vclock);
    loop {
        let (gen, tip) = env.watch().current();
        follower.set_live_end(tip.live);
        let mut last_sent = None;
        let polled = follower.poll(ROWS_PER_POLL, &mut |row| {
            if !id_filter.contains(&row.header.replica_id) {
                push_row(&mut out, row);
                last_sent = Some(row.header);
            }
        });
        if let Some(h) = last_sent {
            link.sent(h.replica_id, h.lsn, h.timestamp);
        }
        let progress = match polled {
            Ok(p) => p,
            Err(FollowError::Gap(e)) => {
                wire::encode_error(&mut out, sync, &e);
                let _ = wire::send_all(&mut stream, &mut out);
                return Err(io::Error::other(e.message));
            }
            Err(e) => return Err(follow_error(e)),
        };
        if !out.is_empty() {
            wire::send_all(&mut stream, &mut out)?;
            link.last_sent = Instant::now();
        }
        // Under load, ACKs are read once per poll interval: one syscall, not one per batch.
        if progress.caught_up || link.last_polled.elapsed() >= ack_poll {
            link.read_acks()?;
        }
        if progress.caught_up {
            link.heartbeat(&mut stream, &mut out)?;
            let wait = Duration::from_millis(RELAY_ACK_POLL_MS).min(env.timeout);
            env.watch().wait_change(gen, wait);
        }
    }
}

/// The relay's side of one replica connection: ACKs in, heartbeats out.
struct RelayLink<'a> {
    env: &'a RelayEnv,
    uuid: String,
    sync: u64,
    master_id: u32,
    reader: PacketReader,
    last_sent: Instant,
    last_heard: Instant,
    acked: Vclock,
    /// (replica id, LSN, WAL timestamp) of the last row of each batch sent and not yet
    /// acknowledged: an ACK covering one gives the downstream lag (write → ACK).
    unacked: VecDeque<(u32, u64, f64)>,
    last_polled: Instant,
}

impl RelayLink<'_> {
    /// Drains the ACKs that arrived; a replica silent for the disconnect timeout is dropped.
    fn read_acks(&mut self) -> io::Result<()> {
        self.last_polled = Instant::now();
        let mut latest = None;
        while let Some(packet) = self.reader.try_read_packet()? {
            let row = wire::decode_packet(packet)?;
            if let Some(err) = wire::packet_error(&row) {
                return Err(io::Error::other(err.message));
            }
            if let Some(v) = wire::body_vclock(row.body)? {
                latest = Some(v);
            }
            self.last_heard = Instant::now();
        }
        if let Some(v) = latest {
            if v != self.acked {
                self.acked = v;
                self.env.consumers.set(&self.uuid, v);
                let lag = self.acked_lag(&v);
                self.env
                    .report_lag(&self.uuid, PeerState::Following, v, lag, None);
            }
        }
        if self.last_heard.elapsed() > self.env.disconnect_timeout() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no ACK from the replica within the disconnect timeout",
            ));
        }
        Ok(())
    }

    fn sent(&mut self, replica_id: u32, lsn: u64, timestamp: f64) {
        if self.unacked.len() >= RELAY_LAG_SAMPLES_MAX {
            self.unacked.pop_front();
        }
        self.unacked.push_back((replica_id, lsn, timestamp));
    }

    /// Seconds from the WAL write of the newest row `acked` covers to now.
    fn acked_lag(&mut self, acked: &Vclock) -> f64 {
        let mut newest = None;
        while let Some(&(id, lsn, ts)) = self.unacked.front() {
            if acked.get(id) < lsn {
                break;
            }
            newest = Some(ts);
            self.unacked.pop_front();
        }
        newest.map_or(0.0, |ts| (wire::now() - ts).max(0.0))
    }

    fn heartbeat(&mut self, stream: &mut TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
        if self.last_sent.elapsed() >= self.env.timeout {
            wire::encode_heartbeat(out, self.sync, self.master_id);
            wire::send_all(stream, out)?;
            self.last_sent = Instant::now();
        }
        Ok(())
    }
}
