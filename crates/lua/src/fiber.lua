-- spindle's `fiber` module, the Lua half: fiber objects, channels and conditions (Tarantool
-- 2.6's API). The Rust half (crates/lua/src/fiber.rs) keeps the fibers; every park and yield
-- goes through its one raw C function, `internal.park`.
local internal = box.internal.fiber
local ffi = require('ffi')

-- The waits of internal.park(op, arg); the numbers are fiber.rs's `Op::from_lua` (6 is the
-- commit wait's, see `install` there).
local YIELD, SLEEP, WAIT, START, JOIN = 1, 2, 3, 4, 5
local park = internal.park

local fiber = {}

local function cancelled_error()
    return box.internal.new_error(0, 'fiber is cancelled', 'FiberIsCancelled')
end

local function is_cancelled_error(e)
    return type(e) == 'table' and getmetatable(e) == box.internal.error_mt
        and e.type == 'FiberIsCancelled'
end

local function testcancel()
    if internal.cancelled() then error(cancelled_error()) end
end

local function dead() error('the fiber is dead', 0) end

-- Fiber objects -----------------------------------------------------------------------------
-- Userdata, as in Tarantool; one object per fiber while something references it.

local proto = newproxy(true)
local mt = getmetatable(proto)
local ids = setmetatable({}, { __mode = 'k' })
local objects = setmetatable({}, { __mode = 'v' })
local methods = {}
-- The results (`{n = ..., ok, ...}`) of joinable fibers that ended, until joined.
local results = {}

local function object(id)
    local o = objects[id]
    if o == nil then
        o = newproxy(proto)
        ids[o] = id
        objects[id] = o
    end
    return o
end

-- A fiber given as an object or by id.
local function id_of(f, usage)
    local id = ids[f]
    if id ~= nil then return id end
    id = tonumber(f)
    if id == nil then error(usage, 3) end
    return id
end

local function self_id(f)
    local id = ids[f]
    if id == nil then error('Usage: fiber:method()', 3) end
    return id
end

function methods.id(f) return self_id(f) end

function methods.name(f, name, opts)
    local id = self_id(f)
    if name ~= nil then
        name = tostring(name)
        if type(opts) == 'table' and opts.truncate and #name > 255 then
            name = name:sub(1, 255)
        end
    end
    local current = internal.name(id, name)
    if current == nil then dead() end
    if name == nil then return current end
end

function methods.status(f) return internal.status(self_id(f)) end

function methods.cancel(f)
    if not internal.cancel(self_id(f)) then dead() end
end

function methods.wakeup(f)
    if not internal.wakeup(self_id(f)) then dead() end
end

function methods.set_joinable(f, yes)
    if internal.joinable(self_id(f), yes and true or false) == nil then dead() end
end

function methods.join(f)
    local id = self_id(f)
    local joinable = internal.joinable(id)
    if joinable == nil then dead() end
    if not joinable then error('the fiber is not joinable', 0) end
    if id == internal.id() then error('a fiber cannot join itself', 0) end
    park(JOIN, id)
    local r = results[id]
    results[id] = nil
    internal.reap(id)
    if r == nil then return false, cancelled_error() end
    return unpack(r, 1, r.n)
end

mt.__index = function(f, key)
    if key == 'storage' then
        local storage = internal.storage(self_id(f))
        if storage == nil then dead() end
        return storage
    end
    return methods[key]
end
mt.__tostring = function(f) return 'fiber: ' .. tostring(ids[f]) end
mt.__serialize = function(f)
    local id = ids[f]
    return { id = id, name = internal.name(id), status = internal.status(id) }
end

-- Starting fibers ---------------------------------------------------------------------------

local function pack(...) return { n = select('#', ...), ... } end

-- Every Lua fiber runs this in its own Lua thread: errors end the fiber, never more.
local function run(fn, args)
    local id = internal.id()
    local r = pack(pcall(fn, unpack(args, 1, args.n)))
    if internal.joinable(id) then
        results[id] = r
    elseif not r[1] and not is_cancelled_error(r[2]) then
        local e = r[2]
        local kind = 'LuajitError'
        if type(e) == 'table' and getmetatable(e) == box.internal.error_mt then
            kind = e.type or kind
        end
        internal.log_error(kind, tostring(e))
    end
end

local function callable(fn)
    if type(fn) == 'function' then return true end
    local m = getmetatable(fn)
    return type(m) == 'table' and m.__call ~= nil
end

local function body(fn, ...)
    local args = pack(...)
    return function() return run(fn, args) end
end

function fiber.new(fn, ...)
    if not callable(fn) then error('Usage: fiber.new(function, ...)', 2) end
    return object(internal.new(true, body(fn, ...)))
end

function fiber.create(fn, ...)
    if not callable(fn) then error('Usage: fiber.create(function, ...)', 2) end
    local id = internal.new(false, body(fn, ...))
    local f = object(id)
    park(START, id)
    return f
end

-- The running fiber -------------------------------------------------------------------------

function fiber.sleep(delay)
    delay = tonumber(delay)
    if delay == nil then error('Usage: fiber.sleep(delay)', 2) end
    park(SLEEP, delay)
    testcancel()
end

function fiber.yield()
    park(YIELD)
    testcancel()
end

fiber.testcancel = testcancel

function fiber.self() return object(internal.id()) end
function fiber.id() return internal.id() end

function fiber.name(name, opts)
    return methods.name(fiber.self(), name, opts)
end

function fiber.status(f)
    if f == nil then return 'running' end
    return internal.status(id_of(f, 'Usage: fiber.status([fiber])'))
end

function fiber.find(id)
    id = tonumber(id)
    if id == nil or internal.status(id) == 'dead' then return nil end
    return object(id)
end

function fiber.kill(f)
    if not internal.cancel(id_of(f, 'Usage: fiber.kill(fiber or id)')) then dead() end
end
fiber.cancel = fiber.kill

function fiber.info() return internal.info() end

fiber.time = internal.time
fiber.clock = internal.clock
function fiber.time64() return ffi.cast('uint64_t', internal.time_us()) end
function fiber.clock64() return ffi.cast('uint64_t', internal.clock_us()) end

-- Waiting lists of channels and conditions: fiber ids in arrival order ----------------------

local function remove_id(list, id)
    for i = 1, #list do
        if list[i] == id then
            table.remove(list, i)
            return
        end
    end
end

local function wake_first(list)
    local id = table.remove(list, 1)
    if id ~= nil then internal.wakeup(id) end
end

local function wake_all(list)
    for i = 1, #list do
        internal.wakeup(list[i])
        list[i] = nil
    end
end

-- Parks the fiber in `list` until woken or `deadline` (nil: none); a cancel raises.
local function wait_in(list, deadline)
    local id = internal.id()
    table.insert(list, id)
    local left = -1
    if deadline ~= nil then left = math.max(deadline - internal.clock(), 0) end
    park(WAIT, left)
    remove_id(list, id)
    testcancel()
end

local function deadline_of(timeout)
    timeout = tonumber(timeout)
    if timeout == nil then return nil end
    return internal.clock() + math.max(timeout, 0)
end

local function expired(deadline)
    return deadline ~= nil and internal.clock() >= deadline
end

-- Channels ----------------------------------------------------------------------------------

local NIL = {}
local channel_methods = {}
local channel_mt = { __index = channel_methods }
channel_mt.__tostring = function(ch) return 'channel: ' .. tostring(#ch.items) end

function fiber.channel(size)
    size = size or 0
    if type(size) ~= 'number' then error('fiber.channel(size): bad arguments', 2) end
    if size < 0 then error('fiber.channel(size): negative size', 2) end
    return setmetatable({ size_ = size, items = {}, handed = {}, readers = {},
                          writers = {}, closed = false }, channel_mt)
end

-- A message put while readers wait goes straight to the first of them (`handed`), not into
-- the buffer; so a channel of size 0 passes messages only from hand to hand.
function channel_methods.put(ch, message, timeout)
    local deadline = deadline_of(timeout)
    while true do
        if ch.closed then return false end
        local reader = table.remove(ch.readers, 1)
        if reader ~= nil then
            ch.handed[reader] = { message }
            internal.wakeup(reader)
            return true
        end
        if #ch.items < ch.size_ then
            if message == nil then message = NIL end
            table.insert(ch.items, message)
            return true
        end
        if expired(deadline) then return false end
        wait_in(ch.writers, deadline)
    end
end

function channel_methods.get(ch, timeout)
    local deadline = deadline_of(timeout)
    local me = internal.id()
    while true do
        if ch.closed then return nil end
        if #ch.items > 0 then
            local message = table.remove(ch.items, 1)
            wake_first(ch.writers)
            if message == NIL then return nil end
            return message
        end
        if expired(deadline) then return nil end
        -- A writer waiting on a full (or size 0) channel can hand over once this reader waits.
        wake_first(ch.writers)
        local ok, e = pcall(wait_in, ch.readers, deadline)
        local handed = ch.handed[me]
        if handed ~= nil then
            ch.handed[me] = nil
            return handed[1]
        end
        if not ok then error(e, 0) end
    end
end

function channel_methods.count(ch) return #ch.items end
function channel_methods.size(ch) return ch.size_ end
function channel_methods.is_full(ch) return #ch.items >= ch.size_ end
function channel_methods.is_empty(ch) return #ch.items == 0 end
function channel_methods.has_readers(ch) return #ch.readers > 0 end
function channel_methods.has_writers(ch) return #ch.writers > 0 end
function channel_methods.is_closed(ch) return ch.closed end

function channel_methods.close(ch)
    ch.closed = true
    ch.items = {}
    wake_all(ch.readers)
    wake_all(ch.writers)
end

-- Conditions --------------------------------------------------------------------------------

local cond_methods = {}
local cond_mt = { __index = cond_methods }

function fiber.cond()
    return setmetatable({ waiters = {} }, cond_mt)
end

-- true if signalled (or otherwise woken), false on timeout.
function cond_methods.wait(cond, timeout)
    local id = internal.id()
    table.insert(cond.waiters, id)
    local left = tonumber(timeout) or -1
    local woken = park(WAIT, left)
    remove_id(cond.waiters, id)
    testcancel()
    return woken
end

function cond_methods.signal(cond) wake_first(cond.waiters) end
function cond_methods.broadcast(cond) wake_all(cond.waiters) end

return fiber
