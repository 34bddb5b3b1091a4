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

local rename = space_mt.rename
function space_mt:rename(name)
    rename(self, name)
    if lists[self.id] ~= nil then lists[self.id].name = name end
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

-- An INSERT of a taken key: its before_replace triggers run with the tuple it found, and
-- unless they change the statement it fails again.
local function insert_conflict(l, sp, args, e)
    local ok, old, new = pcall(internal.trigger_conflict, args[2], args[5], args[6])
    if not ok or old == nil then error(e, 0) end
    return apply_before(l, sp, args, old, new, 'INSERT')
end

local function statement(sp, ...)
    local args = { ... }
    local space_id = args[2]
    local l = lists[space_id]
    local has_before = l ~= nil and #l.before_replace > 0
    local ok, result, old, new, changed = pcall(checked, apply, ...)
    local request_type = args[1]:upper()
    if not ok then
        local e = result
        if not (has_before and request_type == 'INSERT' and type(e) == 'table' and e.code == 3) then
            error(e, 0)
        end
        result, old, new, changed, request_type = insert_conflict(l, sp, args, e)
        if not changed then return result end
    elseif not changed or l == nil then
        return result
    elseif has_before then
        result, old, new, changed, request_type = apply_before(l, sp, args, old, new, request_type)
        if not changed then return result end
    end
    local list = copy(l.on_replace)
    for i = #list, 1, -1 do list[i](old, new, l.name, request_type) end
    return result
end

local begin_txn -- below: box.begin() for the transaction triggers

-- One statement with its triggers, in the fiber's transaction or one of its own.
local function run(...)
    local autocommit = not internal.txn_active()
    if autocommit then begin_txn() end
    local sp = checked(internal.txn_savepoint)
    local ok, result = pcall(statement, sp, ...)
    if not ok then
        if autocommit then
            box.rollback()
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

-- Transaction triggers ---------------------------------------------------------------------------

-- box.on_commit(f[, old]) and box.on_rollback(f[, old]) inside box.begin(): by fiber id, the
-- lists of the fiber's open transaction. A trigger gets an iterator over the transaction's
-- changes: `for n, old, new, space_id in it() do`. Commit triggers run oldest first,
-- rollback triggers newest first; an error in one is logged (2.6 crashes).
local txn_lists = {}
local fiber_id

local function current_lists()
    fiber_id = fiber_id or require('fiber').id
    return fiber_id()
end

local function set_txn_trigger(kind, name)
    local usage = string.format(
        'Usage inside a transaction: box.%s([function | nil, [function | nil]])', name)
    return function(new, old)
        if not internal.txn_active() then error(usage, 0) end
        if (new ~= nil and type(new) ~= 'function') or (old ~= nil and type(old) ~= 'function') then
            error('trigger reset: incorrect arguments', 0)
        end
        local id = current_lists()
        local l = txn_lists[id] or { commit = {}, rollback = {} }
        txn_lists[id] = l
        local list = l[kind]
        if new == nil and old == nil then return copy(list) end
        if old ~= nil then
            local i = index_of(list, old)
            if i == nil then error('trigger reset: Trigger is not found', 0) end
            if new == nil then
                table.remove(list, i)
                return
            end
            list[i] = new
            return new
        end
        table.insert(list, new)
        return new
    end
end

box.on_commit = set_txn_trigger('commit', 'on_commit')
box.on_rollback = set_txn_trigger('rollback', 'on_rollback')

local function changes_iterator(changes)
    local function step(_, i)
        i = i + 1
        local c = changes[i]
        if c == nil then return nil end
        return i, c.old, c.new, c.space
    end
    return function() return step, nil, 0 end
end

local function fire(list, from, to, by, changes)
    local it = changes_iterator(changes)
    for i = from, to, by do
        local ok, e = pcall(list[i], it)
        if not ok then require('log').error('transaction trigger failed: %s', tostring(e)) end
    end
end

local raw_begin, raw_commit, raw_rollback = box.begin, box.commit, box.rollback

begin_txn = function()
    checked(internal.txn_begin, nil, true)
    txn_lists[current_lists()] = nil
end

function box.begin(opts)
    raw_begin(opts)
    txn_lists[current_lists()] = nil
end

function box.commit()
    local id = current_lists()
    local l = txn_lists[id]
    if l == nil or not internal.txn_active() then return raw_commit() end
    txn_lists[id] = nil
    local changes = internal.txn_changes()
    local ok, e = pcall(raw_commit)
    if ok then
        fire(l.commit, 1, #l.commit, 1, changes)
        return
    end
    fire(l.rollback, #l.rollback, 1, -1, changes)
    error(e, 2)
end

function box.rollback()
    local id = current_lists()
    local l = txn_lists[id]
    if l == nil or not internal.txn_active() then return raw_rollback() end
    txn_lists[id] = nil
    local changes = internal.txn_changes()
    raw_rollback()
    fire(l.rollback, #l.rollback, 1, -1, changes)
end
