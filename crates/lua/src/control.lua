-- The parts of `box` about the running request and the instance: transactions
-- (box.begin/commit/rollback, savepoints, box.atomic), box.session, box.info, box.tuple and
-- box.snapshot. The Rust halves are crates/lua/src/txn.rs and session.rs.
local internal = ...
local checked, new_error = internal.checked, internal.new_error

-- Transactions ---------------------------------------------------------------------------------

-- box.begin{txn_isolation = ..., timeout = ...}: a name ('read-committed', ...) or a
-- box.txn_isolation_level number, and seconds; the MVCC engine reads them.
function box.begin(opts)
    if opts ~= nil and type(opts) ~= 'table' then
        box.error(box.error.ILLEGAL_PARAMS, 'options should be a table')
    end
    local timeout = opts and opts.timeout
    if timeout ~= nil and type(timeout) ~= 'number' then
        box.error(box.error.ILLEGAL_PARAMS, 'timeout must be a number greater than 0')
    end
    checked(internal.txn_begin, opts and opts.txn_isolation, nil, timeout)
end

box.txn_isolation_level = {
    DEFAULT = 0, ['default'] = 0,
    READ_COMMITTED = 1, ['read-committed'] = 1,
    READ_CONFIRMED = 2, ['read-confirmed'] = 2,
    BEST_EFFORT = 3, ['best-effort'] = 3,
    LINEARIZABLE = 4, ['linearizable'] = 4,
}

function box.commit()
    local seq = checked(internal.txn_commit)
    if seq ~= nil then
        local ok, code, message = internal.wait(seq)
        if not ok then error(new_error(code, message), 2) end
    end
end

function box.rollback() checked(internal.txn_rollback) end
function box.is_in_txn() return internal.txn_active() end

local savepoint_mt = { __index = {} }
function box.savepoint()
    return setmetatable({ csavepoint = checked(internal.txn_savepoint) }, savepoint_mt)
end

function box.rollback_to_savepoint(sp)
    if type(sp) ~= 'table' or getmetatable(sp) ~= savepoint_mt then
        error('Usage: box.rollback_to_savepoint(savepoint)', 2)
    end
    checked(internal.txn_rollback_to, sp.csavepoint)
end

local function pack(...) return select('#', ...), { ... } end

function box.atomic(fn, ...)
    box.begin()
    local n, r = pack(pcall(fn, ...))
    if not r[1] then
        box.rollback()
        error(r[2], 2)
    end
    box.commit()
    return unpack(r, 2, n)
end

-- box.on_commit and box.on_rollback are in triggers.lua.

-- Sessions -----------------------------------------------------------------------------------

local session = {}
local storages = {}

local function current() return internal.session() end

function session.id() local id = current() return id end
function session.uid() local _, uid = current() return uid end
function session.euid() local _, _, euid = current() return euid end
function session.type() local _, _, _, kind = current() return kind end
function session.sync() local _, _, _, _, sync = current() return sync end
function session.user()
    local _, name = internal.user_lookup(session.uid())
    return name
end
function session.effective_user()
    local _, name = internal.user_lookup(session.euid())
    return name
end
function session.peer() return nil end

function session.push(value, sync)
    if sync ~= nil and type(sync) ~= 'number' then
        error('Usage: box.session.push(data)', 2)
    end
    local unsupported = checked(internal.push, value)
    if unsupported ~= nil then
        box.error(new_error(5, string.format("Session '%s' does not support push()", unsupported)))
    end
    return true
end
function session.exists(id) return id == session.id() end

-- A user (not a role) to switch to.
local function user_id(user)
    local id, _, kind = internal.user_lookup(user)
    if id == nil or kind == 'role' then
        box.error(new_error(45, string.format("User '%s' is not found", tostring(user))))
    end
    return id
end

function session.su(user, fn, ...)
    local id = user_id(user)
    local denied = internal.session_denied(id)
    if denied ~= nil then
        local e = new_error(42, denied, 'AccessDeniedError')
        e.object_type, e.object_name, e.access_type = 'universe', '', 'Session'
        box.error(e)
    end
    if fn == nil then
        internal.set_user(id)
        return
    end
    -- With a function only the effective user changes (box.session.user() stays).
    local old_euid, old_uid = internal.set_user(id, session.uid())
    local n, r = pack(pcall(fn, ...))
    internal.set_user(old_euid, old_uid)
    if not r[1] then error(r[2], 2) end
    return unpack(r, 2, n)
end

session.storage = setmetatable({}, {
    __index = function(_, k)
        local s = storages[session.id()]
        return s and s[k]
    end,
    __newindex = function(_, k, v)
        local id = session.id()
        storages[id] = storages[id] or {}
        storages[id][k] = v
    end,
})

local triggers = {}
local function trigger_list(name)
    return function(new, old)
        local list = triggers[name] or {}
        triggers[name] = list
        if old ~= nil then
            for i, f in ipairs(list) do
                if f == old then table.remove(list, i) break end
            end
        end
        if new ~= nil then table.insert(list, new) end
        if new == nil and old == nil then return list end
        return new
    end
end
session.on_connect = trigger_list('on_connect')
session.on_disconnect = trigger_list('on_disconnect')
session.on_auth = trigger_list('on_auth')

box.session = session

-- Info ---------------------------------------------------------------------------------------

local VERSION = '2.6.0-0-g0000000'
rawset(_G, '_TARANTOOL', rawget(_G, '_TARANTOOL') or VERSION)

local function info_fields()
    local i = internal.info()
    return {
        version = rawget(_G, '_TARANTOOL'),
        id = i.id,
        ro = i.ro,
        uuid = i.uuid,
        package = 'Tarantool',
        cluster = { uuid = i.cluster_uuid },
        replication_anon = { count = 0 },
        replication = {},
        signature = i.signature,
        status = 'running',
        vclock = i.vclock,
        uptime = i.uptime,
        lsn = i.lsn,
        pid = i.pid,
        sql = {},
        gc = {},
        vinyl = {},
        memory = {},
    }
end

box.info = setmetatable({}, {
    __index = function(_, k)
        if k == 'version' then return rawget(_G, '_TARANTOOL') end
        if k == 'package' then return 'Tarantool' end
        return info_fields()[k]
    end,
    __call = function() return info_fields() end,
    __serialize = function() return info_fields() end,
})

-- Tuples -------------------------------------------------------------------------------------

box.tuple = box.tuple or {}
function box.tuple.new(...)
    local n = select('#', ...)
    local fields
    if n == 1 and type((...)) == 'table' then fields = ... else fields = { ... } end
    return checked(internal.tuple_new, fields)
end
function box.tuple.is(v) return internal.is_tuple(v) end

-- Tuple methods written in Lua; the Rust userdata (crates/lua/src/tuple.rs) looks names it
-- does not know up here.
local tuple_methods = debug.getregistry()['spindle.tuple_methods']

function tuple_methods.find(t, start, v)
    if v == nil then start, v = 1, start end
    for i = start, #t do if t[i] == v then return i end end
    return nil
end

function tuple_methods.findall(t, start, v)
    if v == nil then start, v = 1, start end
    local out = {}
    for i = start, #t do if t[i] == v then out[#out + 1] = i end end
    return out
end

-- 0-based positions, `to` exclusive, negative positions count from the end.
function tuple_methods.slice(t, from, to)
    local n = #t
    if from < 0 then from = n + from end
    if to == nil then to = n elseif to < 0 then to = n + to end
    local out = {}
    for i = from + 1, to do out[#out + 1] = t[i] end
    return unpack(out, 1, math.max(to - from, 0))
end

function tuple_methods.transform(t, from, count, ...)
    local fields = t:totable()
    local out = {}
    for i = 1, from - 1 do out[#out + 1] = fields[i] end
    for i = 1, select('#', ...) do out[#out + 1] = (select(i, ...)) end
    for i = from + count, #fields do out[#out + 1] = fields[i] end
    return box.tuple.new(out)
end

function tuple_methods.update(t, ops) return checked(internal.tuple_update, t, ops, false) end
function tuple_methods.upsert(t, ops) return checked(internal.tuple_update, t, ops, true) end

-- Fields by number and, for a tuple of a space with a format, by name too;
-- `{names_only = true}` gives the named ones only.
function tuple_methods.tomap(t, opts)
    local names_only = type(opts) == 'table' and opts.names_only
    local out = {}
    local names = internal.tuple_names(t)
    if not names_only then
        for i = 1, #t do out[i] = t[i] end
    end
    if names ~= nil then
        for i, name in ipairs(names) do
            if i <= #t then out[name] = t[i] end
        end
    end
    return out
end

local function tuple_next(t, i)
    i = i + 1
    if i > #t then return nil end
    return i, t[i]
end
function tuple_methods.ipairs(t) return tuple_next, t, 0 end
function tuple_methods.pairs(t) return tuple_next, t, 0 end

-- Checkpoints ----------------------------------------------------------------------------------

function box.snapshot()
    local seq = checked(internal.snapshot)
    if seq ~= nil then
        local ok, code, message = internal.wait_snapshot(seq)
        if not ok then error(new_error(code, message), 2) end
    end
    return 'ok'
end

-- SQL --------------------------------------------------------------------------------------------

-- Until spindle has SQL (its own issue), these say so plainly, with ER_UNSUPPORTED.
local function no_sql()
    box.error(new_error(5, 'SQL is not supported yet'))
end
box.execute = no_sql
box.prepare = no_sql
box.unprepare = no_sql
