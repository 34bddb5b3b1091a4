//! What the `box` functions need to know about the request running them, and errors between
//! Rust and Lua: the user each live Lua thread acts for, BoxErrors raised into Lua, and Lua
//! errors read back as BoxErrors.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use mlua::Lua;
use spindle_types::BoxError;

/// Who runs each live Lua thread (keyed by the thread's address): the user whose rights
/// `box` calls check. Shared with the Lua state's app data, for the callbacks.
pub type Callers = Rc<RefCell<HashMap<usize, u32>>>;

/// The user a running `box` call acts for: the caller registered for the current thread.
pub fn current_user(lua: &Lua) -> u32 {
    let key = lua.current_thread().to_pointer() as usize;
    lua.app_data_ref::<Callers>()
        .and_then(|c| c.borrow().get(&key).copied())
        .unwrap_or(spindle_box::session::ADMIN)
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
