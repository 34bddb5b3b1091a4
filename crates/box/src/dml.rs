//! Executes requests against the catalog: authentication, SELECT (including the privilege
//! filtered system views), and the five DML requests. DML returns the rows to log — bodies
//! rewritten the way Tarantool logs them (DELETE/UPDATE by primary key) — and the undo
//! records that roll the change back if the WAL write fails. Recovery replays logged rows
//! through the same `apply_dml` path, without access checks.

use spindle_memtx::index::Lookup;
use spindle_memtx::tuple::Tuple;
use spindle_proto::iproto::{Header, Request, Span};
use spindle_proto::mp;
use spindle_proto::route::{BatchItem, RequestBatch, Route};
use spindle_types::iproto::{key, request, IteratorType};
use spindle_types::{BoxError, BoxResult};
use spindle_xlog::{Row, RowHeader, Vclock};

use crate::access::{ObjectType, Users, PRIV_R, PRIV_S, PRIV_U, PRIV_W};
use crate::catalog::{sys, Catalog, Engine};
use crate::reply::Reply;
use crate::session::Sessions;
use crate::views;

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

/// A successfully applied write, before it is durable.
#[derive(Debug)]
pub struct WriteOutcome {
    pub reply: Reply,
    pub rows: Vec<Row>,
    pub undo: Vec<Undo>,
}

pub fn is_write(request: &Request) -> bool {
    matches!(
        request,
        Request::Insert { .. }
            | Request::Replace { .. }
            | Request::Update { .. }
            | Request::Delete { .. }
            | Request::Upsert { .. }
    )
}

pub struct Db {
    pub catalog: Catalog,
    pub users: Users,
    pub vclock: Vclock,
    pub replica_id: u32,
    pub instance_uuid: String,
    /// `--read-only`: client writes to replicated spaces get ER_READONLY.
    pub read_only: bool,
    schema_changed: bool,
}

fn span<'a>(packet: &'a [u8], s: &Span) -> &'a [u8] {
    packet.get(s.start as usize..s.end as usize).unwrap_or(&[])
}

impl Db {
    pub fn new(instance_uuid: String) -> Db {
        Db {
            catalog: Catalog::default(),
            users: Users::default(),
            vclock: Vclock::new(),
            replica_id: 1,
            instance_uuid,
            read_only: false,
            schema_changed: false,
        }
    }

    pub fn schema_version(&self) -> u32 {
        self.catalog.version()
    }

    /// True once after a change that bumped the schema version.
    pub fn schema_changed(&mut self) -> bool {
        std::mem::take(&mut self.schema_changed)
    }

    // ---- reads ----

    #[allow(clippy::too_many_arguments)]
    pub fn execute_read(
        &mut self,
        sessions: &mut Sessions,
        route: Route,
        user: u32,
        header: &Header,
        request: &Request,
        packet: &[u8],
        lookup: Option<Lookup>,
    ) -> BoxResult<Reply> {
        if !matches!(request, Request::Unknown(_) | Request::Id { .. }) {
            self.check_schema_version(header)?;
        }
        match request {
            Request::Ping => Ok(Reply::Empty),
            Request::Auth {
                user: name,
                scramble,
            } => {
                let scramble = scramble.as_ref().map(|s| span(packet, s));
                self.auth(sessions, route, span(packet, name), scramble)
            }
            Request::Select {
                space_id,
                index_id,
                limit,
                offset,
                iterator,
                key,
            } => {
                let key = span(packet, key);
                let window = (*offset, *limit);
                let tuples =
                    self.select(user, *space_id, *index_id, *iterator, key, window, lookup)?;
                Ok(Reply::Tuples(tuples))
            }
            Request::Call { name, args, is_16 } => {
                let name = String::from_utf8_lossy(span(packet, name)).into_owned();
                let args = spindle_proto::iproto::array_or_empty(packet, args);
                crate::call::call(self, user, &name, args, *is_16)
            }
            Request::Eval { .. } => {
                self.users.check_universe(user, crate::access::PRIV_X)?;
                Err(BoxError::unsupported("spindle", "Lua EVAL"))
            }
            Request::Execute | Request::Prepare => Err(BoxError::unsupported("spindle", "SQL")),
            Request::Vote => Ok(Reply::Raw(crate::replication::ballot(self))),
            Request::Join { .. }
            | Request::Subscribe { .. }
            | Request::Register { .. }
            | Request::FetchSnapshot => Err(BoxError::unsupported("spindle", "replication yet")),
            Request::Id { .. } => Err(BoxError::unknown_request_type(73)),
            Request::Unknown(t) => Err(BoxError::unknown_request_type(*t as u64)),
            _ => Err(BoxError::unknown()),
        }
    }

    fn check_schema_version(&self, header: &Header) -> BoxResult<()> {
        let current = self.schema_version() as u64;
        if header.schema_version != 0 && header.schema_version != current {
            return Err(BoxError::wrong_schema_version(
                current,
                header.schema_version,
            ));
        }
        Ok(())
    }

    fn auth(
        &mut self,
        sessions: &mut Sessions,
        route: Route,
        name: &[u8],
        scramble: Option<&[u8]>,
    ) -> BoxResult<Reply> {
        let name = String::from_utf8_lossy(name).into_owned();
        let user = match self.users.by_name(&name) {
            Some(u) if !u.is_role => u.clone(),
            _ => return Err(BoxError::no_such_user(&name)),
        };
        let salt = sessions.get_mut(route).map(|s| s.salt).unwrap_or([0; 32]);
        match (scramble, user.hash2) {
            (None, _) if user.id == crate::session::GUEST => {}
            (None, _) => return Err(BoxError::invalid_msgpack("authentication request body")),
            (Some(s), Some(hash2)) => {
                if !spindle_proto::auth::check_scramble(&salt[..20], s, &hash2) {
                    return Err(BoxError::password_mismatch(&name));
                }
            }
            (Some(_), None) => return Err(BoxError::password_mismatch(&name)),
        }
        self.users.check_universe(user.id, PRIV_S)?;
        if let Some(session) = sessions.get_mut(route) {
            session.user = user.id;
        }
        Ok(Reply::Empty)
    }

    #[allow(clippy::too_many_arguments)]
    fn select(
        &mut self,
        user: u32,
        space_id: u32,
        index_id: u32,
        iterator: u32,
        key: &[u8],
        (offset, limit): (u32, u32),
        lookup: Option<Lookup>,
    ) -> BoxResult<Vec<Tuple>> {
        self.users.check_universe(user, PRIV_U)?;
        let entry = self.catalog.space(space_id)?;
        let (name, owner, engine) = (entry.def.name.as_str(), entry.def.owner, entry.def.engine);
        self.users
            .check(user, PRIV_R, ObjectType::Space, space_id, name, Some(owner))?;
        if entry.space.index(index_id).is_none() {
            return Err(BoxError::no_such_index_id(index_id, name));
        }
        let it = IteratorType::from_code(iterator as u64)
            .ok_or_else(|| BoxError::illegal_params("Invalid iterator type"))?;
        match engine {
            Engine::Sysview => {
                views::select(self, user, space_id, index_id, it, key, offset, limit)
            }
            _ => self
                .catalog
                .space(space_id)?
                .space
                .select_from(index_id, it, key, offset, limit, lookup),
        }
    }

    /// Lower bounds for the run of EQ selects on one memtx index that starts at item `from`
    /// of `batch`, found in one batched walk (see `Index::lower_bounds`): the run's length,
    /// and one entry per select of it (none at all for a run too short to batch). Valid only
    /// while nothing changes the index: the run holds selects alone, and it runs right after.
    pub fn plan_selects(&self, batch: &RequestBatch, from: usize) -> (usize, Vec<Option<Lookup>>) {
        let items = batch.items.get(from..).unwrap_or_default();
        let Some(target) = items.first().and_then(|i| eq_select_target(&i.request)) else {
            return (0, Vec::new());
        };
        let in_run = |i: &&BatchItem| eq_select_target(&i.request) == Some(target);
        let len = items.iter().take_while(in_run).count();
        if len < SELECT_PLAN_MIN {
            return (len, Vec::new());
        }
        let (space_id, index_id) = target;
        let index = self
            .catalog
            .get(space_id)
            .filter(|e| e.def.engine == Engine::Memtx)
            .and_then(|e| e.space.index(index_id));
        let lookups = index.map_or_else(Vec::new, |index| {
            index.lower_bounds(items.iter().take(len).map(|i| select_key(batch, i)))
        });
        (len, lookups)
    }

    // ---- writes ----

    pub fn execute_write(
        &mut self,
        user: u32,
        header: &Header,
        request: &Request,
        packet: &[u8],
    ) -> BoxResult<WriteOutcome> {
        self.check_schema_version(header)?;
        let dml = request_to_dml(request, packet)?;
        self.check_writable(dml.space_id())?;
        self.check_write_access(user, dml.space_id())?;
        let applied = self.apply_dml(dml)?;
        let reply = match dml {
            Dml::Upsert { .. } => Reply::Tuples(Vec::new()),
            _ => Reply::Tuples(applied.result.into_iter().collect()),
        };
        let rows = applied.log.into_iter().collect();
        Ok(WriteOutcome {
            reply,
            rows,
            undo: applied.undo.into_iter().collect(),
        })
    }

    /// A read-only instance refuses writes to replicated spaces (temporary and local spaces
    /// stay writable), after the space lookup, as Tarantool's `box_process1` does.
    fn check_writable(&self, space_id: u32) -> BoxResult<()> {
        let def = &self.catalog.space(space_id)?.def;
        if self.read_only && !def.temporary && def.group_id == 0 {
            return Err(BoxError::readonly());
        }
        Ok(())
    }

    pub(crate) fn check_write_access(&mut self, user: u32, space_id: u32) -> BoxResult<()> {
        self.users.check_universe(user, PRIV_U)?;
        let entry = self.catalog.space(space_id)?;
        let (name, owner, engine) = (entry.def.name.as_str(), entry.def.owner, entry.def.engine);
        if engine == Engine::Sysview {
            return Err(BoxError::view_is_ro(name));
        }
        self.users
            .check(user, PRIV_W, ObjectType::Space, space_id, name, Some(owner))
    }

    /// Applies one change to memory (and, for system spaces, to the schema). Errors leave
    /// everything unchanged.
    pub fn apply_dml(&mut self, dml: Dml<'_>) -> BoxResult<Applied> {
        self.apply(dml, true)
    }

    /// Applies a row replayed from the log (recovery, replication): its body was validated
    /// when it was decoded, and no row is produced to log again.
    pub fn replay_dml(&mut self, dml: Dml<'_>) -> BoxResult<()> {
        self.apply(dml, false).map(|_| ())
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

    fn apply(&mut self, dml: Dml<'_>, log: bool) -> BoxResult<Applied> {
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
        if let Err(e) = self.on_system_change(space_id, old.as_ref(), new.as_ref()) {
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
            _ => return Ok(()),
        };
        if result.is_ok() {
            if matches!(space_id, sys::USER | sys::PRIV) {
                self.catalog.bump_version();
            }
            self.schema_changed = true;
        }
        result
    }

    /// Undoes applied changes, newest first (a failed WAL write).
    pub fn rollback(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            if let Ok(entry) = self.catalog.space_mut(u.space_id) {
                entry.space.rollback(u.old.clone(), u.new.clone());
            }
            // Reverse the schema effect: the row goes from `new` back to `old`.
            let _ = self.on_system_change(u.space_id, u.new.as_ref(), u.old.as_ref());
        }
    }

    /// Assigns LSNs and the transaction id to new rows, as Tarantool 2.6 does: rows of local
    /// spaces (`group_id` 1) count in vclock component 0 with replica id 0, the others in this
    /// instance's component; the transaction id is the LSN of the first replicated row (of
    /// the first row if there is none). A transaction with replicated rows that ends with a
    /// local one gets a NOP as its last row, so that replicas, which never see local rows,
    /// still see where it ends.
    pub fn assign_lsns(&mut self, rows: &mut Vec<Row>) {
        let local = |r: &Row| r.header.group_id != 0;
        if rows.last().is_some_and(local) && !rows.iter().all(local) {
            let timestamp = rows.last().map_or(0.0, |r| r.header.timestamp);
            rows.push(Row {
                header: RowHeader {
                    req_type: request::NOP,
                    timestamp,
                    ..Default::default()
                },
                body: Vec::new(),
            });
        }
        let id = self.replica_id;
        for row in rows.iter_mut() {
            let origin = if local(row) { 0 } else { id };
            let lsn = self.vclock.get(origin) + 1;
            self.vclock.follow(origin, lsn);
            row.header.replica_id = origin;
            row.header.lsn = lsn;
        }
        let tsn = rows
            .iter()
            .find(|r| !local(r))
            .or(rows.first())
            .map_or(0, |r| r.header.lsn);
        let count = rows.len();
        for (i, row) in rows.iter_mut().enumerate() {
            row.header.tsn = tsn;
            row.header.is_commit = i + 1 == count;
        }
    }

    /// After a failed WAL write: LSNs of component `id` after `lsn` were never written and
    /// are reused.
    pub fn reset_lsn(&mut self, id: u32, lsn: u64) {
        self.vclock.set(id, lsn);
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

fn request_to_dml<'a>(request: &Request, packet: &'a [u8]) -> BoxResult<Dml<'a>> {
    Ok(match request {
        Request::Insert { space_id, tuple } => Dml::Insert {
            space_id: *space_id,
            tuple: span(packet, tuple),
        },
        Request::Replace { space_id, tuple } => Dml::Replace {
            space_id: *space_id,
            tuple: span(packet, tuple),
        },
        Request::Delete {
            space_id,
            index_id,
            key,
        } => Dml::Delete {
            space_id: *space_id,
            index_id: *index_id,
            key: span(packet, key),
        },
        Request::Update {
            space_id,
            index_id,
            index_base,
            key,
            ops,
        } => Dml::Update {
            space_id: *space_id,
            index_id: *index_id,
            key: span(packet, key),
            ops: span(packet, ops),
            index_base: *index_base,
        },
        Request::Upsert {
            space_id,
            index_base,
            tuple,
            ops,
        } => Dml::Upsert {
            space_id: *space_id,
            tuple: span(packet, tuple),
            ops: span(packet, ops),
            index_base: *index_base,
        },
        _ => return Err(BoxError::unknown()),
    })
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
        let as_u32 = || mp::read_uint(&mut &value[..]).ok().map(|v| v as u32);
        match k as u8 {
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

/// Runs of fewer EQ selects than this are not batched: too few cache misses to overlap.
const SELECT_PLAN_MIN: usize = 4;

/// (space, index) of an EQ select.
fn eq_select_target(request: &Request) -> Option<(u32, u32)> {
    match *request {
        Request::Select {
            space_id,
            index_id,
            iterator,
            ..
        } if IteratorType::from_code(iterator as u64) == Some(IteratorType::Eq) => {
            Some((space_id, index_id))
        }
        _ => None,
    }
}

fn select_key<'a>(batch: &'a RequestBatch, item: &BatchItem) -> &'a [u8] {
    match &item.request {
        Request::Select { key, .. } => span(batch.packet(item), key),
        _ => &[],
    }
}

/// The lower bounds planned for a run of selects, handed out as the run executes.
#[derive(Default)]
pub struct SelectPlan {
    start: usize,
    /// Items `start..end` are the planned run.
    end: usize,
    lookups: Vec<Option<Lookup>>,
}

impl SelectPlan {
    /// The lookup for item `i` of `batch`, planning the run of selects that starts there
    /// when `i` is past the current plan. Items must be asked for in order, each right
    /// before it runs.
    pub fn lookup(&mut self, db: &Db, batch: &RequestBatch, i: usize) -> Option<Lookup> {
        if i < self.start || i >= self.end {
            let (len, lookups) = db.plan_selects(batch, i);
            (self.start, self.end, self.lookups) = (i, i + len, lookups);
        }
        self.lookups.get_mut(i - self.start).and_then(Option::take)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (replica id, lsn, tsn, commit, type) of each row, after `assign_lsns` on rows whose
    /// `group_id` says which are local.
    fn assigned(db: &mut Db, groups: &[u32]) -> Vec<(u32, u64, u64, bool, u32)> {
        let mut rows: Vec<Row> = groups
            .iter()
            .map(|&group_id| Row {
                header: RowHeader {
                    req_type: request::REPLACE,
                    group_id,
                    ..Default::default()
                },
                body: Vec::new(),
            })
            .collect();
        db.assign_lsns(&mut rows);
        rows.iter()
            .map(|r| {
                let h = &r.header;
                (h.replica_id, h.lsn, h.tsn, h.is_commit, h.req_type)
            })
            .collect()
    }

    /// The layouts Tarantool 2.6 writes for the same transactions (`tarantoolctl cat` of
    /// its WAL: one global row, one local, global + local, local + global, local + local).
    #[test]
    fn local_rows_count_in_component_zero_and_never_end_a_replicated_transaction() {
        const R: u32 = request::REPLACE;
        const NOP: u32 = request::NOP;
        let mut db = Db::new("u".into());
        db.vclock.set(1, 4);
        assert_eq!(assigned(&mut db, &[0]), [(1, 5, 5, true, R)]);
        assert_eq!(assigned(&mut db, &[1]), [(0, 1, 1, true, R)]);
        assert_eq!(
            assigned(&mut db, &[0, 1]),
            [
                (1, 6, 6, false, R),
                (0, 2, 6, false, R),
                (1, 7, 6, true, NOP)
            ]
        );
        assert_eq!(
            assigned(&mut db, &[1, 0]),
            [(0, 3, 8, false, R), (1, 8, 8, true, R)]
        );
        assert_eq!(
            assigned(&mut db, &[1, 1]),
            [(0, 4, 4, false, R), (0, 5, 4, true, R)]
        );
        assert_eq!((db.vclock.get(0), db.vclock.get(1)), (5, 8));
    }
}
