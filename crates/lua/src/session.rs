//! `box.session` and `box.info` from Rust: which session each fiber serves (a
//! binary connection's, the console's, or none for background fibers), the user it acts as,
//! and what the instance reports about itself.

use std::time::Instant;

use mlua::{Lua, Table, Value};

pub use crate::context::SessionInfo;
use crate::context::{current_user, fiber_ctx, set_fiber_ctx, FiberCtx};

struct Started(Instant);

pub fn install(lua: &Lua, internal: &Table) -> mlua::Result<()> {
    lua.set_app_data(Started(Instant::now()));
    internal.set("session", lua.create_function(session)?)?;
    internal.set("set_user", lua.create_function(set_user)?)?;
    internal.set("user_lookup", lua.create_function(user_lookup)?)?;
    internal.set("info", lua.create_function(info)?)?;
    internal.set("snapshot", lua.create_function(snapshot)?)?;
    internal.set("push", lua.create_function(push)?)?;
    internal.set("tuple_new", lua.create_function(tuple_new)?)?;
    internal.set("is_tuple", lua.create_function(is_tuple)?)?;
    internal.set("tuple_update", lua.create_function(tuple_update)?)?;
    Ok(())
}

fn this() -> Option<SessionInfo> {
    fiber_ctx().and_then(|c| c.session)
}

/// `id, uid, euid, type, sync` of the running thread's session (a background session for
/// threads without one: init script, fibers).
fn session(lua: &Lua, (): ()) -> mlua::Result<(u64, u32, u32, &'static str, u64)> {
    let euid = current_user(lua);
    Ok(match this() {
        Some(s) => (s.id, s.uid, euid, s.kind, s.sync),
        None => (0, euid, euid, "background", 0),
    })
}

/// Makes `uid` the running thread's user: effective and session (`box.session.su`). Returns
/// the previous pair, for `su(user, fn)` to restore.
fn set_user(lua: &Lua, (uid, session_uid): (u32, Option<u32>)) -> mlua::Result<(u32, u32)> {
    let old_euid = current_user(lua);
    let mut session = this();
    let old_uid = session.map_or(old_euid, |s| s.uid);
    let new_uid = session_uid.unwrap_or(uid);
    if let Some(s) = session.as_mut() {
        s.uid = new_uid;
        if let (Some(route), Ok(tx)) = (s.route, crate::state::tx()) {
            tx.with(|t| {
                if let Some(session) = t.sessions.get_mut(route) {
                    session.user = new_uid;
                }
            });
        }
    }
    set_fiber_ctx(Some(FiberCtx { euid: uid, session }));
    Ok((old_euid, old_uid))
}

/// A user or role by id or name: `id, name, type` or nothing.
fn user_lookup(
    _: &Lua,
    key: Value,
) -> mlua::Result<(Option<u32>, Option<String>, Option<&'static str>)> {
    let tx = crate::state::tx()?;
    let found = tx.with(|t| {
        let users = t.db.users();
        let user = match &key {
            Value::Integer(i) => u32::try_from(*i).ok().and_then(|id| users.get(id)),
            Value::Number(n) => users.get(*n as u32),
            Value::String(s) => users.by_name(&s.to_string_lossy()),
            _ => None,
        }?;
        let kind = if user.is_role { "role" } else { "user" };
        Some((user.id, user.name.clone(), kind))
    });
    Ok(match found {
        Some((id, name, kind)) => (Some(id), Some(name), Some(kind)),
        None => (None, None, None),
    })
}

/// The fields of `box.info` that come from the database.
fn info(lua: &Lua, (): ()) -> mlua::Result<Table> {
    let tx = crate::state::tx()?;
    let (id, uuid, ro, vclock, cluster) = tx.with(|t| {
        (
            t.db.replica_id(),
            t.db.instance_uuid().to_string(),
            t.db.read_only(),
            t.db.vclock(),
            t.db.cluster_uuid(),
        )
    });
    let out = lua.create_table()?;
    out.set("id", id)?;
    out.set("uuid", uuid)?;
    out.set("ro", ro)?;
    out.set("cluster_uuid", cluster)?;
    out.set("pid", std::process::id())?;
    let started = lua.app_data_ref::<Started>().map(|s| s.0);
    out.set("uptime", started.map_or(0, |s| s.elapsed().as_secs()))?;
    let clock = lua.create_table()?;
    let mut signature = 0u64;
    let mut own = 0u64;
    for (replica, lsn) in vclock.iter() {
        clock.raw_set(replica, lsn)?;
        signature += lsn;
        if replica == id {
            own = lsn;
        }
    }
    out.set("vclock", clock)?;
    out.set("signature", signature)?;
    out.set("lsn", own)?;
    Ok(out)
}

/// `box.snapshot()`, first half: starts a checkpoint (or joins the one running) and returns
/// how many had finished before, for `wait_snapshot`.
fn snapshot(_: &Lua, (): ()) -> mlua::Result<u64> {
    let tx = crate::state::tx()?;
    let (started, done) = tx.with(|t| (t.begin_checkpoint(), t.checkpoints.done));
    if !started {
        return Err(crate::context::lua_error(spindle_types::BoxError::new(
            spindle_types::error::code::ER_CHECKPOINT_IN_PROGRESS,
            "Snapshot is already in progress",
        )));
    }
    Ok(done)
}

/// `box.tuple.new{...}`: a tuple not in any space.
fn tuple_new(lua: &Lua, fields: Value) -> mlua::Result<Value> {
    let mut data = Vec::new();
    crate::convert::encode(&mut data, &fields).map_err(|e| mlua::Error::runtime(e.0))?;
    if !matches!(data.first(), Some(0x90..=0x9f | 0xdc | 0xdd)) {
        return Err(crate::context::lua_error(
            spindle_types::BoxError::tuple_not_array(),
        ));
    }
    let tuple = spindle_memtx::tuple::Tuple::from_vec(data).map_err(crate::context::lua_error)?;
    crate::tuple::push(lua, Some(tuple))
}

fn is_tuple(_: &Lua, v: Value) -> mlua::Result<bool> {
    Ok(crate::tuple::is_tuple(&v))
}

/// The client of `route` announced ERROR_EXTENSION in its ID request (only possible with a
/// 2.10+ compat version): box.error values in its results and pushes go as MP_ERROR.
pub(crate) fn wants_error_ext(tx: spindle_tx::TxRef, route: spindle_proto::route::Route) -> bool {
    use spindle_types::iproto::feature::ERROR_EXTENSION;
    let features = tx.with(|t| t.sessions.get(route).map_or(0, |s| s.features));
    features & (1 << ERROR_EXTENSION) != 0
}

/// `box.session.push(value)` on a binary session: an IPROTO_CHUNK with the request's sync,
/// ahead of its reply. Returns the session kind for the sessions that cannot push.
fn push(_: &Lua, value: Value) -> mlua::Result<Option<&'static str>> {
    let Some(SessionInfo {
        route: Some(route),
        sync,
        ..
    }) = this()
    else {
        return Ok(Some(this().map_or("background", |s| s.kind)));
    };
    let tx = crate::state::tx()?;
    let mut data = Vec::new();
    {
        let _ext = crate::convert::ErrorExt::set(wants_error_ext(tx, route));
        crate::convert::encode(&mut data, &value).map_err(|e| mlua::Error::runtime(e.0))?;
    }
    tx.with(|t| {
        let schema_version = t.db.schema_version();
        t.outboxes.push_chunk(route, sync, schema_version, &data);
        if !t.in_turn {
            t.outboxes.flush();
        }
    });
    Ok(None)
}

/// `t:update(ops)` / `t:upsert(ops)`: a new tuple with the operations applied (`upsert` skips
/// the ones that fail, as UPSERT does).
fn tuple_update(lua: &Lua, (t, ops, upsert): (Value, Value, bool)) -> mlua::Result<Value> {
    let Value::UserData(ud) = &t else {
        return Err(mlua::Error::runtime(
            "Usage: tuple:update({ { op, field, arg}+ })",
        ));
    };
    let Some((old, _)) = crate::tuple::of(ud) else {
        return Err(mlua::Error::runtime(
            "Usage: tuple:update({ { op, field, arg}+ })",
        ));
    };
    let mut op_bytes = Vec::new();
    crate::convert::encode(&mut op_bytes, &ops).map_err(|e| mlua::Error::runtime(e.0))?;
    let format = spindle_memtx::format::TupleFormat::default();
    let data = if upsert {
        spindle_memtx::update::check_upsert_ops(&op_bytes, 1).map_err(crate::context::lua_error)?;
        spindle_memtx::update::apply_upsert(old.data(), &op_bytes, 1, &format)
    } else {
        spindle_memtx::update::apply_update(old.data(), &op_bytes, 1, &format)
            .map_err(crate::context::lua_error)?
    };
    let tuple = spindle_memtx::tuple::Tuple::from_vec(data).map_err(crate::context::lua_error)?;
    crate::tuple::push(lua, Some(tuple))
}
