//! Batched lookups for runs of EQ selects: the keys of consecutive selects on one TREE
//! index are looked up in one walk of the tree (level by level, each level's nodes
//! prefetched for every key), so their cache misses overlap.

use spindle_memtx::index::Lookup;
use spindle_proto::iproto::{slice as span, Request};
use spindle_proto::route::{BatchItem, RequestBatch};
use spindle_types::iproto::IteratorType;

use crate::catalog::Engine;
use crate::db::Db;

impl Db {
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
    #[inline]
    pub fn lookup(&mut self, db: &Db, batch: &RequestBatch, i: usize) -> Option<Lookup> {
        if i < self.start || i >= self.end {
            // Only an EQ select starts a run worth planning.
            let item = batch.items.get(i)?;
            eq_select_target(&item.request)?;
            let (len, lookups) = db.plan_selects(batch, i);
            (self.start, self.end, self.lookups) = (i, i + len, lookups);
        }
        self.lookups.get_mut(i - self.start).and_then(Option::take)
    }
}
