//! The database state: the catalog (spaces, indexes), users and privileges, the vclock and
//! the instance's identity. Other crates reach it only through these methods; the modules of
//! this crate that change it (`dml`, `txn`, `cluster`) add methods of their own.

use spindle_proto::mp;
use spindle_types::iproto::request;
use spindle_xlog::{Row, RowHeader, Vclock};

use crate::access::Users;
use crate::catalog::{Catalog, SpaceEntry};
use spindle_types::BoxResult;

pub struct Db {
    pub(crate) catalog: Catalog,
    pub(crate) users: Users,
    vclock: Vclock,
    replica_id: u32,
    instance_uuid: String,
    /// `--read-only`: client writes to replicated spaces get ER_READONLY.
    read_only: bool,
    pub(crate) schema_changed: bool,
    /// Why every write is refused: the catalog stopped matching the data (see `rollback`).
    poisoned: Option<String>,
    /// Spaces only the HTTP commit path may change (`kv`): client DML on them is refused.
    versioned: Vec<u32>,
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
            poisoned: None,
            versioned: Vec::new(),
        }
    }

    /// Marks spaces as changed only through versioned commits (the HTTP keyspace).
    pub fn set_versioned(&mut self, spaces: Vec<u32>) {
        self.versioned = spaces;
    }

    pub fn is_versioned(&self, space_id: u32) -> bool {
        self.versioned.contains(&space_id)
    }

    pub fn schema_version(&self) -> u32 {
        self.catalog.version()
    }

    /// True once after a change that bumped the schema version.
    pub fn schema_changed(&mut self) -> bool {
        std::mem::take(&mut self.schema_changed)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// A space by id, with its definition.
    pub fn space(&self, space_id: u32) -> BoxResult<&SpaceEntry> {
        self.catalog.space(space_id)
    }

    pub fn users(&self) -> &Users {
        &self.users
    }

    /// Checks that `user` has `privilege` on the universe (ER_ACCESS_DENIED otherwise).
    pub fn check_universe(&mut self, user: u32, privilege: u32) -> BoxResult<()> {
        self.users.check_universe(user, privilege)
    }

    /// Every row logged or replayed so far, by origin.
    pub fn vclock(&self) -> Vclock {
        self.vclock
    }

    pub fn replica_id(&self) -> u32 {
        self.replica_id
    }

    pub fn set_replica_id(&mut self, id: u32) {
        self.replica_id = id;
    }

    pub fn instance_uuid(&self) -> &str {
        &self.instance_uuid
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    /// Why writes are refused for good, if they are.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    pub(crate) fn poison(&mut self, why: String) {
        self.poisoned.get_or_insert(why);
    }

    /// The vclock a loaded snapshot was taken at.
    pub fn set_vclock(&mut self, vclock: Vclock) {
        self.vclock = vclock;
    }

    /// Records that rows of `replica_id` up to `lsn` are here (replayed, applied or joined).
    pub fn follow(&mut self, replica_id: u32, lsn: u64) {
        self.vclock.follow(replica_id, lsn);
    }

    /// After a failed WAL write: LSNs of component `id` after `lsn` were never written and
    /// are reused.
    pub fn reset_lsn(&mut self, id: u32, lsn: u64) {
        self.vclock.set(id, lsn);
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
}

/// `[key]` of a single-part string key, as MessagePack.
pub(crate) fn str_key(key: &str) -> Vec<u8> {
    let mut out = vec![0x91];
    mp::write_str(&mut out, key);
    out
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
        db.reset_lsn(1, 4);
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
        assert_eq!((db.vclock().get(0), db.vclock().get(1)), (5, 8));
    }
}
