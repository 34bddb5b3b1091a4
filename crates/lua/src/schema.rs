//! Rust helpers of `box.schema` (`schema.lua`): reading system spaces whatever the caller's
//! rights (the Lua objects of `box.space` and `box.func` describe the schema to everyone),
//! the chap-sha1 password hash `_user` stores, and TRUNCATE as one transaction.

use mlua::{Lua, MultiValue, Table, Value};
use spindle_box::access::PRIV_S;
use spindle_box::catalog::sys;
use spindle_box::{Dml, Txn};
use spindle_proto::mp;
use spindle_tx::TxRef;
use spindle_types::iproto::IteratorType;
use spindle_types::BoxError;

use crate::context::{current_user, lua_error};
use crate::convert;
use crate::state::internal;

pub fn install(lua: &Lua) -> mlua::Result<()> {
    let table = internal(lua)?;
    table.set("sys_select", lua.create_function(sys_select)?)?;
    table.set("password_hash", lua.create_function(password_hash)?)?;
    table.set("current_uid", lua.create_function(current_uid)?)?;
    table.set("truncate", lua.create_function(truncate)?)?;
    table.set("session_denied", lua.create_function(session_denied)?)?;
    table.set("read_denied", lua.create_function(read_denied)?)?;
    Ok(())
}

/// `box.internal.sys_select(space_id, index_id, key)`: the rows of a system space equal to
/// `key` (every row for an empty key), decoded to Lua tables, with no access check — and so
/// without `_user`'s password hashes.
fn sys_select(lua: &Lua, (space_id, index_id, key): (u32, u32, Value)) -> mlua::Result<Table> {
    if space_id > sys::SYSTEM_ID_MAX {
        return Err(lua_error(BoxError::illegal_params(
            "sys_select reads system spaces only",
        )));
    }
    let mut key_bytes = Vec::new();
    match &key {
        Value::Nil => mp::write_array_len(&mut key_bytes, 0),
        v => convert::encode(&mut key_bytes, v).map_err(|e| mlua::Error::runtime(e.0))?,
    }
    let it = if key_bytes == [0x90] {
        IteratorType::All
    } else {
        IteratorType::Eq
    };
    let tuples = tx()?
        .with(|t| {
            t.db.space(space_id)?
                .space
                .select(index_id, it, &key_bytes, 0, u32::MAX)
        })
        .map_err(lua_error)?;
    let rows = lua.create_table_with_capacity(tuples.len(), 0)?;
    for (i, tuple) in tuples.iter().enumerate() {
        let row = convert::decode(lua, &mut tuple.data())?;
        // Anyone may run box.schema's Lua; password hashes stay in `_user` (field 5).
        if let (sys::USER, Value::Table(t)) = (space_id, &row) {
            t.raw_set(5, Value::Nil)?;
        }
        rows.raw_set(i + 1, row)?;
    }
    Ok(rows)
}

/// `box.internal.password_hash(password)`: base64(sha1(sha1(password))), `_user`'s
/// `chap-sha1` value.
fn password_hash(_: &Lua, password: mlua::String) -> mlua::Result<String> {
    let password = password.to_str()?;
    Ok(spindle_proto::auth::hash2_base64(&password))
}

fn current_uid(lua: &Lua, (): ()) -> mlua::Result<u32> {
    Ok(current_user(lua))
}

/// `box.internal.session_denied(uid)`: why `uid` may not be switched to (it lacks session on
/// the universe), or nil. `box.session.su` checks the target, not the caller, as 2.6 does.
fn session_denied(_: &Lua, uid: u32) -> mlua::Result<Option<String>> {
    let denied = tx()?.with(|t| t.db.check_universe(uid, PRIV_S).err());
    Ok(denied.map(|e| e.message))
}

/// `box.internal.read_denied(space_id)`: why the caller may not read a system space (message,
/// object type, object name, access type), or nil: 2.6 reads `_user` and `_func` as the
/// caller to take the next id.
fn read_denied(lua: &Lua, space_id: u32) -> mlua::Result<Option<Vec<String>>> {
    let user = current_user(lua);
    let denied = tx()?.with(|t| t.db.check_read_access(user, space_id).err());
    Ok(denied.and_then(|e| {
        let a = e.access?;
        Some(vec![e.message, a.object_type, a.object_name, a.access_type])
    }))
}

/// `box.internal.truncate(space_id)` → the commit's sequence number for `wait`, or nil: bumps
/// the space's `_truncate` counter and deletes every tuple, as one transaction (spindle gives
/// `_truncate` no trigger, so the rows are deleted one by one).
fn truncate(lua: &Lua, space_id: u32) -> mlua::Result<MultiValue> {
    let user = current_user(lua);
    let seq = tx()?
        .with(|t| {
            let mut txn = Txn::new();
            let result = truncate_in(&mut t.db, user, &mut txn, space_id);
            if let Err(e) = result {
                t.db.rollback_txn(txn);
                return Err(e);
            }
            t.note_schema_change();
            let seq = t.commit_for_fiber(txn, true);
            if !t.in_turn {
                t.flush_journal();
            }
            Ok(seq)
        })
        .map_err(lua_error)?;
    Ok(MultiValue::from_vec(vec![
        seq.map_or(Value::Nil, |s| Value::Number(s as f64))
    ]))
}

fn truncate_in(
    db: &mut spindle_box::Db,
    user: u32,
    txn: &mut Txn,
    space_id: u32,
) -> Result<(), BoxError> {
    let (tuple, ops) = truncate_row(space_id);
    let pk_keys: Vec<Vec<u8>> = {
        let space = &db.space(space_id)?.space;
        match space.index(0) {
            Some(pk) => {
                let all = space.select(0, IteratorType::All, &[0x90], 0, u32::MAX)?;
                all.iter().map(|t| pk.key_def().extract_key(t)).collect()
            }
            None => Vec::new(),
        }
    };
    db.dml_as(
        user,
        txn,
        Dml::Upsert {
            space_id: sys::TRUNCATE,
            tuple: &tuple,
            ops: &ops,
            index_base: 1,
        },
    )?;
    for key in &pk_keys {
        db.dml_as(
            user,
            txn,
            Dml::Delete {
                space_id,
                index_id: 0,
                key,
            },
        )?;
    }
    Ok(())
}

/// `[space_id, 1]` and `[['+', 2, 1]]`: the upsert Tarantool makes on `_truncate`.
fn truncate_row(space_id: u32) -> (Vec<u8>, Vec<u8>) {
    let mut tuple = Vec::new();
    mp::write_array_len(&mut tuple, 2);
    mp::write_uint(&mut tuple, u64::from(space_id));
    mp::write_uint(&mut tuple, 1);
    let mut ops = Vec::new();
    mp::write_array_len(&mut ops, 1);
    mp::write_array_len(&mut ops, 3);
    mp::write_str(&mut ops, "+");
    mp::write_uint(&mut ops, 2);
    mp::write_uint(&mut ops, 1);
    (tuple, ops)
}

fn tx() -> mlua::Result<TxRef> {
    crate::state::tx()
}
