//! `socket`: TCP clients and servers for Lua fibers, as Tarantool 2.6's `socket` module has
//! them (`tcp_connect`, `tcp_server`, socket objects with buffered `read`, `write`, `recv`,
//! `send`, `peer`, `name`, options, `getaddrinfo`). The API is Lua (`socket.lua`); this file
//! owns the sockets, registered with may's poller, in a table of the TX thread keyed by number.
//!
//! Non-blocking calls (`recv`, `send`, options, addresses, `close`) are mlua functions. The
//! operations that wait (`read` and `write` once the socket would block, `accept`, `connect`,
//! name resolution) go through one raw C function, `io`: it parks the calling fiber in may,
//! never inside an mlua callback. The Lua half yields through `fiber.yield()` just before, so
//! that a fiber waiting on a socket hands control over and aborts its transaction as any
//! other yield does.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::os::raw::c_int;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use may::io::WaitIo;
use may::os::unix::net::{UnixListener, UnixStream};
use mlua::{ffi, Lua, Table, Value};
use spindle_fiber::TxCell;

/// One socket the module owns.
#[derive(Clone)]
enum Sock {
    Tcp(Rc<may::net::TcpStream>),
    Unix(Rc<UnixStream>),
    TcpListener(Rc<may::net::TcpListener>),
    /// With the path it removes when closed.
    UnixListener(Rc<UnixListener>, Rc<PathBuf>),
}

impl Sock {
    fn fd(&self) -> RawFd {
        match self {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Unix(s) => s.as_raw_fd(),
            Sock::TcpListener(l) => l.as_raw_fd(),
            Sock::UnixListener(l, _) => l.as_raw_fd(),
        }
    }
}

/// `d` rounded up to whole milliseconds, at least one: may keeps I/O timeouts in whole
/// milliseconds and takes 0 for "none", so a shorter wait would never end.
fn whole_millis(d: Duration) -> Duration {
    let millis = d.as_nanos().div_ceil(1_000_000).max(1);
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// What reads and writes need of a connected socket, TCP or Unix.
trait Stream {
    fn fd(&self) -> RawFd;
    /// Parks until the socket is readable (data, end of stream or error) or `timeout` has
    /// passed, taking nothing.
    fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Parks until the socket reports an event (readiness, a write that can go on).
    fn wait_event(&self);
}

macro_rules! stream_impl {
    ($t:ty) => {
        impl Stream for $t {
            fn fd(&self) -> RawFd {
                self.as_raw_fd()
            }
            fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<()> {
                self.set_read_timeout(timeout.map(whole_millis))?;
                let mut probe = [0u8; 1];
                // may's I/O timers resume the fiber on the TX thread.
                self.peek(&mut probe).map(|_| ())
            }
            fn wait_event(&self) {
                self.wait_io();
            }
        }
    };
}
stream_impl!(may::net::TcpStream);
stream_impl!(UnixStream);

/// The host that names a Unix socket (its path then takes the port's place).
const UNIX_HOST: &str = "unix/";

struct Registry {
    next: u64,
    socks: BTreeMap<u64, Sock>,
}

static SOCKETS: TxCell<Registry> = TxCell::new(Registry {
    next: 1,
    socks: BTreeMap::new(),
});

fn register(sock: Sock) -> u64 {
    SOCKETS.with(|t| {
        let id = t.next;
        t.next += 1;
        t.socks.insert(id, sock);
        id
    })
}

fn lookup(id: u64) -> Result<Sock, i32> {
    SOCKETS
        .with(|t| t.socks.get(&id).cloned())
        .ok_or(libc::EBADF)
}

fn stream(id: u64) -> Result<Rc<dyn Stream>, i32> {
    match lookup(id)? {
        Sock::Tcp(s) => Ok(s),
        Sock::Unix(s) => Ok(s),
        Sock::TcpListener(_) | Sock::UnixListener(..) => Err(libc::ENOTCONN),
    }
}

fn errno_of(e: &io::Error) -> i32 {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock if e.raw_os_error().is_none() => {
            libc::ETIMEDOUT
        }
        _ => e.raw_os_error().unwrap_or(libc::EIO),
    }
}

fn last_errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Hands a socket to may, which registers it with its poller (and panics if it cannot:
/// that becomes an error here).
fn into_may<T>(wrap: impl FnOnce() -> T) -> Result<T, i32> {
    std::panic::catch_unwind(AssertUnwindSafe(wrap)).map_err(|_| libc::EMFILE)
}

// ---------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------

/// A literal address or `localhost`: resolved without asking the resolver.
fn literal(host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    if host == "localhost" {
        return Some(vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)]);
    }
    if host == "*" {
        return Some(vec![SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port,
        )]);
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| vec![SocketAddr::new(ip, port)])
}

/// `host:port` resolved on a thread of its own (the resolver blocks), the fiber parked on a
/// may channel meanwhile.
fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, i32> {
    if let Some(addrs) = literal(host, port) {
        return Ok(addrs);
    }
    let (tx, rx) = may::sync::mpsc::channel();
    let name = host.to_string();
    spindle_fiber::spawn_cord("getaddrinfo", move || {
        let found = (name.as_str(), port)
            .to_socket_addrs()
            .map(|a| a.collect::<Vec<_>>());
        let _ = tx.send(found);
    })
    .map_err(|e| errno_of(&e))?;
    match rx.recv() {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        _ => Err(libc::EHOSTUNREACH),
    }
}

fn family(a: &SocketAddr) -> &'static str {
    if a.is_ipv4() {
        "AF_INET"
    } else {
        "AF_INET6"
    }
}

fn addr_table(lua: &Lua, a: &SocketAddr) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("host", a.ip().to_string())?;
    t.set("family", family(a))?;
    t.set("type", "SOCK_STREAM")?;
    t.set("protocol", "tcp")?;
    t.set("port", a.port())?;
    Ok(t)
}

// ---------------------------------------------------------------------------------------
// What never waits (mlua functions)
// ---------------------------------------------------------------------------------------

/// `bind(host, port)` → id of a listening socket, or nil and errno. Bound by std (which
/// sets SO_REUSEADDR, as Tarantool does; may's own bind would add SO_REUSEPORT and share a
/// busy port instead of failing).
fn bind(host: &str, port: &str) -> Result<u64, i32> {
    if host == UNIX_HOST {
        let path = PathBuf::from(port);
        crate::sockfile::remove_dead_socket(&path);
        let l = UnixListener::bind(&path).map_err(|e| errno_of(&e))?;
        return Ok(register(Sock::UnixListener(Rc::new(l), Rc::new(path))));
    }
    let port = port.parse::<u16>().map_err(|_| libc::EINVAL)?;
    let addrs = literal(host, port).ok_or(libc::EINVAL)?;
    let mut err = libc::EINVAL;
    for addr in addrs {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => {
                let fd = l.into_raw_fd();
                // SAFETY: `fd` is a listening TCP socket that nothing else owns any more.
                let l = into_may(|| unsafe { may::net::TcpListener::from_raw_fd(fd) })?;
                return Ok(register(Sock::TcpListener(Rc::new(l))));
            }
            Err(e) => err = errno_of(&e),
        }
    }
    Err(err)
}

/// Closes `id`: a fiber parked on it wakes (shutdown), the descriptor closes when the last
/// user lets go.
fn close(id: u64) -> bool {
    let Some(sock) = SOCKETS.with(|t| t.socks.remove(&id)) else {
        return false;
    };
    // SAFETY: the socket's own open descriptor, borrowed for this call.
    unsafe { libc::shutdown(sock.fd(), libc::SHUT_RDWR) };
    if let Sock::UnixListener(_, path) = &sock {
        let _ = std::fs::remove_file(path.as_path());
    }
    true
}

/// Forgets `id` without closing its descriptor (now the caller's).
fn detach(id: u64) -> bool {
    fn release<T: IntoRawFd>(rc: Rc<T>) {
        match Rc::try_unwrap(rc) {
            Ok(s) => {
                let _ = s.into_raw_fd();
            }
            Err(shared) => std::mem::forget(shared),
        }
    }
    match SOCKETS.with(|t| t.socks.remove(&id)) {
        Some(Sock::Tcp(s)) => release(s),
        Some(Sock::Unix(s)) => release(s),
        Some(Sock::TcpListener(l)) => release(l),
        Some(Sock::UnixListener(l, _)) => release(l),
        None => return false,
    }
    true
}

/// One non-blocking `recv` of up to `n` bytes: data (empty at end of stream) or errno.
fn recv_now(fd: RawFd, n: usize) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; n.max(1)];
    // SAFETY: `buf` is valid for `buf.len()` writable bytes for the whole call.
    let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if got < 0 {
        return Err(last_errno());
    }
    buf.truncate(got as usize);
    Ok(buf)
}

/// One non-blocking `send`: bytes sent or errno (no SIGPIPE on a closed peer).
fn send_now(fd: RawFd, data: &[u8]) -> Result<usize, i32> {
    // SAFETY: `data` is valid for `data.len()` readable bytes for the whole call.
    let sent = unsafe {
        libc::send(
            fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if sent < 0 {
        return Err(last_errno());
    }
    Ok(sent as usize)
}

/// The socket options `setsockopt`/`getsockopt` know: (level, name) by their names.
fn option(level: &str, name: &str) -> Option<(c_int, c_int)> {
    let lvl = match level {
        "SOL_SOCKET" => libc::SOL_SOCKET,
        "IPPROTO_TCP" | "SOL_TCP" => libc::IPPROTO_TCP,
        _ => return None,
    };
    let opt = match (lvl, name) {
        (libc::SOL_SOCKET, "SO_KEEPALIVE") => libc::SO_KEEPALIVE,
        (libc::SOL_SOCKET, "SO_REUSEADDR") => libc::SO_REUSEADDR,
        (libc::SOL_SOCKET, "SO_REUSEPORT") => libc::SO_REUSEPORT,
        (libc::SOL_SOCKET, "SO_BROADCAST") => libc::SO_BROADCAST,
        (libc::SOL_SOCKET, "SO_RCVBUF") => libc::SO_RCVBUF,
        (libc::SOL_SOCKET, "SO_SNDBUF") => libc::SO_SNDBUF,
        (libc::SOL_SOCKET, "SO_RCVLOWAT") => libc::SO_RCVLOWAT,
        (libc::SOL_SOCKET, "SO_SNDLOWAT") => libc::SO_SNDLOWAT,
        (libc::SOL_SOCKET, "SO_TYPE") => libc::SO_TYPE,
        (libc::SOL_SOCKET, "SO_ERROR") => libc::SO_ERROR,
        (libc::SOL_SOCKET, "SO_DONTROUTE") => libc::SO_DONTROUTE,
        (libc::SOL_SOCKET, "SO_OOBINLINE") => libc::SO_OOBINLINE,
        (libc::IPPROTO_TCP, "TCP_NODELAY") => libc::TCP_NODELAY,
        (libc::IPPROTO_TCP, "TCP_KEEPIDLE") => libc::TCP_KEEPIDLE,
        (libc::IPPROTO_TCP, "TCP_KEEPINTVL") => libc::TCP_KEEPINTVL,
        (libc::IPPROTO_TCP, "TCP_KEEPCNT") => libc::TCP_KEEPCNT,
        _ => return None,
    };
    Some((lvl, opt))
}

fn setsockopt(id: u64, level: &str, name: &str, value: c_int) -> Result<(), i32> {
    let fd = lookup(id)?.fd();
    let (lvl, opt) = option(level, name).ok_or(libc::ENOPROTOOPT)?;
    // SAFETY: `value` is a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            lvl,
            opt,
            (&value as *const c_int).cast(),
            std::mem::size_of::<c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(last_errno());
    }
    Ok(())
}

fn getsockopt_raw<T: Default>(fd: RawFd, lvl: c_int, opt: c_int) -> Result<T, i32> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live, writable T and `len` is its size.
    let rc = unsafe { libc::getsockopt(fd, lvl, opt, (&mut value as *mut T).cast(), &mut len) };
    if rc < 0 {
        return Err(last_errno());
    }
    Ok(value)
}

fn getsockopt(id: u64, level: &str, name: &str) -> Result<c_int, i32> {
    let fd = lookup(id)?.fd();
    let (lvl, opt) = option(level, name).ok_or(libc::ENOPROTOOPT)?;
    getsockopt_raw::<c_int>(fd, lvl, opt)
}

/// `linger` as (active, seconds).
#[derive(Default)]
#[repr(C)]
struct Linger {
    onoff: c_int,
    seconds: c_int,
}

fn linger(id: u64, set: Option<(bool, c_int)>) -> Result<(bool, c_int), i32> {
    let fd = lookup(id)?.fd();
    if let Some((on, seconds)) = set {
        let l = Linger {
            onoff: c_int::from(on),
            seconds,
        };
        // SAFETY: `l` is a live struct linger and the length passed is its size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&l as *const Linger).cast(),
                std::mem::size_of::<Linger>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last_errno());
        }
    }
    let l: Linger = getsockopt_raw(fd, libc::SOL_SOCKET, libc::SO_LINGER)?;
    Ok((l.onoff != 0, l.seconds))
}

/// Results as Lua sees them: the value, or nil and errno.
fn pair<T: mlua::IntoLua>(lua: &Lua, r: Result<T, i32>) -> mlua::Result<(Value, Value)> {
    match r {
        Ok(v) => Ok((v.into_lua(lua)?, Value::Nil)),
        Err(e) => Ok((Value::Nil, Value::Integer(e.into()))),
    }
}

/// A Unix socket's address as Tarantool shows it: host `unix/`, the path as the port.
fn unix_table(lua: &Lua, a: &std::os::unix::net::SocketAddr) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("host", UNIX_HOST)?;
    t.set("family", "AF_UNIX")?;
    t.set("type", "SOCK_STREAM")?;
    t.set("protocol", 0)?;
    let path = a
        .as_pathname()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    t.set("port", path)?;
    Ok(t)
}

fn address(lua: &Lua, id: u64, peer: bool) -> mlua::Result<(Value, Value)> {
    let unix = match lookup(id) {
        Ok(Sock::Unix(s)) if peer => Some(s.peer_addr()),
        Ok(Sock::Unix(s)) => Some(s.local_addr()),
        Ok(Sock::UnixListener(l, _)) if !peer => Some(l.local_addr()),
        _ => None,
    };
    if let Some(a) = unix {
        return match a {
            Ok(a) => pair(lua, Ok(unix_table(lua, &a)?)),
            Err(e) => pair::<bool>(lua, Err(errno_of(&e))),
        };
    }
    let addr = match lookup(id) {
        Ok(Sock::Tcp(s)) if peer => s.peer_addr(),
        Ok(Sock::Tcp(s)) => s.local_addr(),
        Ok(Sock::TcpListener(l)) if !peer => l.local_addr(),
        Ok(_) => Err(io::Error::from_raw_os_error(libc::ENOTCONN)),
        Err(e) => Err(io::Error::from_raw_os_error(e)),
    };
    match addr {
        Ok(a) => pair(lua, Ok(addr_table(lua, &a)?)),
        Err(e) => pair::<bool>(lua, Err(errno_of(&e))),
    }
}

fn raw(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "bind",
        lua.create_function(|lua, (host, port): (String, String)| pair(lua, bind(&host, &port)))?,
    )?;
    t.set("close", lua.create_function(|_, id: u64| Ok(close(id)))?)?;
    t.set("detach", lua.create_function(|_, id: u64| Ok(detach(id)))?)?;
    t.set(
        "fd",
        lua.create_function(|lua, id: u64| pair(lua, lookup(id).map(|s| s.fd())))?,
    )?;
    t.set(
        "name",
        lua.create_function(|lua, id: u64| address(lua, id, false))?,
    )?;
    t.set(
        "peer",
        lua.create_function(|lua, id: u64| address(lua, id, true))?,
    )?;
    t.set(
        "shutdown",
        lua.create_function(|lua, (id, how): (u64, c_int)| {
            let r = lookup(id).and_then(|s| {
                // SAFETY: the socket's own open descriptor, borrowed for this call.
                match unsafe { libc::shutdown(s.fd(), how) } {
                    0 => Ok(true),
                    _ => Err(last_errno()),
                }
            });
            pair(lua, r)
        })?,
    )?;
    t.set(
        "recv",
        lua.create_function(|lua, (id, n): (u64, usize)| {
            let r = lookup(id)
                .and_then(|s| recv_now(s.fd(), n))
                .and_then(|d| lua.create_string(d).map_err(|_| libc::ENOMEM));
            pair(lua, r)
        })?,
    )?;
    t.set(
        "send",
        lua.create_function(|lua, (id, data): (u64, mlua::String)| {
            let r = lookup(id).and_then(|s| send_now(s.fd(), &data.as_bytes()));
            pair(lua, r)
        })?,
    )?;
    t.set(
        "setsockopt",
        lua.create_function(
            |lua, (id, level, name, value): (u64, String, String, c_int)| {
                pair(lua, setsockopt(id, &level, &name, value).map(|()| true))
            },
        )?,
    )?;
    t.set(
        "getsockopt",
        lua.create_function(|lua, (id, level, name): (u64, String, String)| {
            pair(lua, getsockopt(id, &level, &name))
        })?,
    )?;
    t.set(
        "linger",
        lua.create_function(|_, (id, on, seconds): (u64, Option<bool>, Option<c_int>)| {
            let set = on.map(|on| (on, seconds.unwrap_or(0)));
            Ok(match linger(id, set) {
                Ok((on, s)) => (Some(on), Some(s), None),
                Err(e) => (None, None, Some(e)),
            })
        })?,
    )?;
    // SAFETY: `io_c` follows the lua_CFunction contract: it reads its arguments with the C
    // API, pushes its results and returns their count, and lets no panic unwind into LuaJIT.
    t.set("io", unsafe { lua.create_c_function(io_c)? })?;
    Ok(t)
}

/// Registers `require('socket')`.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let preload: Table = lua.globals().get::<Table>("package")?.get("preload")?;
    let source = include_str!("socket.lua");
    preload.set(
        "socket",
        lua.create_function(move |lua, ()| {
            lua.load(source)
                .set_name("@builtin/socket.lua")
                .call::<Value>(raw(lua)?)
        })?,
    )
}

// ---------------------------------------------------------------------------------------
// What waits: one raw C function
// ---------------------------------------------------------------------------------------

/// What `io` was asked to do.
enum Req {
    /// Up to `n` bytes, waiting for the first ones.
    Read {
        id: u64,
        n: usize,
        timeout: Option<Duration>,
    },
    /// All of `data`, waiting while the socket is full.
    Write {
        id: u64,
        data: Vec<u8>,
        timeout: Option<Duration>,
    },
    Accept(u64),
    Connect {
        host: String,
        port: String,
        timeout: Option<Duration>,
    },
    Resolve {
        host: String,
        port: u16,
    },
}

/// Where an accepted client comes from.
enum From {
    Ip(SocketAddr),
    Unix,
}

/// What `io` pushes.
enum Out {
    Data(Vec<u8>),
    Count(usize),
    Socket(u64, Option<From>),
    Text(String),
    Fail(i32),
}

fn perform(req: Req) -> Out {
    let out = match req {
        Req::Read { id, n, timeout } => read(id, n, timeout).map(Out::Data),
        Req::Write { id, data, timeout } => write(id, &data, timeout).map(Out::Count),
        Req::Accept(id) => accept(id),
        Req::Connect {
            host,
            port,
            timeout,
        } => connect(&host, &port, timeout),
        Req::Resolve { host, port } => resolve(&host, port).map(|addrs| {
            let lines: Vec<String> = addrs
                .iter()
                .map(|a| format!("{} {} {}", family(a), a.ip(), a.port()))
                .collect();
            Out::Text(lines.join("\n"))
        }),
    };
    out.unwrap_or_else(Out::Fail)
}

fn read(id: u64, n: usize, timeout: Option<Duration>) -> Result<Vec<u8>, i32> {
    let s = stream(id)?;
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        match recv_now(s.fd(), n) {
            Err(e) if e == libc::EAGAIN => {}
            other => return other,
        }
        let left = match deadline {
            Some(d) => Some(
                d.checked_duration_since(Instant::now())
                    .ok_or(libc::ETIMEDOUT)?,
            ),
            None => None,
        };
        match s.wait_readable(left) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
            Err(e) => return Err(errno_of(&e)),
        }
    }
}

fn write(id: u64, data: &[u8], timeout: Option<Duration>) -> Result<usize, i32> {
    let s = stream(id)?;
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut done = 0;
    let mut pause = Duration::from_millis(1);
    while let Some(rest) = data.get(done..).filter(|r| !r.is_empty()) {
        match send_now(s.fd(), rest) {
            Ok(k) => {
                done += k;
                continue;
            }
            Err(e) if e == libc::EAGAIN => {}
            Err(e) => return Err(e),
        }
        match deadline {
            None => s.wait_event(),
            // may's readiness wait has no timeout: a timed write polls instead.
            Some(d) => {
                let left = d
                    .checked_duration_since(Instant::now())
                    .ok_or(libc::ETIMEDOUT)?;
                spindle_fiber::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
    Ok(done)
}

fn accept(id: u64) -> Result<Out, i32> {
    match lookup(id)? {
        Sock::TcpListener(l) => {
            let (s, from) = l.accept().map_err(|e| errno_of(&e))?;
            let from = From::Ip(from);
            Ok(Out::Socket(register(Sock::Tcp(Rc::new(s))), Some(from)))
        }
        Sock::UnixListener(l, _) => {
            let (s, _) = l.accept().map_err(|e| errno_of(&e))?;
            Ok(Out::Socket(
                register(Sock::Unix(Rc::new(s))),
                Some(From::Unix),
            ))
        }
        Sock::Tcp(_) | Sock::Unix(_) => Err(libc::EINVAL),
    }
}

fn connect(host: &str, port: &str, timeout: Option<Duration>) -> Result<Out, i32> {
    if host == UNIX_HOST {
        let s = UnixStream::connect(port).map_err(|e| errno_of(&e))?;
        return Ok(Out::Socket(register(Sock::Unix(Rc::new(s))), None));
    }
    let port = port.parse::<u16>().map_err(|_| libc::EINVAL)?;
    let mut err = libc::ECONNREFUSED;
    for addr in resolve(host, port)? {
        let r = match timeout {
            Some(t) => may::net::TcpStream::connect_timeout(&addr, whole_millis(t)),
            None => may::net::TcpStream::connect(addr),
        };
        match r {
            Ok(s) => return Ok(Out::Socket(register(Sock::Tcp(Rc::new(s))), None)),
            Err(e) => err = errno_of(&e),
        }
    }
    Err(err)
}

/// Seconds from Lua as a timeout: negative or not a number means none.
fn timeout_arg(seconds: f64) -> Option<Duration> {
    (seconds >= 0.0)
        .then(|| Duration::try_from_secs_f64(seconds).ok())
        .flatten()
}

/// Argument `idx` of the running C function as bytes (empty if it is not a string).
///
/// # Safety
/// `l` is the running C function's state and `idx` one of its argument slots.
unsafe fn bytes_arg(l: *mut ffi::lua_State, idx: c_int) -> Vec<u8> {
    let mut len = 0usize;
    // SAFETY: per this function's contract; LuaJIT returns null or a pointer to `len` bytes
    // that stay alive while the value is on the stack, and they are copied at once.
    unsafe {
        let p = ffi::lua_tolstring(l, idx, &mut len);
        if p.is_null() {
            return Vec::new();
        }
        std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec()
    }
}

/// Reads the request from the C function's arguments: `(op, ...)`.
///
/// # Safety
/// `l` is the running C function's state.
unsafe fn request(l: *mut ffi::lua_State) -> Option<Req> {
    // SAFETY: reading argument slots of the running C function is always valid; missing ones
    // read as 0 or nil.
    unsafe {
        let op = ffi::lua_tointeger(l, 1);
        let id = ffi::lua_tonumber(l, 2).max(0.0) as u64;
        let text = || String::from_utf8_lossy(&bytes_arg(l, 2)).into_owned();
        let port = ffi::lua_tonumber(l, 3).clamp(0.0, 65535.0) as u16;
        Some(match op {
            1 => Req::Read {
                id,
                n: ffi::lua_tonumber(l, 3).clamp(1.0, 16_777_216.0) as usize,
                timeout: timeout_arg(ffi::lua_tonumber(l, 4)),
            },
            2 => Req::Write {
                id,
                data: bytes_arg(l, 3),
                timeout: timeout_arg(ffi::lua_tonumber(l, 4)),
            },
            3 => Req::Accept(id),
            4 => Req::Connect {
                host: text(),
                port: String::from_utf8_lossy(&bytes_arg(l, 3)).into_owned(),
                timeout: timeout_arg(ffi::lua_tonumber(l, 4)),
            },
            5 => Req::Resolve { host: text(), port },
            _ => return None,
        })
    }
}

/// Pushes `out`, returning how many values.
///
/// # Safety
/// `l` is the running C function's state, with room for 3 values (LuaJIT guarantees
/// LUA_MINSTACK, 20).
unsafe fn push(l: *mut ffi::lua_State, out: Out) -> c_int {
    // SAFETY: per this function's contract.
    unsafe {
        match out {
            Out::Data(d) => {
                ffi::lua_pushlstring(l, d.as_ptr().cast(), d.len());
                1
            }
            Out::Text(t) => {
                ffi::lua_pushlstring(l, t.as_ptr().cast(), t.len());
                1
            }
            Out::Count(n) => {
                ffi::lua_pushnumber(l, n as f64);
                1
            }
            Out::Socket(id, from) => {
                ffi::lua_pushnumber(l, id as f64);
                match from {
                    Some(From::Ip(a)) => {
                        let host = a.ip().to_string();
                        ffi::lua_pushlstring(l, host.as_ptr().cast(), host.len());
                        ffi::lua_pushnumber(l, f64::from(a.port()));
                        3
                    }
                    Some(From::Unix) => {
                        ffi::lua_pushlstring(l, UNIX_HOST.as_ptr().cast(), UNIX_HOST.len());
                        ffi::lua_pushlstring(l, c"".as_ptr(), 0);
                        3
                    }
                    None => 1,
                }
            }
            Out::Fail(e) => {
                ffi::lua_pushnil(l);
                ffi::lua_pushinteger(l, e as ffi::lua_Integer);
                2
            }
        }
    }
}

/// `io(op, ...)`: 1 read `(id, n, timeout)` → data; 2 write `(id, data, timeout)` → count;
/// 3 accept `(id)` → id, host, port; 4 connect `(host, port, timeout)` → id; 5 resolve
/// `(host, port)` → lines `family host port`. Failures: nil and errno. A negative timeout
/// means none. Parks the calling fiber until done.
unsafe extern "C-unwind" fn io_c(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: `lua_pushthread` pushes one value onto the running C function's own stack
    // and `lua_pop` removes it again.
    let on_main_state = unsafe {
        let main = ffi::lua_pushthread(l) == 1;
        ffi::lua_pop(l, 1);
        main
    };
    if on_main_state || !spindle_fiber::in_fiber() {
        // SAFETY: raising from a C function before any value with a destructor exists in
        // this frame; the format has no conversions.
        return unsafe { ffi::luaL_error(l, c"socket: cannot yield here".as_ptr()) };
    }
    // SAFETY: `l` is this C function's state.
    let out = match unsafe { request(l) } {
        Some(req) => std::panic::catch_unwind(AssertUnwindSafe(|| perform(req)))
            .unwrap_or(Out::Fail(libc::EIO)),
        None => Out::Fail(libc::EINVAL),
    };
    // SAFETY: `l` is this C function's state, its stack untouched since the call began.
    unsafe { push(l, out) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn literal_addresses_need_no_resolver() {
        let one = |h: &str| literal(h, 80).and_then(|v| v.first().copied());
        assert_eq!(
            one("127.0.0.1").map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:80")
        );
        assert_eq!(one("localhost").map(|a| a.is_ipv4()), Some(true));
        assert_eq!(
            one("::1").map(|a| a.ip()),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        assert!(one("example.org").is_none());
    }

    #[test]
    fn timeouts_are_whole_milliseconds() {
        assert_eq!(
            whole_millis(Duration::from_nanos(1)),
            Duration::from_millis(1)
        );
        assert_eq!(whole_millis(Duration::ZERO), Duration::from_millis(1));
        assert_eq!(
            whole_millis(Duration::from_micros(1500)),
            Duration::from_millis(2)
        );
    }

    #[test]
    fn known_options_only() {
        assert!(option("SOL_SOCKET", "SO_KEEPALIVE").is_some());
        assert!(option("IPPROTO_TCP", "TCP_NODELAY").is_some());
        assert!(option("SOL_SOCKET", "TCP_NODELAY").is_none());
        assert!(option("SOL_NOPE", "SO_KEEPALIVE").is_none());
    }
}
