//! The admin console: `require('console')`. `listen(uri)` opens a text port served by TX
//! fibers (one accepting, one per connection, each connection with a Lua thread of its own
//! acting as admin); `eval(line)` evaluates a line as the console would, for `tarantoolctl
//! connect` over the binary port; `start()` runs a REPL on stdin. Evaluation, commands and
//! output formats are Lua (`console.lua`); sockets, framing and the Lua output format are
//! here. Socket reads and writes happen in the connection loop, never inside an mlua
//! callback; Lua runs between them in the connection's thread and parks only in raw C
//! functions, as everywhere on the TX thread.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::os::raw::c_int;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::rc::Rc;

use mlua::{ffi, Function, Lua, Table, Thread, ThreadStatus, UserData, Value};
use spindle_types::limits::TX_FIBER_STACK_WORDS;
use tracing::{info, warn};

use crate::context::{set_fiber_ctx, FiberCtx};
use crate::convert;

const CONSOLE_LUA: &str = include_str!("console.lua");
/// Where `console.listen()` without a URI listens, as in Tarantool.
const DEFAULT_SOCKET: &str = "/tmp/tarantool-console.sock";
/// The registry key of the table `console.lua` shares with this file.
const INTERNAL_KEY: &str = "spindle.console";
const READ_CHUNK: usize = 16 * 1024;
/// A connection whose pending request grows past this without its terminator is closed.
const REQUEST_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The version the greeting shows when `_TARANTOOL` is not set.
const DEFAULT_VERSION: &str = "2.6.0";

/// Loads the `console` module (`package.loaded.console`) and the global `help`.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let internal = lua.create_table()?;
    internal.set("format_yaml", lua.create_function(format_yaml)?)?;
    internal.set("format_lua", lua.create_function(format_lua)?)?;
    internal.set("listen", lua.create_function(listen)?)?;
    internal.set("write", lua.create_function(write_stdout)?)?;
    internal.set(
        "in_fiber",
        lua.create_function(|_, ()| Ok(may::coroutine::is_coroutine()))?,
    )?;
    internal.set("spawn", lua.create_function(spawn_lua)?)?;
    // SAFETY: `read_line` follows the lua_CFunction contract: it reads its one argument with
    // the C API, pushes one result and returns 1, and catches every panic before it could
    // unwind into LuaJIT.
    internal.set("read_line", unsafe { lua.create_c_function(read_line)? })?;
    let null = lua
        .load("return require('ffi').cast('void *', 0)")
        .eval::<Value>()?;
    internal.set("null", null)?;
    lua.set_named_registry_value(INTERNAL_KEY, internal.clone())?;
    let module: Table = lua
        .load(CONSOLE_LUA)
        .set_name("@builtin/box/console.lua")
        .call(internal)?;
    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set("console", module)
}

fn internal(lua: &Lua) -> mlua::Result<Table> {
    lua.named_registry_value(INTERNAL_KEY)
}

/// `internal.format_yaml(...)`: the values as the console's YAML document.
fn format_yaml(lua: &Lua, values: mlua::MultiValue) -> mlua::Result<String> {
    let _no_yield = spindle_fiber::NoYield::enter();
    let values: Vec<Value> = values.into_iter().collect();
    Ok(crate::modules::yaml::console_format(lua, &values))
}

/// A value that only the TX thread touches, moved into a TX fiber's closure.
struct TxOnly<T>(T);

// SAFETY: TX fibers run on the TX thread only (one may worker; the one timed wait here is
// followed by a yield, which brings the fiber back from may's timer thread before it touches
// anything), and the Lua state this wraps never leaves that thread.
unsafe impl<T> Send for TxOnly<T> {}

impl<T> TxOnly<T> {
    /// Taken through a method so that a closure captures the whole wrapper, not its field.
    fn into_inner(self) -> T {
        self.0
    }
}

fn spawn_tx(f: impl FnOnce() + 'static) -> io::Result<()> {
    let job = TxOnly(f);
    spindle_fiber::spawn_fiber(TX_FIBER_STACK_WORDS, move || {
        let f = job.into_inner();
        f()
    })
}

// ---------------------------------------------------------------------------------------
// Listening and connections
// ---------------------------------------------------------------------------------------

enum Endpoint {
    Tcp(String),
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(addr) => f.write_str(addr),
            Endpoint::Unix(path) => write!(f, "unix/:{}", path.display()),
        }
    }
}

/// `host:port`, a bare port (all interfaces), `unix/:<path>`, or nothing (the default
/// Unix socket).
fn parse_uri(uri: &Value) -> Option<Endpoint> {
    let text = match uri {
        Value::Nil => return Some(Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET))),
        Value::Integer(port) => return Some(Endpoint::Tcp(format!("0.0.0.0:{port}"))),
        Value::Number(port) if port.fract() == 0.0 => {
            return Some(Endpoint::Tcp(format!("0.0.0.0:{}", *port as i64)))
        }
        Value::String(s) => s.to_str().ok()?.to_string(),
        _ => return None,
    };
    if let Some(path) = text.strip_prefix("unix/:") {
        return (!path.is_empty()).then(|| Endpoint::Unix(PathBuf::from(path)));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Endpoint::Tcp(format!("0.0.0.0:{text}")));
    }
    let (host, port) = text.rsplit_once(':')?;
    if host.is_empty() || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Endpoint::Tcp(text))
}

enum Listener {
    Tcp(may::net::TcpListener),
    Unix(may::os::unix::net::UnixListener, PathBuf),
}

enum Stream {
    Tcp(may::net::TcpStream),
    Unix(may::os::unix::net::UnixStream),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(buf),
            Stream::Unix(s) => s.write_all(buf),
        }
    }
}

fn bind(endpoint: &Endpoint) -> io::Result<Listener> {
    match endpoint {
        // Bound by std, not by may (which sets SO_REUSEPORT: a second console on the same port
        // would then share its connections instead of failing).
        Endpoint::Tcp(addr) => {
            let listener = std::net::TcpListener::bind(addr.as_str())?;
            Ok(Listener::Tcp(into_may(listener.into_raw_fd(), |fd| {
                // SAFETY: `fd` is a listening TCP socket that nothing else owns any more.
                unsafe { may::net::TcpListener::from_raw_fd(fd) }
            })?))
        }
        Endpoint::Unix(path) => {
            crate::sockfile::remove_dead_socket(path);
            let listener = std::os::unix::net::UnixListener::bind(path)?;
            let listener = into_may(listener.into_raw_fd(), |fd| {
                // SAFETY: `fd` is a listening Unix socket that nothing else owns any more.
                unsafe { may::os::unix::net::UnixListener::from_raw_fd(fd) }
            })?;
            Ok(Listener::Unix(listener, path.clone()))
        }
    }
}

/// Hands a bound socket to may, which registers it with its poller (and panics if it
/// cannot: that becomes an error here).
fn into_may<T>(fd: RawFd, wrap: impl FnOnce(RawFd) -> T) -> io::Result<T> {
    std::panic::catch_unwind(AssertUnwindSafe(|| wrap(fd)))
        .map_err(|_| io::Error::other("cannot register the socket with the scheduler"))
}

impl Listener {
    fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(l, _) => l.accept().map(|(s, _)| Stream::Unix(s)),
        }
    }

    /// Stops listening at once: new connections are refused and the fiber parked in
    /// `accept` wakes with an error (Linux semantics of `shutdown` on a listening socket). The
    /// descriptor itself closes when the accepting fiber lets go of the listener.
    fn shut(&self) {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, path) => {
                let _ = std::fs::remove_file(path);
                l.as_raw_fd()
            }
        };
        // SAFETY: `fd` is the listener's own open descriptor, borrowed for this call.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
}

/// The object `console.listen` returns: `close()` stops accepting.
struct ConsoleServer {
    listener: Rc<Listener>,
    closed: Rc<Cell<bool>>,
    name: String,
}

impl UserData for ConsoleServer {
    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("close", |_, this, ()| {
            if !this.closed.replace(true) {
                this.listener.shut();
            }
            Ok(true)
        });
        methods.add_method("describe", |lua, this, ()| this.describe(lua));
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("console server: {}", this.name))
        });
    }
}

impl ConsoleServer {
    /// The fields Tarantool's server socket shows: `{fd, name = {host, port, family, type,
    /// protocol}}`.
    fn describe(&self, lua: &Lua) -> mlua::Result<Table> {
        use std::os::fd::AsRawFd;
        let name = lua.create_table()?;
        name.set("type", "SOCK_STREAM")?;
        let fd = match &*self.listener {
            Listener::Tcp(l) => {
                let addr = l.local_addr().map_err(mlua::Error::external)?;
                name.set("host", addr.ip().to_string())?;
                name.set("port", addr.port())?;
                name.set(
                    "family",
                    if addr.is_ipv4() {
                        "AF_INET"
                    } else {
                        "AF_INET6"
                    },
                )?;
                name.set("protocol", "tcp")?;
                l.as_raw_fd()
            }
            Listener::Unix(l, path) => {
                name.set("host", "unix/")?;
                name.set("port", path.to_string_lossy().into_owned())?;
                name.set("family", "AF_UNIX")?;
                name.set("protocol", 0)?;
                l.as_raw_fd()
            }
        };
        let info = lua.create_table()?;
        info.set("fd", fd)?;
        info.set("name", name)?;
        Ok(info)
    }
}

/// `internal.listen(uri)` → the server object, or nil and the reason: `console.lua` raises
/// it as a string, as Tarantool does.
fn listen(lua: &Lua, uri: Value) -> mlua::Result<(Option<ConsoleServer>, Option<String>)> {
    let Some(endpoint) = parse_uri(&uri) else {
        return Ok((
            None,
            Some("Usage: console.listen(\"[host:]port\")".to_string()),
        ));
    };
    let listener = match bind(&endpoint) {
        Ok(listener) => Rc::new(listener),
        Err(e) => {
            let why = format!("failed to create server {endpoint}: {}", os_message(&e));
            return Ok((None, Some(why)));
        }
    };
    let closed = Rc::new(Cell::new(false));
    let (accepting, stop, fiber_lua) = (listener.clone(), closed.clone(), lua.clone());
    if let Err(e) = spawn_tx(move || accept_loop(fiber_lua, &accepting, &stop)) {
        return Ok((None, Some(format!("console: cannot start a fiber: {e}"))));
    }
    info!("console: listening on {endpoint}");
    let server = ConsoleServer {
        listener,
        closed,
        name: endpoint.to_string(),
    };
    Ok((Some(server), None))
}

/// The OS's text for an error, without Rust's "(os error N)".
fn os_message(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

fn accept_loop(lua: Lua, listener: &Listener, closed: &Cell<bool>) {
    loop {
        let accepted = listener.accept();
        if closed.get() {
            return;
        }
        match accepted {
            Ok(stream) => {
                let conn_lua = lua.clone();
                if let Err(e) = spawn_tx(move || serve(&conn_lua, stream)) {
                    warn!("console: cannot start a connection fiber: {e}");
                }
            }
            Err(e) => {
                // Out of descriptors and the like: try again a little later, not at once.
                warn!("console: accept failed: {e}");
                may::coroutine::sleep(std::time::Duration::from_millis(100));
                spindle_fiber::yield_now();
            }
        }
    }
}

/// The 128-byte greeting: two lines of 63 characters and a newline each.
fn greeting(lua: &Lua) -> Vec<u8> {
    let version = match lua.globals().get::<Value>("_TARANTOOL") {
        Ok(Value::String(s)) => s
            .to_string_lossy()
            .split('-')
            .next()
            .unwrap_or(DEFAULT_VERSION)
            .to_string(),
        _ => DEFAULT_VERSION.to_string(),
    };
    let first = format!("Tarantool {version} (Lua console)");
    let text = format!("{first:<63}\n{:<63}\n", "type 'help' for interactive help");
    text.into_bytes()
}

/// One console connection: greeting, then requests answered in order until EOF or `\q`.
fn serve(lua: &Lua, mut stream: Stream) {
    if stream.write_all(&greeting(lua)).is_err() {
        return;
    }
    let mut session = match Session::open(lua, "console") {
        Ok(s) => s,
        Err(e) => {
            warn!("console: cannot open a session: {e}");
            return;
        }
    };
    let mut framer = Framer::default();
    let mut chunk = vec![0u8; READ_CHUNK];
    'conn: loop {
        while let Some((request, raw)) = framer.next(&session.delimiter) {
            if session.delimiter.is_empty() && raw == b"~.\n" {
                break 'conn;
            }
            match session.eval(request) {
                Some(text) if stream.write_all(&text).is_ok() => {}
                _ => break 'conn,
            }
        }
        if framer.pending() > REQUEST_BYTES_MAX {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => framer.push(chunk.get(..n).unwrap_or_default()),
        }
    }
    session.close();
}

/// Splits what a connection sends into requests: each ends at the delimiter followed by
/// `\n` or `\r`. `~.` and a newline, without a delimiter, close the connection (as in ssh).
#[derive(Default)]
struct Framer {
    buf: Vec<u8>,
    /// Where the next request starts.
    start: usize,
    /// How many bytes after `start` were searched for a terminator already.
    scanned: usize,
}

impl Framer {
    fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received that are not part of a complete request yet.
    fn pending(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// The next complete request: its text (without the delimiter and terminator) and all
    /// its bytes.
    fn next(&mut self, delimiter: &[u8]) -> Option<(&[u8], &[u8])> {
        let pending = self.buf.get(self.start..)?;
        let terminator = pending
            .iter()
            .enumerate()
            .skip(self.scanned)
            .position(|(at, byte)| {
                matches!(byte, b'\n' | b'\r')
                    && at >= delimiter.len()
                    && pending.get(at - delimiter.len()..at) == Some(delimiter)
            })
            .map(|offset| self.scanned + offset);
        let Some(at) = terminator else {
            self.scanned = pending.len();
            return None;
        };
        let begin = self.start;
        self.start += at + 1;
        self.scanned = 0;
        let text = self.buf.get(begin..begin + at - delimiter.len())?;
        let raw = self.buf.get(begin..=begin + at)?;
        Some((text, raw))
    }
}

/// A console session: its state table (delimiter, output format, language) and the Lua
/// thread that evaluates its requests, registered as acting for admin.
struct Session {
    lua: Lua,
    serve: Function,
    state: Table,
    thread: Thread,
    delimiter: Vec<u8>,
}

impl Session {
    fn open(lua: &Lua, kind: &str) -> mlua::Result<Session> {
        let internal = internal(lua)?;
        let serve: Function = internal.get("serve")?;
        let state: Table = internal.get::<Function>("new_session")?.call(kind)?;
        let thread = lua.create_thread(serve.clone())?;
        // A session of its own (`box.session.id()`, `type()`), as admin.
        let id = crate::state::tx()
            .map(|tx| tx.with(|t| t.sessions.next_id()))
            .unwrap_or(0);
        let info = crate::session::SessionInfo {
            id,
            uid: spindle_box::session::ADMIN,
            kind: if kind == "repl" { "repl" } else { "console" },
            sync: 0,
            route: None,
        };
        // The connection's fiber serves the session, as admin.
        set_fiber_ctx(Some(FiberCtx {
            euid: spindle_box::session::ADMIN,
            session: Some(info),
        }));
        Ok(Session {
            lua: lua.clone(),
            serve,
            state,
            thread,
            delimiter: Vec::new(),
        })
    }

    /// The reply to one request, or None when the session ends (`\q`).
    fn eval(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        self.ready_thread().ok()?;
        let line = self.lua.create_string(line).ok()?;
        let reply = self
            .thread
            .resume::<Value>((self.state.clone(), line))
            .and_then(|reply| self.reply_text(reply));
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => Some(self.error_text(&e.to_string())),
        };
        // Waiting for the next request yields the fiber: a memtx transaction left open by this
        // one is aborted, as in Tarantool 2.6 (its commit on a later line fails with 154).
        crate::txn::on_yield(crate::fiber::current_fiber_id());
        crate::fiber::run_ready();
        self.delimiter = self
            .state
            .get::<mlua::String>("delimiter")
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let running = self.state.get::<bool>("running").unwrap_or(false);
        reply.filter(|_| running)
    }

    fn reply_text(&mut self, reply: Value) -> mlua::Result<Option<Vec<u8>>> {
        if self.thread.status() == ThreadStatus::Resumable {
            // The request yielded its thread (`coroutine.yield()` at top level). Tarantool runs
            // it under a C-level pcall, which cannot be yielded across: report that error and
            // start afresh.
            self.replace_thread()?;
            return Ok(Some(
                self.error_text("attempt to yield across C-call boundary"),
            ));
        }
        Ok(match reply {
            Value::String(s) => Some(s.as_bytes().to_vec()),
            _ => None,
        })
    }

    fn error_text(&self, message: &str) -> Vec<u8> {
        let text = internal(&self.lua)
            .and_then(|i| i.get::<Function>("format_error"))
            .and_then(|f| f.call::<mlua::String>((self.state.clone(), message)));
        match text {
            Ok(t) => t.as_bytes().to_vec(),
            Err(_) => Vec::new(),
        }
    }

    /// The session's thread, ready to run `serve` again: a finished thread is reset; one
    /// that died in an error (LuaJIT cannot reset those) is replaced.
    fn ready_thread(&mut self) -> mlua::Result<()> {
        match self.thread.status() {
            // Resumable here means not started yet: one that yielded was replaced already.
            ThreadStatus::Resumable => Ok(()),
            ThreadStatus::Finished => self.thread.reset(self.serve.clone()),
            _ => self.replace_thread(),
        }
    }

    fn replace_thread(&mut self) -> mlua::Result<()> {
        self.thread = self.lua.create_thread(self.serve.clone())?;
        Ok(())
    }

    fn close(self) {
        // An MVCC transaction spans lines (as in 2.11); one left open ends with the session.
        crate::txn::on_end(crate::fiber::current_fiber_id());
        set_fiber_ctx(None);
    }
}

// ---------------------------------------------------------------------------------------
// The REPL on stdin (`console.start`)
// ---------------------------------------------------------------------------------------

thread_local! {
    /// Lines of stdin, read by a helper thread so that the TX thread never blocks on it.
    static STDIN: RefCell<Option<Rc<may::sync::mpsc::Receiver<Vec<u8>>>>> =
        const { RefCell::new(None) };
}

/// The receiving end of the stdin reader, started on first use.
fn stdin_lines() -> Option<Rc<may::sync::mpsc::Receiver<Vec<u8>>>> {
    STDIN.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            let (tx, rx) = may::sync::mpsc::channel();
            let reader = spindle_fiber::spawn_cord("stdin", move || read_stdin(&tx));
            if let Err(e) = reader {
                warn!("console: cannot start the stdin reader: {e}");
                return None;
            }
            *slot = Some(Rc::new(rx));
        }
        slot.clone()
    })
}

/// Sends stdin line by line (without the newline) until EOF, then drops the sender.
fn read_stdin(tx: &may::sync::mpsc::Sender<Vec<u8>>) {
    use std::io::BufRead;
    let stdin = io::stdin();
    let mut input = stdin.lock();
    loop {
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                if tx.send(line).is_err() {
                    return;
                }
            }
        }
    }
}

fn stdin_is_terminal() -> bool {
    use std::io::IsTerminal;
    io::stdin().is_terminal()
}

/// Shows the prompt and waits for a line. A terminal echoes what is typed; other input is
/// echoed here, after the prompt, so that the output reads as a transcript (as Tarantool's
/// does).
fn prompt_and_read(prompt: &[u8]) -> Option<Vec<u8>> {
    let mut out = io::stdout();
    let _ = out.write_all(prompt).and_then(|()| out.flush());
    let line = stdin_lines()?.recv().ok()?;
    if !stdin_is_terminal() {
        let _ = out
            .write_all(&line)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
    }
    Some(line)
}

/// `internal.read_line(prompt)` → the next line of stdin, or nil at its end. It parks the
/// fiber until the line is there, so it is a raw C function (see `api::wait`).
unsafe extern "C-unwind" fn read_line(l: *mut ffi::lua_State) -> c_int {
    let mut len = 0usize;
    // SAFETY: reading argument 1 of the running C function; a non-string gives NULL.
    let prompt = unsafe { ffi::lua_tolstring(l, 1, &mut len) };
    let prompt = if prompt.is_null() {
        Vec::new()
    } else {
        // SAFETY: LuaJIT returned a pointer to `len` bytes that stay valid while the string
        // is on the stack; they are copied before anything else runs.
        unsafe { std::slice::from_raw_parts(prompt.cast::<u8>(), len) }.to_vec()
    };
    let line = std::panic::catch_unwind(AssertUnwindSafe(|| prompt_and_read(&prompt)))
        .ok()
        .flatten();
    // SAFETY: pushing one value onto the running C function's own stack, which LuaJIT
    // guarantees has room for LUA_MINSTACK values.
    unsafe {
        match line {
            Some(line) => {
                ffi::lua_pushlstring(l, line.as_ptr().cast(), line.len());
            }
            None => ffi::lua_pushnil(l),
        }
    }
    1
}

/// `internal.write(text)`: the REPL's output on stdout.
fn write_stdout(_: &Lua, text: mlua::String) -> mlua::Result<()> {
    let mut out = io::stdout();
    out.write_all(&text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(mlua::Error::external)
}

/// `internal.spawn(fn)`: runs `fn` in a new TX fiber, in a Lua thread acting for admin.
fn spawn_lua(lua: &Lua, f: Function) -> mlua::Result<()> {
    let thread = lua.create_thread(f)?;
    spawn_tx(move || {
        set_fiber_ctx(Some(FiberCtx {
            euid: spindle_box::session::ADMIN,
            session: None,
        }));
        if let Err(e) = thread.resume::<()>(()) {
            warn!("console: {e}");
        }
    })
    .map_err(|e| mlua::Error::runtime(format!("console: cannot start a fiber: {e}")))
}

// ---------------------------------------------------------------------------------------
// Lua output (`\set output lua`)
// ---------------------------------------------------------------------------------------

/// `internal.format_lua(value, block)`: `value` as Lua source text, on one line or, with
/// `block`, indented over several.
fn format_lua(lua: &Lua, (value, block): (Value, bool)) -> mlua::Result<mlua::String> {
    let _no_yield = spindle_fiber::NoYield::enter();
    let mut writer = LuaWriter {
        lua,
        out: Vec::new(),
        block,
        seen: HashMap::new(),
    };
    writer.find_references(&value)?;
    writer.value(&value, 0)?;
    lua.create_string(&writer.out)
}

/// How often a table is reached from the value being written: a table reached twice is
/// written the first time and as `{nil}` afterwards (Tarantool's anchors).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Once,
    Many,
    Written,
}

struct LuaWriter<'a> {
    lua: &'a Lua,
    out: Vec<u8>,
    block: bool,
    seen: HashMap<*const c_void, Seen>,
}

const INDENT: usize = 2;

const LUA_KEYWORDS: [&str; 21] = [
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in", "local",
    "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
];

/// What a table is written as.
enum Shape {
    Array(usize),
    Map,
    /// Its `__serialize` function's result.
    Replaced(Value),
}

impl LuaWriter<'_> {
    fn find_references(&mut self, v: &Value) -> mlua::Result<()> {
        let Value::Table(t) = v else { return Ok(()) };
        let key = t.to_pointer();
        match self.seen.get(&key) {
            Some(Seen::Once) => {
                self.seen.insert(key, Seen::Many);
                return Ok(());
            }
            Some(_) => return Ok(()),
            None => {
                self.seen.insert(key, Seen::Once);
            }
        }
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair?;
            self.find_references(&v)?;
            self.find_references(&k)?;
        }
        Ok(())
    }

    fn value(&mut self, v: &Value, indent: usize) -> mlua::Result<()> {
        match v {
            Value::Nil => self.out.extend_from_slice(b"nil"),
            Value::Boolean(b) => self
                .out
                .extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Integer(i) => self.out.extend_from_slice(i.to_string().as_bytes()),
            Value::Number(n) => self.out.extend_from_slice(format_number(*n).as_bytes()),
            Value::String(s) => self.string(&s.as_bytes()),
            Value::LightUserData(p) if p.0.is_null() => self.out.extend_from_slice(b"box.NULL"),
            Value::Table(t) => self.table(t, indent)?,
            Value::UserData(ud) if crate::tuple::of(ud).is_some() => {
                let fields = match crate::tuple::of(ud) {
                    Some((tuple, _)) => convert::decode(self.lua, &mut tuple.data())?,
                    None => Value::Nil,
                };
                self.value(&fields, indent)?;
            }
            Value::Other(_) => self.cdata(v)?,
            Value::Error(e) => self.string(e.to_string().as_bytes()),
            other => {
                let text = other.to_string()?;
                self.string(text.as_bytes());
            }
        }
        Ok(())
    }

    /// FFI values: `box.NULL`, 64-bit integers as plain digits, anything else (uuid,
    /// decimal) as its string.
    fn cdata(&mut self, v: &Value) -> mlua::Result<()> {
        let text = v.to_string()?;
        if text.ends_with(": NULL") {
            self.out.extend_from_slice(b"box.NULL");
        } else if let Some(digits) = text
            .strip_suffix("ULL")
            .or_else(|| text.strip_suffix("LL"))
            .filter(|d| d.parse::<i128>().is_ok())
        {
            self.out.extend_from_slice(digits.as_bytes());
        } else {
            self.string(text.as_bytes());
        }
        Ok(())
    }

    /// A quoted string; bytes that are not UTF-8 are written as base64, as binary data.
    fn string(&mut self, bytes: &[u8]) {
        self.out.push(b'"');
        if std::str::from_utf8(bytes).is_ok() {
            escape_into(&mut self.out, bytes);
        } else {
            self.out.extend_from_slice(base64(bytes).as_bytes());
        }
        self.out.push(b'"');
    }

    fn table(&mut self, t: &Table, indent: usize) -> mlua::Result<()> {
        if is_box_error(t) {
            let text = Value::Table(t.clone()).to_string()?;
            self.string(text.as_bytes());
            return Ok(());
        }
        let key = t.to_pointer();
        match self.seen.get(&key).copied() {
            Some(Seen::Written) => {
                return self.braces(indent, |w, inner| {
                    w.item_indent(inner);
                    w.out.extend_from_slice(b"nil");
                    Ok(())
                })
            }
            Some(Seen::Many) => {
                self.seen.insert(key, Seen::Written);
            }
            _ => {}
        }
        match shape(t)? {
            Shape::Replaced(v) => self.value(&v, indent),
            Shape::Array(n) => self.braces(indent, |w, inner| {
                for i in 1..=n {
                    if i > 1 {
                        w.separator();
                    }
                    w.item_indent(inner);
                    let item: Value = t.raw_get(i)?;
                    w.value(&item, inner)?;
                }
                Ok(())
            }),
            Shape::Map => self.braces(indent, |w, inner| {
                let pairs = t
                    .pairs::<Value, Value>()
                    .collect::<mlua::Result<Vec<_>>>()?;
                for (index, (k, v)) in pairs.iter().enumerate() {
                    if index > 0 {
                        w.separator();
                    }
                    w.item_indent(inner);
                    w.key(k, index, inner)?;
                    w.value(v, inner)?;
                }
                Ok(())
            }),
        }
    }

    fn braces(
        &mut self,
        indent: usize,
        items: impl FnOnce(&mut Self, usize) -> mlua::Result<()>,
    ) -> mlua::Result<()> {
        self.out.push(b'{');
        if self.block {
            self.out.push(b'\n');
        }
        items(self, indent + INDENT)?;
        if self.block {
            self.out.push(b'\n');
            self.out.resize(self.out.len() + indent, b' ');
        }
        self.out.push(b'}');
        Ok(())
    }

    fn separator(&mut self) {
        self.out
            .extend_from_slice(if self.block { b",\n" } else { b", " });
    }

    fn item_indent(&mut self, indent: usize) {
        if self.block {
            self.out.resize(self.out.len() + indent, b' ');
        }
    }

    /// A map key and ` = `: an integer key equal to the entry's position (counted from 0)
    /// is left out, others are bracketed; a string key is bare if it is a name that is no
    /// keyword, else bracketed and quoted; other keys are written as values, unbracketed.
    fn key(&mut self, k: &Value, index: usize, indent: usize) -> mlua::Result<()> {
        if let Some(i) = integer_key(k) {
            if i == index as i128 {
                return Ok(());
            }
            self.out.extend_from_slice(format!("[{i}] = ").as_bytes());
            return Ok(());
        }
        if let Value::String(s) = k {
            let bytes = s.as_bytes();
            if std::str::from_utf8(&bytes).is_ok() {
                let bare = !LUA_KEYWORDS.iter().any(|kw| kw.as_bytes() == &bytes[..])
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'_');
                if bare {
                    self.out.extend_from_slice(&bytes);
                } else {
                    self.out.push(b'[');
                    self.string(&bytes);
                    self.out.push(b']');
                }
                self.out.extend_from_slice(b" = ");
                return Ok(());
            }
        }
        self.value(k, indent)?;
        self.out.extend_from_slice(b" = ");
        Ok(())
    }
}

fn is_box_error(t: &Table) -> bool {
    t.metatable()
        .and_then(|m| m.raw_get::<bool>("__box_error").ok())
        .unwrap_or(false)
}

/// A key that serializes as an integer: Lua integers and integral numbers in range.
fn integer_key(k: &Value) -> Option<i128> {
    match k {
        Value::Integer(i) => Some(i128::from(*i)),
        Value::Number(n) if integral_in_range(*n) => Some(*n as i128),
        _ => None,
    }
}

fn integral_in_range(n: f64) -> bool {
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    n.is_finite() && n.fract() == 0.0 && (-TWO_63..TWO_64).contains(&n)
}

/// Array or map, by the `__serialize` hint or else by the keys (the sparse-array rule of
/// MessagePack encoding).
fn shape(t: &Table) -> mlua::Result<Shape> {
    if let Some(meta) = t.metatable() {
        match meta.raw_get::<Value>("__serialize")? {
            Value::String(s) => {
                return Ok(match &s.as_bytes()[..] {
                    b"seq" | b"sequence" | b"array" => Shape::Array(t.raw_len()),
                    _ => Shape::Map,
                })
            }
            Value::Function(f) => return Ok(Shape::Replaced(f.call(t.clone())?)),
            _ => {}
        }
    }
    let (mut count, mut max) = (0usize, 0usize);
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        match integer_key(&k) {
            Some(i) if i >= 1 && i <= i128::from(u32::MAX) => {
                count += 1;
                max = max.max(i as usize);
            }
            _ => return Ok(Shape::Map),
        }
    }
    Ok(if max <= 10 || max <= 2 * count {
        Shape::Array(max)
    } else {
        Shape::Map
    })
}

/// A number as Tarantool writes it: integral values in the 64-bit range as integers, others
/// with 14 significant digits (`%.14g`), infinities and NaNs by name.
fn format_number(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if n.is_infinite() {
        return if n < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if integral_in_range(n) {
        // `-0.0` too is the integer 0.
        return format!("{:.0}", n + 0.0);
    }
    format_g14(n)
}

/// C's `%.14g`.
fn format_g14(n: f64) -> String {
    const PRECISION: i32 = 14;
    let sci = format!("{:.*e}", (PRECISION - 1) as usize, n);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..PRECISION).contains(&exp) {
        let mantissa = trim_fraction(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let decimals = (PRECISION - 1 - exp).max(0) as usize;
    trim_fraction(&format!("{n:.decimals$}")).to_string()
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// String bytes with Lua escapes for quotes and control characters, `\xNN` for other bytes
/// outside printable ASCII; a backslash stays as it is, as in Tarantool.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        let escaped: Option<&[u8]> = match b {
            b'\'' => Some(b"\\'"),
            b'"' => Some(b"\\\""),
            0 => Some(b"\\0"),
            0x07 => Some(b"\\a"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0x0b => Some(b"\\v"),
            b'\r' => Some(b"\\r"),
            b'\n' => Some(b"\\n"),
            b'\t' => Some(b"\\t"),
            _ => None,
        };
        match escaped {
            Some(e) => out.extend_from_slice(e),
            None if (0x20..0x7f).contains(&b) => out.push(b),
            None => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group.first().copied().unwrap_or(0),
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(framer: &mut Framer, delimiter: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((text, _)) = framer.next(delimiter) {
            out.push(text.to_vec());
        }
        out
    }

    #[test]
    fn requests_end_at_newline_or_return() {
        let mut f = Framer::default();
        f.push(b"1\n2\r\n3");
        assert_eq!(
            requests(&mut f, b""),
            [b"1".to_vec(), b"2".to_vec(), b"".to_vec()]
        );
        assert_eq!(f.pending(), 1);
        f.push(b"4\n");
        assert_eq!(requests(&mut f, b""), [b"34".to_vec()]);
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn a_delimiter_may_arrive_in_pieces() {
        let mut f = Framer::default();
        f.push(b"a\nb$E");
        assert!(requests(&mut f, b"$EOF$").is_empty());
        f.push(b"OF$");
        assert!(requests(&mut f, b"$EOF$").is_empty());
        f.push(b"\nnext");
        assert_eq!(requests(&mut f, b"$EOF$"), [b"a\nb".to_vec()]);
        assert_eq!(f.pending(), 4);
    }

    #[test]
    fn raw_bytes_keep_the_terminator() {
        let mut f = Framer::default();
        f.push(b"~.\n~.\r");
        assert_eq!(
            f.next(b"").map(|(_, raw)| raw.to_vec()),
            Some(b"~.\n".to_vec())
        );
        assert_eq!(
            f.next(b"").map(|(_, raw)| raw.to_vec()),
            Some(b"~.\r".to_vec())
        );
    }

    #[test]
    fn numbers_as_tarantool_prints_them() {
        for (n, text) in [
            (10.0 / 3.0, "3.3333333333333"),
            (2f64.powi(64), "1.844674407371e+19"),
            (0.1 + 0.2, "0.3"),
            (1e100, "1e+100"),
            (1e-7, "1e-07"),
            (-0.0, "0"),
            (2f64.powi(63), "9223372036854775808"),
            (1.5, "1.5"),
            (123456.789, "123456.789"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(format_number(n), text, "{n}");
        }
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"\xff"), "/w==");
        assert_eq!(base64(b"\t\x01\xff"), "CQH/");
        assert_eq!(base64(b"ab"), "YWI=");
    }

    #[test]
    fn console_uris() {
        let tcp = |v: Value| match parse_uri(&v) {
            Some(Endpoint::Tcp(a)) => Some(a),
            _ => None,
        };
        assert_eq!(tcp(Value::Integer(3313)).as_deref(), Some("0.0.0.0:3313"));
        let lua = Lua::new();
        let s = |t: &str| Value::String(lua.create_string(t).expect("string"));
        assert_eq!(tcp(s("127.0.0.1:3313")).as_deref(), Some("127.0.0.1:3313"));
        assert_eq!(tcp(s("3313")).as_deref(), Some("0.0.0.0:3313"));
        assert!(matches!(
            parse_uri(&s("unix/:/tmp/x.sock")),
            Some(Endpoint::Unix(_))
        ));
        assert!(parse_uri(&s("nonsense")).is_none());
        assert!(parse_uri(&s("unix/:")).is_none());
    }
}
