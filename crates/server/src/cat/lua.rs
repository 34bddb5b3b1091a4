//! The Lua side of `tarantoolctl cat`, modelled closely enough to reproduce its output.
//!
//! tarantoolctl turns every row into Lua tables (`src/box/lua/xlog.c`) and hands them to the
//! YAML/JSON serializers, which walk each table with `lua_next`. The order of keys in the
//! output is therefore LuaJIT's hash-table order, which depends on the string hashes, the
//! table's preallocated size and the insertion sequence. [`TableBuilder`] replays LuaJIT
//! 2.1's `lj_tab_newkey`/`rehashtab`/`lj_tab_resize` (Tarantool's fork, as shipped with 2.6)
//! to get the same order. Number formatting (`%.14g`) and the "does this string look like a
//! number" test (`lj_strscan`) are reproduced here too.

/// A Lua value as tarantoolctl's serializers see it.
#[derive(Clone, Debug, PartialEq)]
pub enum LVal {
    /// A real `nil`: a hole in a sparse array.
    Nil,
    /// `msgpack.NULL` (a `cdata<void *>` NULL), what MessagePack nil decodes to.
    Null,
    Bool(bool),
    /// A Lua number (double).
    Num(f64),
    /// A `uint64_t` cdata (integers above 1e14 decode to it).
    U64(u64),
    /// An `int64_t` cdata.
    I64(i64),
    /// A Lua string: arbitrary bytes.
    Str(Vec<u8>),
    /// A decimal cdata, already in `decNumberToString` form.
    Decimal(String),
    /// A UUID cdata, in its canonical text form.
    Uuid(String),
    /// A MessagePack extension Tarantool 2.6 cannot decode (tarantoolctl aborts on it).
    Ext(i8, Vec<u8>),
    Table(Box<LTable>),
}

/// A Lua table and the serializer hint of its metatable.
#[derive(Clone, Debug, PartialEq)]
pub enum LTable {
    /// `__serialize = 'seq'`: decoded arrays and tuples. Items `1..=n`, flow style in YAML.
    Seq(Vec<LVal>),
    /// `__serialize = 'map'`: decoded maps, in `lua_next` order. Flow style in YAML.
    Map(Vec<(LVal, LVal)>),
    /// No metatable (the record, HEADER, BODY), in `lua_next` order. Block style in YAML;
    /// encoded as an array when its keys are `1..n`.
    Plain(Vec<(LVal, LVal)>),
}

impl LVal {
    pub fn str(s: &str) -> LVal {
        LVal::Str(s.as_bytes().to_vec())
    }
}

/// `DBL_INT_MAX` of Tarantool's Lua glue: integers beyond ±(1e14 - 1) become 64-bit cdata.
pub const DBL_INT_MAX: u64 = 100_000_000_000_000 - 1;

/// What `luaL_tofield` makes of a Lua number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NumField {
    Uint(u64),
    Int(i64),
    Double(f64),
}

/// `luaL_tofield` for LUA_TNUMBER: integral values in the 64-bit ranges are integers.
pub fn num_field(num: f64) -> NumField {
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if num.is_finite() && num.fract() != 0.0 {
        NumField::Double(num)
    } else if (0.0..TWO_64).contains(&num) {
        NumField::Uint(num as u64)
    } else if (-TWO_63..TWO_63).contains(&num) {
        NumField::Int(num as i64)
    } else {
        NumField::Double(num)
    }
}

/// C's `printf("%.<prec>g", x)` as glibc prints it (`-nan` for a NaN with the sign bit).
pub fn fmt_g(x: f64, prec: usize) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let p = prec.max(1);
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let sci = format!("{:.*e}", p - 1, x);
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse::<i32>().unwrap_or(0)),
        None => (sci.clone(), 0),
    };
    if exp < -4 || exp >= p as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!(
            "{}e{}{:02}",
            strip_fraction_zeros(&mantissa),
            sign,
            exp.unsigned_abs()
        )
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        strip_fraction_zeros(&format!("{:.*}", decimals, x))
    }
}

fn strip_fraction_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// `%.14g`, the serializers' `encode_number_precision`.
pub fn fmt_g14(x: f64) -> String {
    fmt_g(x, 14)
}

// ---------------------------------------------------------------------------------------
// lua_isnumber() on strings: LuaJIT's lj_strscan with STRSCAN_OPT_TONUM, validity only.

fn lj_isspace(c: u8) -> bool {
    matches!(c, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

fn casecmp(c: u8, k: u8) -> bool {
    (c | 0x20) == k
}

/// Whether Lua would convert the string to a number (`lua_isnumber`), e.g. `"1"`, `" 0x1F "`,
/// `"1e5"`, `"-inf"`, `"nan"`, `"0b101"`.
pub fn lua_isnumber(s: &[u8]) -> bool {
    // The string is NUL-terminated in Lua: reading past the end yields 0.
    let at = |i: usize| -> u8 { s.get(i).copied().unwrap_or(0) };
    let pe = s.len();
    let mut p = 0usize;
    if !at(p).is_ascii_digit() {
        while lj_isspace(at(p)) {
            p += 1;
        }
        if at(p) == b'+' || at(p) == b'-' {
            p += 1;
        }
        if at(p) >= b'A' {
            if casecmp(at(p), b'i') && casecmp(at(p + 1), b'n') && casecmp(at(p + 2), b'f') {
                p += 3;
                if casecmp(at(p), b'i')
                    && casecmp(at(p + 1), b'n')
                    && casecmp(at(p + 2), b'i')
                    && casecmp(at(p + 3), b't')
                    && casecmp(at(p + 4), b'y')
                {
                    p += 5;
                }
            } else if casecmp(at(p), b'n') && casecmp(at(p + 1), b'a') && casecmp(at(p + 2), b'n') {
                p += 3;
            }
            while lj_isspace(at(p)) {
                p += 1;
            }
            return at(p) == 0 && p >= pe;
        }
    }
    let mut base = 10;
    let mut hasdig = false;
    let mut dp: Option<usize> = None;
    if at(p) <= b'0' {
        if at(p) == b'0' {
            if casecmp(at(p + 1), b'x') {
                base = 16;
                p += 2;
            } else if casecmp(at(p + 1), b'b') {
                base = 2;
                p += 2;
            }
        }
        loop {
            match at(p) {
                b'0' => hasdig = true,
                b'.' => {
                    if dp.is_some() {
                        return false;
                    }
                    dp = Some(p);
                }
                _ => break,
            }
            p += 1;
        }
    }
    let sp = p;
    let mut dig: u32 = 0;
    loop {
        let c = at(p);
        let is_digit = if base == 16 {
            c.is_ascii_hexdigit()
        } else {
            c.is_ascii_digit()
        };
        if is_digit {
            dig += 1;
        } else if c == b'.' {
            if dp.is_some() {
                return false;
            }
            dp = Some(p);
        } else {
            break;
        }
        p += 1;
    }
    if !hasdig && dig == 0 {
        return false;
    }
    let mut ex: i64 = 0;
    if let Some(d) = dp {
        if dig > 0 {
            ex = d as i64 - (p as i64 - 1);
            let mut q = p as i64 - 1;
            while ex < 0 {
                let c = if q >= 0 { at(q as usize) } else { 0 };
                q -= 1;
                if c != b'0' {
                    break;
                }
                ex += 1;
                dig -= 1;
            }
        }
    }
    if base >= 10 && casecmp(at(p), if base == 16 { b'p' } else { b'e' }) {
        p += 1;
        if at(p) == b'+' || at(p) == b'-' {
            p += 1;
        }
        if !at(p).is_ascii_digit() {
            return false;
        }
        while at(p).is_ascii_digit() {
            p += 1;
        }
    }
    // Any suffix (i, u, l, ll, ull) needs options tonumber() does not pass.
    while lj_isspace(at(p)) {
        p += 1;
    }
    if at(p) != 0 || p < pe {
        return false;
    }
    if base == 2 {
        if ex != 0 || dig > 64 {
            return false;
        }
        return (0..dig as usize).all(|i| (at(sp + i) & !1) == b'0');
    }
    true
}

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
    fn of(key: &LVal, serial: u32) -> Option<SimKey> {
        Some(match key {
            LVal::Str(bytes) => SimKey::Str {
                hash: lua_hash(bytes),
                bytes: bytes.clone(),
            },
            LVal::Num(n) => {
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
            LVal::Bool(b) => SimKey::Bool(*b),
            LVal::Nil => return None,
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
    entries: Vec<(LVal, LVal)>,
    /// Entries the simulation could not place (never expected): listed last.
    overflow: Vec<usize>,
    /// Entries with keys Lua rejects (nil, NaN): listed last.
    unkeyed: Vec<(LVal, LVal)>,
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
    pub fn set(&mut self, key: LVal, val: LVal) {
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
    pub fn finish(self) -> Vec<(LVal, LVal)> {
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
        let mut slots: Vec<Option<(LVal, LVal)>> = entries.into_iter().map(Some).collect();
        let mut out: Vec<(LVal, LVal)> = order
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
    use super::*;

    fn keys_order(build: TableBuilder) -> Vec<String> {
        build
            .finish()
            .into_iter()
            .map(|(k, _)| match k {
                LVal::Str(s) => String::from_utf8_lossy(&s).into_owned(),
                LVal::Num(n) => fmt_g14(n),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn header_order_matches_tarantoolctl() {
        // Observed with Tarantool 2.6.0's tarantoolctl cat.
        let mut t = TableBuilder::new(0, 8);
        for k in ["type", "lsn", "replica_id", "timestamp"] {
            t.set(LVal::str(k), LVal::Num(1.0));
        }
        assert_eq!(keys_order(t), ["lsn", "replica_id", "type", "timestamp"]);
        let mut t = TableBuilder::new(0, 8);
        for k in ["type", "lsn", "replica_id", "timestamp", "tsn", "commit"] {
            t.set(LVal::str(k), LVal::Num(1.0));
        }
        assert_eq!(
            keys_order(t),
            ["lsn", "commit", "replica_id", "type", "tsn", "timestamp"]
        );
        let mut t = TableBuilder::new(0, 8);
        for k in ["type", "timestamp"] {
            t.set(LVal::str(k), LVal::Num(1.0));
        }
        assert_eq!(keys_order(t), ["timestamp", "type"]);
    }

    #[test]
    fn body_order_matches_tarantoolctl() {
        let mut t = TableBuilder::new(0, 0);
        for k in ["space_id", "index_base", "operations", "tuple"] {
            t.set(LVal::str(k), LVal::Num(1.0));
        }
        assert_eq!(
            keys_order(t),
            ["space_id", "operations", "index_base", "tuple"]
        );
        let mut t = TableBuilder::new(0, 0);
        for k in ["space_id", "index_base", "key", "tuple"] {
            t.set(LVal::str(k), LVal::Num(1.0));
        }
        assert_eq!(keys_order(t), ["space_id", "index_base", "key", "tuple"]);
    }

    #[test]
    fn integer_keys_go_to_the_array_part() {
        let mut t = TableBuilder::new(0, 0);
        for k in [3.0, 1.0, 2.0] {
            t.set(LVal::Num(k), LVal::Bool(true));
        }
        assert_eq!(keys_order(t), ["1", "2", "3"]);
    }

    #[test]
    fn duplicate_key_keeps_its_place() {
        let mut t = TableBuilder::new(0, 0);
        t.set(LVal::str("a"), LVal::Num(1.0));
        t.set(LVal::str("b"), LVal::Num(2.0));
        t.set(LVal::str("a"), LVal::Num(3.0));
        let out = t.finish();
        assert_eq!(out.len(), 2);
        assert!(out.contains(&(LVal::str("a"), LVal::Num(3.0))));
    }

    #[test]
    fn g14_formatting() {
        assert_eq!(fmt_g14(1795242743.7442), "1795242743.7442");
        assert_eq!(fmt_g14(1e100), "1e+100");
        assert_eq!(fmt_g14(0.1), "0.1");
        assert_eq!(fmt_g14(123.456), "123.456");
        assert_eq!(fmt_g14(1.5), "1.5");
        assert_eq!(fmt_g14(0.0001), "0.0001");
        assert_eq!(fmt_g14(0.00001), "1e-05");
        assert_eq!(fmt_g14(1e15 + 0.5), "1e+15");
        assert_eq!(fmt_g14(f64::NAN), "nan");
        assert_eq!(fmt_g14(-f64::NAN), "-nan");
        assert_eq!(fmt_g14(f64::NEG_INFINITY), "-inf");
        assert_eq!(fmt_g14(0.1f32 as f64), "0.10000000149012");
    }

    #[test]
    fn strings_that_look_like_numbers() {
        for s in [
            "1", "1.5", " 12 ", "0x1F", "1e5", "-inf", "nan", "0b101", ".5", "5.", "+3", "Infinity",
        ] {
            assert!(lua_isnumber(s.as_bytes()), "{s}");
        }
        for s in [
            "", "a", "1a", "0x", "1e", "0b102", "0b1.1", "1u", "1ll", "infin", "1..2", "1\0",
        ] {
            assert!(!lua_isnumber(s.as_bytes()), "{s:?}");
        }
    }
}
