//! The `_v*` system views: reads of the underlying system space, filtered by what the
//! reading user may see (Tarantool's sysview engine). A user with read or write on the
//! universe sees everything; others see the objects they own or hold privileges on.

use spindle_memtx::tuple::Tuple;
use spindle_proto::mp::{self, Value};
use spindle_types::iproto::IteratorType;
use spindle_types::{BoxError, BoxResult};

use crate::access::{ObjectType, PRIV_R, PRIV_W};
use crate::catalog::sys;
use crate::db::Db;

/// The system space a view reads from.
pub fn base_of(view: u32) -> Option<u32> {
    Some(match view {
        277 => sys::COLLATION,
        281 => sys::SPACE,
        286 => 284,
        289 => sys::INDEX,
        297 => sys::FUNC,
        305 => sys::USER,
        313 => sys::PRIV,
        _ => return None,
    })
}

#[allow(clippy::too_many_arguments)]
pub fn select(
    db: &mut Db,
    user: u32,
    view: u32,
    index_id: u32,
    it: IteratorType,
    key: &[u8],
    offset: u32,
    limit: u32,
) -> BoxResult<Vec<Tuple>> {
    let base = base_of(view).ok_or_else(|| BoxError::no_such_space(&view.to_string()))?;
    let all = db
        .catalog
        .space(base)?
        .space
        .select(index_id, it, key, 0, u32::MAX)?;
    let everything = db.users.effective(user).universe & (PRIV_R | PRIV_W) != 0;
    let visible = all
        .into_iter()
        .filter(|t| everything || is_visible(db, user, view, t));
    Ok(visible.skip(offset as usize).take(limit as usize).collect())
}

fn uint_field(t: &Tuple, n: u32) -> Option<u32> {
    let mut cur = t.field(n)?;
    match mp::read_value(&mut cur).ok()? {
        Value::Uint(v) => u32::try_from(v).ok(),
        _ => None,
    }
}

fn is_visible(db: &mut Db, user: u32, view: u32, t: &Tuple) -> bool {
    match view {
        277 => true,
        281 => uint_field(t, 0).is_some_and(|id| space_visible(db, user, id)),
        289 => uint_field(t, 0).is_some_and(|id| space_visible(db, user, id)),
        286 => object_visible(db, user, ObjectType::Sequence, t),
        297 => object_visible(db, user, ObjectType::Function, t),
        305 => {
            let id = uint_field(t, 0);
            id == Some(user)
                || uint_field(t, 1) == Some(user)
                || id.is_some_and(|role| db.users.has_role(user, role))
        }
        313 => uint_field(t, 0) == Some(user) || uint_field(t, 1) == Some(user),
        _ => false,
    }
}

fn space_visible(db: &mut Db, user: u32, space_id: u32) -> bool {
    let owner = db.catalog.get(space_id).map(|e| e.def.owner);
    owner == Some(user) || db.users.effective(user).on(ObjectType::Space, space_id) != 0
}

/// Rows of `_sequence`/`_func`: [id, owner, ...].
fn object_visible(db: &mut Db, user: u32, object_type: ObjectType, t: &Tuple) -> bool {
    let Some(id) = uint_field(t, 0) else {
        return false;
    };
    uint_field(t, 1) == Some(user) || db.users.effective(user).on(object_type, id) != 0
}
