//! One data change (`Dml`) applied to memory: the tuple it returns, the undo record that
//! rolls it back and the row to log — its body rewritten the way Tarantool logs it (DELETE
//! and UPDATE by primary key). Requests, recovery and appliers all apply through here;
//! replayed rows skip validation and logging. Also the codec of logged DML bodies.

use spindle_memtx::tuple::Tuple;
use spindle_proto::mp;
use spindle_types::iproto::{key, request};
use spindle_types::{BoxError, BoxResult};
use spindle_xlog::{Row, RowHeader};

use crate::catalog::sys;
use crate::db::Db;

/// One data change, decoded from a request or a logged row.
#[derive(Clone, Copy, Debug)]
pub enum Dml<'a> {
    Insert {
        space_id: u32,
        tuple: &'a [u8],
    },
    Replace {
        space_id: u32,
        tuple: &'a [u8],
    },
    Delete {
        space_id: u32,
        index_id: u32,
        key: &'a [u8],
    },
    Update {
        space_id: u32,
        index_id: u32,
        key: &'a [u8],
        ops: &'a [u8],
        index_base: u32,
    },
    Upsert {
        space_id: u32,
        tuple: &'a [u8],
        ops: &'a [u8],
        index_base: u32,
    },
}

impl Dml<'_> {
    pub fn space_id(&self) -> u32 {
        match *self {
            Dml::Insert { space_id, .. }
            | Dml::Replace { space_id, .. }
            | Dml::Delete { space_id, .. }
            | Dml::Update { space_id, .. }
            | Dml::Upsert { space_id, .. } => space_id,
        }
    }
}

/// How to undo one applied change.
#[derive(Debug)]
pub struct Undo {
    space_id: u32,
    old: Option<Tuple>,
    new: Option<Tuple>,
}

impl Undo {
    /// The tuple the change replaced and the one it put.
    pub fn tuples(&self) -> (Option<Tuple>, Option<Tuple>) {
        (self.old.clone(), self.new.clone())
    }

    pub fn space_id(&self) -> u32 {
        self.space_id
    }
}

impl Db {
    /// Applies one change to memory (and, for system spaces, to the schema). Errors leave
    /// everything unchanged.
    pub fn apply_dml(&mut self, dml: Dml<'_>) -> BoxResult<Applied> {
        self.apply_change(dml, true, None)
    }

    /// `apply_dml` on behalf of `user`: a schema change must also pass the DDL checks
    /// (`ddl.rs`).
    pub fn apply_dml_as(&mut self, user: u32, dml: Dml<'_>) -> BoxResult<Applied> {
        self.apply_change(dml, true, Some(user))
    }

    /// Applies a row replayed from the log (recovery, replication): its body was validated
    /// when it was decoded, and no row is produced to log again.
    pub fn replay_dml(&mut self, dml: Dml<'_>) -> BoxResult<()> {
        self.apply_change(dml, false, None).map(|_| ())
    }

    /// Replays a logged INSERT or REPLACE whose tuple was already built (on a decoder
    /// thread): user spaces skip everything a request needs (undo, result, log body).
    pub fn replay_tuple(&mut self, insert: bool, space_id: u32, tuple: Tuple) -> BoxResult<()> {
        if space_id <= sys::SYSTEM_ID_MAX {
            let tuple = tuple.data();
            return self.replay_dml(if insert {
                Dml::Insert { space_id, tuple }
            } else {
                Dml::Replace { space_id, tuple }
            });
        }
        let space = &mut self.catalog.space_mut(space_id)?.space;
        if insert {
            space.insert(tuple)?;
        } else {
            space.replace(tuple)?;
        }
        Ok(())
    }

    /// Replays an INSERT or REPLACE whose tuple a decoder thread checked against the space's
    /// `ReplayPrep` (taken under the current schema) and hinted.
    pub fn replay_prepared(
        &mut self,
        insert: bool,
        space_id: u32,
        tuple: Tuple,
        hint: (u64, bool),
    ) -> BoxResult<()> {
        let space = &mut self.catalog.space_mut(space_id)?.space;
        space.insert_prepared(tuple, hint, !insert).map(|_| ())
    }

    fn apply_change(&mut self, dml: Dml<'_>, log: bool, user: Option<u32>) -> BoxResult<Applied> {
        let space_id = dml.space_id();
        let entry = self.catalog.space_mut(space_id)?;
        // Temporary spaces are never logged; local ones are, in their own group (and LSN
        // sequence, see `assign_lsns`), and stay off the replication stream.
        let (temporary, group_id) = (entry.def.temporary, entry.def.group_id);
        let space = &mut entry.space;
        // A replayed row's body was validated when it was decoded from the log; a request's
        // tuple is validated here.
        let make_tuple = |t: &[u8]| {
            if log {
                Tuple::new(t)
            } else {
                Tuple::from_validated(t)
            }
        };
        let (change, log_body) = match dml {
            Dml::Insert { tuple, .. } => (
                space.insert(make_tuple(tuple)?)?,
                if log {
                    body_tuple(space_id, tuple)
                } else {
                    Vec::new()
                },
            ),
            Dml::Replace { tuple, .. } => (
                space.replace(make_tuple(tuple)?)?,
                if log {
                    body_tuple(space_id, tuple)
                } else {
                    Vec::new()
                },
            ),
            Dml::Delete { index_id, key, .. } => {
                let change = space.delete(index_id, key)?;
                let body = match &change.old {
                    Some(t) => body_key(space_id, None, &space.primary()?.key_def().extract_key(t)),
                    None => body_key(space_id, Some(index_id), key),
                };
                (change, body)
            }
            Dml::Update {
                index_id,
                key,
                ops,
                index_base,
                ..
            } => {
                let change = space.update(index_id, key, ops, index_base)?;
                let body = match &change.old {
                    Some(t) => {
                        let key = space.primary()?.key_def().extract_key(t);
                        body_update(space_id, index_base, &key, ops)
                    }
                    None => body_update(space_id, index_base, key, ops),
                };
                (change, body)
            }
            Dml::Upsert {
                tuple,
                ops,
                index_base,
                ..
            } => {
                let change = space.upsert(make_tuple(tuple)?, ops, index_base)?;
                (change, body_upsert(space_id, index_base, tuple, ops))
            }
        };
        let (old, new) = (change.old, change.new);
        let checked = match user {
            Some(user) if space_id <= sys::SYSTEM_ID_MAX => {
                self.check_ddl(user, space_id, old.as_ref(), new.as_ref())
            }
            _ => Ok(()),
        };
        let changed =
            checked.and_then(|()| self.on_system_change(space_id, old.as_ref(), new.as_ref()));
        if let Err(e) = changed {
            if let Ok(entry) = self.catalog.space_mut(space_id) {
                entry.space.rollback(old, new);
            }
            return Err(e);
        }
        let result = match dml {
            Dml::Delete { .. } => old.clone(),
            _ => new.clone(),
        };
        let changed = old.is_some() || new.is_some();
        let undo = changed.then_some(Undo { space_id, old, new });
        let log = (log && !temporary).then(|| Row {
            header: RowHeader {
                req_type: dml_type(&dml),
                group_id,
                ..Default::default()
            },
            body: log_body,
        });
        Ok(Applied { result, undo, log })
    }

    fn on_system_change(
        &mut self,
        space_id: u32,
        old: Option<&Tuple>,
        new: Option<&Tuple>,
    ) -> BoxResult<()> {
        if space_id > sys::SYSTEM_ID_MAX {
            return Ok(());
        }
        let (old, new) = (old.map(|t| t.data()), new.map(|t| t.data()));
        let result = match space_id {
            sys::SPACE => self.catalog.on_space(old, new),
            sys::INDEX => self.catalog.on_index(old, new),
            sys::USER => self.users.on_user(old, new),
            sys::PRIV => self.users.on_priv(old, new),
            // Functions are resolved by CALL from the schema: a change is a new version.
            sys::FUNC => Ok(()),
            _ => return Ok(()),
        };
        if result.is_ok() {
            if matches!(space_id, sys::USER | sys::PRIV | sys::FUNC) {
                self.catalog.bump_version();
            }
            self.schema_changed = true;
        }
        result
    }

    /// Undoes applied changes, newest first (a failed WAL write, a failed statement of a
    /// transaction). Undoing a schema change that was applied cannot fail unless the catalog
    /// code is wrong; if it does, the catalog no longer describes the data, so the instance
    /// refuses every write from then on (`poisoned`) instead of going on with it.
    pub fn rollback(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            if let Ok(entry) = self.catalog.space_mut(u.space_id) {
                entry.space.rollback(u.old.clone(), u.new.clone());
            }
            // Reverse the schema effect: the row goes from `new` back to `old`.
            if let Err(e) = self.on_system_change(u.space_id, u.new.as_ref(), u.old.as_ref()) {
                let why = format!(
                    "undoing a change of system space {} failed: {e}",
                    u.space_id
                );
                tracing::error!("{why}; refusing all writes from now on");
                self.poison(why);
            }
        }
    }
}

/// The result of `apply_dml`.
#[derive(Debug)]
pub struct Applied {
    /// The tuple the request returns (new tuple; the deleted one for DELETE).
    pub result: Option<Tuple>,
    pub undo: Option<Undo>,
    /// The row to write to the WAL (LSN not assigned yet).
    pub log: Option<Row>,
}

fn dml_type(dml: &Dml<'_>) -> u32 {
    match dml {
        Dml::Insert { .. } => request::INSERT,
        Dml::Replace { .. } => request::REPLACE,
        Dml::Delete { .. } => request::DELETE,
        Dml::Update { .. } => request::UPDATE,
        Dml::Upsert { .. } => request::UPSERT,
    }
}

/// Decodes a logged DML row body (recovery and, later, the applier).
pub fn row_to_dml(row: &Row) -> BoxResult<Dml<'_>> {
    body_to_dml(row.header.req_type, &row.body)
}

/// Decodes a logged DML row body of type `req_type`.
pub fn body_to_dml(req_type: u32, body: &[u8]) -> BoxResult<Dml<'_>> {
    let mut cur = body;
    let entries = mp::read_map_len(&mut cur).map_err(|_| BoxError::invalid_msgpack("row body"))?;
    let (mut space_id, mut index_id, mut index_base) = (None, 0u32, 0u32);
    let (mut tuple, mut key_bytes, mut ops): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    for _ in 0..entries {
        let k = mp::read_uint(&mut cur).map_err(|_| BoxError::invalid_msgpack("row body"))?;
        let value = mp::take_value(&mut cur).map_err(|_| BoxError::invalid_msgpack("row body"))?;
        let as_u32 = || {
            mp::read_uint(&mut &value[..])
                .ok()
                .and_then(|v| u32::try_from(v).ok())
        };
        // A key past u8 is unknown (skipped), never the u8 it would truncate to.
        match u8::try_from(k).unwrap_or(u8::MAX) {
            key::SPACE_ID => space_id = as_u32(),
            key::INDEX_ID => index_id = as_u32().unwrap_or(0),
            key::INDEX_BASE => index_base = as_u32().unwrap_or(0),
            key::TUPLE => tuple = value,
            key::KEY => key_bytes = value,
            key::OPS => ops = value,
            _ => {}
        }
    }
    let space_id = space_id.ok_or_else(|| BoxError::missing_request_field("space id"))?;
    Ok(match req_type {
        request::INSERT => Dml::Insert { space_id, tuple },
        request::REPLACE => Dml::Replace { space_id, tuple },
        request::DELETE => Dml::Delete {
            space_id,
            index_id,
            key: key_bytes,
        },
        request::UPDATE => Dml::Update {
            space_id,
            index_id,
            key: key_bytes,
            ops: tuple,
            index_base,
        },
        request::UPSERT => Dml::Upsert {
            space_id,
            tuple,
            ops,
            index_base,
        },
        t => return Err(BoxError::unknown_request_type(t as u64)),
    })
}

/// A logged row body: `{SPACE_ID: space, [uint key: uint value...], [key: raw value...]}`
/// in Tarantool's key order (§3.3 of the xlog notes). Zero uint values are omitted.
fn body(space_id: u32, uints: &[(u8, u32)], values: &[(u8, &[u8])]) -> Vec<u8> {
    let uints: Vec<(u8, u32)> = uints.iter().copied().filter(|(_, v)| *v != 0).collect();
    let size: usize = values.iter().map(|(_, v)| v.len() + 1).sum();
    let mut out = Vec::with_capacity(size + 16);
    mp::write_map_len(&mut out, 1 + (uints.len() + values.len()) as u32);
    mp::write_uint(&mut out, key::SPACE_ID as u64);
    mp::write_uint(&mut out, space_id as u64);
    for (k, v) in uints {
        mp::write_uint(&mut out, k as u64);
        mp::write_uint(&mut out, v as u64);
    }
    for (k, v) in values {
        mp::write_uint(&mut out, *k as u64);
        out.extend_from_slice(v);
    }
    out
}

fn body_tuple(space_id: u32, tuple: &[u8]) -> Vec<u8> {
    body(space_id, &[], &[(key::TUPLE, tuple)])
}

fn body_key(space_id: u32, index_id: Option<u32>, key_bytes: &[u8]) -> Vec<u8> {
    body(
        space_id,
        &[(key::INDEX_ID, index_id.unwrap_or(0))],
        &[(key::KEY, key_bytes)],
    )
}

fn body_update(space_id: u32, index_base: u32, key_bytes: &[u8], ops: &[u8]) -> Vec<u8> {
    let values = [(key::KEY, key_bytes), (key::TUPLE, ops)];
    body(space_id, &[(key::INDEX_BASE, index_base)], &values)
}

fn body_upsert(space_id: u32, index_base: u32, tuple: &[u8], ops: &[u8]) -> Vec<u8> {
    let values = [(key::OPS, ops), (key::TUPLE, tuple)];
    body(space_id, &[(key::INDEX_BASE, index_base)], &values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_with(key: u64) -> Vec<u8> {
        let mut out = Vec::new();
        mp::write_map_len(&mut out, 2);
        mp::write_uint(&mut out, u64::from(key::SPACE_ID));
        mp::write_uint(&mut out, 512);
        mp::write_uint(&mut out, key);
        mp::write_array_len(&mut out, 1);
        mp::write_uint(&mut out, 7);
        out
    }

    #[test]
    fn a_body_key_past_u8_does_not_alias_a_known_key() {
        let tuple = body_with(u64::from(key::TUPLE));
        assert!(matches!(
            body_to_dml(request::INSERT, &tuple),
            Ok(Dml::Insert {
                space_id: 512,
                tuple: [0x91, 7]
            })
        ));
        // 0x121 truncates to 0x21 (TUPLE): it must be skipped, leaving no tuple.
        let aliased = body_with(0x100 | u64::from(key::TUPLE));
        assert!(matches!(
            body_to_dml(request::INSERT, &aliased),
            Ok(Dml::Insert {
                space_id: 512,
                tuple: []
            })
        ));
    }

    #[test]
    fn a_space_id_past_u32_is_missing_not_truncated() {
        let mut out = Vec::new();
        mp::write_map_len(&mut out, 1);
        mp::write_uint(&mut out, u64::from(key::SPACE_ID));
        mp::write_uint(&mut out, (1 << 32) | 512);
        assert!(body_to_dml(request::INSERT, &out).is_err());
    }
}
