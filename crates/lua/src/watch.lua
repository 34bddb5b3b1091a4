-- `box.watch` and `box.broadcast` (2.10+), the Lua half; the registry is the TX thread's
-- (crates/lua/src/watch.rs over spindle_box::watch). A watcher's callback runs in a fiber of
-- its own, first with the key's current value, then after each change; changes made while
-- it runs coalesce, and it runs again once it has returned if the key changed meanwhile.
local internal = ...
local fiber = require('fiber')
local log = require('log')

local watcher_methods = {}
local watcher_mt = {
    __index = watcher_methods,
    __tostring = function() return 'box.watcher' end,
    __metatable = 'box.watcher',
}

-- The watcher's fiber: take a notice, run the callback, acknowledge; sleep when there is
-- none (a change, or unregistering, wakes it).
local function serve(w)
    while true do
        local state, has_value, value = internal.watch_take(w.id)
        if state == 'gone' then return end
        if state == 'event' then
            local ok, err
            if has_value then
                ok, err = pcall(w.callback, w.key, value)
            else
                ok, err = pcall(w.callback, w.key)
            end
            if not ok then log.error('box.watch callback for %s: %s', w.key, tostring(err)) end
            internal.watch_ack(w.id)
        else
            fiber.sleep(math.huge)
        end
    end
end

function watcher_methods.unregister(w)
    if getmetatable(w) ~= 'box.watcher' then
        error('Usage: watcher:unregister()', 2)
    end
    local id = rawget(w, 'id')
    if id == nil then error('Watcher is already unregistered', 2) end
    rawset(w, 'id', nil)
    internal.watch_unregister(id, w.fiber_id)
end

function box.watch(...)
    if select('#', ...) ~= 2 then error('Usage: box.watch(key, function)', 2) end
    local key, callback = ...
    if type(key) == 'number' then key = tostring(key) end
    if type(key) ~= 'string' then
        error(("bad argument #1 to 'watch' (string expected, got %s)"):format(type(key)), 2)
    end
    if type(callback) ~= 'function' then
        error(("bad argument #2 to 'watch' (function expected, got %s)"):format(
            type(callback)), 2)
    end
    local w = { key = key, callback = callback }
    local f = fiber.new(serve, w)
    f:name('box.watcher')
    w.fiber_id = f:id()
    local ok, id = pcall(internal.watch_register, key, w.fiber_id)
    if not ok then
        f:cancel()
        error(id, 2)
    end
    w.id = id
    return setmetatable(w, watcher_mt)
end

function box.broadcast(...)
    local n = select('#', ...)
    if n ~= 1 and n ~= 2 then error('Usage: box.broadcast(key[, value])', 2) end
    local key, value = ...
    if type(key) == 'number' then key = tostring(key) end
    if type(key) ~= 'string' then
        error(("bad argument #1 to 'broadcast' (string expected, got %s)"):format(type(key)), 2)
    end
    if key:sub(1, 4) == 'box.' then error("System event can't be override", 2) end
    internal.broadcast(key, type(value) ~= 'nil', value)
end
