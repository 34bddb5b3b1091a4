//! The one Lua state of the TX thread and the `ProcRuntime` that runs CALL and EVAL in it.
//! Each request gets a Lua thread of its own, run in its pool fiber; it parks only in raw C
//! functions (`api::wait`), so other requests' fibers run Lua meanwhile.

use mlua::{Function, Lua, MultiValue, Value};
use spindle_box::access::PRIV_X;
use spindle_box::Reply;
use spindle_fiber::assert_tx_thread;
use spindle_proto::mp;
use spindle_tx::procs::{ProcCtx, ProcRuntime};
use spindle_tx::TxRef;
use spindle_types::error::code;
use spindle_types::{BoxError, BoxResult, ErrorKind};

use crate::context::{from_mlua, Callers};
use crate::convert::{self, LuaTuple};

const PRELUDE: &str = include_str!("box.lua");

pub struct LuaRuntime {
    lua: Lua,
    callers: Callers,
    /// `box.internal.call(name, ...)` and `box.internal.eval(expr, ...)` from the prelude: they
    /// resolve and run under `pcall` and return its results.
    call: Function,
    eval: Function,
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
    /// Tarantool), installs the box API and runs the prelude.
    pub fn new(tx: TxRef) -> mlua::Result<LuaRuntime> {
        // SAFETY: `unsafe_new` only loads the libraries `Lua::new` leaves out (`ffi`, `debug`):
        // Tarantool exposes them to Lua, and scripts use them.
        let lua = unsafe { Lua::unsafe_new() };
        let callers = Callers::default();
        lua.set_app_data(callers.clone());
        crate::api::install(&lua, tx)?;
        crate::modules::install(&lua)?;
        let null = lua
            .load("return require('ffi').cast('void *', 0)")
            .eval::<Value>()?;
        lua.set_named_registry_value("spindle.NULL", null)?;
        let internal = crate::api::internal(&lua)?;
        lua.load(PRELUDE)
            .set_name("=box.lua")
            .call::<()>(internal.clone())?;
        Ok(LuaRuntime {
            callers,
            call: internal.get("call")?,
            eval: internal.get("eval")?,
            lua,
        })
    }

    /// Runs `f(args...)` in a new Lua thread on behalf of `user`; the results of its `pcall`.
    fn run(&self, user: u32, f: &Function, args: MultiValue) -> BoxResult<MultiValue> {
        assert_tx_thread();
        let thread = self.lua.create_thread(f.clone()).map_err(from_mlua)?;
        let key = thread.to_pointer() as usize;
        self.callers.borrow_mut().insert(key, user);
        crate::fiber::enter_request();
        let result = thread.resume::<MultiValue>(args);
        self.callers.borrow_mut().remove(&key);
        crate::fiber::leave_request();
        result.map_err(from_mlua)
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
    if let Value::Table(t) = v {
        let is_box_error = t
            .metatable()
            .and_then(|m| m.raw_get::<bool>("__box_error").ok())
            .unwrap_or(false);
        if is_box_error {
            let code: u32 = t.raw_get("code").unwrap_or(code::ER_UNKNOWN);
            let message: String = t.raw_get("message").unwrap_or_default();
            let kind: String = t.raw_get("type").unwrap_or_default();
            let mut e = BoxError::new(code, message);
            if kind == "AccessDeniedError" {
                e = e.with_kind(ErrorKind::AccessDeniedError);
            }
            return e;
        }
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
        Value::UserData(ud) => ud.is::<LuaTuple>(),
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
        // Access is checked before the function is looked up, as in Tarantool.
        tx.with(|t| spindle_box::call::check_call_access(&mut t.db, ctx.user, name))?;
        let name = self.lua.create_string(name).map_err(from_mlua)?;
        let args = self.args(Value::String(name), args)?;
        let reply = self
            .run(ctx.user, &self.call, args)
            .and_then(|r| outcome(r, is_16));
        crate::fiber::run_ready();
        reply
    }

    fn eval(&self, tx: TxRef, ctx: &ProcCtx, expr: &str, args: &[u8]) -> BoxResult<Reply> {
        tx.with(|t| t.db.check_universe(ctx.user, PRIV_X))?;
        let expr = self.lua.create_string(expr).map_err(from_mlua)?;
        let args = self.args(Value::String(expr), args)?;
        let reply = self
            .run(ctx.user, &self.eval, args)
            .and_then(|r| outcome(r, false));
        crate::fiber::run_ready();
        reply
    }
}
