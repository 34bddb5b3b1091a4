//! `--idle-connections N`: connections that are opened (greeting read, authenticated like the
//! workers' if `--password` is given) before the run, send nothing, and stay open until the
//! report is built. They show what many idle clients cost the server: its memory (read its RSS
//! while they are open, e.g. with `--at-cmd`) and the throughput of the busy connections next
//! to them. At the end every one is checked: a connection the server closed in the meantime is
//! counted as lost.

use crate::worker::open;
use mio::net::TcpStream;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

/// Threads that open the connections (each connect + greeting + AUTH is a round trip or two).
const OPENERS: usize = 4;

/// Opens `count` connections (greeting read, authenticated as `user` if `password` is given)
/// over up to `OPENERS` threads; the first failure fails all. `what` names them in errors.
pub fn open_many(
    addr: &SocketAddr,
    user: &str,
    password: Option<&str>,
    count: usize,
    what: &str,
) -> Result<Vec<TcpStream>, String> {
    let threads = OPENERS.min(count.max(1));
    let results: Vec<Result<Vec<TcpStream>, String>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let share = count / threads + usize::from(t < count % threads);
                scope.spawn(move || {
                    let mut streams = Vec::with_capacity(share);
                    for _ in 0..share {
                        streams.push(open(addr, user, password).map_err(|e| {
                            format!(
                                "{what} connection {} of {count}: {e}",
                                streams.len() * threads + t + 1
                            )
                        })?);
                    }
                    Ok(streams)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(format!("an {what}-connection thread panicked")))
            })
            .collect()
    });
    let mut streams = Vec::with_capacity(count);
    for r in results {
        streams.extend(r?);
    }
    Ok(streams)
}

/// The held connections.
#[derive(Debug, Default)]
pub struct Idle {
    streams: Vec<TcpStream>,
    /// How long opening all of them took.
    pub opened_in: Duration,
}

impl Idle {
    /// Opens `count` connections over up to `OPENERS` threads; the first failure fails all.
    pub fn open(
        addr: &SocketAddr,
        user: &str,
        password: Option<&str>,
        count: usize,
    ) -> Result<Idle, String> {
        let start = Instant::now();
        if count == 0 {
            return Ok(Idle::default());
        }
        let streams = open_many(addr, user, password, count, "idle")?;
        Ok(Idle {
            streams,
            opened_in: start.elapsed(),
        })
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Connections that are no longer open: the server closed them (or reset them, or sent
    /// something nobody asked for).
    pub fn lost(&self) -> usize {
        self.streams.iter().filter(|s| !still_idle(s)).count()
    }
}

/// True if the peer has neither closed the socket nor sent anything.
fn still_idle(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte) {
        Err(e) => e.kind() == ErrorKind::WouldBlock,
        Ok(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// A fake server: sends a greeting to each of `n` connections and keeps them; the first
    /// `close` are closed again right away.
    fn fake_server(n: usize, close: usize) -> (SocketAddr, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let mut greeting = Vec::new();
            greeting.extend_from_slice(
                format!(
                    "{:<63}\n",
                    "Tarantool 2.6.0 (Binary) 00000000-0000-0000-0000-000000000000"
                )
                .as_bytes(),
            );
            greeting.extend_from_slice(
                format!("{:<63}\n", "c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHQ=").as_bytes(),
            );
            let mut kept = Vec::new();
            for i in 0..n {
                let (mut s, _) = listener.accept().unwrap();
                s.write_all(&greeting).unwrap();
                if i >= close {
                    kept.push(s);
                }
            }
            // Hold the rest until the client is done with them.
            thread::sleep(Duration::from_millis(500));
            drop(kept);
        });
        (addr, handle)
    }

    #[test]
    fn opens_holds_and_counts_lost_connections() {
        let (addr, server) = fake_server(10, 3);
        let idle = Idle::open(&addr, "admin", None, 10).unwrap();
        assert_eq!(idle.len(), 10);
        // The server closed 3 of them after the greeting.
        let deadline = Instant::now() + Duration::from_secs(5);
        while idle.lost() < 3 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(idle.lost(), 3);
        drop(idle);
        server.join().unwrap();
    }

    #[test]
    fn none_asked_none_opened() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let idle = Idle::open(&addr, "admin", None, 0).unwrap();
        assert!(idle.is_empty());
        assert_eq!(idle.lost(), 0);
    }

    #[test]
    fn a_failed_connection_fails_the_whole_set() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = Idle::open(&addr, "admin", None, 3).unwrap_err();
        assert!(err.contains("idle connection"), "{err}");
    }
}
