//! Lua's `fiber` module: fibers, sleeps, channels and conditions as in Tarantool 2.6.
//!
//! Every Lua fiber (`fiber.create`, `fiber.new`) is a may fiber of its own on the TX thread
//! (512 KiB stack) running a Lua thread of its own, which its record here keeps referenced
//! until the fiber ends; at most `LUA_FIBERS_MAX` live at once. It acts for the user of the
//! fiber that made it (`context::FiberCtx`). A request's pool fiber (CALL, EVAL) is a fiber for Lua
//! too, named `main` (`enter_request`, `leave_request`), keeping its id and name from one
//! request to the next, as Tarantool's pooled fibers do.
//!
//! Scheduling follows Tarantool's: `fiber.create` switches to the new fiber at once and gets
//! control back at the new fiber's first yield; `fiber.new` puts the new fiber in a ready
//! list that the creator runs at its own next yield, or when its request's reply is encoded.
//! may has no direct switch, so the creator parks and the new fiber wakes it at its first
//! yield (`hand_over`).
//!
//! Every park and yield of a Lua fiber goes through `park_point`, reached from Lua through
//! one raw C function (`park_c`): a fiber never parks inside an mlua callback. The Lua half
//! (`fiber.lua`) builds the API, channels and conditions included, over these primitives.

use std::collections::VecDeque;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::raw::c_int;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mlua::{ffi, Function, Lua, RegistryKey, Table, Thread, Value};
use spindle_fiber::{
    current_fiber, in_fiber, park, park_timeout, sleep, spawn_fiber, Fiber, TxCell,
};
use spindle_types::limits::{LUA_FIBERS_MAX, TX_FIBER_STACK_WORDS};
use tracing::error;

use crate::context::{current_user, fiber_id, set_fiber_ctx, set_fiber_id, FiberCtx};

const SOURCE: &str = include_str!("fiber.lua");

/// Tarantool numbers user fibers from 101 on.
const FIRST_ID: u64 = 101;
/// Longest fiber name (Tarantool's `FIBER_NAME_MAX`).
const NAME_MAX: usize = 255;
/// What `fiber.info()` reports as a fiber's memory: its stack.
const STACK_BYTES: usize = TX_FIBER_STACK_WORDS * std::mem::size_of::<usize>();

/// The waits of `park_c`, by the number Lua passes (see fiber.lua).
enum Op {
    /// `fiber.yield()` and `fiber.sleep(0)`: back after the scheduler's next round.
    Yield,
    /// Sleep this long, or until woken or cancelled.
    Sleep(Duration),
    /// Wait until woken or cancelled, at most this long (a channel or condition wait).
    Wait(Option<Duration>),
    /// `fiber.create`: run this new fiber up to its first yield.
    Start(u64),
    /// `f:join()`: wait until this fiber has ended.
    Join(u64),
    /// A statement's commit is about to park for the WAL (in api.rs, not here).
    Commit,
}

impl Op {
    fn from_lua(op: i64, arg: f64) -> Option<Op> {
        let seconds = |s: f64| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX);
        match op {
            1 => Some(Op::Yield),
            2 if arg > 0.0 => Some(Op::Sleep(seconds(arg))),
            2 => Some(Op::Yield),
            3 => Some(Op::Wait((arg >= 0.0).then(|| seconds(arg)))),
            4 => Some(Op::Start(arg as u64)),
            5 => Some(Op::Join(arg as u64)),
            6 => Some(Op::Commit),
            _ => None,
        }
    }
}

/// One fiber as Lua sees it.
struct Rec {
    name: String,
    /// The may fiber, once it runs.
    handle: Option<Fiber>,
    started: bool,
    dead: bool,
    cancelled: bool,
    /// Set by `wakeup`/`cancel`, cleared when the fiber next yields; ends a sleep or wait.
    woken: bool,
    /// Inside a sleep or wait: a wake-up must unpark it.
    parked: bool,
    joinable: bool,
    /// Who parked in `start` for this fiber: woken at this fiber's first yield or end.
    starter: Option<Fiber>,
    joiners: Vec<Fiber>,
    csw: u64,
    /// The fiber's Lua thread (its body a closure over the arguments) and its storage, as
    /// registry references: mlua's own references live on a stack of about 8000 slots,
    /// too few for `LUA_FIBERS_MAX` fibers.
    thread: Option<RegistryKey>,
    storage: Option<RegistryKey>,
    /// The user the fiber acts for: its creator's.
    user: u32,
}

impl Rec {
    fn new(name: &str) -> Rec {
        Rec {
            name: name.to_string(),
            handle: None,
            started: false,
            dead: false,
            cancelled: false,
            woken: false,
            parked: false,
            joinable: false,
            starter: None,
            joiners: Vec::new(),
            csw: 0,
            thread: None,
            storage: None,
            user: spindle_box::session::ADMIN,
        }
    }

    /// The calling fiber, running.
    fn running() -> Rec {
        let mut rec = Rec::new("main");
        rec.started = true;
        rec.handle = in_fiber().then(current_fiber);
        rec
    }
}

struct Registry {
    fibers: hashbrown::HashMap<u64, Rec, BuildHasherDefault<IdHasher>>,
    /// Fibers `fiber.new` made, not started yet, in order.
    ready: VecDeque<u64>,
    next_id: u64,
    /// Live fibers made by `fiber.create`/`fiber.new`, bounded by `LUA_FIBERS_MAX`.
    lua_alive: usize,
    lua: Option<Lua>,
}

static FIBERS: TxCell<Registry> = TxCell::new(Registry {
    fibers: hashbrown::HashMap::with_hasher(BuildHasherDefault::new()),
    ready: VecDeque::new(),
    next_id: FIRST_ID,
    lua_alive: 0,
    lua: None,
});

/// Hashes fiber ids (sequential numbers) with one multiplication: every request looks its
/// fiber up a few times, among as many records as there are pool and Lua fibers.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(ID_MULTIPLIER);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(ID_MULTIPLIER);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// 2^64 divided by the golden ratio, odd: spreads sequential ids over the table.
const ID_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// Registers `require('fiber')`.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    // A state this replaces (tests may make several) is dropped outside the borrow: its
    // finalizers may run Lua.
    let replaced = FIBERS.with(|r| r.lua.replace(lua.clone()));
    drop(replaced);
    let box_internal = crate::state::internal(lua)?;
    let ours = internal(lua)?;
    // The Lua half finds its Rust half as `box.internal.fiber`.
    box_internal.set("fiber", ours.clone())?;
    // A statement's commit parks in `box.internal.wait` (api.rs): it passes `park_point`
    // first, so that it hands control over like any other yield.
    let commit_wait: Function = box_internal.get("wait")?;
    let park: Function = ours.get("park")?;
    let wrapped: Function = lua
        .load("local wait, park = ... return function(seq) park(6) return wait(seq) end")
        .set_name("=fiber")
        .call((commit_wait, park))?;
    box_internal.set("wait", wrapped)?;
    crate::modules::preload_lua(lua, "fiber", SOURCE)
}

fn internal(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("new", lua.create_function(new)?)?;
    t.set("id", lua.create_function(|_, ()| Ok(current_id()))?)?;
    t.set("status", lua.create_function(|_, id: u64| Ok(status(id)))?)?;
    t.set("name", lua.create_function(name)?)?;
    t.set("cancel", lua.create_function(|_, id: u64| Ok(cancel(id)))?)?;
    t.set("wakeup", lua.create_function(|_, id: u64| Ok(wakeup(id)))?)?;
    t.set("cancelled", lua.create_function(|_, ()| Ok(cancelled()))?)?;
    t.set("joinable", lua.create_function(joinable)?)?;
    t.set("reap", lua.create_function(|_, id: u64| Ok(reap(id)))?)?;
    t.set("storage", lua.create_function(storage)?)?;
    t.set("info", lua.create_function(info)?)?;
    t.set("log_error", lua.create_function(log_error)?)?;
    t.set(
        "time",
        lua.create_function(|_, ()| Ok(unix_now().as_secs_f64()))?,
    )?;
    t.set(
        "time_us",
        lua.create_function(|_, ()| Ok(micros(unix_now())))?,
    )?;
    t.set(
        "clock",
        lua.create_function(|_, ()| Ok(monotonic().as_secs_f64()))?,
    )?;
    t.set(
        "clock_us",
        lua.create_function(|_, ()| Ok(micros(monotonic())))?,
    )?;
    // SAFETY: `park_c` follows the lua_CFunction contract: it reads its two arguments with
    // the C API, pushes one result and returns 1, and lets no panic unwind into LuaJIT.
    t.set("park", unsafe { lua.create_c_function(park_c)? })?;
    Ok(t)
}

// -- The one place a Lua fiber parks -------------------------------------------------------

/// `internal.park(op, arg)` → `true` if a sleep or wait ended because the fiber was woken
/// (or cancelled), else `false`. Parks the calling fiber; see `park_point`.
unsafe extern "C-unwind" fn park_c(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: `lua_pushthread` pushes one value onto the running C function's own stack
    // (LuaJIT guarantees it LUA_MINSTACK free slots) and `lua_pop` removes it again.
    let on_main_state = unsafe {
        let main = ffi::lua_pushthread(l) == 1;
        ffi::lua_pop(l, 1);
        main
    };
    if on_main_state {
        // Only Rust calls Lua on the main state (metamethods while a reply is encoded, the
        // prelude): every fiber's own calls use that state's stack too, so a park there
        // would tangle them. Raised as a Lua error instead.
        // SAFETY: raising from a C function, before any value with a destructor exists in
        // this frame; the format has no conversions.
        return unsafe { ffi::luaL_error(l, c"fiber: cannot yield here".as_ptr()) };
    }
    // SAFETY: reading arguments 1 and 2 of the running C function is always valid; missing
    // ones read as 0.
    let (op, arg) = unsafe { (ffi::lua_tointeger(l, 1) as i64, ffi::lua_tonumber(l, 2)) };
    let woken = match Op::from_lua(op, arg) {
        Some(op) if in_fiber() => std::panic::catch_unwind(AssertUnwindSafe(|| park_point(op)))
            .unwrap_or_else(|_| {
                error!("a Lua fiber's park failed");
                false
            }),
        _ => false,
    };
    // SAFETY: one push onto the running C function's own stack; LuaJIT guarantees it
    // LUA_MINSTACK (20) free slots.
    unsafe { ffi::lua_pushboolean(l, c_int::from(woken)) };
    1
}

/// Every park and yield a Lua fiber makes passes here, and only here (channel and condition
/// waits, sleeps, yields, `fiber.create`, `join`, and the commit wait of `box.internal.wait`,
/// which parks right after this returns). Two things happen at every one of them before the
/// fiber gives up the TX thread:
/// * control goes where Tarantool sends it (`hand_over`): back to the fiber that started
///   this one, else to the fibers `fiber.new` queued;
/// * `on_yield`, the hook for what must react to a yield (a memtx transaction open in the
///   fiber is aborted there: Tarantool 2.6's error 154 at commit). Not for a commit's own
///   wait: that transaction is complete, and Tarantool detaches it from the fiber's yield
///   triggers before it waits for the WAL.
///
/// Returns whether a sleep or wait ended by a wake-up rather than by its timeout.
fn park_point(op: Op) -> bool {
    let me = current_id();
    let hands_over = !matches!(op, Op::Start(_));
    let (cancelled, starter) = FIBERS.with(|r| match r.fibers.get_mut(&me) {
        Some(rec) => {
            rec.csw += 1;
            rec.woken = false;
            let starter = if hands_over { rec.starter.take() } else { None };
            (Some(rec.cancelled), starter)
        }
        None => (None, None),
    });
    if hands_over {
        hand_over(starter);
    }
    if !matches!(op, Op::Commit) {
        on_yield(me);
    }
    match op {
        Op::Commit => false,
        Op::Yield => {
            sleep(Duration::ZERO);
            false
        }
        // A cancelled fiber does not sleep again: its caller raises at once.
        Op::Sleep(_) | Op::Wait(_) if cancelled == Some(true) => true,
        Op::Sleep(d) | Op::Wait(Some(d)) => wait(me, Instant::now().checked_add(d)),
        Op::Wait(None) => wait(me, None),
        Op::Start(id) => {
            start(id);
            false
        }
        Op::Join(id) => {
            join_wait(id);
            false
        }
    }
}

/// A statement's commit is about to park its fiber for the WAL (`fast::dml_fast`): control
/// goes where any other yield sends it first.
pub fn commit_park_point() {
    if in_fiber() {
        park_point(Op::Commit);
    }
}

/// The hook for "this fiber yields": a memtx transaction the fiber has open is aborted here
/// (rolled back; its commit then fails with 154 `ER_TRANSACTION_YIELD`).
fn on_yield(fiber: u64) {
    if let Some(hook) = YIELD_HOOK.get() {
        hook(fiber);
    }
}

/// What runs at every yield of a Lua fiber (set once: the transaction rule of `txn`), so this
/// file does not depend on the transaction code that depends on it.
static YIELD_HOOK: std::sync::OnceLock<fn(u64)> = std::sync::OnceLock::new();

pub fn set_yield_hook(hook: fn(u64)) {
    let _ = YIELD_HOOK.set(hook);
}

/// What runs when a Lua fiber's body has returned (set once: `txn` rolls back what it
/// left open).
static END_HOOK: std::sync::OnceLock<fn(u64)> = std::sync::OnceLock::new();

pub fn set_end_hook(hook: fn(u64)) {
    let _ = END_HOOK.set(hook);
}

/// Runs the fibers that must run before this one goes on: its starter, if `fiber.create`
/// started it and this is its first yield, else the queued `fiber.new` ones.
fn hand_over(starter: Option<Fiber>) {
    match starter {
        Some(starter) => starter.unpark(),
        None => run_ready(),
    }
}

/// Starts the fibers `fiber.new` queued, each up to its first yield, in order. Parks the
/// calling fiber meanwhile. Callers: every Lua fiber's yield, and a request's end. Outside a
/// may fiber (nothing could park) it does nothing.
pub fn run_ready() {
    if !in_fiber() {
        return;
    }
    while let Some(id) = FIBERS.with(|r| r.ready.pop_front()) {
        start(id);
    }
}

/// Starts fiber `id` on a may fiber of its own and parks until it yields or ends.
fn start(id: u64) {
    let me = current_fiber();
    let go = FIBERS.with(|r| match r.fibers.get_mut(&id) {
        Some(f) if !f.started => {
            f.started = true;
            f.starter = Some(me);
            true
        }
        _ => false,
    });
    if !go {
        return;
    }
    if let Err(e) = spawn_fiber(TX_FIBER_STACK_WORDS, move || fiber_main(id)) {
        error!("cannot start a Lua fiber: {e}");
        finish(id);
        return;
    }
    while FIBERS.with(|r| r.fibers.get(&id).is_some_and(|f| f.starter.is_some())) {
        park();
    }
}

/// Parks until woken, cancelled or past `deadline`; true if woken.
fn wait(me: u64, deadline: Option<Instant>) -> bool {
    let registered = FIBERS.with(|r| {
        r.fibers.get_mut(&me).map(|f| {
            f.parked = true;
            f.handle = Some(current_fiber());
        })
    });
    if registered.is_none() {
        return false;
    }
    let woken = loop {
        if FIBERS.with(|r| r.fibers.get(&me).is_none_or(|f| f.woken || f.cancelled)) {
            break true;
        }
        match deadline {
            None => park(),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    break false;
                }
                park_timeout(deadline - now);
            }
        }
    };
    FIBERS.with(|r| r.fibers.get_mut(&me).map(|f| f.parked = false));
    woken
}

fn join_wait(id: u64) {
    loop {
        let done = FIBERS.with(|r| match r.fibers.get_mut(&id) {
            Some(f) if !f.dead => {
                f.joiners.push(current_fiber());
                false
            }
            _ => true,
        });
        if done {
            return;
        }
        park();
    }
}

// -- A Lua fiber's life --------------------------------------------------------------------

/// `internal.new(queue, body)`: a new fiber that will run `body()` in a Lua thread of its
/// own; queued in the ready list if `queue` (`fiber.new`), else the caller starts it
/// (`fiber.create`). Returns its id.
fn new(lua: &Lua, (queue, body): (bool, Function)) -> mlua::Result<u64> {
    let full = FIBERS.with(|r| r.lua_alive >= LUA_FIBERS_MAX);
    if full {
        return Err(mlua::Error::runtime(format!(
            "too many fibers: Lua may have at most {LUA_FIBERS_MAX} alive"
        )));
    }
    let thread = lua.create_registry_value(lua.create_thread(body)?)?;
    let user = current_user(lua);
    Ok(FIBERS.with(|r| {
        let id = r.next_id;
        r.next_id += 1;
        let mut rec = Rec::new("lua");
        rec.thread = Some(thread);
        rec.user = user;
        r.fibers.insert(id, rec);
        r.lua_alive += 1;
        if queue {
            r.ready.push_back(id);
        }
        id
    }))
}

/// The body of a Lua fiber's may fiber: resumes its Lua thread once, to the end (the Lua
/// body catches every error itself), on behalf of its creator's user.
fn fiber_main(id: u64) {
    set_fiber_id(id);
    let run = FIBERS.with(|r| {
        let lua = r.lua.clone()?;
        let f = r.fibers.get_mut(&id)?;
        f.handle = Some(current_fiber());
        let thread = lua.registry_value::<Thread>(f.thread.as_ref()?).ok()?;
        Some((lua, thread, f.user))
    });
    if let Some((_lua, thread, user)) = run {
        set_fiber_ctx(Some(FiberCtx {
            euid: user,
            session: None,
        }));
        if let Err(e) = thread.resume::<()>(()) {
            error!("Lua fiber {id} failed: {e}");
        }
    }
    if let Some(hook) = END_HOOK.get() {
        hook(id);
    }
    finish(id);
}

/// Drops registry references now, outside the registry's borrow: mlua only marks a dropped
/// key, and the value it holds (a finished Lua thread) stays reachable until expired.
fn release<I: IntoIterator<Item = Option<RegistryKey>>>(keys: I) {
    let mut any = false;
    for key in keys.into_iter().flatten() {
        drop(key);
        any = true;
    }
    if any {
        if let Some(lua) = FIBERS.with(|r| r.lua.clone()) {
            lua.expire_registry_values();
        }
    }
}

/// A fiber has ended: it is dead, its Lua thread released, its joiners woken; a joinable one
/// stays listed until joined. Control goes on as at a yield.
fn finish(id: u64) {
    let taken = FIBERS.with(|r| {
        let f = r.fibers.get_mut(&id)?;
        f.dead = true;
        f.parked = false;
        let taken = (
            f.starter.take(),
            std::mem::take(&mut f.joiners),
            [f.thread.take(), f.storage.take()],
        );
        if !f.joinable {
            r.fibers.remove(&id);
        }
        r.lua_alive = r.lua_alive.saturating_sub(1);
        Some(taken)
    });
    let Some((starter, joiners, keys)) = taken else {
        return;
    };
    release(keys);
    for joiner in joiners {
        joiner.unpark();
    }
    match starter {
        Some(starter) => starter.unpark(),
        None => run_ready(),
    }
}

// -- Requests ------------------------------------------------------------------------------

/// A CALL/EVAL starts in the calling pool fiber: for Lua it is a fiber, named `main` when
/// it first runs Lua, with fresh storage. Like Tarantool's pooled fibers it keeps its id and
/// name from one request to the next. Returns its id, for `leave_request`.
pub fn enter_request() -> u64 {
    let id = current_id();
    let old = FIBERS.with(|r| {
        let f = r.fibers.entry(id).or_insert_with(Rec::running);
        f.cancelled = false;
        f.woken = false;
        // A pooled fiber keeps its may fiber, so its handle from an earlier request holds.
        if f.handle.is_none() {
            f.handle = in_fiber().then(current_fiber);
        }
        f.storage.take()
    });
    if old.is_some() {
        release([old]);
    }
    id
}

/// A CALL/EVAL has returned: its storage goes. The fibers it made with `fiber.new` run when
/// its reply has been encoded (`run_ready`), as in Tarantool.
pub fn leave_request(id: u64) {
    let storage = FIBERS.with(|r| r.fibers.get_mut(&id).and_then(|f| f.storage.take()));
    if storage.is_some() {
        release([storage]);
    }
}

// -- Queries and commands ------------------------------------------------------------------

/// The calling fiber's id, for what belongs to a fiber (its transaction).
pub fn current_fiber_id() -> u64 {
    current_id()
}

/// The calling fiber's id; a fiber that never ran Lua before is registered now.
fn current_id() -> u64 {
    let id = fiber_id();
    if id != 0 {
        return id;
    }
    let id = FIBERS.with(|r| {
        let id = r.next_id;
        r.next_id += 1;
        r.fibers.insert(id, Rec::running());
        id
    });
    set_fiber_id(id);
    id
}

fn alive(r: &Registry, id: u64) -> Option<&Rec> {
    r.fibers.get(&id).filter(|f| !f.dead)
}

fn status(id: u64) -> &'static str {
    let me = current_id();
    FIBERS.with(|r| match alive(r, id) {
        None => "dead",
        Some(_) if id == me => "running",
        Some(_) => "suspended",
    })
}

/// `internal.name(id[, new])` → the name (after renaming), or nil if the fiber is dead;
/// an error if the new name is too long.
fn name(_: &Lua, (id, new): (u64, Option<String>)) -> mlua::Result<Option<String>> {
    if new.as_ref().is_some_and(|n| n.len() > NAME_MAX) {
        return Err(mlua::Error::runtime("Fiber name is too long"));
    }
    Ok(FIBERS.with(|r| {
        let f = r.fibers.get_mut(&id).filter(|f| !f.dead)?;
        if let Some(new) = new {
            f.name = new;
        }
        Some(f.name.clone())
    }))
}

/// Marks fiber `id` cancelled and wakes it if it sleeps or waits; false if it is dead.
fn cancel(id: u64) -> bool {
    poke(id, true)
}

/// Ends fiber `id`'s sleep or wait; false if it is dead. Safe whatever the fiber is doing:
/// a running or ready fiber is only marked, a parked one unparked once.
fn wakeup(id: u64) -> bool {
    poke(id, false)
}

/// `wakeup` for the rest of the runtime (a `box.watch` fiber's next notice).
pub fn wake(id: u64) {
    poke(id, false);
}

fn poke(id: u64, cancel: bool) -> bool {
    let found = FIBERS.with(|r| {
        let f = r.fibers.get_mut(&id).filter(|f| !f.dead)?;
        f.cancelled |= cancel;
        f.woken = true;
        Some(if f.parked { f.handle.clone() } else { None })
    });
    match found {
        Some(handle) => {
            if let Some(handle) = handle {
                handle.unpark();
            }
            true
        }
        None => false,
    }
}

fn cancelled() -> bool {
    let me = current_id();
    FIBERS.with(|r| r.fibers.get(&me).is_some_and(|f| f.cancelled))
}

/// `internal.joinable(id[, set])` → whether fiber `id` is joinable (after setting it), or
/// nil if it is dead.
fn joinable(_: &Lua, (id, set): (u64, Option<bool>)) -> mlua::Result<Option<bool>> {
    Ok(FIBERS.with(|r| {
        let f = r.fibers.get_mut(&id)?;
        if let Some(set) = set {
            if f.dead {
                return None;
            }
            f.joinable = set;
        }
        Some(f.joinable)
    }))
}

/// A joined fiber leaves the list.
fn reap(id: u64) -> bool {
    let rec = FIBERS.with(|r| match r.fibers.get(&id) {
        Some(f) if f.dead => r.fibers.remove(&id),
        _ => None,
    });
    let reaped = rec.is_some();
    release(rec.map(|mut f| f.storage.take()));
    reaped
}

/// `internal.storage(id)` → fiber `id`'s storage table (made on first use), nil if dead.
fn storage(lua: &Lua, id: u64) -> mlua::Result<Option<Table>> {
    let existing = FIBERS.with(|r| {
        let f = r.fibers.get(&id).filter(|f| !f.dead)?;
        Some(f.storage.as_ref().map(|k| lua.registry_value::<Table>(k)))
    });
    match existing {
        None => Ok(None),
        Some(Some(t)) => t.map(Some),
        Some(None) => {
            let t = lua.create_table()?;
            let key = lua.create_registry_value(t.clone())?;
            let unused = FIBERS.with(|r| match r.fibers.get_mut(&id) {
                Some(f) => f.storage.replace(key),
                None => Some(key),
            });
            release([unused]);
            Ok(Some(t))
        }
    }
}

/// `fiber.info()`: fid → `{fid, name, csw, memory = {total, used}, time}` of every live fiber.
fn info(lua: &Lua, (): ()) -> mlua::Result<Table> {
    let list: Vec<(u64, String, u64)> = FIBERS.with(|r| {
        r.fibers
            .iter()
            .filter(|(_, f)| !f.dead)
            .map(|(id, f)| (*id, f.name.clone(), f.csw))
            .collect()
    });
    let out = lua.create_table()?;
    for (id, name, csw) in list {
        let memory = lua.create_table()?;
        memory.set("total", STACK_BYTES)?;
        memory.set("used", 0)?;
        let entry = lua.create_table()?;
        entry.set("fid", id)?;
        entry.set("name", name)?;
        entry.set("csw", csw)?;
        entry.set("memory", memory)?;
        entry.set("time", 0)?;
        out.set(id, entry)?;
    }
    Ok(out)
}

/// A fiber's body failed and nobody joins it: logged as Tarantool logs it.
fn log_error(_: &Lua, (kind, message): (String, Value)) -> mlua::Result<()> {
    let message = match message {
        Value::Nil => "nil".to_string(),
        other => other.to_string()?,
    };
    error!("{kind}: {message}");
    Ok(())
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Monotonic time since the first call: only differences mean anything, as in Tarantool.
fn monotonic() -> Duration {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed() + Duration::from_secs(1)
}

/// Microseconds as a Lua number: exact below 2^53 µs (285 years).
fn micros(d: Duration) -> f64 {
    d.as_micros() as f64
}

#[cfg(test)]
mod tests {
    use super::Op;
    use std::time::Duration;

    #[test]
    fn waits_decode_as_tarantool_reads_their_arguments() {
        assert!(matches!(Op::from_lua(1, 0.0), Some(Op::Yield)));
        // sleep(0), a negative or a NaN delay only yield.
        for s in [0.0, -1.0, f64::NAN] {
            assert!(matches!(Op::from_lua(2, s), Some(Op::Yield)), "{s}");
        }
        assert!(
            matches!(Op::from_lua(2, 0.25), Some(Op::Sleep(d)) if d == Duration::from_millis(250))
        );
        assert!(matches!(
            Op::from_lua(2, f64::INFINITY),
            Some(Op::Sleep(Duration::MAX))
        ));
        assert!(matches!(Op::from_lua(3, -1.0), Some(Op::Wait(None))));
        assert!(matches!(
            Op::from_lua(3, 0.0),
            Some(Op::Wait(Some(Duration::ZERO)))
        ));
        assert!(matches!(Op::from_lua(4, 103.0), Some(Op::Start(103))));
        assert!(matches!(Op::from_lua(5, 104.0), Some(Op::Join(104))));
        assert!(matches!(Op::from_lua(6, 0.0), Some(Op::Commit)));
        assert!(Op::from_lua(0, 0.0).is_none());
        assert!(Op::from_lua(7, 0.0).is_none());
    }
}
