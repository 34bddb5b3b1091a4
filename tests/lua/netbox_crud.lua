#!/usr/bin/env tarantool
-- net.box (Tarantool 2.6's own client) against a server:  tarantool netbox_crud.lua HOST PORT PASSWORD
-- Prints one JSON object on its last stdout line: {"steps": [[label, result], ...]} where each
-- result is {"ok": value} or {"err": {"code": N, "type": T, "message": M}}.  The test compares
-- the whole output between real Tarantool and spindle.
local net_box = require('net.box')
local json = require('json')
local fiber = require('fiber')

local host, port, password = arg[1], arg[2], arg[3]
local uri = host .. ':' .. port
local steps = {}
local MAP = function() return setmetatable({}, {__serialize = 'map'}) end

local function plain(v)
    if type(v) == 'cdata' or type(v) == 'userdata' then
        if box.tuple.is(v) then return v:totable() end
        return v
    end
    if type(v) == 'table' then
        local out = {}
        for k, x in pairs(v) do out[k] = plain(x) end
        return out
    end
    return v
end

local function step(label, fn, ...)
    local ok, res = pcall(fn, ...)
    if ok then
        if res == nil then res = json.NULL end
        table.insert(steps, {label, {ok = plain(res)}})
    else
        if type(res) == 'cdata' or type(res) == 'table' then
            table.insert(steps, {label, {err = {code = res.code, type = res.type,
                                                message = res.message}}})
        else
            table.insert(steps, {label, {err = {message = tostring(res)}}})
        end
    end
    return ok, res
end

local function finish(code)
    io.stdout:write(json.encode({steps = steps}), '\n')
    io.stdout:flush()
    os.exit(code or 0)
end

-- 1. connect as admin with a password ---------------------------------------------------------
local conn = net_box.connect(uri, {user = 'admin', password = password, wait_connected = 10,
                                   connect_timeout = 10})
step('connected', function() return conn:is_connected() end)
step('state', function() return conn.state end)
if not conn:is_connected() then
    step('connect error', function() return conn.error end)
    finish(0)
end
step('ping', function() return conn:ping() end)
step('system spaces known by name', function()
    return {conn.space._space ~= nil, conn.space._index ~= nil, conn.space._vspace ~= nil,
            conn.space._vindex ~= nil}
end)

-- 2. DDL through _space/_index, then schema reload ----------------------------------------------
step('create space', function()
    return conn.space._space:insert{512, 1, 'test', 'memtx', 0, MAP(),
        {{name = 'id', type = 'unsigned'}, {name = 'name', type = 'string'}, {name = 'n', type = 'integer'}}}
end)
step('create primary', function()
    return conn.space._index:insert{512, 0, 'primary', 'tree', {unique = true}, {{0, 'unsigned'}}}
end)
step('create secondary', function()
    return conn.space._index:insert{512, 1, 'by_name', 'tree', {unique = false}, {{1, 'string'}}}
end)
step('create hash space', function()
    return conn.space._space:insert{513, 1, 'hsp', 'memtx', 0, MAP(), {}}
end)
step('create hash index', function()
    return conn.space._index:insert{513, 0, 'primary', 'hash', {unique = true}, {{0, 'string'}}}
end)
step('reload_schema', function() conn:reload_schema() return true end)
-- net.box also refetches by itself when a reply carries a new schema version; wait (bounded)
-- until the new spaces are visible by name either way.
for _ = 1, 200 do
    if conn.space.test ~= nil and conn.space.hsp ~= nil and conn.space.test.index.by_name ~= nil then break end
    fiber.sleep(0.02)
end
step('space test visible', function() return conn.space.test ~= nil end)
if conn.space.test == nil or conn.space.hsp == nil then
    step('spaces never became visible by name; stopping', function() return false end)
    finish(0)
end
step('space test id', function() return conn.space.test.id end)
step('index names', function()
    return {conn.space.test.index.primary.id, conn.space.test.index.by_name.id,
            conn.space.test.index.by_name.type, conn.space.test.index.by_name.unique,
            conn.space.hsp.index.primary.type}
end)

-- 3. CRUD ---------------------------------------------------------------------------------------
local t = conn.space.test
for i, name in ipairs({'a', 'b', 'c', 'b', 'e', 'b', 'g'}) do
    step('insert ' .. i, function() return t:insert{i, name, i * 10} end)
end
step('insert duplicate', function() return t:insert{1, 'dup', 0} end)
step('insert wrong type', function() return t:insert{100, 5, 0} end)
step('insert missing field', function() return t:insert{100} end)
step('replace', function() return t:replace{7, 'G', 70} end)
step('get', function() return t:get(3) end)
step('get missing', function() return t:get(99) end)
step('get by non-unique index (client-side error)', function() return t.index.by_name:get('b') end)
step('get by non-unique index unique value', function() return t.index.by_name:get('e') end)
step('tuple field by name', function() return t:get(3).name end)
step('select all', function() return t:select() end)
step('select key', function() return t:select{2} end)
for _, it in ipairs({'EQ', 'REQ', 'ALL', 'LT', 'LE', 'GE', 'GT'}) do
    step('select iterator ' .. it, function() return t:select({4}, {iterator = it}) end)
    step('select iterator ' .. it .. ' limit/offset', function()
        return t:select({4}, {iterator = it, limit = 2, offset = 1})
    end)
end
step('select by index name', function() return t.index.by_name:select('b') end)
step('select by index REQ', function() return t.index.by_name:select('b', {iterator = 'REQ'}) end)
step('select empty key REQ', function() return t:select({}, {iterator = 'REQ'}) end)
step('bad iterator name', function() return t:select({1}, {iterator = 'NOPE'}) end)
step('min', function() return t.index.primary:min() end)
step('max', function() return t.index.primary:max() end)
step('min with key', function() return t.index.primary:min(3) end)
step('max with key', function() return t.index.primary:max(3) end)
step('min by_name', function() return t.index.by_name:min() end)
step('max by_name', function() return t.index.by_name:max() end)
-- net.box numbers update fields from 1 (it sends INDEX_BASE = 1)
step('update =', function() return t:update(1, {{'=', 2, 'A'}}) end)
step('update +', function() return t:update(1, {{'+', 3, 5}}) end)
step('update - negative field', function() return t:update(1, {{'-', -1, 1}}) end)
step('update splice 1-based', function() return t:update(1, {{':', 2, 1, 1, 'Z'}}) end)
step('update by field name', function() return t:update(1, {{'=', 'name', 'named'}}) end)
step('update ! and #', function() return t:update(1, {{'!', 4, 'extra'}, {'#', 4, 1}}) end)
step('update append', function() return t:update(1, {{'=', 4, 'appended'}}) end)
step('update pk', function() return t:update(1, {{'=', 1, 50}}) end)
step('update field 0', function() return t:update(1, {{'=', 0, 50}}) end)
step('update no such field', function() return t:update(1, {{'=', 10, 50}}) end)
step('update bad op', function() return t:update(1, {{'?', 2, 50}}) end)
step('update missing key', function() return t:update(99, {{'=', 2, 'x'}}) end)
step('update via unique index by name', function() return t.index.primary:update(2, {{'=', 3, 22}}) end)
step('upsert new', function() return t:upsert({8, 'h', 80}, {{'+', 3, 1}}) end)
step('upsert existing', function() return t:upsert({8, 'h', 80}, {{'+', 3, 1}}) end)
step('upsert error skipped', function() return t:upsert({8, 'h', 80}, {{'+', 2, 1}}) end)
step('after upsert', function() return t:get(8) end)
step('delete', function() return t:delete(2) end)
step('delete missing', function() return t:delete(2) end)
step('delete via non-unique', function() return t.index.by_name:delete('b') end)
step('final state', function() return t:select({}, {iterator = 'ALL'}) end)

-- HASH space with string keys
local h = conn.space.hsp
for _, k in ipairs({'x', 'y', 'z'}) do step('hash insert ' .. k, function() return h:insert{k, 1} end) end
step('hash get', function() return h:get('y') end)
step('hash select ALL count', function() return #h:select({}, {iterator = 'ALL'}) end)
step('hash select LT refused', function() return h:select({'y'}, {iterator = 'LT'}) end)
step('hash select EQ empty key refused', function() return h:select({}, {iterator = 'EQ'}) end)

-- errors with codes ----------------------------------------------------------------------------
step('write to _vspace', function() return conn.space._vspace:insert{600, 1, 'x', 'memtx', 0, MAP(), {}} end)
step('drop space with indexes', function() return conn.space._space:delete{512} end)
step('ping at end', function() return conn:ping() end)
conn:close()

-- 4. guest -------------------------------------------------------------------------------------
local guest = net_box.connect(uri, {wait_connected = 10, connect_timeout = 10})
step('guest connected', function() return guest:is_connected() end)
step('guest ping', function() return guest:ping() end)
step('guest sees test', function() return guest.space.test ~= nil end)
step('guest sees _vspace', function() return guest.space._vspace ~= nil end)
step('guest sees _space', function() return guest.space._space ~= nil end)
guest:close()

-- 5. wrong password ----------------------------------------------------------------------------
local bad = net_box.connect(uri, {user = 'admin', password = 'definitely-wrong', wait_connected = 10,
                                  connect_timeout = 10})
step('wrong password connected', function() return bad:is_connected() end)
step('wrong password error', function() return bad.error end)
bad:close()

finish(0)
