//! Every bound in the server lives here, so that a reviewer can see them all at once.

/// Largest accepted IPROTO packet (header + body), bytes. Tarantool's hard cap is 2 GiB; we
/// refuse far earlier because a packet is buffered whole before it is decoded.
pub const PACKET_SIZE_MAX_DEFAULT: usize = 16 * 1024 * 1024;
/// Tarantool's absolute packet limit (`IPROTO_PACKET_SIZE_MAX`); anything above is a framing error.
pub const PACKET_SIZE_HARD_MAX: u64 = 1 << 31;
/// Default number of requests one network thread keeps in flight before it stops reading.
pub const NET_MSG_MAX_DEFAULT: usize = 768;
/// Bytes of unsent replies a connection may hold before the net thread stops reading from it.
/// Replies are only "unsent" once the kernel's socket buffer is full, so a client that reads
/// its replies never comes near this; one that does not stops being read here (TCP's own
/// backpressure then reaches it).
pub const CONN_OUTPUT_MAX: usize = 1024 * 1024;
/// Unsent reply bytes of all of one network thread's connections above which the thread reads
/// only from connections that have nothing unsent: the connections whose peers do not read
/// stop first, everyone else goes on being served.
pub const NET_OUTPUT_MAX: usize = 64 * 1024 * 1024;
/// Requests of one connection in the TX thread at once; the connection is not read further
/// until replies come back. Never more than the thread's `net_msg_max`.
pub const CONN_MSG_MAX: usize = 128;
/// Requests decoded from one connection in one loop turn before the next connection's turn
/// (round-robin): a deep pipeline cannot delay other connections by more than this. The share
/// shrinks with the number of busy connections (`net_msg_max` / busy), down to
/// `CONN_TURN_MIN`. A floor of a whole chunk (64) kept 16×64 bulk loads ~7% faster but let
/// 1,000 flooding connections stall a PING for 240–265 ms (16: 70–175 ms; 1: 15–20 ms).
pub const CONN_TURN_REQUESTS: usize = 128;
pub const CONN_TURN_MIN: usize = 1;
/// Read buffer growth step for a connection.
pub const CONN_READ_CHUNK: usize = 16 * 1024;
/// Idle read buffers a network thread keeps for reuse.
pub const NET_BUFFER_POOL_MAX: usize = 256;
/// Requests a network thread gathers into one bus message before handing it over.
pub const NET_BATCH_MAX: usize = 256;
/// Requests after which a network thread hands its batch over at once instead of at the end
/// of its loop turn, and the TX thread sends its replies at once: with deep pipelines, the
/// threads work on one part of the turn while the next part is still being read or run.
pub const PIPELINE_CHUNK: usize = 64;
/// Packet bytes a network thread gathers into one bus message before handing it over.
pub const NET_BATCH_BYTES_MAX: usize = 256 * 1024;
/// Reply bytes the TX thread reserves up front for a network thread's next reply batch.
pub const REPLY_BATCH_RESERVE_MAX: usize = 256 * 1024;
/// Messages the TX dispatcher handles before it yields to epoll and other fibers.
pub const TX_DISPATCH_BATCH: usize = 256;
/// How long the TX thread, serving a lone synchronous client, waits awake for its next message
/// before it sleeps; and how many requests in a row, each alone in its batch and all from one
/// connection, make a client lone (see `tx::lone`).
pub const TX_LONE_SPIN: std::time::Duration = std::time::Duration::from_micros(50);
pub const TX_LONE_REQUESTS: u32 = 8;
/// Spins in a row after which the spinning TX thread lets the fiber scheduler poll once.
pub const TX_LONE_POLL_EVERY: u32 = 32;
/// Fibers that run stored procedures (CALL, EVAL) at once; more wait for a free one (the
/// network threads' `net_msg_max` bounds how many can wait).
pub const PROC_FIBERS_MAX: usize = 768;
/// Procedure requests in a row the dispatcher starts with one switch to their fibers.
pub const PROC_BATCH_MAX: usize = 64;
/// Memory the Lua state may hold; past it an allocation fails the Lua code running with
/// "not enough memory" (an error reply), never the process.
pub const LUA_MEMORY_MAX: usize = 2 << 30;
/// Finished Lua threads the runtime keeps to run the next requests in (a reset is cheaper
/// than a new thread): one for each request fiber, so a full pipeline makes none.
pub const LUA_THREADS_KEPT: usize = PROC_FIBERS_MAX;
/// Fibers Lua code may have alive at once (`fiber.create`, `fiber.new`): past it they fail
/// with an error. A running fiber holds its Lua thread in one of mlua's own references, which
/// live on an auxiliary Lua stack of about 8,000 slots that request fibers (`PROC_FIBERS_MAX`,
/// a few each) share; overflowing it is a panic, not an error. Each fiber also costs a may
/// fiber (two memory mappings, ~8 KiB resident).
pub const LUA_FIBERS_MAX: usize = 4096;
const _: () = assert!(LUA_FIBERS_MAX + 4 * PROC_FIBERS_MAX < 7_900);
/// Stack size of a TX fiber, in machine words (may's unit): 512 KiB, Tarantool's fiber
/// stack. Lua needs it (C frames of callbacks into Lua: ~9 KiB a `string.gsub` level), and
/// may pools fibers of its default size only, so every TX fiber gets it.
pub const TX_FIBER_STACK_WORDS: usize = 0x10000;
/// Rows the WAL thread writes in one block before it starts another (at a txn boundary).
pub const WAL_BLOCK_BYTES_MAX: usize = 128 * 1024;
/// Bytes a log writer lets accumulate unsynced before it asks the kernel to start writing
/// them back (`sync_file_range`, without waiting). Keeps the sync at the end of a file short:
/// in `wal_mode = write` closing a file used to wait for everything since its start.
pub const LOG_WRITEBACK_BYTES: u64 = 1024 * 1024;
/// How far ahead of its data a durably written log file is zero-filled (`wal_mode = fsync`):
/// one extension (about 0.5 ms on our disk) per this many bytes of log.
pub const LOG_PREALLOC_BYTES: u64 = 1024 * 1024;
/// Default size at which the WAL rotates to a new `.xlog` file.
pub const WAL_MAX_SIZE_DEFAULT: u64 = 256 * 1024 * 1024;
/// Maximum number of fields in a tuple accepted from a client.
pub const TUPLE_FIELD_COUNT_MAX: u32 = 1 << 31;
/// Largest tuple accepted (`memtx_max_tuple_size` default).
pub const TUPLE_SIZE_MAX: usize = 1024 * 1024;
/// Index parts per index (Tarantool's BOX_INDEX_PART_MAX is larger; nobody needs that many).
pub const INDEX_PART_MAX: usize = 255;
/// Indexes per space (`BOX_INDEX_MAX`).
pub const INDEX_MAX: u32 = 128;
/// Space ids must be below this (`BOX_SPACE_MAX`).
pub const SPACE_ID_MAX: u32 = 0x7fff_ffff;
/// User ids must be below this (`BOX_USER_MAX`).
pub const USER_MAX: u32 = 32;
/// Depth limit when validating nested MessagePack from clients. Validation is iterative and
/// its stack is bounded by the input size, so the limit only guards against absurd input;
/// Tarantool itself accepts any depth (a 1000-deep key gets a key type error, not a msgpack
/// error), and so must we.
pub const MP_DEPTH_MAX: usize = 1 << 20;
/// Default `replication_timeout`, seconds: relay heartbeat interval, applier reconnect delay.
pub const REPLICATION_TIMEOUT_DEFAULT: f64 = 1.0;
/// A peer silent for this many replication timeouts is disconnected (Tarantool's
/// `replication_disconnect_timeout`).
pub const REPLICATION_DISCONNECT_FACTOR: f64 = 4.0;
/// Longest delay between applier reconnect attempts (the backoff doubles up to this).
pub const APPLIER_BACKOFF_MAX_SECS: f64 = 5.0;
/// Rows an applier may have queued on the TX thread, not yet durable, before it stops
/// reading from the master (backpressure).
pub const APPLIER_QUEUE_ROWS_MAX: usize = 65_536;
/// Rows an applier hands to the TX thread in one message at most.
pub const APPLIER_BATCH_ROWS_MAX: usize = 4096;
/// Bytes a relay (or the applier reader) buffers per socket read.
pub const REPL_READ_BUFFER: usize = 256 * 1024;
/// Bytes a relay accumulates before one socket write (rows go out in batches).
pub const RELAY_SEND_BUFFER: usize = 256 * 1024;
/// How often a relay waiting for new WAL rows checks its socket for ACKs, milliseconds.
pub const RELAY_ACK_POLL_MS: u64 = 50;
/// Bytes a relay reads from the live `.xlog` per turn (grows for a larger block).
pub const RELAY_READ_WINDOW: usize = 4 * 1024 * 1024;
/// Rows a relay reads from the log per turn (between ACK checks).
pub const RELAY_ROWS_PER_POLL: usize = 4096;
/// How long a JOIN's final stage waits for the WAL to write the rows it must send, seconds.
pub const RELAY_FINAL_JOIN_WAIT_SECS: u64 = 30;
/// How long a relay waits for the SUBSCRIBE that follows a JOIN (a Tarantool replica writes
/// its first snapshot in between), seconds.
pub const RELAY_NEXT_REQUEST_WAIT_SECS: u64 = 300;
/// Sent batches a relay remembers to measure the downstream lag (older ones are forgotten).
pub const RELAY_LAG_SAMPLES_MAX: usize = 1024;
/// Largest replication packet accepted from a peer (a row, an ACK, a JOIN marker).
pub const REPL_PACKET_MAX: usize = 1 << 30;

const _: () = assert!(PACKET_SIZE_MAX_DEFAULT as u64 <= PACKET_SIZE_HARD_MAX);
const _: () = assert!(CONN_READ_CHUNK < PACKET_SIZE_MAX_DEFAULT);

/// Streams (2.10+ STREAM_ID) of one connection with a request queued or running at once. A
/// stream exists in the network thread only while it has requests, and every queued request
/// counts as in flight, so `CONN_MSG_MAX` bounds both this and the queue of any one stream.
pub const CONN_STREAMS_MAX: usize = CONN_MSG_MAX;
pub const STREAM_QUEUE_MAX: usize = CONN_MSG_MAX;
/// Open stream transactions (BEGIN without COMMIT/ROLLBACK yet) of one connection, and of
/// the whole server; BEGIN past either is refused. With the MVCC engine off an open
/// transaction holds no changes, only its stream's slot.
pub const CONN_TXNS_MAX: usize = 1024;
pub const TXNS_MAX: usize = 65_536;

/// Watchers (2.10+ IPROTO_WATCH, `box.watch`): keys the server knows at once (a key exists
/// while it has a value or a watcher), watchers of one binary session, watchers in all, and
/// the longest key. WATCH, `box.watch` or `box.broadcast` past one of them fails with
/// ER_UNSUPPORTED. A key is stored once however many watch it, so keys cost at most
/// `WATCH_KEYS_MAX * WATCH_KEY_LEN_MAX` (64 MiB) and watchers about 100 bytes each.
pub const WATCH_KEYS_MAX: usize = 65_536;
pub const SESSION_WATCHERS_MAX: usize = 1024;
pub const WATCHERS_MAX: usize = 1 << 18;
pub const WATCH_KEY_LEN_MAX: usize = 1024;

/// Commits the MVCC engine remembers while stream transactions are open (what each wrote,
/// for conflicts, and the tuples it replaced, for read views). A transaction that needs an
/// older one than the window keeps is aborted with ER_TRANSACTION_CONFLICT.
pub const MVCC_HISTORY_MAX: usize = 16_384;

/// Data statements one MVCC stream transaction may hold: each statement replays the ones
/// before it (`spindle_box::mvcc`), so the cost of the next one grows with this.
pub const MVCC_TXN_STMTS_MAX: usize = 4_096;

/// Reads (SELECTs and the implicit reads of writes) one MVCC transaction may track: every
/// later commit is checked against them all.
pub const MVCC_TXN_READS_MAX: usize = 4_096;

/// The most (commit, read) pairs one check of an MVCC transaction may compare, so that a
/// statement never holds the TX thread for long: a transaction with this many to catch up
/// on (many reads, open across many commits) is aborted with ER_TRANSACTION_CONFLICT
/// instead, as one older than `MVCC_HISTORY_MAX` is.
pub const MVCC_CHECK_PAIRS_MAX: u64 = 1 << 20;

/// Keys one HTTP commit may write, range deletes' removed keys included: one commit is one
/// TX step with no yield, so this bounds how long it holds the thread.
pub const KV_COMMIT_KEYS_MAX: usize = 100_000;
/// Commits whose written keys TX keeps for HTTP preconditions (the conflict window); a
/// read_version older than that is answered "too old". Bounds the memory and the time of a
/// precondition check (every kept commit's keys, per precondition).
pub const KV_WINDOW_DEFAULT: usize = 10_000;
pub const KV_WINDOW_MAX: usize = 1_000_000;
/// Preconditions and operations one commit may carry.
pub const KV_PRECONDITIONS_MAX: usize = 1_000;
pub const KV_OPERATIONS_MAX: usize = 10_000;
/// Pairs `/v1/range` returns at most (and by default).
pub const KV_RANGE_LIMIT_MAX: u32 = 10_000;
pub const KV_RANGE_LIMIT_DEFAULT: u32 = 1_000;
/// HTTP request bodies: the default and the largest configurable limit (IPROTO's packet).
pub const HTTP_BODY_MAX_DEFAULT: usize = 1024 * 1024;
pub const HTTP_BODY_MAX_LIMIT: usize = 16 * 1024 * 1024;
/// The request line and headers of one HTTP request, and how many headers.
pub const HTTP_HEAD_MAX: usize = 16 * 1024;
pub const HTTP_HEADERS_MAX: usize = 32;
/// HTTP connections one HTTP thread keeps open; past it new ones are closed at once.
pub const HTTP_CONN_MAX: usize = 10_000;
/// HTTP requests the HTTP thread has in TX at once; past it, it parses no more until
/// answers come back (each connection has at most one in TX: answers stay in order).
pub const HTTP_MSG_MAX: usize = 1024;
/// Unsent response bytes of one HTTP connection past which it is not read.
pub const HTTP_CONN_OUTPUT_MAX: usize = 1024 * 1024;
/// Seconds a connection may sit idle, or take to send one request, before it is closed.
pub const HTTP_IDLE_TIMEOUT_DEFAULT: f64 = 30.0;
/// Request ids `/v1/status` has banned (kept until restart, when the leader id changes);
/// past it, status requests answer 503.
pub const KV_BANNED_MAX: usize = 1_000_000;
