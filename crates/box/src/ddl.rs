//! Who may change the schema: the checks Tarantool 2.6 makes when a row of `_space`,
//! `_index`, `_func`, `_user` or `_priv` changes on a user's behalf (its `on_replace` triggers
//! in `alter.cc`), so they hold for box.schema calls and raw IPROTO writes alike. Replayed
//! rows (recovery, replication) are not checked.

use spindle_memtx::tuple::Tuple;
use spindle_proto::mp::{self, Value};
use spindle_types::iproto::IteratorType;
use spindle_types::{BoxError, BoxResult};

use crate::access::{
    access_name, parse_priv, parse_user, DdlObject, ObjectType, ANY_OBJECT, PRIV_A, PRIV_C, PRIV_D,
    PRIV_GRANT, PRIV_REVOKE, PRIV_X, ROLE_PUBLIC,
};
use crate::catalog::{parse_space_def, sys};
use crate::db::Db;
use crate::session::ADMIN;

/// Create, alter or drop: which of the three a row change is.
fn change_bit(old: Option<&Tuple>, new: Option<&Tuple>) -> u32 {
    match (old, new) {
        (Some(_), Some(_)) => PRIV_A,
        (None, _) => PRIV_C,
        (Some(_), None) => PRIV_D,
    }
}

impl Db {
    /// Checks that `user` may make the change `old` -> `new` of system space `space_id`.
    pub(crate) fn check_ddl(
        &mut self,
        user: u32,
        space_id: u32,
        old: Option<&Tuple>,
        new: Option<&Tuple>,
    ) -> BoxResult<()> {
        let Some(row) = new.or(old) else {
            return Ok(());
        };
        let bit = change_bit(old, new);
        if let Some(new) = new {
            self.decode_new_row(space_id, new.data(), old.is_some())?;
        }
        let old = old.map(Tuple::data);
        match space_id {
            sys::SPACE => self.check_owned_change(user, bit, ObjectType::Space, row.data(), old),
            sys::FUNC => self.check_owned_change(user, bit, ObjectType::Function, row.data(), old),
            sys::INDEX => self.check_index_change(user, bit, row),
            sys::USER => self.check_user_change(user, bit, row.data(), old),
            sys::PRIV => {
                let bit = if new.is_some() {
                    PRIV_GRANT
                } else {
                    PRIV_REVOKE
                };
                self.check_priv_change(user, bit, row.data())
            }
            _ => Ok(()),
        }
    }

    /// 2.6 decodes a new `_space` row before it checks access (an `_index` row after), so a
    /// malformed one fails with the decoding error whoever writes it.
    fn decode_new_row(&self, space_id: u32, row: &[u8], existing: bool) -> BoxResult<()> {
        match space_id {
            sys::SPACE => parse_space_def(row, existing).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// A space or a function (`[id, owner, name, ...]` rows); altering keeps the owner the
    /// object had.
    fn check_owned_change(
        &mut self,
        user: u32,
        bit: u32,
        object_type: ObjectType,
        row: &[u8],
        old: Option<&[u8]>,
    ) -> BoxResult<()> {
        let (id, owner, name) = row_head(row)?;
        let owner = match old {
            Some(old) => row_head(old)?.1,
            None => owner,
        };
        let object = DdlObject {
            object_type,
            id,
            name: &name,
            owner,
        };
        self.users.check_ddl(user, bit, object)
    }

    /// A user or a role; one that still owns objects cannot be dropped.
    fn check_user_change(
        &mut self,
        user: u32,
        bit: u32,
        row: &[u8],
        old: Option<&[u8]>,
    ) -> BoxResult<()> {
        let target = parse_user(row)?;
        let owner = match old {
            Some(old) => parse_user(old)?.owner,
            None => target.owner,
        };
        let object = DdlObject {
            object_type: if target.is_role {
                ObjectType::Role
            } else {
                ObjectType::User
            },
            id: target.id,
            name: &target.name,
            owner,
        };
        self.users.check_ddl(user, bit, object)?;
        if bit == PRIV_D && self.user_has_objects(target.id) {
            return Err(BoxError::drop_user(&target.name, "the user has objects"));
        }
        Ok(())
    }

    /// Indexes are created, altered and dropped with that right on their space.
    fn check_index_change(&mut self, user: u32, bit: u32, row: &Tuple) -> BoxResult<()> {
        let mut cur = row.data();
        mp::read_array_len(&mut cur).map_err(|_| bad_row())?;
        let space_id = field_u32(&mut cur)?;
        // A missing space is reported when the change itself is applied.
        let Ok(entry) = self.catalog.space(space_id) else {
            return Ok(());
        };
        let name = entry.def.name.clone();
        let object = DdlObject {
            object_type: ObjectType::Space,
            id: space_id,
            name: &name,
            owner: entry.def.owner,
        };
        self.users.check_ddl(user, bit, object)
    }

    /// A grant (`bit` = grant) or revoke: the grantor of the row must be allowed to give it,
    /// which only the admin may on the universe or on every object of a type, and only the
    /// object's owner (or the admin) on one object; anyone may grant `public` for execute.
    fn check_priv_change(&mut self, user: u32, bit: u32, row: &[u8]) -> BoxResult<()> {
        let grantor = priv_grantor(row)?;
        let (grant, bits) = parse_priv(row)?;
        if self.users.get(grant.grantee).is_none() {
            return Err(BoxError::no_such_user(&grant.grantee.to_string()));
        }
        let target = self.grant_target(grant.object_type, grant.object_id)?;
        let object = DdlObject {
            object_type: grant.object_type,
            id: grant.object_id,
            name: &target.name,
            owner: grantor,
        };
        self.users.check_ddl(user, bit, object)?;
        let Some(grantor_name) = self.users.get(grantor).map(|u| u.name.clone()) else {
            return Err(BoxError::no_such_user(&grantor.to_string()));
        };
        let public_execute = grant.object_type == ObjectType::Role
            && grant.object_id == ROLE_PUBLIC
            && bits == PRIV_X;
        if grantor == ADMIN || target.owner == Some(grantor) || public_execute {
            return Ok(());
        }
        Err(BoxError::access_denied(
            access_name(bit),
            grant.object_type.name(),
            &target.name,
            &grantor_name,
        ))
    }

    /// The name and owner of what a `_priv` row is about (no owner: the universe or every
    /// object of a type, which only the admin may grant).
    fn grant_target(&self, object_type: ObjectType, id: u32) -> BoxResult<GrantTarget> {
        let none = GrantTarget {
            name: String::new(),
            owner: None,
        };
        if object_type == ObjectType::Universe || id == ANY_OBJECT {
            return Ok(none);
        }
        let target = match object_type {
            ObjectType::Space => self.catalog.space(id).ok().map(|e| GrantTarget {
                name: e.def.name.clone(),
                owner: Some(e.def.owner),
            }),
            ObjectType::Function => self.func_by_id(id),
            ObjectType::User | ObjectType::Role => {
                let want_role = object_type == ObjectType::Role;
                self.users
                    .get(id)
                    .filter(|u| u.is_role == want_role)
                    .map(|u| GrantTarget {
                        name: u.name.clone(),
                        owner: Some(u.owner),
                    })
            }
            ObjectType::Sequence | ObjectType::Universe => Some(none),
        };
        target.ok_or_else(|| {
            let id = id.to_string();
            match object_type {
                ObjectType::Space => BoxError::no_such_space(&id),
                ObjectType::Function => BoxError::no_such_function(&id),
                ObjectType::Role => BoxError::no_such_role(&id),
                _ => BoxError::no_such_user(&id),
            }
        })
    }

    /// Whether a user or role still owns spaces or functions, holds or gave privileges, or
    /// (a role) is granted to someone: box.schema removes those first, a raw delete of its
    /// `_user` row is refused.
    fn user_has_objects(&self, uid: u32) -> bool {
        let owns_space = self
            .catalog
            .ids()
            .into_iter()
            .filter_map(|id| self.catalog.get(id))
            .any(|e| e.def.owner == uid);
        owns_space
            || self.system_rows(sys::FUNC, |row| row_head(row).is_ok_and(|h| h.1 == uid))
            || self.system_rows(sys::PRIV, |row| {
                let Ok((grant, _)) = parse_priv(row) else {
                    return false;
                };
                let granted_role = grant.object_type == ObjectType::Role && grant.object_id == uid;
                priv_grantor(row) == Ok(uid) || grant.grantee == uid || granted_role
            })
    }

    /// Whether any row of a system space matches.
    fn system_rows(&self, space_id: u32, matches: impl Fn(&[u8]) -> bool) -> bool {
        let Ok(entry) = self.catalog.space(space_id) else {
            return false;
        };
        let rows = entry
            .space
            .select(0, IteratorType::All, &[0x90], 0, u32::MAX)
            .unwrap_or_default();
        rows.iter().any(|t| matches(t.data()))
    }

    fn func_by_id(&self, id: u32) -> Option<GrantTarget> {
        let entry = self.catalog.space(sys::FUNC).ok()?;
        let mut key = Vec::with_capacity(8);
        mp::write_array_len(&mut key, 1);
        mp::write_uint(&mut key, u64::from(id));
        let found = entry.space.select(0, IteratorType::Eq, &key, 0, 1).ok()?;
        let (_, owner, name) = row_head(found.first()?.data()).ok()?;
        Some(GrantTarget {
            name,
            owner: Some(owner),
        })
    }
}

struct GrantTarget {
    name: String,
    owner: Option<u32>,
}

/// `[id, owner, name, ...]`: the head `_space`, `_func` and `_user` rows share.
fn row_head(tuple: &[u8]) -> BoxResult<(u32, u32, String)> {
    let mut cur = tuple;
    if mp::read_array_len(&mut cur).map_err(|_| bad_row())? < 3 {
        return Err(bad_row());
    }
    let id = field_u32(&mut cur)?;
    let owner = field_u32(&mut cur)?;
    let name = mp::read_str(&mut cur).map_err(|_| bad_row())?;
    Ok((id, owner, String::from_utf8_lossy(name).into_owned()))
}

fn priv_grantor(tuple: &[u8]) -> BoxResult<u32> {
    let mut cur = tuple;
    mp::read_array_len(&mut cur).map_err(|_| bad_row())?;
    field_u32(&mut cur)
}

fn field_u32(cur: &mut &[u8]) -> BoxResult<u32> {
    match mp::read_value(cur) {
        Ok(Value::Uint(v)) => u32::try_from(v).map_err(|_| bad_row()),
        _ => Err(bad_row()),
    }
}

fn bad_row() -> BoxError {
    BoxError::illegal_params("malformed system space tuple")
}
