//! Makes the benchmark space exist, over one blocking connection, by writing the system spaces
//! directly (no Lua needed, so it works on spindle and on Tarantool alike):
//! `_space` `[id, owner, name, 'memtx', 0, {}, []]` and
//! `_index` `[id, 0, 'pk', 'tree'|'hash', {unique: true}, [[0, 'unsigned']]]`.
//! An existing space of that name is reused, or dropped and created again with `--fresh`.

use rmpv::Value;
use spindle_client::{Client, ClientError};
use std::net::SocketAddr;
use std::time::Duration;

const SPACE: u32 = 280;
const VSPACE: u32 = 281;
const INDEX: u32 = 288;
const VINDEX: u32 = 289;
const VUSER: u32 = 305;
const TRUNCATE: u32 = 330;
const ITER_EQ: u32 = 0;
const ITER_ALL: u32 = 2;
/// `BOX_SYSTEM_ID_MAX + 1`: the first id of a user space.
const FIRST_USER_SPACE: u32 = 512;
const ADMIN_UID: u64 = 1;
/// Tarantool's ER_NO_SUCH_SPACE: a server without `_truncate` has nothing to clean there.
const ER_NO_SUCH_SPACE: u32 = 36;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IndexKind {
    Tree,
    Hash,
}

impl IndexKind {
    fn name(self) -> &'static str {
        match self {
            IndexKind::Tree => "tree",
            IndexKind::Hash => "hash",
        }
    }
}

#[derive(Clone, Debug)]
pub struct SpaceSpec {
    pub name: String,
    /// None: the next free id (at least 512).
    pub id: Option<u32>,
    pub index: IndexKind,
    /// Drop an existing space of that name first.
    pub fresh: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub id: u32,
    /// True if this run created it (false: reused).
    pub created: bool,
}

/// Opens a connection, authenticated if a password is given. Returns it with the server's
/// version string (`Tarantool 2.6.0`).
pub fn connect(
    addr: &SocketAddr,
    user: &str,
    password: Option<&str>,
) -> Result<(Client, String), String> {
    let timeout = Duration::from_secs(10);
    let mut client = Client::connect_timeout(addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    client
        .set_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| format!("{addr}: {e}"))?;
    let (major, minor, patch) = client.greeting().version;
    let version = format!("Tarantool {major}.{minor}.{patch}");
    if let Some(password) = password {
        client
            .auth(user, password)
            .map_err(|e| format!("authentication as {user:?} failed: {e}"))?;
    }
    Ok((client, version))
}

fn field_u64(tuple: &Value, i: usize) -> Option<u64> {
    tuple.as_array()?.get(i)?.as_u64()
}

fn field_str(tuple: &Value, i: usize) -> Option<&str> {
    tuple.as_array()?.get(i)?.as_str()
}

fn server_err(what: &str) -> impl Fn(ClientError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn u32_of(v: u64) -> Option<u32> {
    u32::try_from(v).ok()
}

/// Finds, drops (if asked) and creates the space; returns its id.
pub fn prepare_space(
    client: &mut Client,
    user: &str,
    spec: &SpaceSpec,
) -> Result<Prepared, String> {
    let spaces = client
        .select(VSPACE, 0, ITER_ALL, 0, u32::MAX, &Value::Array(vec![]))
        .map_err(server_err("reading _vspace"))?;
    let existing = spaces
        .iter()
        .find(|t| field_str(t, 2) == Some(spec.name.as_str()))
        .and_then(|t| field_u64(t, 0))
        .and_then(u32_of);
    if let Some(id) = existing {
        if !spec.fresh {
            ensure_primary_key(client, id, spec)?;
            return Ok(Prepared { id, created: false });
        }
        drop_space(client, id)?;
    }
    let id = match spec.id {
        Some(id) => id,
        None => spaces
            .iter()
            .filter_map(|t| field_u64(t, 0))
            .filter_map(u32_of)
            .filter(|&id| Some(id) != existing)
            .max()
            .map_or(FIRST_USER_SPACE, |max| max.saturating_add(1))
            .max(FIRST_USER_SPACE),
    };
    let owner = owner_id(client, user)?;
    let row = Value::Array(vec![
        Value::from(id),
        Value::from(owner),
        Value::from(spec.name.as_str()),
        Value::from("memtx"),
        Value::from(0),
        Value::Map(vec![]),
        Value::Array(vec![]),
    ]);
    client.insert(SPACE, &row).map_err(server_err(&format!(
        "creating space {} (id {id})",
        spec.name
    )))?;
    create_primary_key(client, id, spec)?;
    Ok(Prepared { id, created: true })
}

fn owner_id(client: &mut Client, user: &str) -> Result<u64, String> {
    if user == "admin" {
        return Ok(ADMIN_UID);
    }
    let users = client
        .select(VUSER, 0, ITER_ALL, 0, u32::MAX, &Value::Array(vec![]))
        .map_err(server_err("reading _vuser"))?;
    Ok(users
        .iter()
        .find(|t| field_str(t, 2) == Some(user))
        .and_then(|t| field_u64(t, 0))
        .unwrap_or(ADMIN_UID))
}

fn create_primary_key(client: &mut Client, id: u32, spec: &SpaceSpec) -> Result<(), String> {
    let row = Value::Array(vec![
        Value::from(id),
        Value::from(0),
        Value::from("pk"),
        Value::from(spec.index.name()),
        Value::Map(vec![(Value::from("unique"), Value::from(true))]),
        Value::Array(vec![Value::Array(vec![
            Value::from(0),
            Value::from("unsigned"),
        ])]),
    ]);
    client.insert(INDEX, &row).map_err(server_err(&format!(
        "creating the primary key of {}",
        spec.name
    )))?;
    Ok(())
}

fn index_ids(client: &mut Client, id: u32) -> Result<Vec<u64>, String> {
    let rows = client
        .select(
            VINDEX,
            0,
            ITER_EQ,
            0,
            u32::MAX,
            &Value::Array(vec![Value::from(id)]),
        )
        .map_err(server_err("reading _vindex"))?;
    Ok(rows.iter().filter_map(|t| field_u64(t, 1)).collect())
}

fn ensure_primary_key(client: &mut Client, id: u32, spec: &SpaceSpec) -> Result<(), String> {
    if index_ids(client, id)?.contains(&0) {
        return Ok(());
    }
    create_primary_key(client, id, spec)
}

/// Deletes the indexes (secondary first), any `_truncate` row, then the `_space` row.
fn drop_space(client: &mut Client, id: u32) -> Result<(), String> {
    let mut indexes = index_ids(client, id)?;
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    for iid in indexes {
        let key = Value::Array(vec![Value::from(id), Value::from(iid)]);
        client
            .delete(INDEX, 0, &key)
            .map_err(server_err(&format!("dropping index {iid} of space {id}")))?;
    }
    match client.delete(TRUNCATE, 0, &Value::Array(vec![Value::from(id)])) {
        Ok(_) => {}
        Err(e) if e.code() == Some(ER_NO_SUCH_SPACE) => {}
        Err(e) => return Err(format!("cleaning _truncate for space {id}: {e}")),
    }
    client
        .delete(SPACE, 0, &Value::Array(vec![Value::from(id)]))
        .map_err(server_err(&format!("dropping space {id}")))?;
    Ok(())
}

/// Defines the CALL workload's procedure: a global Lua function doing one REPLACE, as a
/// Tarantool application would write it.
pub fn define_function(client: &mut Client, space_id: u32) -> Result<(), String> {
    let name = crate::workload::BENCH_FUNCTION;
    let body = format!(
        "local space = box.space[{space_id}] \
         rawset(_G, '{name}', function(key, value) space:replace{{key, value}} end)"
    );
    client
        .eval(&body, &Value::Array(vec![]))
        .map_err(server_err("defining the CALL workload's function"))?;
    Ok(())
}
