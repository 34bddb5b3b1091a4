//! IPROTO wire constants: request types, header and body keys, iterator codes.
//! The values are Tarantool 2.6's (see ../shared/docs/iproto.md §2–§4).

/// Request and response types (`IPROTO_REQUEST_TYPE` values).
pub mod request {
    pub const OK: u32 = 0;
    pub const SELECT: u32 = 1;
    pub const INSERT: u32 = 2;
    pub const REPLACE: u32 = 3;
    pub const UPDATE: u32 = 4;
    pub const DELETE: u32 = 5;
    pub const CALL_16: u32 = 6;
    pub const AUTH: u32 = 7;
    pub const EVAL: u32 = 8;
    pub const UPSERT: u32 = 9;
    pub const CALL: u32 = 10;
    pub const EXECUTE: u32 = 11;
    pub const NOP: u32 = 12;
    pub const PREPARE: u32 = 13;
    /// Raft state (2.6.1+): a local row, and a push on the replication stream (lsn 0).
    pub const RAFT: u32 = 30;
    /// Limbo takeover (2.6.3): CONFIRM + ROLLBACK in one row.
    pub const PROMOTE: u32 = 31;
    pub const CONFIRM: u32 = 40;
    pub const ROLLBACK: u32 = 41;
    pub const PING: u32 = 64;
    pub const JOIN: u32 = 65;
    pub const SUBSCRIBE: u32 = 66;
    pub const VOTE_DEPRECATED: u32 = 67;
    pub const VOTE: u32 = 68;
    pub const FETCH_SNAPSHOT: u32 = 69;
    pub const REGISTER: u32 = 70;
    /// 2.10+ feature negotiation; a 2.6 server answers it with ER_UNKNOWN_REQUEST_TYPE.
    pub const ID: u32 = 73;
    /// 2.10+ interactive transactions (in a stream only).
    pub const BEGIN: u32 = 14;
    pub const COMMIT: u32 = 15;
    pub const TXN_ROLLBACK: u32 = 16;
    /// 2.10+ watchers: WATCH and UNWATCH from the client, EVENT from the server.
    pub const WATCH: u32 = 74;
    pub const UNWATCH: u32 = 75;
    pub const EVENT: u32 = 76;
    pub const CHUNK: u32 = 128;
    /// Error responses are `TYPE_ERROR | code`.
    pub const TYPE_ERROR: u32 = 1 << 15;
}

/// Header and body map keys (`enum iproto_key`).
pub mod key {
    pub const REQUEST_TYPE: u8 = 0x00;
    pub const SYNC: u8 = 0x01;
    pub const REPLICA_ID: u8 = 0x02;
    pub const LSN: u8 = 0x03;
    pub const TIMESTAMP: u8 = 0x04;
    pub const SCHEMA_VERSION: u8 = 0x05;
    pub const SERVER_VERSION: u8 = 0x06;
    pub const GROUP_ID: u8 = 0x07;
    pub const TSN: u8 = 0x08;
    pub const FLAGS: u8 = 0x09;
    pub const STREAM_ID: u8 = 0x0a;
    pub const SPACE_ID: u8 = 0x10;
    pub const INDEX_ID: u8 = 0x11;
    pub const LIMIT: u8 = 0x12;
    pub const OFFSET: u8 = 0x13;
    pub const ITERATOR: u8 = 0x14;
    pub const INDEX_BASE: u8 = 0x15;
    pub const KEY: u8 = 0x20;
    pub const TUPLE: u8 = 0x21;
    pub const FUNCTION_NAME: u8 = 0x22;
    pub const USER_NAME: u8 = 0x23;
    pub const INSTANCE_UUID: u8 = 0x24;
    pub const CLUSTER_UUID: u8 = 0x25;
    pub const VCLOCK: u8 = 0x26;
    pub const EXPR: u8 = 0x27;
    pub const OPS: u8 = 0x28;
    pub const BALLOT: u8 = 0x29;
    pub const TUPLE_META: u8 = 0x2a;
    pub const OPTIONS: u8 = 0x2b;
    pub const DATA: u8 = 0x30;
    pub const ERROR_24: u8 = 0x31;
    pub const METADATA: u8 = 0x32;
    pub const SQL_TEXT: u8 = 0x40;
    pub const SQL_BIND: u8 = 0x41;
    pub const SQL_INFO: u8 = 0x42;
    pub const STMT_ID: u8 = 0x43;
    pub const REPLICA_ANON: u8 = 0x50;
    pub const ID_FILTER: u8 = 0x51;
    pub const ERROR: u8 = 0x52;
    /// `IPROTO_KEY_MAX` in 2.6.0: header keys at or above it are rejected by 2.6 peers.
    pub const KEY_MAX: u8 = 0x53;
    /// 2.10+ keys (IPROTO_ID and BEGIN bodies).
    pub const VERSION: u8 = 0x54;
    pub const FEATURES: u8 = 0x55;
    pub const TIMEOUT: u8 = 0x56;
    /// 2.10+ watchers: the key of WATCH, UNWATCH and EVENT, and EVENT's value.
    pub const EVENT_KEY: u8 = 0x57;
    pub const EVENT_DATA: u8 = 0x58;
    pub const TXN_ISOLATION: u8 = 0x59;
    pub const AUTH_TYPE: u8 = 0x5b;
}

/// IPROTO_ID feature ids (2.10+).
pub mod feature {
    pub const STREAMS: u64 = 0;
    pub const TRANSACTIONS: u64 = 1;
    pub const ERROR_EXTENSION: u64 = 2;
    pub const WATCHERS: u64 = 3;
    pub const PAGINATION: u64 = 4;
}

/// The MP_EXT type of an error value (MP_ERROR): its payload is the error-stack map of
/// `key::ERROR`. Sent inside CALL/EVAL results to sessions that announced ERROR_EXTENSION.
pub const MP_EXT_ERROR: i8 = 3;

/// The protocol version 2.11 answers IPROTO_ID with.
pub const PROTOCOL_VERSION: u64 = 4;

/// Keys inside one entry of the `IPROTO_ERROR` stack (§9.2).
pub mod error_key {
    pub const STACK: u8 = 0x00;
    pub const TYPE: u8 = 0x00;
    pub const FILE: u8 = 0x01;
    pub const LINE: u8 = 0x02;
    pub const MESSAGE: u8 = 0x03;
    pub const ERRNO: u8 = 0x04;
    pub const CODE: u8 = 0x05;
    pub const FIELDS: u8 = 0x06;
}

/// Keys of the VOTE answer's `BALLOT` map (xlog-and-replication.md §5.2, 2.6.0 order).
pub mod ballot_key {
    pub const IS_RO: u8 = 0x01;
    pub const VCLOCK: u8 = 0x02;
    pub const GC_VCLOCK: u8 = 0x03;
    pub const IS_LOADING: u8 = 0x04;
}

/// Replica ids: 0 is "local" (never a real instance), valid ids are 1..=31.
pub const REPLICA_ID_NIL: u32 = 0;
/// `VCLOCK_MAX`: replica ids are below this.
pub const REPLICA_ID_LIMIT: u32 = 32;

/// Iterator types (`IPROTO_ITERATOR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IteratorType {
    Eq,
    Req,
    All,
    Lt,
    Le,
    Ge,
    Gt,
    BitsAllSet,
    BitsAnySet,
    BitsAllNotSet,
    Overlaps,
    Neighbor,
}

impl IteratorType {
    pub fn from_code(code: u64) -> Option<Self> {
        use IteratorType::*;
        Some(match code {
            0 => Eq,
            1 => Req,
            2 => All,
            3 => Lt,
            4 => Le,
            5 => Ge,
            6 => Gt,
            7 => BitsAllSet,
            8 => BitsAnySet,
            9 => BitsAllNotSet,
            10 => Overlaps,
            11 => Neighbor,
            _ => return None,
        })
    }

    /// The upper-case name Tarantool prints in iterator errors.
    pub fn name(self) -> &'static str {
        use IteratorType::*;
        match self {
            Eq => "EQ",
            Req => "REQ",
            All => "ALL",
            Lt => "LT",
            Le => "LE",
            Ge => "GE",
            Gt => "GT",
            BitsAllSet => "BITS_ALL_SET",
            BitsAnySet => "BITS_ANY_SET",
            BitsAllNotSet => "BITS_ALL_NOT_SET",
            Overlaps => "OVERLAPS",
            Neighbor => "NEIGHBOR",
        }
    }

    /// True for iterators that walk the index backwards.
    pub fn is_reverse(self) -> bool {
        matches!(
            self,
            IteratorType::Req | IteratorType::Lt | IteratorType::Le
        )
    }
}

/// The version this server announces by default (`compat::Version::DEFAULT`; the announced
/// one is `compat::announced()`). 2.6 keeps every client on its pre-ID code paths.
pub const GREETING_VERSION: &str = "2.6.0";
/// Packed version for the SUBSCRIBE/JOIN `SERVER_VERSION` field: (major << 16) | (minor << 8) | patch.
pub const SERVER_VERSION_ID: u32 = (2 << 16) | (6 << 8);
/// Size of the greeting sent on connect.
pub const GREETING_SIZE: usize = 128;
/// Salt bytes carried (base64) in the greeting; chap-sha1 uses the first 20.
pub const SALT_SIZE: usize = 32;
/// Scramble length of chap-sha1.
pub const SCRAMBLE_SIZE: usize = 20;
