//! The vector clock (spec §4): one LSN per replica id 0..31, plus which components are set.
//! Component 0 counts replica-local rows; it appears in file headers and signatures but is
//! never sent on the wire.

use std::cmp::Ordering;
use std::fmt;

use spindle_proto::mp::{self, MpError};

use crate::error::{XlogError, XlogResult};

/// Number of vclock components (`VCLOCK_MAX`): ids 1..31 plus the local component 0.
pub const VCLOCK_MAX: usize = 32;

/// LSNs are signed 64-bit in Tarantool; larger values never appear in a valid file.
const LSN_MAX: u64 = i64::MAX as u64;

/// A vector clock. Unset components read as 0; `is_set` tells them apart from an explicit 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Vclock {
    lsn: [u64; VCLOCK_MAX],
    /// Bit `id` is set when component `id` has been assigned.
    set_mask: u32,
}

impl Vclock {
    /// An empty vclock (`{}`).
    pub fn new() -> Vclock {
        Vclock::default()
    }

    /// The LSN of component `id`, 0 when unset or out of range.
    pub fn get(&self, id: u32) -> u64 {
        self.lsn.get(id as usize).copied().unwrap_or(0)
    }

    /// Whether component `id` has been assigned.
    pub fn is_set(&self, id: u32) -> bool {
        id < VCLOCK_MAX as u32 && self.set_mask & (1 << id) != 0
    }

    /// Assigns component `id`. Ids at or above `VCLOCK_MAX` are ignored: they can only come
    /// from damaged input, and a vclock must never take the process down.
    pub fn set(&mut self, id: u32, lsn: u64) {
        if let Some(slot) = self.lsn.get_mut(id as usize) {
            *slot = lsn;
            self.set_mask |= 1 << id;
        }
    }

    /// Advances component `id` to `lsn` (never backwards) and returns the previous value.
    pub fn follow(&mut self, id: u32, lsn: u64) -> u64 {
        let prev = self.get(id);
        if lsn > prev || !self.is_set(id) {
            self.set(id, lsn.max(prev));
        }
        prev
    }

    /// Sum of all components including 0: the file name and the cheap "newer than" measure.
    pub fn signature(&self) -> u64 {
        self.lsn
            .iter()
            .fold(0u64, |sum, &lsn| sum.wrapping_add(lsn))
    }

    /// Set components as `(id, lsn)` in ascending id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        (0..VCLOCK_MAX as u32)
            .filter(|&id| self.is_set(id))
            .map(|id| (id, self.get(id)))
    }

    /// Number of set components.
    pub fn len(&self) -> usize {
        self.set_mask.count_ones() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.set_mask == 0
    }

    /// Component-wise partial order (unset = 0). `None` means concurrent.
    pub fn compare(&self, other: &Vclock) -> Option<Ordering> {
        compare_from(self, other, 0)
    }

    /// Like `compare`, ignoring the local component 0, as replication comparisons do.
    pub fn compare_ignore0(&self, other: &Vclock) -> Option<Ordering> {
        compare_from(self, other, 1)
    }

    /// Parses the text form `{0: 1, 1: 316}` used in file headers: blanks allowed, ids below
    /// 32, no duplicate ids, LSNs that fit a signed 64-bit integer.
    pub fn parse_text(text: &str) -> XlogResult<Vclock> {
        let inner = text
            .trim()
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .ok_or_else(|| XlogError::bad_vclock(format!("not in braces: {text:?}")))?;
        let mut vclock = Vclock::new();
        if inner.trim().is_empty() {
            return Ok(vclock);
        }
        for pair in inner.split(',') {
            let (id, lsn) = parse_text_pair(pair)?;
            if vclock.is_set(id) {
                return Err(XlogError::bad_vclock(format!("duplicate id {id}")));
            }
            vclock.set(id, lsn);
        }
        Ok(vclock)
    }

    /// Writes the wire form: a map `{id: lsn}` in ascending id order without component 0.
    pub fn encode_mp(&self, out: &mut Vec<u8>) {
        let count = self.iter().filter(|&(id, _)| id != 0).count();
        mp::write_map_len(out, count as u32);
        for (id, lsn) in self.iter().filter(|&(id, _)| id != 0) {
            mp::write_uint(out, u64::from(id));
            mp::write_uint(out, lsn);
        }
    }

    /// Reads the wire form. Entries with id 0 or lsn 0 are dropped (as Tarantool does); an
    /// id of 32 or more is `MpError::Invalid`. Advances `buf` only on success.
    pub fn decode_mp(buf: &mut &[u8]) -> Result<Vclock, MpError> {
        let mut cur = *buf;
        let count = mp::read_map_len(&mut cur)?;
        let mut vclock = Vclock::new();
        for _ in 0..count {
            let id = mp::read_uint(&mut cur)?;
            let lsn = mp::read_uint(&mut cur)?;
            if id >= VCLOCK_MAX as u64 || lsn > LSN_MAX {
                return Err(MpError::Invalid);
            }
            if id != 0 && lsn != 0 {
                vclock.set(id as u32, lsn);
            }
        }
        *buf = cur;
        Ok(vclock)
    }
}

fn parse_text_pair(pair: &str) -> XlogResult<(u32, u64)> {
    let (id, lsn) = pair
        .split_once(':')
        .ok_or_else(|| XlogError::bad_vclock(format!("missing ':' in {pair:?}")))?;
    let id: u32 = parse_decimal(id)?;
    let lsn: u64 = parse_decimal(lsn)?;
    if id as usize >= VCLOCK_MAX {
        return Err(XlogError::bad_vclock(format!("id {id} out of range")));
    }
    if lsn > LSN_MAX {
        return Err(XlogError::bad_vclock(format!("lsn {lsn} out of range")));
    }
    Ok((id, lsn))
}

/// Digits only: `str::parse` would also accept a leading '+'.
fn parse_decimal<T: std::str::FromStr>(text: &str) -> XlogResult<T> {
    let text = text.trim_matches(|c| c == ' ' || c == '\t');
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(XlogError::bad_vclock(format!("not a number: {text:?}")));
    }
    text.parse()
        .map_err(|_| XlogError::bad_vclock(format!("number out of range: {text:?}")))
}

fn compare_from(a: &Vclock, b: &Vclock, first_id: usize) -> Option<Ordering> {
    let (mut le, mut ge) = (true, true);
    for id in first_id..VCLOCK_MAX {
        let (x, y) = (a.lsn[id], b.lsn[id]);
        le &= x <= y;
        ge &= x >= y;
    }
    match (le, ge) {
        (true, true) => Some(Ordering::Equal),
        (true, false) => Some(Ordering::Less),
        (false, true) => Some(Ordering::Greater),
        (false, false) => None,
    }
}

impl fmt::Display for Vclock {
    /// Tarantool's text form: `{0: 1, 1: 316}`; `{}` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (n, (id, lsn)) in self.iter().enumerate() {
            if n > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{id}: {lsn}")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Vclock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vclock{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vclock_of(pairs: &[(u32, u64)]) -> Vclock {
        let mut v = Vclock::new();
        for &(id, lsn) in pairs {
            v.set(id, lsn);
        }
        v
    }

    #[test]
    fn text_form_matches_tarantool() {
        let v = vclock_of(&[(1, 316), (0, 1)]);
        assert_eq!(v.to_string(), "{0: 1, 1: 316}");
        assert_eq!(Vclock::new().to_string(), "{}");
        assert_eq!(v.signature(), 317);
        assert_eq!(Vclock::parse_text("{0: 1, 1: 316}").unwrap(), v);
        assert_eq!(Vclock::parse_text(" {\t0:1 ,1:\t316 } ").unwrap(), v);
        assert_eq!(Vclock::parse_text("{}").unwrap(), Vclock::new());
        assert_eq!(Vclock::parse_text("{ }").unwrap(), Vclock::new());
    }

    #[test]
    fn bad_text_is_rejected() {
        for bad in [
            "",
            "{",
            "}",
            "{1}",
            "{1:}",
            "{:1}",
            "{32: 1}",
            "{1: -1}",
            "{1: 1, 1: 2}",
            "{1: 1,}",
            "{1: +1}",
            "{1: 9223372036854775808}",
            "1: 1",
            "{1: 1} x",
        ] {
            assert!(Vclock::parse_text(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn wire_form_skips_component_zero() {
        let v = vclock_of(&[(0, 5), (1, 14)]);
        let mut out = Vec::new();
        v.encode_mp(&mut out);
        assert_eq!(out, [0x81, 0x01, 0x0e]);
        let mut cur = &[0x82u8, 0x00, 0x05, 0x01, 0x0e][..];
        assert_eq!(Vclock::decode_mp(&mut cur).unwrap(), vclock_of(&[(1, 14)]));
        assert!(cur.is_empty());
        let mut zero_lsn = &[0x81u8, 0x02, 0x00][..];
        assert!(Vclock::decode_mp(&mut zero_lsn).unwrap().is_empty());
        let mut bad_id = &[0x81u8, 0x20, 0x01][..];
        assert_eq!(Vclock::decode_mp(&mut bad_id), Err(MpError::Invalid));
        assert_eq!(bad_id.len(), 3, "cursor must not move on error");
    }

    #[test]
    fn partial_order() {
        let a = vclock_of(&[(1, 5), (2, 3)]);
        let b = vclock_of(&[(1, 6), (2, 3)]);
        let c = vclock_of(&[(1, 4), (2, 9)]);
        assert_eq!(a.compare(&b), Some(Ordering::Less));
        assert_eq!(b.compare(&a), Some(Ordering::Greater));
        assert_eq!(a.compare(&a), Some(Ordering::Equal));
        assert_eq!(a.compare(&c), None);
        assert_eq!(
            vclock_of(&[(1, 0)]).compare(&Vclock::new()),
            Some(Ordering::Equal)
        );
        let local = vclock_of(&[(0, 7), (1, 5), (2, 3)]);
        assert_eq!(local.compare(&a), Some(Ordering::Greater));
        assert_eq!(local.compare_ignore0(&a), Some(Ordering::Equal));
    }

    #[test]
    fn follow_returns_previous() {
        let mut v = Vclock::new();
        assert_eq!(v.follow(1, 1), 0);
        assert_eq!(v.follow(1, 5), 1);
        assert_eq!(v.get(1), 5);
        assert_eq!(v.get(40), 0);
    }

    #[test]
    fn follow_never_goes_back_and_ignores_bad_ids() {
        let mut v = vclock_of(&[(1, 5)]);
        assert_eq!(v.follow(1, 3), 5);
        assert_eq!(v.get(1), 5);
        v.set(40, 7);
        assert_eq!(v.get(40), 0);
        assert_eq!(v.signature(), 5);
    }

    fn arb_vclock() -> impl Strategy<Value = Vclock> {
        proptest::collection::btree_map(0u32..32, 0u64..=LSN_MAX, 0..8)
            .prop_map(|m| vclock_of(&m.into_iter().collect::<Vec<_>>()))
    }

    proptest! {
        #[test]
        fn text_round_trip(v in arb_vclock()) {
            prop_assert_eq!(Vclock::parse_text(&v.to_string()).unwrap(), v);
        }

        #[test]
        fn mp_round_trip_drops_zeroes(v in arb_vclock()) {
            let mut out = Vec::new();
            v.encode_mp(&mut out);
            let decoded = Vclock::decode_mp(&mut &out[..]).unwrap();
            let mut expected = Vclock::new();
            for (id, lsn) in v.iter().filter(|&(id, lsn)| id != 0 && lsn != 0) {
                expected.set(id, lsn);
            }
            prop_assert_eq!(decoded, expected);
            prop_assert_eq!(decoded.compare_ignore0(&v), Some(Ordering::Equal));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64),
                                text in ".{0,40}") {
            let _ = Vclock::decode_mp(&mut &bytes[..]);
            let _ = Vclock::parse_text(&text);
        }
    }
}
