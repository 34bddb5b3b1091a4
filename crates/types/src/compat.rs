//! The Tarantool version spindle announces (`--compat-version`, `box.cfg.compat_version`): in
//! the greeting, `box.info.version` and `_TARANTOOL`. Clients choose their code paths by it —
//! from 2.10.0 on they send IPROTO_ID and may use streams — so spindle switches the matching
//! protocol behaviour with it too. It is one value for the whole process, set once before the
//! listener starts, hence a process-wide atomic rather than a field threaded everywhere.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

/// A Tarantool release number `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub patch: u8,
}

impl Version {
    pub const DEFAULT: Version = Version::new(2, 6, 0);
    /// The first release with IPROTO_ID, streams and BEGIN/COMMIT/ROLLBACK.
    pub const ID: Version = Version::new(2, 10, 0);

    pub const fn new(major: u8, minor: u8, patch: u8) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses `X.Y.Z` (three decimal numbers below 256); anything else is refused with a
    /// message naming the value.
    pub fn parse(text: &str) -> Result<Version, String> {
        let bad = || format!("compat_version must look like 2.11.0, got '{text}'");
        let mut parts = text.split('.');
        let mut next = || -> Result<u8, String> {
            let part = parts.next().ok_or_else(bad)?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse::<u8>().map_err(|_| bad())
        };
        let version = Version::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(bad());
        }
        if version < Version::new(1, 6, 7) {
            return Err(format!(
                "compat_version {version} is older than any Tarantool with this protocol"
            ));
        }
        Ok(version)
    }

    /// True from 2.10.0 on: IPROTO_ID, streams and transactions exist.
    pub fn has_streams(self) -> bool {
        self >= Version::ID
    }

    fn pack(self) -> u32 {
        (u32::from(self.major) << 16) | (u32::from(self.minor) << 8) | u32::from(self.patch)
    }

    fn unpack(v: u32) -> Version {
        Version::new((v >> 16) as u8, (v >> 8) as u8, v as u8)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

static ANNOUNCED: AtomicU32 = AtomicU32::new((2 << 16) | (6 << 8));

/// The version this process announces.
pub fn announced() -> Version {
    Version::unpack(ANNOUNCED.load(Ordering::Relaxed))
}

/// Sets the announced version; called once at boot, before the listener starts.
pub fn set_announced(version: Version) {
    ANNOUNCED.store(version.pack(), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(Version::parse("2.11.0"), Ok(Version::new(2, 11, 0)));
        assert_eq!(Version::parse("2.6.0"), Ok(Version::DEFAULT));
        for bad in [
            "", "2", "2.11", "2.11.0.1", "2.x.0", "2..0", "-2.1.0", "2.300.0", " 2.1.0", "1.5.0",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Version::DEFAULT.pack(), ANNOUNCED.load(Ordering::Relaxed));
        assert!(Version::new(2, 10, 0).has_streams() && !Version::new(2, 9, 9).has_streams());
        assert!(Version::new(3, 0, 0).has_streams());
        assert_eq!(Version::new(2, 11, 1).to_string(), "2.11.1");
        assert_eq!(
            Version::unpack(Version::new(2, 11, 3).pack()),
            Version::new(2, 11, 3)
        );
    }
}
