-- box.cfg: a function until the first call configures the database, then a table of the
-- effective options that can be called again to change the dynamic ones. Option names,
-- types, defaults and error messages are Tarantool 2.6's; the Rust half is crates/lua/src/cfg.rs.
local internal = ...

local MB = 1024 * 1024

local defaults = {
    background = false, checkpoint_count = 2, checkpoint_interval = 3600,
    checkpoint_wal_threshold = 1e18, coredump = false, feedback_enabled = true,
    feedback_host = 'https://feedback.tarantool.io', feedback_interval = 3600,
    force_recovery = false, hot_standby = false, log_format = 'plain', log_level = 5,
    memtx_dir = '.', memtx_max_tuple_size = MB, memtx_memory = 256 * MB,
    memtx_min_tuple_size = 16, net_msg_max = 768, read_only = false, readahead = 16320,
    replication_anon = false, replication_connect_timeout = 30,
    replication_skip_conflict = false, replication_sync_lag = 10,
    replication_sync_timeout = 300, replication_synchro_quorum = 1,
    replication_synchro_timeout = 5, replication_timeout = 1, slab_alloc_factor = 1.05,
    sql_cache_size = 5 * MB, strip_core = true, too_long_threshold = 0.5,
    vinyl_bloom_fpr = 0.05, vinyl_cache = 128 * MB, vinyl_dir = '.',
    vinyl_max_tuple_size = MB, vinyl_memory = 128 * MB, vinyl_page_size = 8192,
    vinyl_read_threads = 1, vinyl_run_count_per_level = 2, vinyl_run_size_ratio = 3.5,
    vinyl_timeout = 60, vinyl_write_threads = 4, wal_dir = '.', wal_dir_rescan_delay = 2,
    wal_max_size = 256 * MB, wal_mode = 'write', worker_pool_threads = 4,
}

-- Every option's type: 'string', 'number', 'boolean', 'string, number' (either), 'any'.
local types = {
    listen = 'string, number', work_dir = 'string', pid_file = 'string', log = 'string',
    log_nonblock = 'boolean', custom_proc_title = 'string', username = 'string',
    replication = 'any', instance_uuid = 'string', replicaset_uuid = 'string',
    replication_connect_quorum = 'number', memtx_use_mvcc_engine = 'boolean',
    io_collect_interval = 'number', snap_io_rate_limit = 'number', election_mode = 'string',
    election_timeout = 'number', auth_type = 'string', iproto_threads = 'number',
    slab_alloc_arena = 'number', wal_mode = 'string', log_format = 'string',
    feedback_host = 'string', memtx_dir = 'string', wal_dir = 'string', vinyl_dir = 'string',
    -- spindle's own: the Tarantool version announced (no default entry, so a plain box.cfg
    -- shows the same keys as 2.6's).
    compat_version = 'string',
    -- 2.10+: the isolation of a transaction that asks for the default (no default entry,
    -- for the same reason).
    txn_isolation = 'string, number',
    -- spindle's HTTP commit API (docs/http-api.md).
    http_listen = 'string, number', http_max_body_size = 'number', http_idle_timeout = 'number',
    http_conflict_window = 'number',
}
for k, v in pairs(defaults) do
    if types[k] == nil then types[k] = type(v) end
end

-- Options a later box.cfg{} may change.
local dynamic = {
    listen = true, replication = true, log_level = true, log_format = true,
    io_collect_interval = true, readahead = true, too_long_threshold = true,
    snap_io_rate_limit = true, checkpoint_count = true, checkpoint_interval = true,
    checkpoint_wal_threshold = true, read_only = true, memtx_memory = true,
    memtx_max_tuple_size = true, vinyl_memory = true, vinyl_cache = true, vinyl_timeout = true,
    worker_pool_threads = true, feedback_enabled = true, feedback_host = true,
    feedback_interval = true, net_msg_max = true, sql_cache_size = true,
    replication_timeout = true, replication_sync_lag = true, replication_sync_timeout = true,
    replication_synchro_quorum = true, replication_synchro_timeout = true,
    replication_connect_timeout = true, replication_connect_quorum = true,
    replication_skip_conflict = true, replication_anon = true, election_mode = true,
    election_timeout = true, custom_proc_title = true, wal_dir_rescan_delay = true,
    coredump = true, vinyl_max_tuple_size = true, memtx_use_mvcc_engine = false,
    txn_isolation = true,
    auth_type = true, http_listen = true,
}

local function cfg_error(message)
    box.error(box.error.new(59, message))
end

local isolation_levels = {
    ['read-committed'] = true, ['read-confirmed'] = true, ['best-effort'] = true,
    [1] = true, [2] = true, [3] = true,
}

local function check_type(k, v)
    local want = types[k]
    if want == nil then
        cfg_error(string.format("Incorrect value for option '%s': unexpected option", k))
    end
    if v == nil or want == 'any' then return end
    local got = type(v)
    if want == 'string, number' then
        if got ~= 'string' and got ~= 'number' then
            cfg_error(string.format(
                "Incorrect value for option '%s': should be one of types string, number", k))
        end
    elseif got ~= want then
        cfg_error(string.format("Incorrect value for option '%s': should be of type %s", k, want))
    end
    -- 2.11 refuses "default" (0) here: it names this very setting.
    if k == 'txn_isolation' and not isolation_levels[v] then
        cfg_error("Incorrect value for option 'txn_isolation': must be one of " ..
                  "'read-committed', 'read-confirmed', 'best-effort' or 1..3")
    end
end

-- Deprecated names Tarantool still accepts.
local function translate(opts)
    local out = {}
    for k, v in pairs(opts) do
        if k == 'slab_alloc_arena' then
            check_type(k, v)
            out.memtx_memory = math.floor(v * 1024 * 1024 * 1024)
        else
            out[k] = v
        end
    end
    return out
end

local function same(a, b)
    if type(a) ~= 'table' or type(b) ~= 'table' then return a == b end
    for k, v in pairs(a) do if not same(v, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
end

local current = {}

local function reconfigure(_, opts)
    if opts == nil then return end
    if type(opts) ~= 'table' then cfg_error('Incorrect type of box.cfg argument') end
    opts = translate(opts)
    local changed = {}
    for k, v in pairs(opts) do
        check_type(k, v)
        if v == box.NULL then v = nil end
        if not same(v, current[k]) then
            if not dynamic[k] then
                box.error(box.error.new(58, string.format("Can't set option '%s' dynamically", k)))
            end
            changed[k] = v == nil and box.NULL or v
        end
    end
    if next(changed) == nil then return end
    internal.cfg_reconfigure(changed)
    for k, v in pairs(changed) do
        if v == box.NULL then v = nil end
        current[k] = v
    end
end

local locked = {}
local guarded = { 'space', 'schema', 'session', 'info', 'begin', 'commit', 'rollback',
    'snapshot', 'once', 'func', 'atomic' }

local function first_cfg(opts)
    opts = opts or {}
    if type(opts) ~= 'table' then cfg_error('Incorrect type of box.cfg argument') end
    opts = translate(opts)
    for k, v in pairs(opts) do check_type(k, v) end
    local effective = {}
    for k, v in pairs(defaults) do effective[k] = v end
    for k, v in pairs(opts) do
        if v == box.NULL then v = nil end
        effective[k] = v
    end
    internal.checked(internal.cfg_boot, effective)
    for _, k in ipairs(guarded) do
        if locked[k] ~= nil then rawset(box, k, locked[k]) end
    end
    current = setmetatable(effective, { __call = reconfigure })
    box.cfg = current
end

-- Until the first box.cfg{}, the database parts of `box` refuse to work.
local function please()
    error('Please call box.cfg{} first', 2)
end
for _, k in ipairs(guarded) do
    locked[k] = rawget(box, k)
    rawset(box, k, nil)
end
setmetatable(box, {
    __index = function(_, k)
        for _, g in ipairs(guarded) do
            if g == k and type(box.cfg) == 'function' then please() end
        end
        return nil
    end,
})

box.cfg = first_cfg
-- The options `spindle serve` booted with, for its own box.cfg{} call.
internal.cfg_current = function() return current end
