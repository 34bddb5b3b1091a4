//! The system catalogue of a new instance: the rows of Tarantool 2.6's system spaces (kept as
//! data in `bootstrap_rows.tsv`: space id, tab, the tuple as JSON), plus the rows that are
//! specific to this instance (replica set UUID, `_cluster` entry).

use spindle_proto::mp;
use spindle_types::{BoxError, BoxResult};

use crate::catalog::sys;
use crate::db::Db;
use crate::dml::Dml;

const ROWS: &str = include_str!("bootstrap_rows.tsv");

/// (space id, MessagePack tuple) for every bootstrap row, in snapshot order.
pub fn system_rows(cluster_uuid: &str, instance_uuid: &str) -> BoxResult<Vec<(u32, Vec<u8>)>> {
    let mut rows = Vec::new();
    rows.push((
        sys::SCHEMA,
        encode(&serde_json::json!(["cluster", cluster_uuid])),
    ));
    for line in ROWS.lines().filter(|l| !l.trim().is_empty()) {
        let (space, json) = line.split_once('\t').ok_or_else(|| bad(line))?;
        let space: u32 = space.parse().map_err(|_| bad(line))?;
        let value: serde_json::Value = serde_json::from_str(json).map_err(|_| bad(line))?;
        rows.push((space, encode(&value)));
    }
    rows.push((sys::CLUSTER, encode(&serde_json::json!([1, instance_uuid]))));
    rows.sort_by_key(|(space, _)| *space);
    Ok(rows)
}

fn bad(line: &str) -> BoxError {
    BoxError::illegal_params(&format!("bad bootstrap row: {line}"))
}

pub(crate) fn encode(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

fn encode_into(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value as J;
    match value {
        J::Null => mp::write_nil(out),
        J::Bool(b) => mp::write_bool(out, *b),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                mp::write_uint(out, u);
            } else if let Some(i) = n.as_i64() {
                mp::write_int(out, i);
            } else {
                mp::write_f64(out, n.as_f64().unwrap_or(0.0));
            }
        }
        J::String(s) => mp::write_str(out, s),
        J::Array(items) => {
            mp::write_array_len(out, items.len() as u32);
            items.iter().for_each(|v| encode_into(v, out));
        }
        J::Object(map) => {
            mp::write_map_len(out, map.len() as u32);
            for (k, v) in map {
                mp::write_str(out, k);
                encode_into(v, out);
            }
        }
    }
}

/// Creates the system spaces and their indexes (empty) so that system rows can be loaded:
/// `_space` and `_index` rows need `_space` and `_index` to exist first.
pub fn preload_catalog(db: &mut Db) -> BoxResult<()> {
    let rows = system_rows("", "")?;
    for (space, tuple) in rows.iter().filter(|(s, _)| *s == sys::SPACE) {
        let _ = space;
        db.catalog.preload_space(tuple)?;
    }
    for (_, tuple) in rows.iter().filter(|(s, _)| *s == sys::INDEX) {
        db.catalog.preload_index(tuple)?;
    }
    Ok(())
}

/// Loads the full catalogue of a new instance.
pub fn load_system_rows(db: &mut Db, cluster_uuid: &str) -> BoxResult<()> {
    let instance_uuid = db.instance_uuid().to_string();
    for (space_id, tuple) in system_rows(cluster_uuid, &instance_uuid)? {
        db.apply_dml(Dml::Insert {
            space_id,
            tuple: &tuple,
        })?;
    }
    Ok(())
}

/// The `_user` row for `admin` with a chap-sha1 hash of `password`.
pub fn admin_row(password: &str) -> Vec<u8> {
    let hash = spindle_proto::auth::hash2_base64(password);
    encode(&serde_json::json!([1, 1, "admin", "user", {"chap-sha1": hash}]))
}
