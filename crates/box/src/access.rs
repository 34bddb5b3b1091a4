//! Users, roles and privileges, built from `_user` and `_priv` rows, with the effective
//! privilege sets (own grants plus every role reachable through role grants) cached per user.

use hashbrown::{HashMap, HashSet};
use spindle_proto::mp::{self, Value};
use spindle_types::{BoxError, BoxResult};

pub const PRIV_R: u32 = 1;
pub const PRIV_W: u32 = 2;
pub const PRIV_X: u32 = 4;
pub const PRIV_S: u32 = 8;
pub const PRIV_U: u32 = 16;
pub const PRIV_C: u32 = 32;
pub const PRIV_D: u32 = 64;
pub const PRIV_A: u32 = 128;
/// Checked when a `_priv` row is written (grant) or deleted (revoke); never granted itself
/// except as part of the admin's "everything".
pub const PRIV_GRANT: u32 = 8192;
pub const PRIV_REVOKE: u32 = 16384;

pub const ROLE_PUBLIC: u32 = 2;
pub const ROLE_SUPER: u32 = 31;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectType {
    Universe,
    Space,
    Function,
    Role,
    User,
    Sequence,
}

impl ObjectType {
    pub fn parse(s: &[u8]) -> Option<ObjectType> {
        Some(match s {
            b"universe" => ObjectType::Universe,
            b"space" => ObjectType::Space,
            b"function" => ObjectType::Function,
            b"role" => ObjectType::Role,
            b"user" => ObjectType::User,
            b"sequence" => ObjectType::Sequence,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ObjectType::Universe => "universe",
            ObjectType::Space => "space",
            ObjectType::Function => "function",
            ObjectType::Role => "role",
            ObjectType::User => "user",
            ObjectType::Sequence => "sequence",
        }
    }
}

/// The word Tarantool puts at the start of an access-denied message for one privilege bit.
pub fn access_name(bit: u32) -> &'static str {
    match bit {
        PRIV_R => "Read",
        PRIV_W => "Write",
        PRIV_X => "Execute",
        PRIV_S => "Session",
        PRIV_U => "Usage",
        PRIV_C => "Create",
        PRIV_D => "Drop",
        PRIV_A => "Alter",
        PRIV_GRANT => "Grant",
        PRIV_REVOKE => "Revoke",
        _ => "Access",
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: u32,
    pub owner: u32,
    pub name: String,
    pub is_role: bool,
    /// SHA1(SHA1(password)); None for a user without a password.
    pub hash2: Option<[u8; 20]>,
}

/// The object id of a grant on every object of a type (`_priv` object id '').
pub const ANY_OBJECT: u32 = u32::MAX;

/// The object a DDL change is about, as `check_ddl` needs it.
#[derive(Clone, Copy, Debug)]
pub struct DdlObject<'a> {
    pub object_type: ObjectType,
    pub id: u32,
    pub name: &'a str,
    pub owner: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Grant {
    pub grantee: u32,
    pub object_type: ObjectType,
    pub object_id: u32,
}

/// Privileges a user holds once roles are resolved.
#[derive(Clone, Debug, Default)]
pub struct Effective {
    pub universe: u32,
    pub objects: HashMap<(ObjectType, u32), u32>,
}

impl Effective {
    pub fn on(&self, object_type: ObjectType, object_id: u32) -> u32 {
        self.objects
            .get(&(object_type, object_id))
            .copied()
            .unwrap_or(0)
    }
}

#[derive(Default)]
pub struct Users {
    by_id: HashMap<u32, User>,
    grants: HashMap<Grant, u32>,
    cache: HashMap<u32, Effective>,
}

impl Users {
    pub fn get(&self, id: u32) -> Option<&User> {
        self.by_id.get(&id)
    }

    pub fn by_name(&self, name: &str) -> Option<&User> {
        self.by_id.values().find(|u| u.name == name)
    }

    pub fn name_of(&self, id: u32) -> String {
        self.by_id
            .get(&id)
            .map_or_else(|| id.to_string(), |u| u.name.clone())
    }

    /// Applies a change of a `_user` row.
    pub fn on_user(&mut self, old: Option<&[u8]>, new: Option<&[u8]>) -> BoxResult<()> {
        if let Some(new) = new {
            let user = parse_user(new)?;
            self.by_id.insert(user.id, user);
        } else if let Some(old) = old {
            let user = parse_user(old)?;
            self.by_id.remove(&user.id);
        }
        self.cache.clear();
        Ok(())
    }

    /// Applies a change of a `_priv` row.
    pub fn on_priv(&mut self, old: Option<&[u8]>, new: Option<&[u8]>) -> BoxResult<()> {
        if let Some(old) = old {
            let (grant, _) = parse_priv(old)?;
            self.grants.remove(&grant);
        }
        if let Some(new) = new {
            let (grant, bits) = parse_priv(new)?;
            if bits == 0 {
                self.grants.remove(&grant);
            } else {
                self.grants.insert(grant, bits);
            }
        }
        self.cache.clear();
        Ok(())
    }

    /// Effective privileges of `user`, resolving role grants transitively.
    pub fn effective(&mut self, user: u32) -> &Effective {
        let grants = &self.grants;
        self.cache
            .entry(user)
            .or_insert_with(|| compute(grants, user))
    }

    /// The role ids a user has (directly or through other roles).
    pub fn has_role(&mut self, user: u32, role: u32) -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![user];
        while let Some(grantee) = stack.pop() {
            if grantee == role {
                return true;
            }
            if !seen.insert(grantee) {
                continue;
            }
            for (grant, bits) in &self.grants {
                if grant.grantee == grantee
                    && grant.object_type == ObjectType::Role
                    && bits & PRIV_X != 0
                {
                    stack.push(grant.object_id);
                }
            }
        }
        false
    }

    /// Checks `bit` on an object (or the universe); `owner` of the object has every right.
    pub fn check(
        &mut self,
        user: u32,
        bit: u32,
        object_type: ObjectType,
        object_id: u32,
        object_name: &str,
        owner: Option<u32>,
    ) -> BoxResult<()> {
        if owner == Some(user) {
            return Ok(());
        }
        let eff = self.effective(user);
        if eff.universe & bit != 0
            || eff.on(object_type, object_id) & bit != 0
            || eff.on(object_type, ANY_OBJECT) & bit != 0
        {
            return Ok(());
        }
        let name = self.name_of(user);
        Err(BoxError::access_denied(
            access_name(bit),
            object_type.name(),
            object_name,
            &name,
        ))
    }

    /// The check Tarantool 2.6 makes before a DDL change (`access_check_ddl`): `bit` (create,
    /// drop, alter, grant or revoke) and usage on the universe, else on every object of the
    /// type; the object's owner (and the admin) needs neither unless creating or lacking
    /// usage; else `bit` on the object itself.
    pub fn check_ddl(&mut self, user: u32, bit: u32, object: DdlObject<'_>) -> BoxResult<()> {
        let eff = self.effective(user);
        let mut missing = (PRIV_U | bit) & !eff.universe;
        if missing == 0 {
            return Ok(());
        }
        missing &= !eff.on(object.object_type, ANY_OBJECT);
        let is_owner = object.owner == user || user == crate::session::ADMIN;
        if missing == 0 || (is_owner && missing & (PRIV_U | PRIV_C) == 0) {
            return Ok(());
        }
        // Usage is granted on the universe only.
        if missing & PRIV_U == 0 {
            missing &= !eff.on(object.object_type, object.id);
            if missing == 0 {
                return Ok(());
            }
        }
        let name = self.name_of(user);
        Err(if missing & PRIV_U != 0 {
            BoxError::access_denied(access_name(PRIV_U), "universe", "", &name)
        } else {
            BoxError::access_denied(
                access_name(missing),
                object.object_type.name(),
                object.name,
                &name,
            )
        })
    }

    /// Session and usage checks every authenticated request must pass.
    pub fn check_universe(&mut self, user: u32, bit: u32) -> BoxResult<()> {
        self.check(user, bit, ObjectType::Universe, 0, "", None)
    }
}

fn field_uint(cur: &mut &[u8]) -> BoxResult<u32> {
    match mp::read_value(cur) {
        Ok(Value::Uint(v)) => u32::try_from(v).map_err(|_| bad_row()),
        _ => Err(bad_row()),
    }
}

fn field_str<'a>(cur: &mut &'a [u8]) -> BoxResult<&'a [u8]> {
    mp::read_str(cur).map_err(|_| bad_row())
}

fn bad_row() -> BoxError {
    BoxError::illegal_params("malformed system space tuple")
}

/// `_user` row: [id, owner, name, type, auth, ...].
pub fn parse_user(tuple: &[u8]) -> BoxResult<User> {
    let mut cur = tuple;
    let count = mp::read_array_len(&mut cur).map_err(|_| bad_row())?;
    if count < 4 {
        return Err(bad_row());
    }
    let id = field_uint(&mut cur)?;
    let owner = field_uint(&mut cur)?;
    let name = String::from_utf8_lossy(field_str(&mut cur)?).into_owned();
    let is_role = field_str(&mut cur)? == b"role";
    let hash2 = if count >= 5 {
        parse_auth(&mut cur)?
    } else {
        None
    };
    Ok(User {
        id,
        owner,
        name,
        is_role,
        hash2,
    })
}

fn parse_auth(cur: &mut &[u8]) -> BoxResult<Option<[u8; 20]>> {
    let Ok(entries) = mp::read_map_len(cur) else {
        return Ok(None);
    };
    let mut hash = None;
    for _ in 0..entries {
        let key = mp::read_str(cur).map_err(|_| bad_row())?;
        let value = mp::take_value(cur).map_err(|_| bad_row())?;
        if key == b"chap-sha1" {
            let mut v = value;
            let text = mp::read_str(&mut v).map_err(|_| bad_row())?;
            hash = std::str::from_utf8(text)
                .ok()
                .and_then(spindle_proto::auth::decode_hash2_base64);
        }
    }
    Ok(hash)
}

/// `_priv` row: [grantor, grantee, object_type, object_id, privilege].
pub fn parse_priv(tuple: &[u8]) -> BoxResult<(Grant, u32)> {
    let mut cur = tuple;
    let count = mp::read_array_len(&mut cur).map_err(|_| bad_row())?;
    if count < 5 {
        return Err(bad_row());
    }
    let _grantor = field_uint(&mut cur)?;
    let grantee = field_uint(&mut cur)?;
    let type_name = field_str(&mut cur)?;
    let object_type = ObjectType::parse(type_name)
        .ok_or_else(|| BoxError::unknown_schema_object(&String::from_utf8_lossy(type_name)))?;
    let object_id = match mp::read_value(&mut cur).map_err(|_| bad_row())? {
        Value::Uint(v) => u32::try_from(v).map_err(|_| bad_row())?,
        // Tarantool stores '' (or nil) as the universe object id in some versions.
        // '' on another type: every object of that type.
        Value::Str(_) | Value::Nil if object_type == ObjectType::Universe => 0,
        Value::Str(_) | Value::Nil => ANY_OBJECT,
        _ => return Err(bad_row()),
    };
    let bits = field_uint(&mut cur)?;
    Ok((
        Grant {
            grantee,
            object_type,
            object_id,
        },
        bits,
    ))
}

/// The rights `user` has, directly and through its roles.
fn compute(grants: &HashMap<Grant, u32>, user: u32) -> Effective {
    let mut seen = HashSet::new();
    let mut stack = vec![user];
    let mut eff = Effective::default();
    while let Some(grantee) = stack.pop() {
        if !seen.insert(grantee) {
            continue;
        }
        for (grant, bits) in grants.iter().filter(|(g, _)| g.grantee == grantee) {
            match grant.object_type {
                ObjectType::Universe => eff.universe |= bits,
                ObjectType::Role if bits & PRIV_X != 0 => stack.push(grant.object_id),
                t => *eff.objects.entry((t, grant.object_id)).or_default() |= bits,
            }
        }
    }
    eff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &v).unwrap();
        out
    }

    fn priv_row(grantee: u32, t: &str, id: u32, bits: u32) -> Vec<u8> {
        enc(rmpv::Value::Array(vec![
            1.into(),
            grantee.into(),
            t.into(),
            id.into(),
            bits.into(),
        ]))
    }

    fn user_row(id: u32, name: &str) -> Vec<u8> {
        enc(rmpv::Value::Array(vec![
            id.into(),
            1.into(),
            name.into(),
            "user".into(),
        ]))
    }

    fn space(id: u32, owner: u32) -> DdlObject<'static> {
        DdlObject {
            object_type: ObjectType::Space,
            id,
            name: "s",
            owner,
        }
    }

    fn message(r: BoxResult<()>) -> String {
        r.map_or_else(|e| e.message, |()| "ok".into())
    }

    /// The outcomes Tarantool 2.6 gives the same grants (tests/test_privileges.py).
    #[test]
    fn ddl_needs_the_right_on_universe_type_or_object_or_ownership() {
        let mut users = Users::default();
        users.on_user(None, Some(&user_row(32, "u"))).unwrap();
        let usage = priv_row(32, "universe", 0, PRIV_S | PRIV_U);
        users.on_priv(None, Some(&usage)).unwrap();
        // An owner drops and alters its own objects, but creating needs the create right.
        assert_eq!(message(users.check_ddl(32, PRIV_D, space(600, 32))), "ok");
        assert_eq!(message(users.check_ddl(32, PRIV_A, space(600, 32))), "ok");
        assert_eq!(
            message(users.check_ddl(32, PRIV_C, space(600, 32))),
            "Create access to space 's' is denied for user 'u'"
        );
        assert_eq!(
            message(users.check_ddl(32, PRIV_D, space(601, 1))),
            "Drop access to space 's' is denied for user 'u'"
        );
        // On every space of the type, or on that one space.
        users
            .on_priv(None, Some(&priv_row(32, "space", ANY_OBJECT, PRIV_C)))
            .unwrap();
        users
            .on_priv(None, Some(&priv_row(32, "space", 601, PRIV_D)))
            .unwrap();
        assert_eq!(message(users.check_ddl(32, PRIV_C, space(600, 32))), "ok");
        assert_eq!(message(users.check_ddl(32, PRIV_D, space(601, 1))), "ok");
        assert!(users.check_ddl(32, PRIV_D, space(602, 1)).is_err());
        // Without usage even an owner is refused, about the universe.
        users.on_priv(Some(&usage), None).unwrap();
        assert_eq!(
            message(users.check_ddl(32, PRIV_D, space(600, 32))),
            "Usage access to universe '' is denied for user 'u'"
        );
    }

    #[test]
    fn roles_are_resolved_transitively() {
        let mut users = Users::default();
        users
            .on_priv(None, Some(&priv_row(0, "role", 2, PRIV_X)))
            .unwrap();
        users
            .on_priv(None, Some(&priv_row(2, "space", 281, PRIV_R)))
            .unwrap();
        users
            .on_priv(None, Some(&priv_row(0, "universe", 0, PRIV_S | PRIV_U)))
            .unwrap();
        assert!(users
            .check(0, PRIV_R, ObjectType::Space, 281, "_vspace", None)
            .is_ok());
        let err = users
            .check(0, PRIV_R, ObjectType::Space, 512, "test", None)
            .unwrap_err();
        assert_eq!(
            err.message,
            "Read access to space 'test' is denied for user '0'"
        );
        assert!(users.check_universe(0, PRIV_S).is_ok());
        assert!(users.has_role(0, 2));
        users
            .on_priv(Some(&priv_row(0, "role", 2, PRIV_X)), None)
            .unwrap();
        assert!(users
            .check(0, PRIV_R, ObjectType::Space, 281, "_vspace", None)
            .is_err());
    }
}
