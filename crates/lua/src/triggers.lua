-- Space triggers: `space:on_replace(f[, old])` and `space:before_replace(f[, old])`, as in
-- Tarantool 2.6. The lists are kept by space id (box.space makes a new space object at each
-- lookup) and dropped with the space. A statement on a space with triggers runs here
-- (box.lua's `dml` for Lua, `internal.iproto_dml` for IPROTO requests) inside a transaction
-- of its fiber: before_replace triggers see the space unchanged and may replace, delete or
-- skip the change; on_replace triggers run after it, and their DML joins the statement's
-- transaction. Any error rolls the statement back. The Rust half is triggers.rs.
local internal = ...
local space_mt, checked, new_error = internal.space_mt, internal.checked, internal.new_error
local apply = internal.trigger_apply

-- space id -> { name = ..., on_replace = { f, ... }, before_replace = { f, ... } }, oldest
-- first; triggers run newest first.
local lists = {}
-- space id -> true for spaces with triggers (box.lua's `dml` looks here).
local triggered = internal.triggered

local function refresh_flag(id)
    local l = lists[id]
    local on = l ~= nil and (#l.on_replace > 0 or #l.before_replace > 0)
    if not on then lists[id] = nil end
    triggered[id] = on or nil
    internal.trigger_flag(id, on)
end

local function copy(list)
    local out = {}
    for i, f in ipairs(list) do out[i] = f end
    return out
end

local function index_of(list, f)
    for i, g in ipairs(list) do
        if g == f then return i end
    end
end

-- 2.6 raises these as plain strings with no position.
local function set_trigger(kind)
    return function(space, new, old)
        if type(space) ~= 'table' or space.id == nil then
            error(string.format('usage: space:%s(function | nil, [function | nil])', kind), 0)
        end
        if (new ~= nil and type(new) ~= 'function') or (old ~= nil and type(old) ~= 'function') then
            error('trigger reset: incorrect arguments', 0)
        end
        local l = lists[space.id]
        if new == nil and old == nil then return l and copy(l[kind]) or {} end
        local list = l and l[kind] or {}
        if old ~= nil then
            local i = index_of(list, old)
            if i == nil then error('trigger reset: Trigger is not found', 0) end
            if new == nil then
                table.remove(list, i)
                refresh_flag(space.id)
                return
            end
            list[i] = new
            l.name = space.name
            return new
        end
        if l == nil then
            l = { on_replace = {}, before_replace = {} }
            lists[space.id] = l
        end
        l.name = space.name
        table.insert(l[kind], new)
        refresh_flag(space.id)
        return new
    end
end

space_mt.on_replace = set_trigger('on_replace')
space_mt.before_replace = set_trigger('before_replace')

-- An upsert returns nothing, unless a before_replace trigger made it a REPLACE.
local upsert = space_mt.upsert
function space_mt:upsert(tuple, ops)
    if type(self) == 'table' and triggered[self.id] then
        return internal.triggered_dml('upsert', self.id, tuple, ops)
    end
    return upsert(self, tuple, ops)
end

local drop = space_mt.drop
function space_mt:drop(...)
    drop(self, ...)
    if lists[self.id] ~= nil then
        lists[self.id] = nil
        refresh_flag(self.id)
    end
end

-- Statements -----------------------------------------------------------------------------------

local function pack(...) return select('#', ...), { ... } end

-- The tuple the before_replace triggers leave, each given the previous one's: no return
-- value keeps it, nil or a tuple replaces it.
local function run_before(l, old, new, request_type)
    local list, cur = copy(l.before_replace), new
    for i = #list, 1, -1 do
        local n, r = pack(list[i](old, cur, l.name, request_type))
        if n > 0 then
            local v = r[1]
            if v ~= nil and not box.tuple.is(v) then
                error(new_error(53, 'Invalid return value of space:before_replace trigger: ' ..
                    'expected tuple or nil, got ' .. type(v)))
            end
            if v == nil then v = nil end -- box.NULL counts as nil
            cur = v
        end
    end
    return cur
end

local function pk_changed(space_id, name)
    local space = box.space[space_id]
    local pk = space and space.index[0]
    return new_error(94, string.format(
        "Attempt to modify a tuple field which is part of index '%s' in space '%s'",
        pk and pk.name or '', name))
end

-- What the before_replace triggers made of a change already undone (to `sp`): applied as the
-- statement itself, as a DELETE of `old`, as a REPLACE by another tuple, or skipped (nil).
local function apply_before(l, sp, args, old, new, request_type)
    checked(internal.txn_rollback_to, sp)
    local cur = run_before(l, old, new, request_type)
    local space_id = args[2]
    if rawequal(cur, new) then
        local result, old2, new2, changed = checked(apply, unpack(args, 1, 7))
        return result, old2, new2, changed, request_type
    elseif rawequal(cur, old) then
        return nil
    elseif cur == nil then
        local key = internal.trigger_key(space_id, old)
        local result, old2, new2, changed = checked(apply, 'delete', space_id, 0, 1, true, key)
        return result, old2, new2, changed, 'DELETE'
    end
    if old ~= nil and not internal.trigger_same_key(space_id, old, cur) then
        error(pk_changed(space_id, l.name))
    end
    local result, old2, new2, changed = checked(apply, 'replace', space_id, 0, 1, false, cur)
    return result, old2, new2, changed, 'REPLACE'
end

local function statement(sp, ...)
    local args = { ... }
    local space_id = args[2]
    local result, old, new, changed = checked(apply, ...)
    local l = lists[space_id]
    if not changed or l == nil then return result end
    local request_type = args[1]:upper()
    if #l.before_replace > 0 then
        result, old, new, changed, request_type = apply_before(l, sp, args, old, new, request_type)
        if not changed then return result end
    end
    local list = copy(l.on_replace)
    for i = #list, 1, -1 do list[i](old, new, l.name, request_type) end
    return result
end

-- One statement with its triggers, in the fiber's transaction or one of its own.
local function run(...)
    local autocommit = not internal.txn_active()
    if autocommit then checked(internal.txn_begin) end
    local sp = checked(internal.txn_savepoint)
    local ok, result = pcall(statement, sp, ...)
    if not ok then
        if autocommit then
            internal.txn_rollback()
        else
            pcall(internal.txn_rollback_to, sp)
        end
        error(result, 0)
    end
    if autocommit then box.commit() end
    if result == nil then return end
    return result
end

-- box.lua's `dml(op, space, a, b, c)`: `c` is the index of a delete or update.
function internal.triggered_dml(op, space_id, a, b, c)
    return run(op, space_id, c or 0, 1, false, a, b)
end

-- A plain IPROTO request (`ProcKind::Dml`): its tuple or key and operations as MessagePack.
function internal.iproto_dml(op, space_id, index_id, index_base, first, second)
    return pcall(run, op, space_id, index_id, index_base, true, first, second)
end
