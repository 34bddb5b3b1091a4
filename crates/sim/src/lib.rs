//! Durability by fault injection. The crate has no library code of its own; its tests drive
//! the real TX runtime (dispatcher, commit queue, cascading rollback), the real WAL thread,
//! checkpoints and real recovery in-process — no sockets — on
//! `spindle_xlog::faultfs::FaultFs`, an in-memory file system that fails the Nth write, sync,
//! truncate, create, rename or directory sync, tears writes, and simulates a process crash
//! (every byte written survives) or a power loss (only synced bytes and directory entries
//! survive, plus a torn prefix of the rest).
//!
//! `tests/crash_loop.rs`: one seed is one scenario, derived from the seed alone: `wal_mode`
//! (`write` for even seeds, paired with process crashes; `fsync` for odd seeds, paired with
//! power loss and torn tails), one to three "lives" (recover, serve a pipelined random
//! workload while faults fire, take a crash image at a random moment), checkpoints at random
//! moments, and sometimes a corrupted block. After every crash the recovered state is checked
//! against a model built from the replies: every write acknowledged before the crash is there,
//! no write answered ER_WAL_IO before the crash is, nothing that was never submitted is, and
//! the state is a prefix of the commit order. After every clean shutdown the recovered state
//! must equal the server's exactly; the server must keep serving reads during failures and
//! writes once the faults stop; a corrupted block must make recovery refuse, naming the file.
//! Seeds run in child processes of 100 (the TX runtime's pooled fibers never exit, and `may`
//! is configured once per process), two at a time.
//!
//! `tests/wal_faults.rs`: deterministic regressions for the WAL faults the loop found.
//!
//! `tests/kv_wal_faults.rs`: HTTP commits (`tx::kv`) across a failed WAL write: the
//! rolled-back version is handed out again and recovery finds exactly the acknowledged ones.
//!
//! ```text
//! cargo test --release -p spindle-sim                      # 400 seeds (200 per wal_mode), ~5 s
//! SIM_SEED=17 cargo test --release -p spindle-sim --test crash_loop   # one seed, verbosely
//! SIM_SEEDS=10000 SIM_SEED_START=100000 cargo test --release -p spindle-sim --test crash_loop
//! SIM_LOG=info SIM_SEED=17 cargo test --release -p spindle-sim --test crash_loop -- --nocapture
//! ```
