//! The one Lua state of the TX thread and the `ProcRuntime` that runs CALL and EVAL in it.
//! Each request gets a Lua thread of its own, run in its pool fiber; it parks only in raw C
//! functions (`api::wait`), so other requests' fibers run Lua meanwhile.

use hashbrown::HashMap;

use std::os::raw::c_int;

use mlua::{ffi, Function, Lua, MultiValue, Thread, ThreadStatus, Value};
use spindle_box::access::PRIV_X;
use spindle_box::call::FuncRef;
use spindle_box::Reply;
use spindle_fiber::assert_tx_thread;
use spindle_proto::mp;
use spindle_tx::procs::{DmlJob, ProcCtx, ProcRuntime};
use spindle_tx::TxRef;
use spindle_types::limits::{LUA_MEMORY_MAX, LUA_THREADS_KEPT};
use spindle_types::{txn_cfg, BoxError, BoxResult};

use crate::context::{from_mlua, set_fiber_ctx, FiberCtx, SessionInfo};
use crate::convert;
use crate::raw;
use crate::state::Unlimited;

const PRELUDE: &str = include_str!("box.lua");
const SCHEMA: &str = include_str!("schema.lua");
const CFG: &str = include_str!("cfg.lua");
const CONTROL: &str = include_str!("control.lua");

type FuncsByName = HashMap<Box<str>, Option<FuncRef>>;

/// CALL names kept as Lua strings (`LuaRuntime::name`).
const CALL_NAMES_KEPT: usize = 1024;

pub struct LuaRuntime {
    lua: Lua,
    threads: std::cell::RefCell<Vec<Thread>>,
    /// CALL names and EVAL expressions as Lua strings: clients send the same few again and
    /// again.
    names: std::cell::RefCell<HashMap<Box<[u8]>, mlua::String>>,
    /// `_func` rows by CALL name, as of a schema version (a `_func` change makes a new one).
    funcs: std::cell::RefCell<(u32, FuncsByName)>,
    /// `box.internal.call(name, ...)` and `box.internal.eval(expr, ...)` from the prelude: they
    /// resolve and run under `pcall` and return its results.
    call: Function,
    eval: Function,
    /// `box.internal.fresh()`: brings `box.space` and `box.func` up to the schema.
    fresh: Function,
    /// The schema version `fresh` last ran at.
    schema_seen: std::cell::Cell<Option<u32>>,
}

// SAFETY: the Lua state is created, used and dropped on the TX thread only: every method
// asserts it in debug builds, and the runtime is reachable only through `ProcRuntime`, which
// the TX thread's procedure fibers call. `Sync` is needed only to keep a `&'static` of it in
// those fibers' closures.
unsafe impl Sync for LuaRuntime {}
// SAFETY: as above.
unsafe impl Send for LuaRuntime {}

impl LuaRuntime {
    /// Creates the Lua state with LuaJIT's libraries (`ffi`, `jit`, `bit` included, as in
    /// Tarantool), installs the box API and runs the prelude. The database parts of the API
    /// work once `box.cfg{}` has booted it (`cfg`).
    pub fn new() -> mlua::Result<LuaRuntime> {
        // SAFETY: `unsafe_new` only loads the libraries `Lua::new` leaves out (`ffi`, `debug`):
        // Tarantool exposes them to Lua, and scripts use them.
        let lua = unsafe { Lua::unsafe_new() };
        lua.set_memory_limit(LUA_MEMORY_MAX)?;
        crate::tuple::install(&lua)?;
        crate::api::install(&lua)?;
        crate::modules::install(&lua)?;
        let internal_table = crate::state::internal(&lua)?;
        crate::txn::install(&lua, &internal_table)?;
        crate::fast::install(&lua, &internal_table)?;
        crate::raw::install(&lua)?;
        crate::session::install(&lua, &internal_table)?;
        crate::schema::install(&lua)?;
        crate::console::install(&lua)?;
        crate::fiber::install(&lua)?;
        let null = lua
            .load("return require('ffi').cast('void *', 0)")
            .eval::<Value>()?;
        lua.set_named_registry_value("spindle.NULL", null)?;
        let internal = crate::state::internal(&lua)?;
        lua.load(PRELUDE)
            .set_name("=box.lua")
            .call::<()>(internal.clone())?;
        lua.load(SCHEMA)
            .set_name("=schema.lua")
            .call::<()>(internal.clone())?;
        lua.load(CONTROL)
            .set_name("=control.lua")
            .call::<()>(internal.clone())?;
        crate::triggers::install(&lua, &internal)?;
        crate::watch::install(&lua, &internal)?;
        Ok(LuaRuntime {
            threads: std::cell::RefCell::new(Vec::new()),
            names: std::cell::RefCell::new(HashMap::new()),
            funcs: std::cell::RefCell::new((0, HashMap::new())),
            call: internal.get("call")?,
            eval: internal.get("eval")?,
            fresh: internal.get("fresh")?,
            schema_seen: std::cell::Cell::new(None),
            lua,
        })
    }

    /// Installs `box.cfg` with the process's `host`; the last part of the prelude, run once
    /// the runtime has its `'static` address.
    pub fn install_cfg(&'static self, host: Box<dyn crate::cfg::Host>) -> mlua::Result<()> {
        let internal = crate::state::internal(&self.lua)?;
        crate::cfg::install(&self.lua, &internal, host, self)?;
        self.lua.load(CFG).set_name("=cfg.lua").call::<()>(internal)
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// Runs `f(args...)` in a new Lua thread for the request `ctx`; the results of its
    /// `pcall`. A transaction the request left open is rolled back (and fails it).
    fn run(
        &self,
        tx: TxRef,
        ctx: &ProcCtx,
        f: &Function,
        args: MultiValue,
    ) -> BoxResult<MultiValue> {
        let thread = {
            let _unlimited = Unlimited::new(&self.lua);
            self.thread(f)?
        };
        self.run_as(tx, ctx, ctx.user, thread, args)
    }

    /// `run` in `thread` (from `thread`), with `euid` as the effective user (a setuid
    /// function's owner).
    fn run_as(
        &self,
        tx: TxRef,
        ctx: &ProcCtx,
        euid: u32,
        thread: Thread,
        args: MultiValue,
    ) -> BoxResult<MultiValue> {
        self.enter(tx, ctx, euid);
        let fiber = crate::fiber::enter_request();
        enter_txn(tx, ctx);
        // The context stays until the fiber's next request sets its own.
        let result = thread.resume::<MultiValue>(args);
        crate::fiber::leave_request(fiber);
        let open = finish_txn(tx, ctx);
        self.recycle(thread);
        let results = result.map_err(from_mlua)?;
        match (open, results.front()) {
            (Err(e), Some(Value::Boolean(true))) => Err(e),
            _ => Ok(results),
        }
    }

    /// Sets the fiber's context for the request `ctx`, run as `euid`.
    fn enter(&self, tx: TxRef, ctx: &ProcCtx, euid: u32) {
        assert_tx_thread();
        let id = tx.with(|t| t.sessions.get(ctx.route).map_or(0, |s| s.id));
        let session = SessionInfo {
            id,
            uid: ctx.user,
            kind: "binary",
            sync: ctx.sync,
            route: Some(ctx.route),
        };
        set_fiber_ctx(Some(FiberCtx {
            euid,
            session: Some(session),
        }));
    }

    /// Refreshes the Lua view of the schema if `version` is not the one it was made at.
    fn catch_up(&self, version: u32) {
        if self.schema_seen.get() == Some(version) {
            return;
        }
        let _unlimited = Unlimited::new(&self.lua);
        match self.fresh.call::<()>(()) {
            Ok(()) => self.schema_seen.set(Some(version)),
            Err(e) => tracing::warn!("refreshing box.space: {e}"),
        }
    }

    /// Runs `internal.call` or `internal.eval` (`f`) with `text` (the name or expression)
    /// and the packed `args` for the request `ctx`, as `euid`: the reply. Arguments and
    /// results of plain types skip mlua (`raw`); the rest take `convert`'s path.
    fn run_request(
        &self,
        tx: TxRef,
        ctx: &ProcCtx,
        euid: u32,
        (f, text): (&Function, &str),
        args: &[u8],
        is_16: bool,
    ) -> BoxResult<Reply> {
        let (thread, pushed) = {
            let _unlimited = Unlimited::new(&self.lua);
            let thread = self.thread(f)?;
            let l = thread.state();
            // SAFETY: a thread that is not running, holding only its function; an
            // `Unlimited` section.
            let pushed = unsafe {
                ffi::lua_checkstack(l, 2) != 0 && {
                    ffi::lua_pushlstring(l, text.as_ptr().cast(), text.len());
                    true
                }
            }
            .then(|| unsafe { raw::push_args(l, args) })
            .flatten();
            if pushed.is_none() {
                // SAFETY: drops what was pushed above, back to the function alone.
                unsafe { ffi::lua_settop(l, 1) };
            }
            (thread, pushed)
        };
        let Some(nargs) = pushed else {
            let args = {
                let _unlimited = Unlimited::new(&self.lua);
                self.args(Value::String(self.name(text)?), args)?
            };
            let results = self.run_as(tx, ctx, euid, thread, args);
            let _unlimited = Unlimited::new(&self.lua);
            let _ext = convert::ErrorExt::set(crate::session::wants_error_ext(tx, ctx.route));
            return results.and_then(|r| outcome(r, is_16));
        };
        self.enter(tx, ctx, euid);
        let fiber = crate::fiber::enter_request();
        enter_txn(tx, ctx);
        let l = thread.state();
        let mut nresults = 0;
        // SAFETY: `l` is a fresh or finished thread holding its function and `nargs + 1`
        // arguments; it runs in this fiber, which parks only in raw C functions.
        let status = unsafe { ffi::lua_resume(l, std::ptr::null_mut(), nargs + 1, &mut nresults) };
        crate::fiber::leave_request(fiber);
        let open = finish_txn(tx, ctx);
        let reply = {
            let _unlimited = Unlimited::new(&self.lua);
            let _ext = convert::ErrorExt::set(crate::session::wants_error_ext(tx, ctx.route));
            self.reply_of(l, status, open, is_16)
        };
        if status == ffi::LUA_OK {
            // SAFETY: the results are read; an empty finished thread can be reset.
            unsafe { ffi::lua_settop(l, 0) };
        }
        self.recycle(thread);
        reply
    }

    /// The reply of a request whose thread `l` ended with `status`, its results (or error)
    /// on its stack. `open`: what rolling back a transaction it left open came to.
    fn reply_of(
        &self,
        l: *mut ffi::lua_State,
        status: c_int,
        open: BoxResult<()>,
        is_16: bool,
    ) -> BoxResult<Reply> {
        // SAFETY: `l` is not running; reads of its stack.
        let success = unsafe {
            status == ffi::LUA_OK
                && ffi::lua_type(l, 1) == ffi::LUA_TBOOLEAN
                && ffi::lua_toboolean(l, 1) != 0
        };
        if success && !is_16 && open.is_ok() {
            // SAFETY: as above; the walk stays within the room `encode_slots` checks.
            if let Some((count, data)) = unsafe { raw::encode_slots(l, 2) } {
                return Ok(Reply::Data { count, data });
            }
        }
        let values = self.take_values(l).map_err(from_mlua)?;
        match status {
            ffi::LUA_OK | ffi::LUA_YIELD => match (open, values.front()) {
                (Err(e), Some(Value::Boolean(true))) => Err(e),
                _ => outcome(values, is_16),
            },
            ffi::LUA_ERRMEM => Err(from_mlua(mlua::Error::MemoryError(
                "not enough memory".into(),
            ))),
            _ => Err(error_value(values.back().unwrap_or(&Value::Nil))),
        }
    }

    /// Everything on `l`'s stack, moved out as mlua values.
    fn take_values(&self, l: *mut ffi::lua_State) -> mlua::Result<MultiValue> {
        // SAFETY: `l` is not running; its values move to the stack `exec_raw` gives, which
        // is checked for room first.
        unsafe {
            let top = ffi::lua_gettop(l);
            self.lua.exec_raw::<MultiValue>((), |state| {
                if ffi::lua_checkstack(state, top + 1) != 0 {
                    ffi::lua_xmove(l, state, top);
                }
            })
        }
    }

    /// A Lua thread set to run `f`: a finished one from the pool, or a new one. Called in an
    /// `Unlimited` section.
    fn thread(&self, f: &Function) -> BoxResult<Thread> {
        if let Some(thread) = self.threads.borrow_mut().pop() {
            if thread.reset(f.clone()).is_ok() {
                return Ok(thread);
            }
        }
        self.lua.create_thread(f.clone()).map_err(from_mlua)
    }

    /// The `_func` row of `name` (`find_func`), looked up once per schema version.
    fn find_func(&self, db: &spindle_box::Db, name: &str) -> Option<FuncRef> {
        let mut funcs = self.funcs.borrow_mut();
        let version = db.schema_version();
        if funcs.0 != version || funcs.1.len() >= CALL_NAMES_KEPT {
            *funcs = (version, HashMap::new());
        }
        if let Some(found) = funcs.1.get(name) {
            return *found;
        }
        let found = spindle_box::call::find_func(db, name);
        funcs.1.insert(name.into(), found);
        found
    }

    /// A CALL name or EVAL expression as a Lua string, made once per text (the cache is
    /// bounded).
    fn name(&self, name: &str) -> BoxResult<mlua::String> {
        let mut names = self.names.borrow_mut();
        if let Some(s) = names.get(name.as_bytes()) {
            return Ok(s.clone());
        }
        let s = self.lua.create_string(name).map_err(from_mlua)?;
        if names.len() >= CALL_NAMES_KEPT {
            names.clear();
        }
        names.insert(name.as_bytes().into(), s.clone());
        Ok(s)
    }

    /// Keeps a thread that ran to its end for the next request (a reset is cheaper than a
    /// new thread and leaves less for the collector).
    fn recycle(&self, thread: Thread) {
        let mut pool = self.threads.borrow_mut();
        if thread.status() == ThreadStatus::Finished && pool.len() < LUA_THREADS_KEPT {
            pool.push(thread);
        }
    }

    /// Arguments: the packed array of the request, as Lua values.
    fn args(&self, first: Value, packed: &[u8]) -> BoxResult<MultiValue> {
        let mut cur = packed;
        let n = mp::read_array_len(&mut cur).map_err(|_| BoxError::invalid_msgpack("arguments"))?;
        let mut out = Vec::with_capacity(n as usize + 1);
        out.push(first);
        for _ in 0..n {
            out.push(convert::decode(&self.lua, &mut cur).map_err(from_mlua)?);
        }
        Ok(MultiValue::from_vec(out))
    }
}

/// A Lua error value as a BoxError: a box.error object keeps its code and type; anything else
/// is ER_PROC_LUA with its string form.
fn error_value(v: &Value) -> BoxError {
    if let Some(e) = convert::box_error(v, convert::ERROR_CHAIN_MAX) {
        return e;
    }
    if let Value::Error(e) = v {
        return from_mlua((**e).clone());
    }
    let text = match v {
        Value::Nil => "nil".to_string(),
        other => other
            .to_string()
            .unwrap_or_else(|_| other.type_name().to_string()),
    };
    BoxError::proc_lua(&text)
}

/// `(true, results...)` or `(false, error)` of a `pcall`, as a reply or an error.
fn outcome(results: MultiValue, is_16: bool) -> BoxResult<Reply> {
    let mut values = results.into_iter();
    match values.next() {
        Some(Value::Boolean(true)) => encode_results(values.collect(), is_16),
        Some(Value::Boolean(false)) => Err(error_value(&values.next().unwrap_or(Value::Nil))),
        _ => Err(BoxError::proc_lua("the procedure did not return a status")),
    }
}

fn encode_results(values: Vec<Value>, is_16: bool) -> BoxResult<Reply> {
    let mut data = Vec::new();
    let mut count = 0u32;
    let encode = |data: &mut Vec<u8>, v: &Value| {
        convert::encode(data, v).map_err(|e| BoxError::proc_lua(&e.0))
    };
    if !is_16 {
        for v in &values {
            encode(&mut data, v)?;
            count += 1;
        }
        return Ok(Reply::Data { count, data });
    }
    // CALL_16: every result is a tuple; a lone table of tuples is the list of tuples.
    if let [Value::Table(t)] = values.as_slice() {
        let first: Value = t.raw_get(1).unwrap_or(Value::Nil);
        if is_tuple_like(&first) {
            for item in t.sequence_values::<Value>() {
                let item = item.map_err(from_mlua)?;
                count += wrap_16(&mut data, &item, encode)?;
            }
            return Ok(Reply::Data { count, data });
        }
    }
    for v in &values {
        count += wrap_16(&mut data, v, encode)?;
    }
    Ok(Reply::Data { count, data })
}

fn is_tuple_like(v: &Value) -> bool {
    match v {
        Value::Table(_) => true,
        Value::UserData(_) => crate::tuple::is_tuple(v),
        _ => false,
    }
}

fn wrap_16(
    data: &mut Vec<u8>,
    v: &Value,
    encode: impl Fn(&mut Vec<u8>, &Value) -> BoxResult<()>,
) -> BoxResult<u32> {
    let is_array = match v {
        Value::UserData(_) => true,
        Value::Table(_) => {
            let mut probe = Vec::new();
            encode(&mut probe, v)?;
            matches!(probe.first(), Some(0x90..=0x9f | 0xdc | 0xdd))
        }
        _ => false,
    };
    if !is_array {
        mp::write_array_len(data, 1);
    }
    encode(data, v)?;
    Ok(1)
}

impl ProcRuntime for LuaRuntime {
    fn call(
        &self,
        tx: TxRef,
        ctx: &ProcCtx,
        name: &str,
        args: &[u8],
        is_16: bool,
    ) -> BoxResult<Reply> {
        // Access is checked before the function is looked up, as in Tarantool. A `setuid`
        // function in `_func` runs with its owner's rights (the session user stays).
        let (func, version) = tx.with(|t| {
            let func = self.find_func(&t.db, name);
            spindle_box::call::check_func_access(&mut t.db, ctx.user, name, func)
                .map(|f| (f, t.db.schema_version()))
        })?;
        self.catch_up(version);
        let euid = func.filter(|f| f.setuid).map_or(ctx.user, |f| f.owner);
        let reply = self.run_request(tx, ctx, euid, (&self.call, name), args, is_16);
        crate::fiber::run_ready();
        reply
    }

    fn eval(&self, tx: TxRef, ctx: &ProcCtx, expr: &str, args: &[u8]) -> BoxResult<Reply> {
        let version = tx.with(|t| {
            t.db.check_universe(ctx.user, PRIV_X)
                .map(|()| t.db.schema_version())
        })?;
        self.catch_up(version);
        let reply = self.run_request(tx, ctx, ctx.user, (&self.eval, expr), args, false);
        crate::fiber::run_ready();
        reply
    }

    fn dml(&self, tx: TxRef, ctx: &ProcCtx, job: &DmlJob) -> BoxResult<Reply> {
        let (f, args) = crate::triggers::dml_call(&self.lua, job)?;
        let reply = self
            .run(tx, ctx, &f, args)
            .and_then(|r| crate::triggers::dml_reply(r, error_value));
        crate::fiber::run_ready();
        reply
    }
}

/// A request starts: inside its stream's open transaction, if it has one.
fn enter_txn(tx: TxRef, ctx: &ProcCtx) {
    if ctx.in_txn {
        crate::txn::begin_in_stream();
    } else if ctx.stream != 0 && txn_cfg::mvcc() {
        let has_txn = tx.with(|t| t.stream_txns.has_mvcc(ctx.route, ctx.stream));
        crate::txn::enter_mvcc_stream(ctx.route, ctx.stream, has_txn);
    }
}

/// A request returned: outside a stream an open transaction fails it (ER_FUNCTION_TX_ACTIVE);
/// in a stream the transaction is the stream's (an error only past the transaction limits).
fn finish_txn(tx: TxRef, ctx: &ProcCtx) -> BoxResult<()> {
    if ctx.stream == 0 {
        return crate::txn::finish();
    }
    let end = crate::txn::finish_in_stream();
    tx.with(|t| {
        // A connection closed while the procedure ran has had its transactions dropped:
        // what this one left goes with them.
        if t.sessions.get(ctx.route).is_none() {
            return Ok(());
        }
        t.stream_txns.after_proc(ctx.route, ctx.stream, end)
    })
}
