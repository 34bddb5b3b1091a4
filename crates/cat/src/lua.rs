//! The Lua side of `tarantoolctl cat`, modelled closely enough to reproduce its output.
//!
//! tarantoolctl turns every row into Lua tables (`src/box/lua/xlog.c`) and hands them to the
//! YAML/JSON serializers, which walk each table with `lua_next`. The order of keys in the
//! output is therefore LuaJIT's hash-table order, which depends on the string hashes, the
//! table's preallocated size and the insertion sequence. [`TableBuilder`] replays LuaJIT
//! 2.1's `lj_tab_newkey`/`rehashtab`/`lj_tab_resize` (Tarantool's fork, as shipped with 2.6)
//! to get the same order. The values and the serializers themselves are `spindle_emit`'s.

use spindle_emit::Value;

// ---------------------------------------------------------------------------------------
// LuaJIT table simulation.

/// LuaJIT's string hash (`lua_hash` in Tarantool's LuaJIT fork). Bytes are read as C `char`,
/// which is signed on x86-64.
pub fn lua_hash(s: &[u8]) -> u32 {
    let len = s.len();
    let getu32 = |i: usize| -> u32 {
        let mut b = [0u8; 4];
        for (k, slot) in b.iter_mut().enumerate() {
            *slot = s.get(i + k).copied().unwrap_or(0);
        }
        u32::from_le_bytes(b)
    };
    let schar = |i: usize| -> u32 { s.get(i).copied().unwrap_or(0) as i8 as i32 as u32 };
    let mut h = len as u32;
    let mut a;
    let mut b;
    if len >= 4 {
        a = getu32(0);
        h ^= getu32(len - 4);
        b = getu32((len >> 1) - 2);
        h ^= b;
        h = h.wrapping_sub(b.rotate_left(14));
        b = b.wrapping_add(getu32((len >> 2) - 1));
    } else if len > 0 {
        a = schar(0);
        h ^= schar(len - 1);
        b = schar(len >> 1);
        h ^= b;
        h = h.wrapping_sub(b.rotate_left(14));
    } else {
        return 0;
    }
    a ^= h;
    a = a.wrapping_sub(h.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    h ^= b;
    h = h.wrapping_sub(b.rotate_left(16));
    h
}

/// `hashrot` of lj_tab.h (the x86/x64 variant).
fn hashrot(lo: u32, hi: u32) -> u32 {
    let mut lo = lo;
    let mut hi = hi;
    lo ^= hi;
    hi = hi.rotate_left(14);
    lo = lo.wrapping_sub(hi);
    hi = hi.rotate_left(5);
    hi ^= lo;
    hi = hi.wrapping_sub(lo.rotate_left(13));
    hi
}

fn hashnum_bits(bits: u64) -> u32 {
    hashrot(bits as u32, ((bits >> 32) as u32) << 1)
}

/// A key as the table sees it.
#[derive(Clone, Debug)]
enum SimKey {
    Str {
        hash: u32,
        bytes: Vec<u8>,
    },
    /// A number with an integral value in the int32 range (array-part candidate).
    Int(i32),
    /// Any other number (never NaN).
    Num(f64),
    Bool(bool),
    /// A GC object or cdata: hashed by address in LuaJIT, so its position is not
    /// reproducible; a stable pseudo-hash stands in.
    Opaque(u32),
}

impl SimKey {
    fn of(key: &Value, serial: u32) -> Option<SimKey> {
        Some(match key {
            Value::Str(bytes) => SimKey::Str {
                hash: lua_hash(bytes),
                bytes: bytes.clone(),
            },
            Value::Num(n) => {
                if n.is_nan() {
                    return None;
                }
                let k = *n as i32;
                if *n == f64::from(k) {
                    SimKey::Int(k)
                } else {
                    SimKey::Num(*n)
                }
            }
            Value::Bool(b) => SimKey::Bool(*b),
            Value::Nil => return None,
            _ => SimKey::Opaque(serial),
        })
    }

    fn hash(&self) -> u32 {
        match self {
            SimKey::Str { hash, .. } => *hash,
            SimKey::Int(k) => hashnum_bits(f64::from(*k).to_bits()),
            SimKey::Num(n) => {
                let bits = if *n == 0.0 { 0 } else { n.to_bits() };
                hashnum_bits(bits)
            }
            SimKey::Bool(b) => u32::from(*b),
            SimKey::Opaque(serial) => hashrot(serial.wrapping_mul(0x9e37_79b9), 0x04c1_1db7),
        }
    }

    fn same(&self, other: &SimKey) -> bool {
        match (self, other) {
            (SimKey::Str { bytes: a, .. }, SimKey::Str { bytes: b, .. }) => a == b,
            (SimKey::Int(a), SimKey::Int(b)) => a == b,
            (SimKey::Num(a), SimKey::Num(b)) => a == b,
            (SimKey::Bool(a), SimKey::Bool(b)) => a == b,
            _ => false,
        }
    }

    /// `countint`: the array-part bin of an integer key, if it is one.
    fn array_bin(&self) -> Option<usize> {
        const LJ_MAX_ASIZE: u32 = (1 << 27) + 1;
        match self {
            SimKey::Int(k) if (*k as u32) < LJ_MAX_ASIZE => {
                let k = *k as u32;
                Some(if k > 2 { fls(k - 1) as usize } else { 0 })
            }
            _ => None,
        }
    }
}

/// Index of the highest set bit (`lj_fls`); `x` must be non-zero.
fn fls(x: u32) -> u32 {
    31 - x.leading_zeros()
}

fn hsize2hbits(s: u32) -> u32 {
    match s {
        0 => 0,
        1 => 1,
        _ => 1 + fls(s - 1),
    }
}

const LJ_MAX_ABITS: usize = 28;
const LJ_MAX_HBITS: u32 = 26;

#[derive(Clone, Copy, Default, Debug)]
struct Node {
    /// Index into `TableBuilder::keys`; `None` for a free node.
    entry: Option<usize>,
    next: Option<usize>,
}

enum SetResult {
    Existing(usize),
    Inserted,
    NeedRehash,
}

/// Builds a table the way LuaJIT would and yields its entries in `lua_next` order.
pub struct TableBuilder {
    asize: usize,
    array: Vec<Option<usize>>,
    /// The hash part; empty when the table has none (LuaJIT's shared nil node).
    nodes: Vec<Node>,
    /// `freetop`: free nodes are searched downwards from here.
    freetop: usize,
    keys: Vec<SimKey>,
    entries: Vec<(Value, Value)>,
    /// Entries the simulation could not place (never expected): listed last.
    overflow: Vec<usize>,
    /// Entries with keys Lua rejects (nil, NaN): listed last.
    unkeyed: Vec<(Value, Value)>,
}

impl TableBuilder {
    /// `lua_createtable(L, narr, nrec)`.
    pub fn new(narr: u32, nrec: u32) -> TableBuilder {
        let asize = if narr > 0 { narr as usize + 1 } else { 0 };
        // LuaJIT refuses more than 2^26 hash slots ("table overflow").
        let hbits = hsize2hbits(nrec).min(LJ_MAX_HBITS);
        let nodes = if hbits > 0 {
            vec![Node::default(); 1usize << hbits]
        } else {
            Vec::new()
        };
        TableBuilder {
            asize,
            array: vec![None; asize],
            freetop: nodes.len(),
            nodes,
            keys: Vec::new(),
            entries: Vec::new(),
            overflow: Vec::new(),
            unkeyed: Vec::new(),
        }
    }

    /// `t[key] = val` (`lua_settable`/`lua_rawset`): a new key is placed as LuaJIT places
    /// it; an existing key keeps its place and takes the new value.
    pub fn set(&mut self, key: Value, val: Value) {
        let Some(sim) = SimKey::of(&key, self.keys.len() as u32) else {
            self.unkeyed.push((key, val));
            return;
        };
        let idx = self.keys.len();
        self.keys.push(sim);
        self.entries.push((key, val));
        for _ in 0..4 {
            match self.try_set(idx) {
                SetResult::Existing(old) => {
                    self.keys.pop();
                    if let Some((_, v)) = self.entries.pop() {
                        if let Some(slot) = self.entries.get_mut(old) {
                            slot.1 = v;
                        }
                    }
                    return;
                }
                SetResult::Inserted => return,
                SetResult::NeedRehash => self.rehash(idx),
            }
        }
        self.overflow.push(idx);
    }

    /// The entries in `lua_next` order: the array part, then the hash nodes.
    pub fn finish(self) -> Vec<(Value, Value)> {
        let TableBuilder {
            array,
            nodes,
            entries,
            overflow,
            unkeyed,
            ..
        } = self;
        let mut order: Vec<usize> = array.iter().flatten().copied().collect();
        order.extend(nodes.iter().filter_map(|n| n.entry));
        order.extend(overflow);
        let mut slots: Vec<Option<(Value, Value)>> = entries.into_iter().map(Some).collect();
        let mut out: Vec<(Value, Value)> = order
            .into_iter()
            .filter_map(|i| slots.get_mut(i).and_then(Option::take))
            .collect();
        out.extend(unkeyed);
        out
    }

    fn key(&self, idx: usize) -> Option<&SimKey> {
        self.keys.get(idx)
    }

    fn main_position(&self, idx: usize) -> usize {
        let hmask = self.nodes.len().saturating_sub(1);
        self.key(idx).map_or(0, |k| k.hash() as usize & hmask)
    }

    /// `lj_tab_set` without the rehash: array slot for small integers, else the hash part.
    fn try_set(&mut self, idx: usize) -> SetResult {
        if let Some(SimKey::Int(k)) = self.key(idx) {
            let k = *k as u32 as usize;
            if k < self.asize {
                return match self.array.get_mut(k) {
                    Some(Some(old)) => SetResult::Existing(*old),
                    Some(slot) => {
                        *slot = Some(idx);
                        SetResult::Inserted
                    }
                    None => SetResult::NeedRehash,
                };
            }
        }
        self.set_hash(idx)
    }

    fn set_hash(&mut self, idx: usize) -> SetResult {
        if !self.nodes.is_empty() {
            let mut n = Some(self.main_position(idx));
            let mut guard = 0;
            while let Some(i) = n {
                let Some(node) = self.nodes.get(i) else { break };
                if let (Some(e), Some(k)) = (node.entry, self.key(idx)) {
                    if self.key(e).is_some_and(|ek| ek.same(k)) {
                        return SetResult::Existing(e);
                    }
                }
                n = node.next;
                guard += 1;
                if guard > self.nodes.len() {
                    break;
                }
            }
        }
        self.newkey(idx)
    }

    /// `lj_tab_newkey`: Brent's variation, as LuaJIT does it.
    fn newkey(&mut self, idx: usize) -> SetResult {
        if self.nodes.is_empty() {
            return SetResult::NeedRehash;
        }
        let mut n = self.main_position(idx);
        let occupied = self.nodes.get(n).is_some_and(|node| node.entry.is_some());
        if occupied {
            // Find a free node, searching down from freetop.
            let free = loop {
                if self.freetop == 0 {
                    return SetResult::NeedRehash;
                }
                self.freetop -= 1;
                if self
                    .nodes
                    .get(self.freetop)
                    .is_some_and(|x| x.entry.is_none())
                {
                    break self.freetop;
                }
            };
            let moved = self.nodes.get(n).and_then(|x| x.entry).unwrap_or(idx);
            let collide = self.main_position(moved);
            if collide != n {
                // The occupant is not in its main position: move it to the free node.
                let mut c = collide;
                let mut guard = 0;
                while let Some(next) = self.nodes.get(c).and_then(|x| x.next) {
                    if next == n {
                        break;
                    }
                    c = next;
                    guard += 1;
                    if guard > self.nodes.len() {
                        break;
                    }
                }
                self.set_next(c, Some(free));
                let occupant = self.nodes.get(n).copied().unwrap_or_default();
                if let Some(slot) = self.nodes.get_mut(free) {
                    *slot = occupant;
                }
                if let Some(slot) = self.nodes.get_mut(n) {
                    slot.next = None;
                    slot.entry = None;
                }
                let moved_is_str = matches!(self.key(moved), Some(SimKey::Str { .. }));
                self.rechain(n, free, moved_is_str);
            } else {
                // Chain the new key into the free node.
                let next = self.nodes.get(n).and_then(|x| x.next);
                if let Some(slot) = self.nodes.get_mut(free) {
                    slot.next = next;
                }
                self.set_next(n, Some(free));
                n = free;
            }
        }
        if let Some(slot) = self.nodes.get_mut(n) {
            slot.entry = Some(idx);
        }
        SetResult::Inserted
    }

    fn set_next(&mut self, i: usize, next: Option<usize>) {
        if let Some(slot) = self.nodes.get_mut(i) {
            slot.next = next;
        }
    }

    fn next_of(&self, i: usize) -> Option<usize> {
        self.nodes.get(i).and_then(|x| x.next)
    }

    fn node_main(&self, i: usize) -> Option<usize> {
        self.nodes
            .get(i)
            .and_then(|x| x.entry)
            .map(|e| self.main_position(e))
    }

    /// The rechaining step after a collision move (nodes after the moved one whose main
    /// position is `n` are relinked onto `n`).
    fn rechain(&mut self, n: usize, free: usize, moved_is_str: bool) {
        let mut freenode = free;
        let mut guard = 0usize;
        let limit = self.nodes.len() * 4 + 4;
        while let Some(nn) = self.next_of(freenode) {
            guard += 1;
            if guard > limit {
                return;
            }
            let nn_is_str = self
                .nodes
                .get(nn)
                .and_then(|x| x.entry)
                .is_some_and(|e| matches!(self.key(e), Some(SimKey::Str { .. })));
            let hits = self.node_main(nn) == Some(n) && (moved_is_str || nn_is_str);
            if !hits {
                freenode = nn;
                continue;
            }
            // rechain:
            let nn_next = self.next_of(nn);
            self.set_next(freenode, nn_next);
            let n_next = self.next_of(n);
            self.set_next(nn, n_next);
            self.set_next(n, Some(nn));
            while let Some(nn) = self.next_of(freenode) {
                guard += 1;
                if guard > limit {
                    return;
                }
                match self.node_main(nn) {
                    Some(mn) if mn != freenode && mn != nn => {
                        let nn_next = self.next_of(nn);
                        self.set_next(freenode, nn_next);
                        let mn_next = self.next_of(mn);
                        self.set_next(nn, mn_next);
                        self.set_next(mn, Some(nn));
                    }
                    _ => freenode = nn,
                }
            }
            return;
        }
    }

    /// `rehashtab`: count integer keys, pick the array size, resize.
    fn rehash(&mut self, new_key: usize) {
        let mut bins = [0u32; LJ_MAX_ABITS];
        // countarray
        let mut na_arr: u32 = 0;
        if self.asize > 0 {
            let mut i = 0usize;
            for (b, bin) in bins.iter_mut().enumerate() {
                let mut top = 2usize << b;
                if top >= self.asize {
                    top = self.asize - 1;
                    if i > top {
                        break;
                    }
                }
                let mut n = 0;
                while i <= top {
                    if self.array.get(i).is_some_and(Option::is_some) {
                        n += 1;
                    }
                    i += 1;
                }
                *bin += n;
                na_arr += n;
            }
        }
        let mut total = 1 + na_arr;
        let mut narray = na_arr;
        for node in &self.nodes {
            if let Some(e) = node.entry {
                total += 1;
                if let Some(b) = self.key(e).and_then(SimKey::array_bin) {
                    if let Some(bin) = bins.get_mut(b) {
                        *bin += 1;
                    }
                    narray += 1;
                }
            }
        }
        if let Some(b) = self.key(new_key).and_then(SimKey::array_bin) {
            if let Some(bin) = bins.get_mut(b) {
                *bin += 1;
            }
            narray += 1;
        }
        // bestasize
        let nn = narray;
        let mut sum = 0u32;
        let mut na = 0u32;
        let mut sz = 0u32;
        let mut b = 0usize;
        while b < LJ_MAX_ABITS && 2 * u64::from(nn) > (1u64 << b) && sum != nn {
            let bin = bins.get(b).copied().unwrap_or(0);
            if bin > 0 {
                sum += bin;
                if 2 * u64::from(sum) > (1u64 << b) {
                    sz = (2u32 << b) + 1;
                    na = sum;
                }
            }
            b += 1;
        }
        total -= na;
        self.resize(sz as usize, hsize2hbits(total).min(LJ_MAX_HBITS));
    }

    /// `lj_tab_resize`.
    fn resize(&mut self, asize: usize, hbits: u32) {
        let old_asize = self.asize;
        let old_nodes = std::mem::take(&mut self.nodes);
        if asize > old_asize {
            self.array.resize(asize, None);
            self.asize = asize;
        }
        self.nodes = if hbits > 0 {
            vec![Node::default(); 1usize << hbits]
        } else {
            Vec::new()
        };
        self.freetop = self.nodes.len();
        if asize < old_asize {
            self.asize = asize;
            let moved: Vec<usize> = self
                .array
                .get(asize..)
                .unwrap_or_default()
                .iter()
                .flatten()
                .copied()
                .collect();
            self.array.truncate(asize);
            for e in moved {
                if !matches!(self.set_hash(e), SetResult::Inserted) {
                    self.overflow.push(e);
                }
            }
        }
        for node in old_nodes {
            if let Some(e) = node.entry {
                if !matches!(self.try_set(e), SetResult::Inserted) {
                    self.overflow.push(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use spindle_emit::fmt_g14;

    use super::*;

    fn keys_order(build: TableBuilder) -> Vec<String> {
        build
            .finish()
            .into_iter()
            .map(|(k, _)| match k {
                Value::Str(s) => String::from_utf8_lossy(&s).into_owned(),
                Value::Num(n) => fmt_g14(n),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn header_order_matches_tarantoolctl() {
        // Observed with Tarantool 2.6.0's tarantoolctl cat.
        let mut t = TableBuilder::new(0, 8);
        for k in ["type", "lsn", "replica_id", "timestamp"] {
            t.set(Value::str(k), Value::Num(1.0));
        }
        assert_eq!(keys_order(t), ["lsn", "replica_id", "type", "timestamp"]);
        let mut t = TableBuilder::new(0, 8);
        for k in ["type", "lsn", "replica_id", "timestamp", "tsn", "commit"] {
            t.set(Value::str(k), Value::Num(1.0));
        }
        assert_eq!(
            keys_order(t),
            ["lsn", "commit", "replica_id", "type", "tsn", "timestamp"]
        );
        let mut t = TableBuilder::new(0, 8);
        for k in ["type", "timestamp"] {
            t.set(Value::str(k), Value::Num(1.0));
        }
        assert_eq!(keys_order(t), ["timestamp", "type"]);
    }

    #[test]
    fn body_order_matches_tarantoolctl() {
        let mut t = TableBuilder::new(0, 0);
        for k in ["space_id", "index_base", "operations", "tuple"] {
            t.set(Value::str(k), Value::Num(1.0));
        }
        assert_eq!(
            keys_order(t),
            ["space_id", "operations", "index_base", "tuple"]
        );
        let mut t = TableBuilder::new(0, 0);
        for k in ["space_id", "index_base", "key", "tuple"] {
            t.set(Value::str(k), Value::Num(1.0));
        }
        assert_eq!(keys_order(t), ["space_id", "index_base", "key", "tuple"]);
    }

    #[test]
    fn integer_keys_go_to_the_array_part() {
        let mut t = TableBuilder::new(0, 0);
        for k in [3.0, 1.0, 2.0] {
            t.set(Value::Num(k), Value::Bool(true));
        }
        assert_eq!(keys_order(t), ["1", "2", "3"]);
    }

    #[test]
    fn duplicate_key_keeps_its_place() {
        let mut t = TableBuilder::new(0, 0);
        t.set(Value::str("a"), Value::Num(1.0));
        t.set(Value::str("b"), Value::Num(2.0));
        t.set(Value::str("a"), Value::Num(3.0));
        let out = t.finish();
        assert_eq!(out.len(), 2);
        assert!(out.contains(&(Value::str("a"), Value::Num(3.0))));
    }
}
