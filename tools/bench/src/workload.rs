//! What to send: request kinds, weighted mixes (YCSB A/B/C and custom), and the encoding of
//! one request for a key. Rows are `[key: unsigned, value: string of --value-size bytes]`.

use crate::keys::Rng;
use clap::ValueEnum;
use spindle_proto::iproto;
use spindle_proto::mp;

/// One request kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Ping,
    Select,
    Insert,
    Replace,
    Update,
    Upsert,
    Delete,
    /// CALL of `BENCH_FUNCTION(key, value)`, a Lua function doing one REPLACE.
    Call,
    /// EVAL of `return ...` with `[key]`.
    Eval,
    /// A stream transaction (2.10+): BEGIN, `TXN_REPLACES` REPLACEs of random keys, COMMIT,
    /// sent together (`txn`).
    Txn,
    /// A read-modify-write transaction on a counter row `[key, n]` in a stream: BEGIN and
    /// SELECT, then REPLACE `[key, n + 1]` and COMMIT (`counter`).
    Counter,
}

/// REPLACEs in one `txn` transaction.
pub const TXN_REPLACES: usize = 5;

/// The stored procedure the CALL workload calls; `prepare` defines it on the server.
pub const BENCH_FUNCTION: &str = "spindle_bench_replace";

pub const ALL_OPS: [Op; 11] = [
    Op::Ping,
    Op::Select,
    Op::Insert,
    Op::Replace,
    Op::Update,
    Op::Upsert,
    Op::Delete,
    Op::Call,
    Op::Eval,
    Op::Txn,
    Op::Counter,
];

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Ping => "ping",
            Op::Select => "select",
            Op::Insert => "insert",
            Op::Replace => "replace",
            Op::Update => "update",
            Op::Upsert => "upsert",
            Op::Delete => "delete",
            Op::Call => "call",
            Op::Eval => "eval",
            Op::Txn => "txn",
            Op::Counter => "counter",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn parse(name: &str) -> Option<Op> {
        let name = match name {
            "read" | "get" => "select",
            other => other,
        };
        ALL_OPS
            .into_iter()
            .find(|op| op.name() == name && !op.is_transaction())
    }

    /// True for the transactions of several requests (`txn`, `counter`): the stream driver
    /// (`txn`) runs them, never a mix.
    pub fn is_transaction(self) -> bool {
        matches!(self, Op::Txn | Op::Counter)
    }

    /// True for requests whose key is fresh (the next of a sequence) rather than drawn.
    pub fn takes_new_key(self) -> bool {
        self == Op::Insert
    }

    /// True for requests that need a space.
    pub fn uses_space(self) -> bool {
        !matches!(self, Op::Ping | Op::Eval)
    }
}

/// `--workload`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WorkloadKind {
    Ping,
    /// SELECT by primary key (EQ, limit 1).
    Select,
    /// INSERT of new keys, counting up from --insert-start (default: --keys).
    Insert,
    Replace,
    /// UPDATE `[['=', 1, value]]` of existing keys.
    Update,
    /// UPSERT `[key, value]` with `[['=', 1, value]]`.
    Upsert,
    Delete,
    /// CALL of a Lua function doing one REPLACE `[key, value]` (defined at preparation).
    Call,
    /// EVAL `return ...` with `[key]`.
    Eval,
    /// Stream transactions (2.10+ protocol): BEGIN, 5 REPLACEs, COMMIT; rate in transactions.
    Txn,
    /// Read-modify-write of counters (--keys of them) in stream transactions, retried after a
    /// conflict; rate in commits, aborts counted as errors.
    Counter,
    /// YCSB A: 50% read, 50% update.
    YcsbA,
    /// YCSB B: 95% read, 5% update.
    YcsbB,
    /// YCSB C: 100% read.
    YcsbC,
    /// The weights given by --mix.
    Mix,
    /// Fill the space with keys 0..--keys (INSERT), as fast as possible, then exit.
    Load,
}

impl WorkloadKind {
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// The request mix; `custom` is the `--mix` text.
    pub fn mix(self, custom: Option<&str>) -> Result<Mix, String> {
        let single = |op| Ok(Mix::single(op));
        match self {
            WorkloadKind::Ping => single(Op::Ping),
            WorkloadKind::Select | WorkloadKind::YcsbC => single(Op::Select),
            WorkloadKind::Insert | WorkloadKind::Load => single(Op::Insert),
            WorkloadKind::Replace => single(Op::Replace),
            WorkloadKind::Update => single(Op::Update),
            WorkloadKind::Upsert => single(Op::Upsert),
            WorkloadKind::Delete => single(Op::Delete),
            WorkloadKind::Call => single(Op::Call),
            WorkloadKind::Eval => single(Op::Eval),
            WorkloadKind::Txn => single(Op::Txn),
            WorkloadKind::Counter => single(Op::Counter),
            WorkloadKind::YcsbA => Mix::new(&[(Op::Select, 50), (Op::Update, 50)]),
            WorkloadKind::YcsbB => Mix::new(&[(Op::Select, 95), (Op::Update, 5)]),
            WorkloadKind::Mix => match custom {
                Some(text) => Mix::parse(text),
                None => Err("--workload mix needs --mix, e.g. --mix select=90,replace=10".into()),
            },
        }
    }
}

/// A weighted choice of request kinds.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix {
    /// `(cumulative weight, op)`, increasing.
    steps: Vec<(u64, Op)>,
    total: u64,
}

impl Mix {
    pub fn single(op: Op) -> Mix {
        Mix {
            steps: vec![(1, op)],
            total: 1,
        }
    }

    pub fn new(weights: &[(Op, u64)]) -> Result<Mix, String> {
        let mut steps = Vec::new();
        let mut total = 0u64;
        for &(op, weight) in weights {
            if weight == 0 {
                continue;
            }
            total = total
                .checked_add(weight)
                .ok_or_else(|| "mix: weights too large".to_string())?;
            steps.push((total, op));
        }
        if steps.is_empty() {
            return Err("mix: no request kind has a positive weight".into());
        }
        Ok(Mix { steps, total })
    }

    /// `select=90,replace=10` (also `select:90`; `read` = `select`).
    pub fn parse(text: &str) -> Result<Mix, String> {
        let mut weights = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once(['=', ':'])
                .ok_or_else(|| format!("mix: expected name=weight, got {part:?}"))?;
            let op = Op::parse(name.trim())
                .ok_or_else(|| format!("mix: unknown request kind {name:?}"))?;
            let weight: u64 = weight
                .trim()
                .parse()
                .map_err(|_| format!("mix: bad weight in {part:?}"))?;
            weights.push((op, weight));
        }
        Mix::new(&weights)
    }

    pub fn pick(&self, rng: &mut Rng) -> Op {
        let fallback = Op::Ping;
        if let [(_, only)] = self.steps.as_slice() {
            return *only;
        }
        let x = rng.below(self.total);
        self.steps
            .iter()
            .find(|(bound, _)| x < *bound)
            .map(|&(_, op)| op)
            .unwrap_or(fallback)
    }

    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        self.steps.iter().map(|&(_, op)| op)
    }

    pub fn uses_space(&self) -> bool {
        self.ops().any(Op::uses_space)
    }

    pub fn takes_new_keys(&self) -> bool {
        self.ops().any(Op::takes_new_key)
    }

    /// `select 50%, update 50%`.
    pub fn describe(&self) -> String {
        let mut previous = 0;
        let mut parts = Vec::new();
        for &(bound, op) in &self.steps {
            let share = (bound - previous) as f64 * 100.0 / self.total as f64;
            previous = bound;
            parts.push(format!("{} {share:.0}%", op.name()));
        }
        parts.join(", ")
    }
}

const VALUE_ALPHABET: &[u8; 64] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

/// Encodes requests; owns scratch buffers so that steady-state encoding does not allocate.
#[derive(Debug)]
pub struct Encoder {
    space_id: u32,
    value: Vec<u8>,
    key: Vec<u8>,
    tuple: Vec<u8>,
    ops: Vec<u8>,
}

impl Encoder {
    pub fn new(space_id: u32, value_size: usize) -> Encoder {
        Encoder {
            space_id,
            value: vec![b'x'; value_size],
            key: Vec::with_capacity(16),
            tuple: Vec::with_capacity(value_size + 16),
            ops: Vec::with_capacity(value_size + 16),
        }
    }

    /// A fresh random printable value (so that the WAL's compression sees realistic data).
    fn refresh_value(&mut self, rng: &mut Rng) {
        let mut bits = 0u64;
        let mut left = 0u32;
        for byte in &mut self.value {
            if left == 0 {
                bits = rng.next_u64();
                left = 10;
            }
            *byte = VALUE_ALPHABET[(bits & 63) as usize];
            bits >>= 6;
            left -= 1;
        }
    }

    /// Appends one framed request for `op` on `key` with the given sync.
    pub fn encode(&mut self, out: &mut Vec<u8>, sync: u64, op: Op, key: u64, rng: &mut Rng) {
        let space = self.space_id;
        self.key.clear();
        mp::write_array_len(&mut self.key, 1);
        mp::write_uint(&mut self.key, key);
        if matches!(
            op,
            Op::Insert | Op::Replace | Op::Update | Op::Upsert | Op::Call
        ) {
            self.refresh_value(rng);
        }
        if matches!(op, Op::Insert | Op::Replace | Op::Upsert | Op::Call) {
            self.tuple.clear();
            mp::write_array_len(&mut self.tuple, 2);
            mp::write_uint(&mut self.tuple, key);
            mp::write_str_bytes(&mut self.tuple, &self.value);
        }
        if matches!(op, Op::Update | Op::Upsert) {
            self.ops.clear();
            mp::write_array_len(&mut self.ops, 1);
            mp::write_array_len(&mut self.ops, 3);
            mp::write_str(&mut self.ops, "=");
            mp::write_uint(&mut self.ops, 1);
            mp::write_str_bytes(&mut self.ops, &self.value);
        }
        match op {
            Op::Ping => iproto::encode_ping(out, sync),
            Op::Select => iproto::encode_select(out, sync, space, 0, 0, 0, 1, &self.key),
            Op::Insert => iproto::encode_insert(out, sync, space, &self.tuple),
            Op::Replace => iproto::encode_replace(out, sync, space, &self.tuple),
            Op::Update => iproto::encode_update(out, sync, space, 0, 0, &self.key, &self.ops),
            Op::Upsert => iproto::encode_upsert(out, sync, space, 0, &self.tuple, &self.ops),
            Op::Delete => iproto::encode_delete(out, sync, space, 0, &self.key),
            Op::Call => iproto::encode_call(out, sync, BENCH_FUNCTION, &self.tuple),
            Op::Eval => iproto::encode_eval(out, sync, "return ...", &self.key),
            // Several requests each: the stream driver encodes them (`txn::Round`).
            Op::Txn | Op::Counter => iproto::encode_ping(out, sync),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_proto::iproto::{decode_frame, decode_request, Frame, Request};

    #[test]
    fn ycsb_mixes_have_the_documented_shares() {
        let mut rng = Rng::new(11);
        for (kind, read_share) in [
            (WorkloadKind::YcsbA, 0.50),
            (WorkloadKind::YcsbB, 0.95),
            (WorkloadKind::YcsbC, 1.0),
        ] {
            let mix = kind.mix(None).unwrap();
            let draws = 200_000;
            let reads = (0..draws)
                .filter(|_| mix.pick(&mut rng) == Op::Select)
                .count();
            let share = reads as f64 / f64::from(draws);
            assert!((share - read_share).abs() < 0.01, "{kind:?}: {share}");
            assert!(mix.ops().all(|op| matches!(op, Op::Select | Op::Update)));
        }
    }

    #[test]
    fn custom_mix_parses_and_draws_every_kind() {
        let mix = Mix::parse("read=60, replace:30,delete=10,ping=0").unwrap();
        assert_eq!(mix.describe(), "select 60%, replace 30%, delete 10%");
        let mut rng = Rng::new(5);
        let mut counts = [0u32; 9];
        for _ in 0..100_000 {
            counts[mix.pick(&mut rng).index()] += 1;
        }
        assert_eq!(counts[Op::Ping.index()], 0);
        assert!(
            (59_000..61_000).contains(&counts[Op::Select.index()]),
            "{counts:?}"
        );
        assert!(
            (29_000..31_000).contains(&counts[Op::Replace.index()]),
            "{counts:?}"
        );
        assert!(
            (9_300..10_700).contains(&counts[Op::Delete.index()]),
            "{counts:?}"
        );
        assert!(Mix::parse("select").is_err());
        assert!(Mix::parse("frobnicate=1").is_err());
        assert!(Mix::parse("select=x").is_err());
        assert!(Mix::parse("select=0").is_err());
        assert!(WorkloadKind::Mix.mix(None).is_err());
    }

    #[test]
    fn workload_names_and_space_use() {
        assert_eq!(WorkloadKind::YcsbA.name(), "ycsb-a");
        assert!(!WorkloadKind::Ping.mix(None).unwrap().uses_space());
        assert!(WorkloadKind::Load.mix(None).unwrap().takes_new_keys());
        assert!(!WorkloadKind::Replace.mix(None).unwrap().takes_new_keys());
    }

    fn decode_one(bytes: &[u8]) -> (u64, Request) {
        let Ok(Frame::Packet { prefix_len, len }) = decode_frame(bytes, usize::MAX) else {
            panic!("no packet");
        };
        assert_eq!(prefix_len + len, bytes.len());
        let (header, request) = decode_request(&bytes[prefix_len..]).unwrap();
        (header.sync, request)
    }

    #[test]
    fn every_kind_encodes_a_valid_request() {
        let mut enc = Encoder::new(600, 25);
        let mut rng = Rng::new(1);
        // The transactions are several requests each: `txn` encodes them.
        let singles = ALL_OPS.into_iter().filter(|op| !op.is_transaction());
        for (i, op) in singles.enumerate() {
            let mut out = Vec::new();
            enc.encode(&mut out, 100 + i as u64, op, 42, &mut rng);
            let (sync, request) = decode_one(&out);
            assert_eq!(sync, 100 + i as u64);
            let kind = format!("{request:?}").to_lowercase();
            assert!(kind.starts_with(op.name()), "{op:?} decoded as {kind}");
        }
    }

    #[test]
    fn tuples_hold_the_key_and_a_value_of_the_requested_size() {
        let mut enc = Encoder::new(600, 25);
        let mut rng = Rng::new(2);
        let mut out = Vec::new();
        enc.encode(&mut out, 1, Op::Replace, 7, &mut rng);
        let mut tuple = enc.tuple.as_slice();
        let value = rmpv::decode::read_value(&mut tuple).unwrap();
        let fields = value.as_array().unwrap();
        assert_eq!(fields[0].as_u64(), Some(7));
        let text = fields[1].as_str().unwrap();
        assert_eq!(text.len(), 25);
        assert!(text.bytes().all(|b| VALUE_ALPHABET.contains(&b)));
        let first = text.to_string();
        enc.encode(&mut out, 2, Op::Replace, 7, &mut rng);
        let mut tuple = enc.tuple.as_slice();
        let again = rmpv::decode::read_value(&mut tuple).unwrap();
        assert_ne!(again.as_array().unwrap()[1].as_str().unwrap(), first);
    }
}
