//! Request execution: the routing of a decoded data request to a read (PING, AUTH, SELECT
//! with the privilege-filtered system views) or to DML, with Tarantool's checks in its order:
//! schema version, space, read-only, access. Writes apply to memory here and return what the
//! commit path needs (rows to log, undo, the reply to send once durable).

use spindle_memtx::index::Lookup;
use spindle_memtx::tuple::Tuple;
use spindle_proto::iproto::{slice as span, Header, Request};
use spindle_proto::route::Route;
use spindle_types::iproto::IteratorType;
use spindle_types::{BoxError, BoxResult};

use crate::access::{ObjectType, PRIV_R, PRIV_S, PRIV_U, PRIV_W};
use crate::catalog::Engine;
use crate::db::Db;
use crate::dml::Dml;
use crate::reply::Reply;
use crate::session::Sessions;
use crate::txn::Txn;
use crate::views;

/// A write applied to memory, before it is durable: the reply to send once it is, and the
/// transaction to commit.
#[derive(Debug)]
pub struct WriteOutcome {
    pub reply: Reply,
    pub txn: Txn,
}

/// The five DML requests.
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

impl Db {
    /// A request stamped with another schema version than the current one is refused
    /// (0 means the client does not care).
    pub fn check_schema_version(&self, header: &Header) -> BoxResult<()> {
        let current = u64::from(self.schema_version());
        if header.schema_version != 0 && header.schema_version != current {
            return Err(BoxError::wrong_schema_version(
                current,
                header.schema_version,
            ));
        }
        Ok(())
    }

    /// AUTH: checks the scramble against the greeting's salt and switches the session's user.
    pub fn execute_auth(
        &mut self,
        sessions: &mut Sessions,
        route: Route,
        request: &Request,
        packet: &[u8],
    ) -> BoxResult<Reply> {
        let Request::Auth { user, scramble } = request else {
            return Err(BoxError::unknown());
        };
        let scramble = scramble.as_ref().map(|s| span(packet, s));
        self.auth(sessions, route, span(packet, user), scramble)
    }

    /// SELECT; `lookup` is its lower bound if a batched walk of the index found it.
    pub fn execute_select(
        &mut self,
        user: u32,
        request: &Request,
        packet: &[u8],
        lookup: Option<Lookup>,
    ) -> BoxResult<Reply> {
        let Request::Select {
            space_id,
            index_id,
            limit,
            offset,
            iterator,
            ref key,
        } = *request
        else {
            return Err(BoxError::unknown());
        };
        let key = span(packet, key);
        let tuples = self.select(
            user,
            space_id,
            index_id,
            iterator,
            key,
            (offset, limit),
            lookup,
        )?;
        Ok(Reply::Tuples(tuples))
    }

    /// SELECT on behalf of `user` from a procedure (no batched lookup).
    #[allow(clippy::too_many_arguments)]
    pub fn select_as(
        &mut self,
        user: u32,
        space_id: u32,
        index_id: u32,
        iterator: u32,
        key: &[u8],
        offset: u32,
        limit: u32,
    ) -> BoxResult<Vec<Tuple>> {
        self.select(
            user,
            space_id,
            index_id,
            iterator,
            key,
            (offset, limit),
            None,
        )
    }

    /// A change on behalf of `user` as part of `txn`, with the checks a DML request gets.
    pub fn dml_as(&mut self, user: u32, txn: &mut Txn, dml: Dml<'_>) -> BoxResult<Option<Tuple>> {
        self.check_writable(dml.space_id())?;
        self.check_write_access(user, dml.space_id())?;
        self.apply_as(user, txn, dml)
    }

    /// One of the five DML requests as an autocommit transaction: applied to memory now.
    pub fn execute_write(
        &mut self,
        user: u32,
        request: &Request,
        packet: &[u8],
    ) -> BoxResult<WriteOutcome> {
        let dml = request_to_dml(request, packet)?;
        self.check_writable(dml.space_id())?;
        self.check_write_access(user, dml.space_id())?;
        let mut txn = Txn::new();
        let result = self.apply_as(user, &mut txn, dml)?;
        let reply = match dml {
            Dml::Upsert { .. } => Reply::Tuples(Vec::new()),
            _ => Reply::Tuples(result.into_iter().collect()),
        };
        Ok(WriteOutcome { reply, txn })
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
        self.check_read_access(user, space_id)?;
        let entry = self.catalog.space(space_id)?;
        let (name, engine) = (entry.def.name.as_str(), entry.def.engine);
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

    /// A read-only instance refuses writes to replicated spaces (temporary and local spaces
    /// stay writable), after the space lookup, as Tarantool's `box_process1` does.
    /// A poisoned instance (see `Db::rollback`) refuses every write.
    pub fn check_writable(&self, space_id: u32) -> BoxResult<()> {
        let def = &self.catalog.space(space_id)?.def;
        if self.poisoned().is_some() || (self.read_only() && !def.temporary && def.group_id == 0) {
            return Err(BoxError::readonly());
        }
        if self.is_versioned(space_id) {
            return Err(BoxError::unsupported(
                &format!("Space '{}'", def.name),
                "DML outside POST /v1/commit",
            ));
        }
        Ok(())
    }

    pub fn check_read_access(&mut self, user: u32, space_id: u32) -> BoxResult<()> {
        self.users.check_universe(user, PRIV_U)?;
        let entry = self.catalog.space(space_id)?;
        let (name, owner) = (entry.def.name.as_str(), entry.def.owner);
        self.users
            .check(user, PRIV_R, ObjectType::Space, space_id, name, Some(owner))
    }

    pub fn check_write_access(&mut self, user: u32, space_id: u32) -> BoxResult<()> {
        self.users.check_universe(user, PRIV_U)?;
        let entry = self.catalog.space(space_id)?;
        let (name, owner, engine) = (entry.def.name.as_str(), entry.def.owner, entry.def.engine);
        if engine == Engine::Sysview {
            return Err(BoxError::view_is_ro(name));
        }
        self.users
            .check(user, PRIV_W, ObjectType::Space, space_id, name, Some(owner))
    }
}

pub(crate) fn request_to_dml<'a>(request: &Request, packet: &'a [u8]) -> BoxResult<Dml<'a>> {
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
