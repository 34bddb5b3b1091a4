//! The transaction settings of the process: `memtx_use_mvcc_engine` (set once, before the
//! listener starts, like `compat`) and `txn_isolation` (the level a BEGIN without one, or
//! with 0 "default", gets; a later `box.cfg{}` may change it). Process-wide atomics: only
//! BEGIN reads them, never the plain request path.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Isolation levels by their IPROTO numbers (TXN_ISOLATION of BEGIN).
pub const READ_COMMITTED: u8 = 1;
pub const READ_CONFIRMED: u8 = 2;
pub const BEST_EFFORT: u8 = 3;

static MVCC: AtomicBool = AtomicBool::new(false);
static ISOLATION: AtomicU8 = AtomicU8::new(BEST_EFFORT);

/// True if stream transactions run on the MVCC engine.
pub fn mvcc() -> bool {
    MVCC.load(Ordering::Relaxed)
}

pub fn set_mvcc(on: bool) {
    MVCC.store(on, Ordering::Relaxed);
}

/// The level of a transaction that asks for the default one.
pub fn default_isolation() -> u8 {
    ISOLATION.load(Ordering::Relaxed)
}

pub fn set_default_isolation(level: u8) {
    ISOLATION.store(level, Ordering::Relaxed);
}

/// A `txn_isolation` setting: a name or its number, 1 to 3. "default" (0) is refused, as
/// 2.11 refuses it; so is linearizable (4), which spindle does not implement.
pub fn parse_isolation(name: Option<&str>, number: Option<f64>) -> Result<u8, String> {
    let level = match (name, number) {
        (Some("read-committed"), _) => READ_COMMITTED,
        (Some("read-confirmed"), _) => READ_CONFIRMED,
        (Some("best-effort"), _) => BEST_EFFORT,
        (None, Some(n)) if n == 1.0 || n == 2.0 || n == 3.0 => n as u8,
        _ => {
            return Err(
                "txn_isolation must be 'read-committed', 'read-confirmed', 'best-effort' \
                 or 1..3"
                    .into(),
            )
        }
    };
    Ok(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_by_name_or_number_but_never_default() {
        assert_eq!(parse_isolation(Some("read-committed"), None), Ok(1));
        assert_eq!(parse_isolation(Some("best-effort"), None), Ok(3));
        assert_eq!(parse_isolation(None, Some(2.0)), Ok(2));
        assert!(parse_isolation(Some("default"), None).is_err());
        assert!(parse_isolation(None, Some(0.0)).is_err());
        assert!(parse_isolation(None, Some(4.0)).is_err());
        assert!(parse_isolation(None, Some(2.5)).is_err());
    }
}
