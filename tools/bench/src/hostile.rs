//! `--hostile-connections N --hostile-depth D`: clients that never read. N connections are
//! opened before the run as `guest` (greeting read, no AUTH); once they are all open, a
//! background thread writes D pipelined SELECTs on `_vspace` (index 0, iterator ALL, no key, no
//! limit: a ~30-byte request whose reply is ~1.7 KB) to each of them and never reads a reply.
//! Writes are non-blocking: whatever the socket does not take is written when it becomes
//! writable again (epoll), until all is written or the run ends. The measured connections run
//! next to them, so the report shows what such neighbours cost a well-behaved client.
//!
//! At the end the report says how many requests were written whole (`hostile_sent`) and how
//! many of the connections the server had closed or reset (`hostile_lost`). A hostile
//! connection always has unread replies pending, so "closed" is not a zero-byte read: it is
//! a write error, or the peer's FIN/RST as epoll reports it (`EPOLLRDHUP`/`EPOLLHUP`/
//! `EPOLLERR`), which the kernel signals whatever is still queued for reading.

use crate::idle::open_many;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use spindle_proto::iproto::encode_select;
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long the writer waits in `epoll` at most, so it notices the end of the run.
const TICK: Duration = Duration::from_millis(10);
/// `_vspace`: readable by `guest`, about 1.7 KB of tuples on a fresh server.
pub const VSPACE_ID: u32 = 281;
/// Iterator ALL.
const ITER_ALL: u32 = 2;
/// MessagePack `[]`: the empty key.
const EMPTY_KEY: [u8; 1] = [0x90];
/// Events taken from `epoll` per call.
const EVENTS: usize = 1024;

/// The D requests every hostile connection sends, back to back (syncs 1..=D).
#[derive(Debug)]
struct Wire {
    bytes: Vec<u8>,
    /// `ends[i]`: the offset right after request i.
    ends: Vec<usize>,
}

impl Wire {
    fn new(depth: usize) -> Wire {
        let mut bytes = Vec::with_capacity(depth * 26);
        let mut ends = Vec::with_capacity(depth);
        for sync in 1..=depth as u64 {
            encode_select(
                &mut bytes,
                sync,
                VSPACE_ID,
                0,
                ITER_ALL,
                0,
                u32::MAX,
                &EMPTY_KEY,
            );
            ends.push(bytes.len());
        }
        Wire { bytes, ends }
    }

    /// Requests wholly inside the first `written` bytes.
    fn complete(&self, written: usize) -> usize {
        self.ends.partition_point(|&end| end <= written)
    }
}

/// One hostile connection.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// Bytes of the wire written so far.
    written: usize,
    /// The server closed or reset it.
    lost: bool,
}

impl Conn {
    fn done(&self, wire: &Wire) -> bool {
        self.lost || self.written >= wire.bytes.len()
    }

    /// Writes as much of the rest as the socket takes; the requests this completed.
    fn push(&mut self, wire: &Wire) -> usize {
        let before = wire.complete(self.written);
        while !self.done(wire) {
            let rest = wire.bytes.get(self.written..).unwrap_or_default();
            match self.stream.write(rest) {
                Ok(0) => self.lost = true,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.lost = true,
            }
        }
        wire.complete(self.written) - before
    }
}

/// The opened connections, nothing sent yet.
#[derive(Debug, Default)]
pub struct Hostile {
    conns: Vec<Conn>,
    depth: usize,
    /// How long opening all of them took.
    pub opened_in: Duration,
}

/// What the hostile connections did, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Requests written whole, over all the connections.
    pub sent: u64,
    /// Connections the server closed or reset.
    pub lost: usize,
}

impl Hostile {
    /// Opens `count` guest connections over a few threads (`idle::open_many`), each to send `depth`
    /// requests once started; the first failure fails all.
    pub fn open(addr: &SocketAddr, count: usize, depth: usize) -> Result<Hostile, String> {
        let start = Instant::now();
        if count == 0 {
            return Ok(Hostile::default());
        }
        let streams = open_many(addr, "guest", None, count, "hostile")?;
        let conns = streams
            .into_iter()
            .map(|stream| Conn {
                stream,
                written: 0,
                lost: false,
            })
            .collect();
        Ok(Hostile {
            conns,
            depth,
            opened_in: start.elapsed(),
        })
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Starts writing in a thread of its own.
    pub fn start(self) -> Result<Flood, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        if self.conns.is_empty() {
            return Ok(Flood {
                stop,
                sent,
                thread: None,
            });
        }
        let poll = Poll::new().map_err(|e| format!("hostile connections: epoll: {e}"))?;
        let wire = Wire::new(self.depth);
        let mut conns = self.conns;
        for (i, conn) in conns.iter_mut().enumerate() {
            poll.registry()
                .register(&mut conn.stream, Token(i), Interest::WRITABLE)
                .map_err(|e| format!("hostile connections: epoll: {e}"))?;
        }
        let (stop_flag, sent_count) = (stop.clone(), sent.clone());
        let thread = thread::Builder::new()
            .name("bench-hostile".into())
            .spawn(move || {
                flood(poll, &mut conns, &wire, &stop_flag, &sent_count);
                (conns, wire)
            })
            .map_err(|e| format!("cannot start the hostile-connection thread: {e}"))?;
        Ok(Flood {
            stop,
            sent,
            thread: Some(thread),
        })
    }
}

/// The running hostile connections.
#[derive(Debug)]
pub struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<(Vec<Conn>, Wire)>>,
}

impl Flood {
    /// Requests written whole so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops writing, counts the connections the server closed, and closes them all.
    pub fn finish(mut self) -> Result<Outcome, String> {
        self.stop.store(true, Ordering::Relaxed);
        let Some(thread) = self.thread.take() else {
            return Ok(Outcome::default());
        };
        let (mut conns, wire) = thread
            .join()
            .map_err(|_| "the hostile-connection thread panicked".to_string())?;
        mark_closed(&mut conns)?;
        let sent = conns.iter().map(|c| wire.complete(c.written) as u64).sum();
        let lost = conns.iter().filter(|c| c.lost).count();
        Ok(Outcome { sent, lost })
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer: everything once, then whatever epoll says has room again, until all is written
/// (or lost) or `stop`. Deregisters every connection before it returns.
fn flood(mut poll: Poll, conns: &mut [Conn], wire: &Wire, stop: &AtomicBool, sent: &AtomicU64) {
    let mut pending = 0usize;
    for conn in conns.iter_mut() {
        sent.fetch_add(conn.push(wire) as u64, Ordering::Relaxed);
        if conn.done(wire) {
            let _ = poll.registry().deregister(&mut conn.stream);
        } else {
            pending += 1;
        }
    }
    let mut events = Events::with_capacity(EVENTS);
    while pending > 0 && !stop.load(Ordering::Relaxed) {
        let ready: Vec<usize> = match poll.poll(&mut events, Some(TICK)) {
            Ok(()) => events.iter().map(|e| e.token().0).collect(),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // No epoll: try every connection each tick.
            Err(_) => {
                thread::sleep(TICK);
                (0..conns.len()).collect()
            }
        };
        for i in ready {
            let Some(conn) = conns.get_mut(i) else {
                continue;
            };
            if conn.done(wire) {
                continue;
            }
            sent.fetch_add(conn.push(wire) as u64, Ordering::Relaxed);
            if conn.done(wire) {
                pending -= 1;
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
    for conn in conns.iter_mut().filter(|c| !c.done(wire)) {
        let _ = poll.registry().deregister(&mut conn.stream);
    }
}

/// Marks the connections whose peer has closed (FIN) or reset them, whatever is still unread:
/// epoll reports a socket that is already ready when it is added, so one non-blocking poll
/// over a fresh set sees every one.
fn mark_closed(conns: &mut [Conn]) -> Result<(), String> {
    let mut poll = Poll::new().map_err(|e| format!("hostile connections: epoll: {e}"))?;
    for (i, conn) in conns.iter_mut().enumerate() {
        if !conn.lost {
            poll.registry()
                .register(&mut conn.stream, Token(i), Interest::READABLE)
                .map_err(|e| format!("hostile connections: epoll: {e}"))?;
        }
    }
    let mut events = Events::with_capacity(EVENTS);
    loop {
        match poll.poll(&mut events, Some(Duration::ZERO)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("hostile connections: epoll: {e}")),
        }
        if events.is_empty() {
            break;
        }
        for event in events.iter() {
            if event.is_read_closed() || event.is_error() {
                if let Some(conn) = conns.get_mut(event.token().0) {
                    conn.lost = true;
                }
            }
        }
    }
    for conn in conns.iter_mut() {
        let _ = poll.registry().deregister(&mut conn.stream);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_proto::iproto::{decode_frame, decode_request, Frame, Request};
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::mpsc;

    fn greeting() -> Vec<u8> {
        let mut g = Vec::new();
        g.extend_from_slice(
            format!(
                "{:<63}\n",
                "Tarantool 2.6.0 (Binary) 00000000-0000-0000-0000-000000000000"
            )
            .as_bytes(),
        );
        g.extend_from_slice(
            format!("{:<63}\n", "c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHQ=").as_bytes(),
        );
        g
    }

    /// What the fake server does with a connection after the greeting.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Peer {
        /// Reads `expect` bytes and sends them on the channel, then the rest until the client
        /// closes.
        Drain { expect: usize },
        /// Closes it at once.
        Close,
        /// Never reads; holds it until released.
        Hold,
    }

    /// A fake server: greets `peers.len()` connections and treats each as told. Held
    /// connections are closed once the returned sender is dropped.
    fn fake_server(peers: Vec<Peer>) -> (SocketAddr, mpsc::Receiver<Vec<u8>>, mpsc::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        thread::spawn(move || {
            let mut held = Vec::new();
            for peer in peers {
                let (mut s, _) = listener.accept().unwrap();
                s.write_all(&greeting()).unwrap();
                match peer {
                    Peer::Close => drop(s),
                    Peer::Hold => held.push(s),
                    Peer::Drain { expect } => {
                        let tx = tx.clone();
                        thread::spawn(move || {
                            let mut got = vec![0u8; expect];
                            if s.read_exact(&mut got).is_ok() {
                                let _ = tx.send(got);
                            }
                            let _ = s.read_to_end(&mut Vec::new());
                        });
                    }
                }
            }
            // Err once the sender is gone.
            let _ = released.recv();
            drop(held);
        });
        (addr, rx, release)
    }

    fn wait_until(mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_wire_is_depth_selects_on_vspace_for_everything() {
        let wire = Wire::new(3000);
        assert_eq!(wire.ends.len(), 3000);
        assert_eq!(wire.ends.last().copied(), Some(wire.bytes.len()));
        let mut at = 0;
        for (i, &end) in wire.ends.iter().enumerate() {
            let packet = wire.bytes.get(at..end).unwrap();
            assert!(packet.len() <= 32, "{} bytes", packet.len());
            let Ok(Frame::Packet { prefix_len, len }) = decode_frame(packet, 1 << 20) else {
                panic!("request {i} is not one whole packet");
            };
            assert_eq!(prefix_len + len, packet.len());
            let (header, request) = decode_request(&packet[prefix_len..]).unwrap();
            assert_eq!(header.sync, i as u64 + 1);
            let Request::Select {
                space_id,
                index_id,
                limit,
                offset,
                iterator,
                key,
            } = request
            else {
                panic!("request {i} is not a SELECT: {request:?}");
            };
            assert_eq!(
                (space_id, index_id, limit, offset, iterator),
                (VSPACE_ID, 0, u32::MAX, 0, ITER_ALL)
            );
            assert_eq!(
                spindle_proto::iproto::slice(&packet[prefix_len..], &key),
                &EMPTY_KEY
            );
            at = end;
        }
        assert_eq!(wire.complete(0), 0);
        assert_eq!(wire.complete(wire.ends[0] - 1), 0);
        assert_eq!(wire.complete(wire.ends[0]), 1);
        assert_eq!(wire.complete(wire.bytes.len()), 3000);
    }

    #[test]
    fn writes_every_request_without_auth_and_counts_closed_connections() {
        let depth = 500;
        let wire = Wire::new(depth);
        let drain = Peer::Drain {
            expect: wire.bytes.len(),
        };
        let peers = vec![drain, Peer::Close, drain, Peer::Close, drain];
        let (addr, received, _release) = fake_server(peers);
        let hostile = Hostile::open(&addr, 5, depth).unwrap();
        assert_eq!(hostile.len(), 5);
        let flood = hostile.start().unwrap();
        for _ in 0..3 {
            let got = received.recv_timeout(Duration::from_secs(10)).unwrap();
            // Guest: no AUTH first, the SELECTs right after the greeting, all of them.
            assert_eq!(got, wire.bytes);
        }
        let outcome = flood.finish().unwrap();
        assert_eq!(outcome.lost, 2, "{outcome:?}");
        // The two closed ones took one write at most.
        assert!(
            (3 * depth as u64..=5 * depth as u64).contains(&outcome.sent),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_server_that_never_reads_leaves_the_rest_unwritten_and_the_run_still_ends() {
        // 25 MB per connection: more than the socket buffers hold.
        let depth = 1_000_000;
        let (addr, _received, release) = fake_server(vec![Peer::Hold, Peer::Hold]);
        let flood = Hostile::open(&addr, 2, depth).unwrap().start().unwrap();
        wait_until(|| flood.sent() > 0);
        let outcome = flood.finish().unwrap();
        assert!(outcome.sent > 0, "{outcome:?}");
        assert!(outcome.sent < 2 * depth as u64, "{outcome:?}");
        assert_eq!(
            outcome.lost, 0,
            "a peer that only stops reading is not lost"
        );
        drop(release);
    }

    #[test]
    fn a_reset_after_everything_was_written_counts_as_lost() {
        // The peer shuts its side down while our requests sit unread: the connection counts
        // as lost although nothing more was written after that.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(&greeting()).unwrap();
            // Written, unread: dropping it now resets the connection.
            rx.recv().unwrap();
            drop(s);
        });
        let flood = Hostile::open(&addr, 1, 10).unwrap().start().unwrap();
        wait_until(|| flood.sent() == 10);
        tx.send(()).unwrap();
        server.join().unwrap();
        // Loopback delivers the reset at once; this only leaves room for a busy machine.
        thread::sleep(Duration::from_millis(100));
        let outcome = flood.finish().unwrap();
        assert_eq!(outcome, Outcome { sent: 10, lost: 1 });
    }

    #[test]
    fn none_asked_none_opened() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let hostile = Hostile::open(&addr, 0, 3000).unwrap();
        assert!(hostile.is_empty());
        let outcome = hostile.start().unwrap().finish().unwrap();
        assert_eq!(outcome, Outcome::default());
    }

    #[test]
    fn a_failed_connection_fails_the_whole_set() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = Hostile::open(&addr, 3, 10).unwrap_err();
        assert!(err.contains("hostile connection"), "{err}");
    }
}
