//! The network thread's event loop.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, warn};

use spindle_fiber::{spawn_cord, Bus};
use spindle_proto::greeting::encode_greeting;
use spindle_proto::iproto::{
    decode_frame, decode_request, encode_error, Frame, FrameError, Header, Request,
};
use spindle_proto::route::{is_handoff, BatchItem, NetEvent, ReplyBatch, RequestBatch, Route};
use spindle_proto::streams::reply_sync;
use spindle_types::compat;
use spindle_types::limits::{
    CONN_MSG_MAX, CONN_OUTPUT_MAX, CONN_TURN_MIN, CONN_TURN_REQUESTS, NET_BATCH_BYTES_MAX,
    NET_BATCH_MAX, NET_OUTPUT_MAX, PIPELINE_CHUNK,
};
use spindle_types::BoxError;

use crate::conn::{BufferPool, Conn, ReadOutcome};
use crate::ordering::Waiting;
use crate::stream::{ListenAddr, Listener, SocketFile, Stream};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Chunks read from one connection per loop turn before others get a turn.
const READS_PER_TURN: usize = 4;

#[derive(Clone, Debug)]
pub struct NetConfig {
    pub listen: ListenAddr,
    pub threads: usize,
    pub net_msg_max: usize,
    pub packet_max: usize,
    pub instance_uuid: String,
}

/// State the TX thread publishes for the network threads.
#[derive(Default)]
pub struct NetShared {
    /// Current schema version, stamped on errors answered by the network thread itself.
    pub schema_version: Arc<AtomicU32>,
    /// Stop accepting and stop reading requests (shutdown, phase 1).
    pub stop_reading: AtomicBool,
    /// Flush what is left and exit (shutdown, phase 2).
    pub exit: AtomicBool,
}

/// The reply side of one network thread.
struct Outlet {
    sender: Sender<ReplyBatch>,
    waker: Arc<Waker>,
    sleeping: Arc<AtomicBool>,
}

/// Handle kept by the server: sends reply batches and stops the threads.
pub struct NetHandle {
    outlets: Vec<Outlet>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<NetShared>,
    pub local_addr: ListenAddr,
    /// Removes a Unix socket file once the handle is gone.
    _socket_file: SocketFile,
}

impl NetHandle {
    /// A cheap clonable sender of reply batches, for the TX thread.
    pub fn reply_sink(&self) -> ReplySink {
        ReplySink {
            outlets: self
                .outlets
                .iter()
                .map(|o| (o.sender.clone(), o.waker.clone(), o.sleeping.clone()))
                .collect(),
        }
    }

    fn wake_all(&self) {
        for o in &self.outlets {
            let _ = o.waker.wake();
        }
    }

    /// Stops accepting connections and reading requests; replies still flow.
    pub fn stop_reading(&self) {
        self.shared.stop_reading.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    /// A handle that can stop the threads from another thread (the signal handler).
    pub fn stopper(&self) -> NetStopper {
        NetStopper {
            shared: self.shared.clone(),
            wakers: self.outlets.iter().map(|o| o.waker.clone()).collect(),
        }
    }

    /// Flushes pending output and joins the threads.
    pub fn shutdown(self) {
        self.shared.exit.store(true, Ordering::SeqCst);
        self.wake_all();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Stops accepting and reading (shutdown phase 1) from any thread.
#[derive(Clone)]
pub struct NetStopper {
    shared: Arc<NetShared>,
    wakers: Vec<Arc<Waker>>,
}

impl NetStopper {
    pub fn stop_reading(&self) {
        self.shared.stop_reading.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            let _ = w.wake();
        }
    }
}

/// Sends reply batches to network threads, waking a thread only if it sleeps.
#[derive(Clone)]
pub struct ReplySink {
    outlets: Vec<(Sender<ReplyBatch>, Arc<Waker>, Arc<AtomicBool>)>,
}

impl ReplySink {
    pub fn send(&self, thread: u16, batch: ReplyBatch) {
        if let Some((sender, waker, sleeping)) = self.outlets.get(thread as usize) {
            if sender.send(batch).is_ok() && sleeping.swap(false, Ordering::SeqCst) {
                let _ = waker.wake();
            }
        }
    }

    pub fn threads(&self) -> usize {
        self.outlets.len()
    }
}

/// Starts `cfg.threads` network threads. Returns once the listener is bound. Thread 0
/// accepts and hands connections out round-robin; the port is bound once, without
/// `SO_REUSEPORT`, so a second server on the same address fails instead of silently
/// sharing it.
pub fn start<M>(cfg: NetConfig, shared: Arc<NetShared>, bus: Bus<M>) -> io::Result<NetHandle>
where
    M: From<NetEvent> + Send + 'static,
{
    let listener = Listener::bind(&cfg.listen)?;
    let socket_file = SocketFile::new(&cfg.listen);
    let local_addr = listener.local_addr(&cfg.listen)?;
    let threads_count = cfg.threads.max(1);
    let mut polls = Vec::new();
    let mut outlets = Vec::new();
    let mut handoffs = Vec::new();
    let mut incoming = Vec::new();
    for _ in 0..threads_count {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (sender, receiver) = crossbeam_channel::unbounded();
        let (conn_sender, conn_receiver) = crossbeam_channel::unbounded();
        outlets.push(Outlet {
            sender,
            waker: waker.clone(),
            sleeping: Arc::new(AtomicBool::new(false)),
        });
        handoffs.push((conn_sender, waker));
        incoming.push((receiver, conn_receiver));
        polls.push(poll);
    }
    let mut listener = Some(listener);
    let mut threads = Vec::new();
    for (index, ((poll, (receiver, conn_receiver)), outlet)) in
        polls.into_iter().zip(incoming).zip(&outlets).enumerate()
    {
        let mut worker = NetThread::new(index as u16, cfg.clone(), shared.clone(), bus.clone());
        worker.receiver = Some(receiver);
        worker.incoming = Some(conn_receiver);
        worker.sleeping = outlet.sleeping.clone();
        if index == 0 {
            worker.handoffs = handoffs.clone();
        }
        let own_listener = listener.take();
        let name = format!("iproto-{index}");
        threads.push(spawn_cord(&name, move || worker.run(poll, own_listener))?);
    }
    Ok(NetHandle {
        outlets,
        threads,
        shared,
        local_addr,
        _socket_file: socket_file,
    })
}

/// Requests each of `queued` connections may hand over in one round of the work queue: one
/// round stays within about `net_msg_max` requests however many connections are busy, so a
/// request arriving on any connection waits behind at most that much work in this thread (and
/// at most `net_msg_max` more in TX), whatever the other connections have pipelined.
fn turn_share(net_msg_max: usize, queued: usize) -> usize {
    (net_msg_max / queued.max(1)).clamp(CONN_TURN_MIN, CONN_TURN_REQUESTS)
}

/// Whether a connection's unsent output forbids reading more of its requests: its own
/// bound, or the thread's (`backlog` is the thread's total) once that is passed and the
/// connection's peer is behind.
fn output_blocked(conn: &Conn, backlog: usize) -> bool {
    let unsent = conn.unsent();
    unsent >= CONN_OUTPUT_MAX || (unsent > 0 && backlog >= NET_OUTPUT_MAX)
}

struct NetThread<M> {
    index: u16,
    cfg: NetConfig,
    shared: Arc<NetShared>,
    bus: Bus<M>,
    receiver: Option<Receiver<ReplyBatch>>,
    /// Connections accepted by thread 0 for this thread.
    incoming: Option<Receiver<Stream>>,
    /// Thread 0 only: where to hand accepted connections (index = thread).
    handoffs: Vec<(Sender<Stream>, Arc<Waker>)>,
    next_thread: usize,
    sleeping: Arc<AtomicBool>,
    conns: Vec<Option<Conn>>,
    generations: Vec<u32>,
    free: Vec<usize>,
    /// Connections with input to process (readable socket or buffered packets), each at
    /// most once in `urgent` or `work` (`Conn::queued`). `urgent` holds the connections with
    /// nothing in TX and nothing unsent — an interactive client's next request — and is
    /// served first: a client that waits for each reply never queues behind the pipelines
    /// of others.
    urgent: VecDeque<usize>,
    work: VecDeque<usize>,
    /// Connections waiting for the thread's in-flight count to drop.
    paused: Vec<usize>,
    dirty: Vec<usize>,
    in_flight: usize,
    /// Requests one connection may have in TX at once.
    conn_msg_max: usize,
    /// Unsent reply bytes of all connections, as of their last flush.
    backlog: usize,
    listening: bool,
    /// Requests decoded this turn, not yet handed to TX.
    batch: RequestBatch,
    buffers: BufferPool,
    /// For deregistering a connection handed off outside the poll loop.
    registry: Option<mio::Registry>,
}

impl<M: From<NetEvent> + Send + 'static> NetThread<M> {
    fn new(index: u16, cfg: NetConfig, shared: Arc<NetShared>, bus: Bus<M>) -> Self {
        NetThread {
            index,
            shared,
            bus,
            receiver: None,
            incoming: None,
            handoffs: Vec::new(),
            next_thread: 0,
            sleeping: Arc::new(AtomicBool::new(false)),
            conns: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            urgent: VecDeque::new(),
            work: VecDeque::new(),
            paused: Vec::new(),
            dirty: Vec::new(),
            in_flight: 0,
            conn_msg_max: CONN_MSG_MAX.min(cfg.net_msg_max).max(1),
            backlog: 0,
            listening: true,
            batch: RequestBatch::default(),
            buffers: BufferPool::default(),
            registry: None,
            cfg,
        }
    }

    /// Queues the connection for a turn of `process_work`, unless it is queued already.
    fn schedule(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot).and_then(|c| c.as_mut()) {
            if !conn.queued {
                conn.queued = true;
                if conn.in_flight == 0 && conn.unsent() == 0 {
                    self.urgent.push_back(slot);
                } else {
                    self.work.push_back(slot);
                }
            }
        }
    }

    fn run(mut self, mut poll: Poll, mut listener: Option<Listener>) {
        self.registry = poll.registry().try_clone().ok();
        if let Some(l) = listener.as_mut() {
            if let Err(e) = poll.registry().register(l, LISTENER, Interest::READABLE) {
                warn!("iproto-{}: cannot register listener: {e}", self.index);
                return;
            }
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let idle = self.work.is_empty() && self.urgent.is_empty();
            if idle {
                self.sleeping.store(true, Ordering::SeqCst);
                let pending = self.receiver.as_ref().is_some_and(|r| !r.is_empty())
                    || self.incoming.as_ref().is_some_and(|r| !r.is_empty());
                if pending || self.exiting() {
                    self.sleeping.store(false, Ordering::SeqCst);
                }
            }
            let timeout = if self.sleeping.load(Ordering::SeqCst) {
                None
            } else {
                Some(std::time::Duration::ZERO)
            };
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!("iproto-{}: poll failed: {e}", self.index);
                    return;
                }
            }
            self.sleeping.store(false, Ordering::SeqCst);
            for event in events.iter() {
                match event.token() {
                    LISTENER => {
                        if let Some(l) = listener.as_mut() {
                            self.accept_all(&poll, l);
                        }
                    }
                    WAKER => {}
                    Token(slot) => self.on_ready(slot, event.is_readable(), event.is_read_closed()),
                }
            }
            self.take_incoming(&poll);
            // Replies go out before new requests are read, and those that came back while
            // they were read go out before the thread polls again.
            self.take_replies();
            self.flush_dirty(&poll);
            if let Some(l) = listener.as_mut() {
                self.maybe_stop_listening(&poll, l);
            }
            self.process_work();
            self.send_batch();
            self.take_replies();
            self.flush_dirty(&poll);
            if self.exiting() {
                self.flush_all(&poll);
                return;
            }
        }
    }

    fn exiting(&self) -> bool {
        self.shared.exit.load(Ordering::SeqCst)
    }

    fn maybe_stop_listening(&mut self, poll: &Poll, listener: &mut Listener) {
        if self.listening && self.shared.stop_reading.load(Ordering::SeqCst) {
            let _ = poll.registry().deregister(listener);
            self.listening = false;
        }
    }

    fn accept_all(&mut self, poll: &Poll, listener: &mut Listener) {
        if !self.listening {
            return;
        }
        loop {
            match listener.accept() {
                Ok(stream) => self.route_conn(poll, stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: keep serving existing connections.
                    warn!("iproto-{}: accept failed: {e}", self.index);
                    return;
                }
            }
        }
    }

    /// Keeps the connection or hands it to the next thread, round-robin.
    fn route_conn(&mut self, poll: &Poll, stream: Stream) {
        let count = self.handoffs.len().max(1);
        let target = self.next_thread % count;
        self.next_thread = self.next_thread.wrapping_add(1);
        match self.handoffs.get(target) {
            Some((sender, waker)) if target != self.index as usize => {
                if sender.send(stream).is_ok() {
                    let _ = waker.wake();
                }
            }
            _ => self.add_conn(poll, stream),
        }
    }

    fn take_incoming(&mut self, poll: &Poll) {
        let Some(incoming) = self.incoming.clone() else {
            return;
        };
        while let Ok(stream) = incoming.try_recv() {
            if self.shared.stop_reading.load(Ordering::Relaxed) {
                continue;
            }
            self.add_conn(poll, stream);
        }
    }

    fn add_conn(&mut self, poll: &Poll, mut stream: Stream) {
        stream.tune();
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.conns.push(None);
                self.generations.push(0);
                self.conns.len() - 1
            }
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if poll
            .registry()
            .register(&mut stream, Token(slot), interest)
            .is_err()
        {
            self.free.push(slot);
            return;
        }
        let generation = self.generations.get(slot).copied().unwrap_or(0);
        let mut conn = Conn::new(stream, generation);
        let salt: [u8; 32] = rand::random();
        conn.output.extend_from_slice(&encode_greeting(
            &compat::announced().to_string(),
            &self.cfg.instance_uuid,
            &salt,
        ));
        if let Some(entry) = self.conns.get_mut(slot) {
            *entry = Some(conn);
        }
        let route = Route {
            thread: self.index,
            slot: slot as u32,
            generation,
        };
        self.send_batch();
        self.bus.send(M::from(NetEvent::Connect { route, salt }));
        self.dirty.push(slot);
        self.schedule(slot);
    }

    fn on_ready(&mut self, slot: usize, readable: bool, read_closed: bool) {
        let Some(conn) = self.conns.get_mut(slot).and_then(|c| c.as_mut()) else {
            return;
        };
        conn.peer_closed |= read_closed;
        let wake = readable || read_closed;
        if wake {
            conn.readable = true;
        }
        self.dirty.push(slot);
        if wake {
            self.schedule(slot);
        }
    }

    fn take_replies(&mut self) {
        let Some(receiver) = self.receiver.clone() else {
            return;
        };
        let before = self.in_flight;
        let mut released = false;
        while let Ok(batch) = receiver.try_recv() {
            for (route, bytes, partial) in batch.iter_items() {
                // A push is not the request's reply: the request stays in flight.
                let done = usize::from(!partial);
                self.in_flight = self.in_flight.saturating_sub(done);
                let slot = route.slot as usize;
                if let Some(conn) = self.conns.get_mut(slot).and_then(|c| c.as_mut()) {
                    if conn.generation == route.generation {
                        conn.output.extend_from_slice(bytes);
                        conn.in_flight = conn.in_flight.saturating_sub(done);
                        if !partial {
                            released |= release_next(conn, route, bytes, &mut self.batch);
                        }
                        self.dirty.push(slot);
                        self.schedule(slot);
                    }
                }
            }
        }
        if released {
            self.send_batch();
        }
        if before >= self.cfg.net_msg_max && self.in_flight < self.cfg.net_msg_max {
            for slot in std::mem::take(&mut self.paused) {
                if let Some(conn) = self.conns.get_mut(slot).and_then(|c| c.as_mut()) {
                    conn.paused = false;
                }
                self.schedule(slot);
            }
        }
    }

    fn process_work(&mut self) {
        let urgent = self.urgent.len();
        let rounds = urgent + self.work.len();
        let share = turn_share(self.cfg.net_msg_max, rounds);
        for turn in 0..rounds {
            let next = if turn < urgent {
                self.urgent.pop_front()
            } else {
                self.work.pop_front()
            };
            let Some(slot) = next else {
                continue;
            };
            if let Some(conn) = self.conns.get_mut(slot).and_then(|c| c.as_mut()) {
                conn.queued = false;
            }
            if self.process_conn(slot, share) {
                self.schedule(slot);
            }
            if self.batch.len() >= PIPELINE_CHUNK {
                self.queue_batch();
            }
        }
    }

    /// Frames and dispatches what the connection has; returns true if it should get another
    /// turn (it still has input and capacity, but used up this turn's `share` of requests).
    fn process_conn(&mut self, slot: usize, share: usize) -> bool {
        if self.shared.stop_reading.load(Ordering::Relaxed) {
            return false;
        }
        let mut reads = 0;
        let mut requests = 0;
        loop {
            if self.in_flight >= self.cfg.net_msg_max {
                if let Some(conn) = self.conns.get_mut(slot).and_then(|c| c.as_mut()) {
                    if !conn.paused {
                        conn.paused = true;
                        self.paused.push(slot);
                    }
                }
                return false;
            }
            let (backlog, conn_msg_max) = (self.backlog, self.conn_msg_max);
            let Some(conn) = self.conns.get_mut(slot).and_then(|c| c.as_mut()) else {
                return false;
            };
            if output_blocked(conn, backlog) {
                conn.stalled = true;
                return false;
            }
            // A reply coming back schedules the connection again.
            if conn.closing || conn.in_flight >= conn_msg_max {
                return false;
            }
            if requests == share {
                return true;
            }
            match decode_frame(conn.pending_input(), self.cfg.packet_max) {
                Ok(Frame::Packet { prefix_len, len }) => {
                    requests += 1;
                    self.dispatch(slot, prefix_len, len);
                }
                Ok(Frame::Need(_)) => {
                    if !conn.readable {
                        conn.release_input(&mut self.buffers);
                        return false;
                    }
                    if reads == READS_PER_TURN {
                        return true;
                    }
                    reads += 1;
                    if let ReadOutcome::Closed = conn.read_chunk(&mut self.buffers) {
                        conn.closing = true;
                        self.dirty.push(slot);
                        return false;
                    }
                }
                Err(e) => {
                    self.framing_error(slot, e);
                    return false;
                }
            }
        }
    }

    /// Decodes one framed packet into the turn's batch, or answers it right here if it
    /// does not decode.
    fn dispatch(&mut self, slot: usize, prefix_len: usize, len: usize) {
        let schema_version = self.shared.schema_version.load(Ordering::Relaxed);
        let index = self.index;
        let Some(conn) = self.conns.get_mut(slot).and_then(|c| c.as_mut()) else {
            return;
        };
        let start = conn.consumed + prefix_len;
        // `decode_frame` found the whole packet in the pending input.
        let packet = conn.input.get(start..start + len);
        debug_assert!(packet.is_some(), "a framed packet outside the input buffer");
        let packet = packet.unwrap_or_default();
        conn.consumed = start + len;
        let route = Route {
            thread: index,
            slot: slot as u32,
            generation: conn.generation,
        };
        match decode_request(packet) {
            Ok((header, request))
                if is_handoff(&request) && matches!(conn.stream, Stream::Unix(_)) =>
            {
                // The relay threads own blocking TCP sockets only.
                let err = BoxError::unsupported("spindle", "replication over Unix sockets");
                encode_error(&mut conn.output, header.sync, schema_version, &err);
                self.dirty.push(slot);
            }
            Ok((header, request)) if is_handoff(&request) => {
                let packet = packet.to_vec();
                self.hand_off(slot, route, header, request, packet);
            }
            Ok((header, request)) => {
                // Counted in flight even while it waits for its stream: the connection's
                // bound covers the stream queues too.
                conn.in_flight += 1;
                self.in_flight += 1;
                if header.stream_id != 0 && compat::announced().has_streams() {
                    let streams = conn.streams.get_or_insert_with(Default::default);
                    if !streams.admit(header.stream_id, header.sync) {
                        let packet = packet.to_vec();
                        let waiting = Waiting {
                            header,
                            request,
                            packet,
                        };
                        streams.hold(header.stream_id, waiting);
                        return;
                    }
                }
                if push_item(&mut self.batch, route, header, request, packet) {
                    self.send_batch();
                }
            }
            Err(e) => {
                debug!(
                    "iproto-{index}: undecodable request ({}): {:02x?}",
                    e.error.message, packet
                );
                let sync = e.header.map(|h| h.sync).unwrap_or(0);
                encode_error(&mut conn.output, sync, schema_version, &e.error);
                self.dirty.push(slot);
            }
        }
    }

    /// Hands the requests decoded so far to TX in one message, and wakes TX if it sleeps.
    fn send_batch(&mut self) {
        self.queue_batch();
        self.bus.ring();
    }

    /// Queues the requests decoded so far for TX without waking it: a TX thread that is
    /// awake takes them at once, a sleeping one is woken once at the end of the loop turn
    /// rather than once per chunk.
    fn queue_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        // The next batch starts at this one's size (bounded: one huge packet must not make
        // every later batch huge).
        let capacity = self.batch.buf.len().min(NET_BATCH_BYTES_MAX);
        let batch = std::mem::replace(
            &mut self.batch,
            RequestBatch {
                buf: Vec::with_capacity(capacity),
                items: Vec::new(),
            },
        );
        self.bus.send_quiet(M::from(NetEvent::Requests(batch)));
    }

    /// Gives the connection up to the TX thread with its replication request: the slot is
    /// freed (late replies to it are dropped by the generation check) and the socket goes
    /// back to blocking mode for the relay thread that will own it.
    fn hand_off(
        &mut self,
        slot: usize,
        route: Route,
        header: spindle_proto::iproto::Header,
        request: spindle_proto::iproto::Request,
        packet: Vec<u8>,
    ) {
        let Some(mut conn) = self.conns.get_mut(slot).and_then(|c| c.take()) else {
            return;
        };
        // Everything this connection sent before must reach TX first.
        drain_streams(&mut conn, route, &mut self.batch);
        self.send_batch();
        self.backlog -= conn.counted;
        if let Some(g) = self.generations.get_mut(slot) {
            *g = g.wrapping_add(1);
        }
        self.free.push(slot);
        if let Some(registry) = &self.registry {
            let _ = registry.deregister(&mut conn.stream);
        }
        let output = conn.output.split_off(conn.written);
        let input = conn.pending_input().to_vec();
        let Stream::Tcp(stream) = conn.stream else {
            self.bus.send(M::from(NetEvent::Disconnect { route }));
            return;
        };
        let stream = std::net::TcpStream::from(stream);
        if stream.set_nonblocking(false).is_err() {
            self.bus.send(M::from(NetEvent::Disconnect { route }));
            return;
        }
        self.bus.send(M::from(NetEvent::Handoff {
            route,
            header,
            request,
            packet,
            stream,
            output,
            input,
        }));
    }

    fn framing_error(&mut self, slot: usize, e: FrameError) {
        let schema_version = self.shared.schema_version.load(Ordering::Relaxed);
        let err = e.to_box_error();
        if let Some(conn) = self.conns.get_mut(slot).and_then(|c| c.as_mut()) {
            debug!(
                "iproto-{}: framing error, closing: {}",
                self.index, err.message
            );
            encode_error(&mut conn.output, 0, schema_version, &err);
            conn.closing = true;
            conn.discard_input();
            self.dirty.push(slot);
        }
    }

    fn flush_dirty(&mut self, poll: &Poll) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for slot in dirty.drain(..) {
            self.flush_conn(poll, slot);
        }
        self.dirty = dirty;
    }

    fn flush_all(&mut self, poll: &Poll) {
        for slot in 0..self.conns.len() {
            self.flush_conn(poll, slot);
        }
    }

    fn flush_conn(&mut self, poll: &Poll, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(|c| c.as_mut()) else {
            return;
        };
        let alive = conn.flush().is_ok();
        self.backlog = self.backlog - conn.counted + conn.unsent();
        conn.counted = conn.unsent();
        if !alive || (conn.closing && conn.unsent() == 0) {
            self.close_conn(poll, slot);
            return;
        }
        let Some(conn) = self.conns.get(slot).and_then(|c| c.as_ref()) else {
            return;
        };
        if conn.stalled && !output_blocked(conn, self.backlog) {
            if let Some(conn) = self.conns.get_mut(slot).and_then(|c| c.as_mut()) {
                conn.stalled = false;
            }
            self.schedule(slot);
        }
    }

    fn close_conn(&mut self, poll: &Poll, slot: usize) {
        let Some(entry) = self.conns.get_mut(slot) else {
            return;
        };
        let Some(mut conn) = entry.take() else { return };
        self.backlog -= conn.counted;
        let _ = poll.registry().deregister(&mut conn.stream);
        if let Some(g) = self.generations.get_mut(slot) {
            *g = g.wrapping_add(1);
        }
        self.free.push(slot);
        let route = Route {
            thread: self.index,
            slot: slot as u32,
            generation: conn.generation,
        };
        drain_streams(&mut conn, route, &mut self.batch);
        self.send_batch();
        self.bus.send(M::from(NetEvent::Disconnect { route }));
    }
}

/// Appends one request to the batch; true if the batch should go to TX now.
fn push_item(
    batch: &mut RequestBatch,
    route: Route,
    header: Header,
    request: Request,
    packet: &[u8],
) -> bool {
    let start = batch.buf.len() as u32;
    batch.buf.extend_from_slice(packet);
    batch.items.push(BatchItem {
        route,
        header,
        request,
        start,
        end: batch.buf.len() as u32,
    });
    batch.len() >= NET_BATCH_MAX || batch.buf.len() >= NET_BATCH_BYTES_MAX
}

/// A reply went out on `conn`: if it ends a stream's request, that stream's next request
/// joins `batch`. True if one did.
fn release_next(conn: &mut Conn, route: Route, reply: &[u8], batch: &mut RequestBatch) -> bool {
    let Some(streams) = conn.streams.as_mut().filter(|s| !s.is_empty()) else {
        return false;
    };
    let Some(next) = reply_sync(reply).and_then(|sync| streams.on_reply(sync)) else {
        return false;
    };
    push_item(batch, route, next.header, next.request, &next.packet);
    true
}

/// The connection is going: the requests its streams still hold go to TX (they were read,
/// so they run, each stream's in order).
fn drain_streams(conn: &mut Conn, route: Route, batch: &mut RequestBatch) {
    if let Some(mut streams) = conn.streams.take() {
        for w in streams.drain() {
            push_item(batch, route, w.header, w.request, &w.packet);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::turn_share;
    use spindle_types::limits::{CONN_TURN_MIN, CONN_TURN_REQUESTS};

    #[test]
    fn a_round_of_the_work_queue_stays_near_net_msg_max() {
        assert_eq!(turn_share(768, 0), CONN_TURN_REQUESTS);
        assert_eq!(turn_share(768, 4), CONN_TURN_REQUESTS);
        assert_eq!(turn_share(768, 200), 3);
        assert_eq!(turn_share(768, 10_000), CONN_TURN_MIN);
        for queued in 1..2000 {
            let share = turn_share(768, queued);
            assert!((CONN_TURN_MIN..=CONN_TURN_REQUESTS).contains(&share));
            assert!(
                share == CONN_TURN_MIN || share * queued <= 768,
                "{queued}: {share}"
            );
        }
    }
}
