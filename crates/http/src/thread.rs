//! The HTTP thread: one mio loop that accepts, reads, parses (`request`, `api`), hands
//! decoded requests to TX over the bus and writes the answers TX sends back. Each connection
//! has at most one request in TX at a time, so pipelined requests are answered in order; the
//! rest wait in its read buffer, which is bounded (head limit plus body limit), so a
//! pipelining client is simply not read further (TCP's flow control reaches it).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{info, warn};

use spindle_fiber::Bus;
use spindle_proto::kv::{bump, Answer, KvAnswer, KvCall, KvEvent, KvShared};
use spindle_types::limits::{HTTP_CONN_MAX, HTTP_CONN_OUTPUT_MAX, HTTP_HEAD_MAX, HTTP_MSG_MAX};

use crate::api::{self, Context, Response, Routed};
use crate::metrics::{self, MoreMetrics};
use crate::request::{parse_head, Head, HeadError};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const READ_CHUNK: usize = 16 * 1024;
/// Read buffers above this are given back once a connection has nothing buffered.
const KEEP_BUFFER: usize = 64 * 1024;

pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Largest request body, bytes.
    pub body_max: usize,
    /// Idle connections, and requests that take longer to arrive, are closed after this.
    pub idle_timeout: Duration,
    /// Commits kept for preconditions (TX's conflict window).
    pub window: usize,
    /// The rest of the server's published values for `/metrics`.
    pub more_metrics: MoreMetrics,
}

pub struct HttpHandle {
    pub local_addr: SocketAddr,
    pub shared: Arc<KvShared>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl HttpHandle {
    /// Closes the listener and every connection; the thread exits.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// Binds `cfg.listen`, asks TX to enable the keyspace, and starts the thread.
pub fn start<M>(cfg: HttpConfig, bus: Bus<M>) -> io::Result<HttpHandle>
where
    M: From<KvEvent> + Send + 'static,
{
    let std_listener = std::net::TcpListener::bind(cfg.listen)?;
    std_listener.set_nonblocking(true)?;
    let local_addr = std_listener.local_addr()?;
    let mut listener = TcpListener::from_std(std_listener);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let shared = Arc::new(KvShared::new(uuid::Uuid::new_v4().to_string()));
    let stop = Arc::new(AtomicBool::new(false));
    let (sender, answers) = crossbeam_channel::unbounded();
    let sleeping = Arc::new(AtomicBool::new(false));
    let answer = answer_fn(sender, waker.clone(), sleeping.clone());
    bus.send(M::from(KvEvent::Enable {
        shared: shared.clone(),
        window: cfg.window,
    }));
    let mut http = Http {
        poll,
        listener,
        conns: Slab::default(),
        answers,
        answer,
        sleeping,
        bus,
        shared: shared.clone(),
        in_flight: 0,
        blocked: VecDeque::new(),
        started: Instant::now(),
        body_max: cfg.body_max,
        idle_timeout: cfg.idle_timeout,
        more_metrics: cfg.more_metrics,
    };
    let thread_stop = stop.clone();
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || http.run(&thread_stop))?;
    info!("HTTP API listening on {local_addr}");
    Ok(HttpHandle {
        local_addr,
        shared,
        stop,
        waker,
    })
}

/// TX's way back: queue the answer, wake the thread if it sleeps.
fn answer_fn(
    sender: Sender<(u64, KvAnswer)>,
    waker: Arc<Waker>,
    sleeping: Arc<AtomicBool>,
) -> Answer {
    Arc::new(move |token, answer| {
        let _ = sender.send((token, answer));
        if sleeping.swap(false, Ordering::SeqCst) {
            let _ = waker.wake();
        }
    })
}

/// A request of this connection in TX: what its answer needs.
struct Waiting {
    request_id: Option<String>,
    keep_alive: bool,
}

struct Conn {
    stream: TcpStream,
    generation: u32,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Readable since the last `WouldBlock` (mio is edge-triggered).
    readable: bool,
    waiting: Option<Waiting>,
    /// Close once the output is written; read nothing more.
    closing: bool,
    continue_sent: bool,
    /// In `Http::blocked`.
    blocked: bool,
    /// Closed unless the next request has arrived whole by then.
    deadline: Instant,
}

#[derive(Default)]
struct Slab {
    slots: Vec<Option<Conn>>,
    generations: Vec<u32>,
    free: Vec<usize>,
    open: usize,
}

impl Slab {
    fn insert(&mut self, make: impl FnOnce(u32) -> Conn) -> usize {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.generations.push(0);
            self.slots.len() - 1
        });
        let generation = match self.generations.get_mut(slot) {
            Some(g) => {
                *g = g.wrapping_add(1);
                *g
            }
            None => 0,
        };
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(make(generation));
        }
        self.open += 1;
        slot
    }

    fn get(&mut self, slot: usize) -> Option<&mut Conn> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    fn remove(&mut self, slot: usize) -> Option<Conn> {
        let conn = self.slots.get_mut(slot).and_then(Option::take);
        if conn.is_some() {
            self.free.push(slot);
            self.open -= 1;
        }
        conn
    }
}

struct Http<M> {
    poll: Poll,
    listener: TcpListener,
    conns: Slab,
    answers: Receiver<(u64, KvAnswer)>,
    answer: Answer,
    sleeping: Arc<AtomicBool>,
    bus: Bus<M>,
    shared: Arc<KvShared>,
    /// Requests in TX from this thread (at most `HTTP_MSG_MAX`).
    in_flight: usize,
    /// Connections with a whole request that waits for room in TX.
    blocked: VecDeque<usize>,
    started: Instant,
    body_max: usize,
    idle_timeout: Duration,
    more_metrics: MoreMetrics,
}

/// What `step` decided for a connection.
enum Step {
    Again,
    Stop,
    Close,
}

impl<M: From<KvEvent> + Send + 'static> Http<M> {
    fn run(&mut self, stop: &AtomicBool) {
        let mut events = Events::with_capacity(1024);
        let tick = (self.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut next_sweep = Instant::now() + tick;
        while !stop.load(Ordering::SeqCst) {
            self.sleeping.store(true, Ordering::SeqCst);
            let timeout = match self.answers.is_empty() {
                true => tick,
                false => Duration::ZERO,
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!("HTTP poll failed: {e}");
                    return;
                }
            }
            self.sleeping.store(false, Ordering::SeqCst);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(slot) => {
                        if let Some(c) = self.conns.get(slot) {
                            c.readable |= event.is_readable() || event.is_read_closed();
                        }
                        self.drive(slot);
                    }
                }
            }
            self.take_answers();
            if Instant::now() >= next_sweep {
                self.sweep();
                next_sweep = Instant::now() + tick;
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.conns.open >= HTTP_CONN_MAX {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let deadline = Instant::now() + self.idle_timeout;
                    let slot = self.conns.insert(|generation| Conn {
                        stream,
                        generation,
                        input: Vec::new(),
                        output: Vec::new(),
                        readable: true,
                        waiting: None,
                        closing: false,
                        continue_sent: false,
                        blocked: false,
                        deadline,
                    });
                    let registered = self.conns.get(slot).map(|c| {
                        self.poll.registry().register(
                            &mut c.stream,
                            Token(slot),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                    });
                    if !matches!(registered, Some(Ok(()))) {
                        self.conns.remove(slot);
                        continue;
                    }
                    bump(&self.shared.stages.connections_accepted);
                    self.publish_open();
                    self.drive(slot);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("HTTP accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn publish_open(&self) {
        let open = self.conns.open as u64;
        self.shared
            .stages
            .connections_open
            .store(open, Ordering::Relaxed);
    }

    fn close(&mut self, slot: usize) {
        if let Some(mut c) = self.conns.remove(slot) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        self.publish_open();
    }

    /// Writes, parses and reads a connection until it has to wait.
    fn drive(&mut self, slot: usize) {
        loop {
            match self.step(slot) {
                Step::Again => {}
                Step::Stop => return,
                Step::Close => return self.close(slot),
            }
        }
    }

    fn step(&mut self, slot: usize) -> Step {
        let Some(c) = self.conns.get(slot) else {
            return Step::Stop;
        };
        if flush(c).is_err() {
            return Step::Close;
        }
        if c.closing {
            return match c.output.is_empty() {
                true => Step::Close,
                false => Step::Stop,
            };
        }
        if c.waiting.is_some() || c.output.len() > HTTP_CONN_OUTPUT_MAX {
            return Step::Stop;
        }
        match parse_head(&c.input, self.body_max) {
            Err(e) => {
                respond(c, &head_error(e), false);
                c.closing = true;
                bump(&self.shared.stages.bad_requests);
                Step::Again
            }
            Ok(Some(head)) if c.input.len() >= head.len + head.content_length => {
                self.serve(slot, head)
            }
            Ok(Some(head)) => {
                if head.expect_continue && !c.continue_sent {
                    c.output.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    c.continue_sent = true;
                    return Step::Again; // written before waiting for the body
                }
                read(c, self.body_max)
            }
            Ok(None) => read(c, self.body_max),
        }
    }

    /// One whole request at the start of the connection's input.
    fn serve(&mut self, slot: usize, head: Head) -> Step {
        let leader_id = self.shared.leader_id.clone();
        let Some(c) = self.conns.get(slot) else {
            return Step::Stop;
        };
        let end = head.len + head.content_length;
        let body = c.input.get(head.len..end).unwrap_or(&[]);
        let mut new_id = || uuid::Uuid::new_v4().to_string();
        let mut cx = Context {
            leader_id: &leader_id,
            new_request_id: &mut new_id,
        };
        let routed = api::route(&head, body, &mut cx);
        if matches!(routed, Routed::Tx { .. }) && self.in_flight >= HTTP_MSG_MAX {
            // Parsed again when TX has room; nothing was consumed.
            if !c.blocked {
                c.blocked = true;
                self.blocked.push_back(slot);
            }
            return Step::Stop;
        }
        bump(&self.shared.stages.requests);
        c.input.drain(..end.min(c.input.len()));
        if c.input.is_empty() && c.input.capacity() > KEEP_BUFFER {
            c.input = Vec::new();
        }
        c.continue_sent = false;
        c.deadline = Instant::now() + self.idle_timeout;
        let keep_alive = head.keep_alive;
        let response = match routed {
            Routed::Version => api::version(self.shared.durable(), &leader_id),
            Routed::Metrics => Response {
                status: 200,
                body: metrics::render(
                    &self.shared,
                    self.started.elapsed().as_secs(),
                    &(self.more_metrics)(),
                )
                .into_bytes(),
                content_type: "text/plain; version=0.0.4",
                allow: None,
            },
            Routed::Done(r) => {
                if r.status >= 400 {
                    bump(&self.shared.stages.bad_requests);
                }
                r
            }
            Routed::Tx {
                request,
                request_id,
            } => {
                let token = (u64::from(c.generation) << 32) | slot as u64;
                c.waiting = Some(Waiting {
                    request_id,
                    keep_alive,
                });
                self.in_flight += 1;
                self.publish_in_flight();
                bump(&self.shared.stages.sent_to_tx);
                let call = KvCall {
                    token,
                    request,
                    answer: self.answer.clone(),
                };
                self.bus.send(M::from(KvEvent::Call(call)));
                return Step::Stop;
            }
        };
        respond(c, &response, keep_alive);
        c.closing |= !keep_alive;
        Step::Again
    }

    fn publish_in_flight(&self) {
        self.shared
            .stages
            .in_tx
            .store(self.in_flight as u64, Ordering::Relaxed);
    }

    /// TX's answers: each goes to its connection if that is still the one that asked.
    fn take_answers(&mut self) {
        while let Ok((token, answer)) = self.answers.try_recv() {
            self.in_flight = self.in_flight.saturating_sub(1);
            let slot = (token & 0xffff_ffff) as usize;
            let generation = (token >> 32) as u32;
            let leader_id = self.shared.leader_id.clone();
            let Some(c) = self.conns.get(slot) else {
                continue;
            };
            if c.generation != generation {
                continue;
            }
            let Some(waiting) = c.waiting.take() else {
                continue;
            };
            let response = api::answer(answer, waiting.request_id.as_deref(), &leader_id);
            respond(c, &response, waiting.keep_alive);
            c.closing |= !waiting.keep_alive;
            c.deadline = Instant::now() + self.idle_timeout;
            self.drive(slot);
        }
        self.publish_in_flight();
        while self.in_flight < HTTP_MSG_MAX {
            let Some(slot) = self.blocked.pop_front() else {
                break;
            };
            if let Some(c) = self.conns.get(slot) {
                c.blocked = false;
            }
            self.drive(slot);
        }
    }

    /// Closes connections past their deadline: a 408 if a request had begun to arrive.
    fn sweep(&mut self) {
        let now = Instant::now();
        let mut late = Vec::new();
        for (slot, c) in self.conns.slots.iter_mut().enumerate() {
            let Some(c) = c else { continue };
            if c.waiting.is_none() && now >= c.deadline {
                late.push(slot);
            }
        }
        for slot in late {
            bump(&self.shared.stages.timeouts);
            let Some(c) = self.conns.get(slot) else {
                continue;
            };
            if c.input.is_empty() || c.closing {
                self.close(slot);
                continue;
            }
            let r = Response::error(408, "timeout", "the request took too long to arrive");
            respond(c, &r, false);
            c.closing = true;
            c.input.clear();
            // Unsent after one more chance: gone with the connection.
            c.deadline = now + self.idle_timeout;
            self.drive(slot);
        }
    }
}

fn head_error(e: HeadError) -> Response {
    match e {
        HeadError::TooLarge => Response::error(431, "headers_too_large", "request head too large"),
        HeadError::BodyTooLarge => {
            Response::error(413, "body_too_large", "request body over the limit")
        }
        HeadError::TransferEncoding => Response::error(
            501,
            "not_implemented",
            "Transfer-Encoding is not supported; send Content-Length",
        ),
        HeadError::Bad(why) => Response::bad("head", &why),
    }
}

/// Appends a response to the connection's output.
fn respond(c: &mut Conn, r: &Response, keep_alive: bool) {
    let out = &mut c.output;
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        r.status,
        api::reason(r.status),
        r.content_type,
        r.body.len()
    );
    if let Some(allow) = r.allow {
        let _ = write!(out, "Allow: {allow}\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&r.body);
}

/// Writes what the socket takes.
fn flush(c: &mut Conn) -> io::Result<()> {
    let mut written = 0;
    while written < c.output.len() {
        match c.stream.write(c.output.get(written..).unwrap_or(&[])) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.output.drain(..written);
    Ok(())
}

/// Reads what has arrived, up to one request's worth of buffer.
fn read(c: &mut Conn, body_max: usize) -> Step {
    let cap = HTTP_HEAD_MAX + body_max;
    if !c.readable || c.input.len() >= cap {
        return Step::Stop;
    }
    let mut chunk = [0u8; READ_CHUNK];
    let room = (cap - c.input.len()).min(READ_CHUNK);
    let buf = chunk.get_mut(..room).unwrap_or(&mut []);
    match c.stream.read(buf) {
        Ok(0) => Step::Close,
        Ok(n) => {
            c.input.extend_from_slice(buf.get(..n).unwrap_or(&[]));
            Step::Again
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            c.readable = false;
            Step::Stop
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::Again,
        Err(_) => Step::Close,
    }
}
