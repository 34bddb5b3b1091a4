//! `_cluster` and the replica set's identity: which replica id this instance has, the
//! replica set UUID, the registered replicas, and registering a new one.

use spindle_proto::mp;
use spindle_types::iproto::{IteratorType, REPLICA_ID_LIMIT};
use spindle_types::{BoxError, BoxResult};

use crate::catalog::sys;
use crate::db::{str_key, Db};
use crate::dml::Dml;
use crate::txn::Txn;

impl Db {
    /// Takes the replica id of this instance's row in `_cluster`; keeps the current id if
    /// there is none.
    pub fn identify(&mut self) {
        let uuid = self.instance_uuid().to_string();
        if let Some(id) = self
            .cluster_rows()
            .into_iter()
            .find_map(|(id, u)| (u == uuid).then_some(id))
        {
            self.set_replica_id(id);
        }
    }

    /// `_cluster` as (id, uuid) pairs.
    pub fn cluster_rows(&self) -> Vec<(u32, String)> {
        let Ok(entry) = self.catalog.space(sys::CLUSTER) else {
            return Vec::new();
        };
        let Ok(tuples) = entry
            .space
            .select(0, IteratorType::All, &[0x90], 0, u32::MAX)
        else {
            return Vec::new();
        };
        tuples
            .iter()
            .filter_map(|t| {
                let id = mp::read_uint(&mut t.field(0)?).ok()?;
                let uuid = mp::read_str(&mut t.field(1)?).ok()?;
                Some((
                    u32::try_from(id).ok()?,
                    String::from_utf8_lossy(uuid).into_owned(),
                ))
            })
            .collect()
    }

    /// True if `uuid` is registered in `_cluster`.
    pub fn is_registered(&self, uuid: &str) -> bool {
        self.cluster_rows().iter().any(|(_, u)| u == uuid)
    }

    /// The replica set UUID (`_schema` key `cluster`), empty if missing.
    pub fn cluster_uuid(&self) -> String {
        let found = self.catalog.space(sys::SCHEMA).and_then(|e| {
            e.space
                .select(0, IteratorType::Eq, &str_key("cluster"), 0, 1)
        });
        found
            .ok()
            .and_then(|t| t.first().and_then(|t| t.field(1).map(|f| f.to_vec())))
            .and_then(|f| mp::read_str(&mut f.as_slice()).ok().map(|s| s.to_vec()))
            .map(|s| String::from_utf8_lossy(&s).into_owned())
            .unwrap_or_default()
    }

    /// Registers `uuid` under the lowest free replica id: the `_cluster` insert as a
    /// transaction to commit. Returns the id.
    pub fn register_replica(&mut self, txn: &mut Txn, uuid: &str) -> BoxResult<u32> {
        let used: Vec<u32> = self.cluster_rows().into_iter().map(|(id, _)| id).collect();
        let id = (1..REPLICA_ID_LIMIT)
            .find(|id| !used.contains(id))
            .ok_or_else(|| BoxError::replica_max(REPLICA_ID_LIMIT - 1))?;
        let mut tuple = Vec::new();
        mp::write_array_len(&mut tuple, 2);
        mp::write_uint(&mut tuple, u64::from(id));
        mp::write_str(&mut tuple, uuid);
        self.apply(
            txn,
            Dml::Insert {
                space_id: sys::CLUSTER,
                tuple: &tuple,
            },
        )?;
        Ok(id)
    }
}
