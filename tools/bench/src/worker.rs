//! A worker thread: one mio `Poll` (epoll) driving its share of the connections, all
//! non-blocking. Each connection keeps `depth` requests in flight: whenever replies arrive,
//! the freed slots are refilled and everything queued is written with one `write` per
//! connection per loop turn.

use crate::keys::{KeyDist, Rng};
use crate::pipeline::Pipeline;
use crate::stats::{Failure, SecondStats, Stats, Templates};
use crate::workload::{Encoder, Mix};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use spindle_proto::greeting::decode_greeting;
use spindle_proto::iproto::{decode_frame, decode_response, encode_auth, Frame};
use spindle_types::iproto::GREETING_SIZE;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest reply accepted (Tarantool's hard limit is 2 GiB; ours need far less).
const MAX_REPLY: usize = 1 << 30;
/// Initial read buffer per connection.
const READ_BUFFER: usize = 64 * 1024;
/// How long a worker sleeps in `poll` at most, so it notices the stop flag and rolls seconds.
const POLL_TICK: Duration = Duration::from_millis(20);
/// Requests (or keys) a connection claims at once from a shared counter.
const CLAIM: u64 = 16;
/// TCP connect / greeting / AUTH timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections whose loss is printed (the rest are only counted).
const LOSSES_PRINTED: usize = 3;

/// What every worker needs to know, fixed for the run.
#[derive(Debug)]
pub struct RunConfig {
    pub addr: SocketAddr,
    pub user: String,
    pub password: Option<String>,
    pub depth: usize,
    pub space_id: u32,
    pub value_size: usize,
    pub mix: Mix,
    pub keys: KeyDist,
    pub seed: u64,
    pub drain_timeout: Duration,
    /// Measured requests in all (`--requests`).
    pub request_limit: Option<u64>,
    /// Keys handed out in order to INSERTs (`load`: exactly these; `insert`: open-ended).
    pub new_keys: Range<u64>,
}

/// The run's clock, set by the main thread once every connection is up.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub start: Instant,
    /// End of the warmup: requests sent from here on are measured.
    pub measure_start: Instant,
    /// `measure_start` as Unix time, seconds.
    pub measure_start_unix: f64,
}

impl Clock {
    pub fn new(start: Instant, warmup: Duration) -> Clock {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Clock {
            start,
            measure_start: start + warmup,
            measure_start_unix: unix + warmup.as_secs_f64(),
        }
    }

    /// The second of the measured window `now` falls in, or None during the warmup.
    pub fn second(&self, now: Instant) -> Option<u64> {
        now.checked_duration_since(self.measure_start)
            .map(|d| d.as_secs())
    }
}

/// State shared by the workers and the main thread.
#[derive(Debug, Default)]
pub struct Shared {
    pub stop: AtomicBool,
    pub clock: OnceLock<Clock>,
    pub setup_error: Mutex<Option<String>>,
    /// Measured requests claimed so far (for `--requests`).
    issued: AtomicU64,
    /// Next key for INSERT, relative to `new_keys.start`.
    next_key: AtomicU64,
    /// Live totals for the progress view.
    pub ok: AtomicU64,
    pub errors: AtomicU64,
}

impl Shared {
    pub fn fail_setup(&self, message: String) {
        if let Ok(mut slot) = self.setup_error.lock() {
            slot.get_or_insert(message);
        }
    }

    pub fn take_setup_error(&self) -> Option<String> {
        self.setup_error.lock().ok().and_then(|mut e| e.take())
    }
}

/// Takes up to `CLAIM` units below `end` from `counter`; empty when all are taken.
fn claim(counter: &AtomicU64, end: u64) -> Range<u64> {
    let start = counter.fetch_add(CLAIM, Ordering::Relaxed);
    if start >= end {
        return 0..0;
    }
    start..start.saturating_add(CLAIM).min(end)
}

/// What a worker reports to the main thread.
#[derive(Debug)]
pub enum WorkerMsg {
    /// A finished second of this worker (in order, from 0, without gaps).
    Second { worker: usize, stats: SecondStats },
    /// The worker has stopped; no more seconds from it.
    Done { worker: usize },
}

fn io_err(what: &str, addr: &SocketAddr) -> impl Fn(io::Error) -> String {
    let what = what.to_string();
    let addr = *addr;
    move |e| format!("{what} {addr}: {e}")
}

/// Reads one whole reply packet (length prefix stripped) from a blocking socket.
fn read_packet(stream: &mut std::net::TcpStream) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match decode_frame(&buf, MAX_REPLY) {
            Ok(Frame::Packet { prefix_len, len }) => {
                return Ok(buf
                    .get(prefix_len..prefix_len + len)
                    .unwrap_or_default()
                    .to_vec());
            }
            Ok(Frame::Need(_)) => {}
            Err(e) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")));
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Connects, reads the greeting and authenticates (blocking, with timeouts), then turns the
/// socket non-blocking for the event loop.
pub fn open(addr: &SocketAddr, user: &str, password: Option<&str>) -> Result<TcpStream, String> {
    let mut stream = std::net::TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)
        .map_err(io_err("cannot connect to", addr))?;
    let setup = io_err("setting up the socket to", addr);
    stream.set_nodelay(true).map_err(&setup)?;
    stream
        .set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(&setup)?;
    stream
        .set_write_timeout(Some(CONNECT_TIMEOUT))
        .map_err(&setup)?;
    let mut raw = [0u8; GREETING_SIZE];
    stream
        .read_exact(&mut raw)
        .map_err(io_err("no greeting from", addr))?;
    let greeting = decode_greeting(&raw)
        .filter(|g| g.protocol == "Binary")
        .ok_or_else(|| format!("{addr} is not an IPROTO (binary) port"))?;
    if let Some(password) = password {
        let scramble = spindle_proto::auth::scramble(&greeting.salt, password);
        let mut out = Vec::new();
        encode_auth(&mut out, 1, user, Some(&scramble));
        stream
            .write_all(&out)
            .map_err(io_err("sending AUTH to", addr))?;
        let packet = read_packet(&mut stream).map_err(io_err("no AUTH reply from", addr))?;
        let reply = decode_response(&packet)
            .map_err(|e| format!("{addr}: undecodable AUTH reply: {e:?}"))?;
        if reply.is_error() {
            return Err(format!(
                "authentication as {user:?} failed: {}",
                reply.error_message.unwrap_or_default()
            ));
        }
    }
    stream.set_read_timeout(None).map_err(&setup)?;
    stream.set_write_timeout(None).map_err(&setup)?;
    stream.set_nonblocking(true).map_err(&setup)?;
    Ok(TcpStream::from_std(stream))
}

/// One connection of the event loop.
struct Conn {
    id: usize,
    stream: TcpStream,
    pipe: Pipeline,
    encoder: Encoder,
    rng: Rng,
    out: Vec<u8>,
    written: usize,
    input: Vec<u8>,
    input_start: usize,
    input_end: usize,
    /// Measured requests this connection may still send (`--requests`).
    budget: u64,
    /// Claimed INSERT keys not sent yet.
    keys: Range<u64>,
    alive: bool,
    /// Nothing more to send (budget or keys used up).
    exhausted: bool,
}

impl Conn {
    fn new(id: usize, stream: TcpStream, cfg: &RunConfig) -> Conn {
        Conn {
            id,
            stream,
            pipe: Pipeline::new(cfg.depth),
            encoder: Encoder::new(cfg.space_id, cfg.value_size),
            rng: Rng::new(cfg.seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            out: Vec::with_capacity(4096),
            written: 0,
            input: vec![0; READ_BUFFER],
            input_start: 0,
            input_end: 0,
            budget: 0,
            keys: 0..0,
            alive: true,
            exhausted: false,
        }
    }

    fn next_new_key(&mut self, cfg: &RunConfig, shared: &Shared) -> Option<u64> {
        if self.keys.is_empty() {
            let span = cfg.new_keys.end.saturating_sub(cfg.new_keys.start);
            let got = claim(&shared.next_key, span);
            self.keys = cfg.new_keys.start + got.start..cfg.new_keys.start + got.end;
        }
        self.keys.next()
    }

    /// Queues requests until `depth` are in flight or there is nothing more to send.
    fn fill(&mut self, now: Instant, measured: bool, cfg: &RunConfig, shared: &Shared) {
        while !self.exhausted && self.pipe.has_room() {
            let limited = measured && cfg.request_limit.is_some();
            if limited && self.budget == 0 {
                let got = claim(&shared.issued, cfg.request_limit.unwrap_or(0));
                self.budget = got.end - got.start;
                if self.budget == 0 {
                    self.exhausted = true;
                    break;
                }
            }
            let op = cfg.mix.pick(&mut self.rng);
            let key = if op.takes_new_key() {
                match self.next_new_key(cfg, shared) {
                    Some(key) => key,
                    None => {
                        self.exhausted = true;
                        break;
                    }
                }
            } else if op.uses_space() {
                cfg.keys.next(&mut self.rng)
            } else {
                0
            };
            let Some(sync) = self.pipe.issue(op, now, measured) else {
                break;
            };
            self.encoder
                .encode(&mut self.out, sync, op, key, &mut self.rng);
            if limited {
                self.budget -= 1;
            }
        }
    }

    /// Writes what is queued, until done or the socket is full.
    fn flush(&mut self) -> Result<(), String> {
        while self.written < self.out.len() {
            let pending = self.out.get(self.written..).unwrap_or_default();
            match self.stream.write(pending) {
                Ok(0) => return Err("write returned 0".into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        self.out.clear();
        self.written = 0;
        Ok(())
    }

    /// Reads everything available and handles every whole reply. A read that does not fill
    /// the buffer drained the socket (epoll(7)), so no further read is spent on WouldBlock:
    /// at one request in flight that was a second syscall per reply.
    fn read(&mut self, now: Instant, stats: &mut Stats) -> Result<(), String> {
        loop {
            if self.input_end == self.input.len() {
                self.make_room(0);
            }
            let free = self.input.get_mut(self.input_end..).unwrap_or_default();
            let room = free.len();
            match self.stream.read(free) {
                Ok(0) => {
                    self.process(now, stats)?;
                    return Err("the server closed the connection".into());
                }
                Ok(n) => {
                    self.input_end += n;
                    self.process(now, stats)?;
                    if n < room {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Moves unparsed bytes to the front; then grows the buffer if it is still full or
    /// smaller than `need` bytes.
    fn make_room(&mut self, need: usize) {
        if self.input_start > 0 {
            self.input.copy_within(self.input_start..self.input_end, 0);
            self.input_end -= self.input_start;
            self.input_start = 0;
        }
        if self.input_end == self.input.len() || need > self.input.len() {
            let size = need.max(self.input.len() * 2);
            self.input.resize(size, 0);
        }
    }

    fn process(&mut self, now: Instant, stats: &mut Stats) -> Result<(), String> {
        loop {
            let pending = self
                .input
                .get(self.input_start..self.input_end)
                .unwrap_or_default();
            match decode_frame(pending, MAX_REPLY) {
                Ok(Frame::Packet { prefix_len, len }) => {
                    let packet = pending
                        .get(prefix_len..prefix_len + len)
                        .unwrap_or_default();
                    self.pipe.complete(packet, now, stats)?;
                    self.input_start += prefix_len + len;
                }
                Ok(Frame::Need(total)) => {
                    if self.input_start == self.input_end {
                        self.input_start = 0;
                        self.input_end = 0;
                    } else if total > self.input.len() - self.input_start {
                        self.make_room(total);
                    }
                    return Ok(());
                }
                Err(e) => return Err(format!("bad reply frame: {e:?}")),
            }
        }
    }

    fn close(
        &mut self,
        reason: &str,
        now: Instant,
        stats: &mut Stats,
        registry: &Registry,
        losses: &mut usize,
    ) {
        if !self.alive {
            return;
        }
        self.alive = false;
        let _ = registry.deregister(&mut self.stream);
        if *losses < LOSSES_PRINTED {
            eprintln!("spindle-bench: connection {} lost: {reason}", self.id);
        }
        *losses += 1;
        self.pipe
            .fail_all(&Failure::Connection(reason.to_string()), now, stats);
    }
}

/// Runs one worker: opens `conns` connections (ids from `first_id`), waits at the barrier for
/// the others, then drives them until the run stops. Returns what it counted.
#[allow(clippy::too_many_arguments)]
pub fn run_worker(
    worker: usize,
    conn_ids: Range<usize>,
    cfg: Arc<RunConfig>,
    shared: Arc<Shared>,
    barrier: Arc<Barrier>,
    templates: Templates,
    tx: Sender<WorkerMsg>,
) -> Stats {
    let mut stats = Stats::new(&templates);
    let mut conns = Vec::with_capacity(conn_ids.len());
    for id in conn_ids {
        match open(&cfg.addr, &cfg.user, cfg.password.as_deref()) {
            Ok(stream) => conns.push(Conn::new(id, stream, &cfg)),
            Err(e) => {
                shared.fail_setup(format!("connection {id}: {e}"));
                break;
            }
        }
    }
    // Everyone connected (or failed); then the main thread sets the clock or the stop flag.
    barrier.wait();
    barrier.wait();
    if let (Some(clock), false) = (shared.clock.get(), shared.stop.load(Ordering::Relaxed)) {
        if let Err(e) = event_loop(worker, &mut conns, &cfg, &shared, clock, &mut stats, &tx) {
            eprintln!("spindle-bench: worker {worker} failed: {e}");
            let now = Instant::now();
            for conn in &mut conns {
                conn.pipe
                    .fail_all(&Failure::Connection(e.clone()), now, &mut stats);
            }
        }
    }
    if let Some(last) = stats.finish_seconds() {
        let _ = tx.send(WorkerMsg::Second {
            worker,
            stats: last,
        });
    }
    let (ok, errors, _) = stats.take_live();
    shared.ok.fetch_add(ok, Ordering::Relaxed);
    shared.errors.fetch_add(errors, Ordering::Relaxed);
    let _ = tx.send(WorkerMsg::Done { worker });
    stats
}

fn roll(worker: usize, clock: &Clock, now: Instant, stats: &mut Stats, tx: &Sender<WorkerMsg>) {
    if let Some(second) = clock.second(now) {
        for done in stats.roll(second) {
            let _ = tx.send(WorkerMsg::Second {
                worker,
                stats: done,
            });
        }
    }
}

fn event_loop(
    worker: usize,
    conns: &mut [Conn],
    cfg: &RunConfig,
    shared: &Shared,
    clock: &Clock,
    stats: &mut Stats,
    tx: &Sender<WorkerMsg>,
) -> Result<(), String> {
    let mut poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    for (i, conn) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(
                &mut conn.stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("epoll register: {e}"))?;
    }
    let mut events = Events::with_capacity(1024);
    let mut touched: Vec<usize> = (0..conns.len()).collect();
    let mut stopped_at: Option<Instant> = None;
    let mut losses = 0usize;
    loop {
        let now = Instant::now();
        roll(worker, clock, now, stats, tx);
        let stopping = shared.stop.load(Ordering::Relaxed);
        if stopping && stopped_at.is_none() {
            stopped_at = Some(now);
        }
        let measured = now >= clock.measure_start;
        for &i in &touched {
            let Some(conn) = conns.get_mut(i) else {
                continue;
            };
            if !conn.alive {
                continue;
            }
            if !stopping {
                // Stamp each connection's requests when they are about to be written, not
                // when the loop turn began (a turn over many connections takes a while).
                let sent = Instant::now();
                conn.fill(sent, measured, cfg, shared);
            }
            if let Err(reason) = conn.flush() {
                conn.close(&reason, now, stats, poll.registry(), &mut losses);
            }
        }
        touched.clear();
        let (ok, errors, _) = stats.take_live();
        if ok > 0 {
            shared.ok.fetch_add(ok, Ordering::Relaxed);
        }
        if errors > 0 {
            shared.errors.fetch_add(errors, Ordering::Relaxed);
        }
        let busy = conns
            .iter()
            .any(|c| c.alive && (c.pipe.in_flight() > 0 || (!stopping && !c.exhausted)));
        if !busy {
            return Ok(());
        }
        if let Some(at) = stopped_at {
            if now >= at + cfg.drain_timeout {
                for conn in conns.iter_mut().filter(|c| c.alive) {
                    conn.pipe.fail_all(&Failure::NoReply, now, stats);
                }
                return Ok(());
            }
        }
        match poll.poll(&mut events, Some(POLL_TICK)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("epoll wait: {e}")),
        }
        let now = Instant::now();
        roll(worker, clock, now, stats, tx);
        for event in events.iter() {
            let i = event.token().0;
            let Some(conn) = conns.get_mut(i) else {
                continue;
            };
            if !conn.alive {
                continue;
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                let received = Instant::now();
                if let Err(reason) = conn.read(received, stats) {
                    conn.close(&reason, now, stats, poll.registry(), &mut losses);
                    continue;
                }
            }
            touched.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_config() -> RunConfig {
        RunConfig {
            addr: "127.0.0.1:1".parse().unwrap(),
            user: "admin".into(),
            password: None,
            depth: 4,
            space_id: 512,
            value_size: 100,
            mix: Mix::single(crate::workload::Op::Select),
            keys: KeyDist::uniform(10),
            seed: 1,
            drain_timeout: Duration::from_secs(1),
            request_limit: Some(3),
            new_keys: 0..0,
        }
    }

    /// A big reply (several times the read buffer) arriving in pieces, followed by two small
    /// ones in the same read: all parsed, none lost.
    #[test]
    fn replies_larger_than_the_buffer_and_split_reads() {
        use spindle_proto::iproto::{begin_response, encode_data_prefix, finish_response};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.set_nonblocking(true).unwrap();
        let cfg = test_config();
        let shared = Shared::default();
        let templates = Templates::new().unwrap();
        let mut stats = Stats::new(&templates);
        stats.roll(0);
        let mut conn = Conn::new(0, TcpStream::from_std(client), &cfg);
        let now = Instant::now();
        conn.fill(now, true, &cfg, &shared);
        assert_eq!(conn.pipe.in_flight(), 3, "--requests 3 caps the pipeline");
        assert!(conn.exhausted);
        conn.flush().unwrap();
        // Read the three requests to learn their syncs.
        let mut syncs = Vec::new();
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        while syncs.len() < 3 {
            let n = server.read(&mut chunk).unwrap();
            raw.extend_from_slice(&chunk[..n]);
            syncs.clear();
            let mut rest = raw.as_slice();
            while let Ok(Frame::Packet { prefix_len, len }) = decode_frame(rest, MAX_REPLY) {
                let (header, _) =
                    spindle_proto::iproto::decode_request(&rest[prefix_len..prefix_len + len])
                        .unwrap();
                syncs.push(header.sync);
                rest = &rest[prefix_len + len..];
            }
        }
        let reply = |sync: u64, tuples: u32| {
            let mut out = Vec::new();
            let start = begin_response(&mut out, 0, sync, 1);
            encode_data_prefix(&mut out, tuples);
            for i in 0..tuples {
                spindle_proto::mp::write_array_len(&mut out, 2);
                spindle_proto::mp::write_uint(&mut out, u64::from(i));
                spindle_proto::mp::write_str(&mut out, &"v".repeat(100));
            }
            finish_response(&mut out, start);
            out
        };
        // A SELECT by primary key never returns 5000 tuples: that one is a failure, but it
        // must be framed and parsed correctly to get there.
        let mut bytes = reply(syncs[0], 5000);
        assert!(bytes.len() > 4 * READ_BUFFER);
        bytes.extend(reply(syncs[1], 1));
        bytes.extend(reply(syncs[2], 0));
        let writer = std::thread::spawn(move || {
            for piece in bytes.chunks(100_000) {
                server.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            server
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while conn.pipe.in_flight() > 0 && Instant::now() < deadline {
            conn.read(Instant::now(), &mut stats).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let _server = writer.join().unwrap();
        assert_eq!(conn.pipe.in_flight(), 0);
        let select = &stats.ops[crate::workload::Op::Select.index()];
        assert_eq!((select.ok, select.empty, select.errors), (2, 1, 1));
        assert!(
            stats.errors.keys().any(|k| k.contains("5000 tuples")),
            "{:?}",
            stats.errors
        );
        assert_eq!(conn.input_start, 0, "buffer drained");
    }

    #[test]
    fn claims_never_pass_the_end() {
        let counter = AtomicU64::new(0);
        let mut total = 0;
        loop {
            let got = claim(&counter, 100);
            if got.is_empty() {
                break;
            }
            assert!(got.end <= 100);
            total += got.end - got.start;
        }
        assert_eq!(total, 100);
        assert!(claim(&counter, 100).is_empty());
    }

    #[test]
    fn clock_seconds_start_after_the_warmup() {
        let start = Instant::now();
        let clock = Clock::new(start, Duration::from_secs(2));
        assert_eq!(clock.second(start), None);
        assert_eq!(clock.second(start + Duration::from_millis(2500)), Some(0));
        assert_eq!(clock.second(start + Duration::from_millis(4100)), Some(2));
    }
}
