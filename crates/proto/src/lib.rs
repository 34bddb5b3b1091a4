//! Pure protocol code: the MessagePack cursor (`mp`), IPROTO request decoding and response
//! encoding (`iproto`), the 2.10+ session requests (`streams`) and watcher packets (`watch`), the greeting (`greeting`) and
//! chap-sha1 (`auth`). No I/O and no threads,
//! so every decoder can be driven by unit, property and fuzz tests.

pub mod auth;
pub mod greeting;
pub mod iproto;
pub mod kv;
pub mod mp;
pub mod route;
pub mod streams;
pub mod watch;
