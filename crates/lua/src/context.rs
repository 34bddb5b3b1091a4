//! What the `box` functions need to know about the fiber running them, and errors between
//! Rust and Lua: the user a fiber acts for and the session it serves, BoxErrors raised into
//! Lua, and Lua errors read back as BoxErrors.
//!
//! Both belong to the fiber, not to a Lua thread: coroutines a request starts
//! (`coroutine.wrap`, luafun's iterators) act for the request's user, as in Tarantool.

use std::cell::Cell;

use mlua::Lua;
use spindle_proto::route::Route;
use spindle_types::BoxError;

/// The session a fiber serves.
#[derive(Clone, Copy, Debug)]
pub struct SessionInfo {
    pub id: u64,
    /// The session user (`box.session.uid()`); the effective one is `FiberCtx::euid`.
    pub uid: u32,
    pub kind: &'static str,
    pub sync: u64,
    pub route: Option<Route>,
}

/// Who a fiber running Lua acts for.
#[derive(Clone, Copy, Debug)]
pub struct FiberCtx {
    /// The user whose rights `box` calls check.
    pub euid: u32,
    /// None for background fibers (the init script, `fiber.create`'s).
    pub session: Option<SessionInfo>,
}

/// What belongs to the running may fiber: its number in the `fiber` module and its context.
struct FiberLocal {
    id: Cell<u64>,
    ctx: Cell<Option<FiberCtx>>,
}

may::coroutine_local!(static LOCAL: FiberLocal = FiberLocal {
    id: Cell::new(0),
    ctx: Cell::new(None),
});

/// The calling fiber's context; None before one was set (the init script: admin).
pub fn fiber_ctx() -> Option<FiberCtx> {
    LOCAL.with(|l| l.ctx.get())
}

/// Sets the calling fiber's context; the previous one.
pub fn set_fiber_ctx(ctx: Option<FiberCtx>) -> Option<FiberCtx> {
    LOCAL.with(|l| l.ctx.replace(ctx))
}

/// The number the `fiber` module gave the calling fiber, 0 while it has none. Lives as long
/// as the may fiber (a pooled request fiber keeps its number from one request to the next,
/// as Tarantool's pooled fibers keep their ids).
pub fn fiber_id() -> u64 {
    LOCAL.with(|l| l.id.get())
}

/// Gives the calling fiber its number (see `fiber_id`).
pub fn set_fiber_id(id: u64) {
    LOCAL.with(|l| l.id.set(id));
}

/// The user a running `box` call acts for.
pub fn current_user(_: &Lua) -> u32 {
    fiber_user()
}

/// `current_user`, for raw C functions (they have no `Lua`).
pub fn fiber_user() -> u32 {
    fiber_ctx().map_or(spindle_box::session::ADMIN, |c| c.euid)
}

/// A BoxError raised into Lua: a box.error object the prelude builds from it.
pub fn lua_error(e: BoxError) -> mlua::Error {
    mlua::Error::external(LuaBoxError(e))
}

#[derive(Debug)]
pub struct LuaBoxError(pub BoxError);

impl std::fmt::Display for LuaBoxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for LuaBoxError {}

pub(crate) fn from_mlua(e: mlua::Error) -> BoxError {
    if let Some(b) = find_box_error(&e) {
        return b;
    }
    BoxError::proc_lua(&lua_message(&e))
}

fn find_box_error(e: &mlua::Error) -> Option<BoxError> {
    match e {
        mlua::Error::ExternalError(inner) => {
            inner.downcast_ref::<LuaBoxError>().map(|b| b.0.clone())
        }
        mlua::Error::CallbackError { cause, .. } => find_box_error(cause),
        mlua::Error::WithContext { cause, .. } => find_box_error(cause),
        _ => None,
    }
}

/// The message Lua itself would show: mlua's prefixes and tracebacks removed.
fn lua_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::CallbackError { cause, .. } => lua_message(cause),
        other => other.to_string(),
    }
}
