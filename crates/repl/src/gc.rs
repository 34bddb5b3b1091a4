//! WAL garbage-collection consumers (§6.3): one per replica that has joined or subscribed
//! since start, at the vclock the replica last acknowledged. The snapshot thread keeps every
//! xlog from the oldest consumer on. Consumers live in memory only, as in Tarantool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use spindle_xlog::{Vclock, VCLOCK_MAX};

#[derive(Clone, Default)]
pub struct Consumers(Arc<Mutex<HashMap<String, Vclock>>>);

impl Consumers {
    /// Sets the consumer of replica `uuid` to `vclock` (creating it).
    pub fn set(&self, uuid: &str, vclock: Vclock) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.insert(uuid.to_string(), vclock);
    }

    /// The component-wise minimum over every consumer (component 0 included as 0: replicas
    /// never report it), or None without consumers.
    pub fn min(&self) -> Option<Vclock> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut iter = map.values();
        let first = *iter.next()?;
        let mut min = Vclock::new();
        for id in 1..VCLOCK_MAX as u32 {
            let lsn = map.values().map(|v| v.get(id)).min().unwrap_or(0);
            if lsn > 0 || first.is_set(id) {
                min.set(id, lsn);
            }
        }
        Some(min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_is_component_wise() {
        let c = Consumers::default();
        assert!(c.min().is_none());
        let mut a = Vclock::new();
        a.set(1, 10);
        a.set(2, 3);
        let mut b = Vclock::new();
        b.set(1, 7);
        b.set(2, 9);
        c.set("a", a);
        c.set("b", b);
        let m = c.min().expect("consumers");
        assert_eq!((m.get(1), m.get(2)), (7, 3));
        assert_eq!(m.signature(), 10);
    }
}
