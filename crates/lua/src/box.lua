-- spindle's `box` module, the Lua half: errors, space and index objects, and the trampolines
-- CALL and EVAL run through. The Rust half is `box.internal` (crates/lua/src/api.rs).
local internal = ...
local ffi = require('ffi')

box = box or {}
box.internal = internal
box.NULL = ffi.cast('void *', 0)

-- Errors ------------------------------------------------------------------------------------

local error_methods = {}
local error_mt = {
    __box_error = true,
    __index = error_methods,
    __tostring = function(e) return e.message end,
}

local function new_error(code, message, etype)
    return setmetatable({
        code = code,
        message = message,
        type = etype or 'ClientError',
    }, error_mt)
end

function error_methods.raise(e) error(e, 2) end
function error_methods.unpack(e)
    return { code = e.code, message = e.message, type = e.type, trace = e.trace, prev = e.prev,
             object_type = e.object_type, object_name = e.object_name,
             access_type = e.access_type }
end
function error_methods.set_prev(e, prev) rawset(e, 'prev', prev) end

local codes = {
    UNKNOWN = 0, ILLEGAL_PARAMS = 1, MEMORY_ISSUE = 2, TUPLE_FOUND = 3, TUPLE_NOT_FOUND = 4,
    UNSUPPORTED = 5, READONLY = 7, PROC_LUA = 32, NO_SUCH_PROC = 33, NO_SUCH_INDEX_ID = 35,
    NO_SUCH_SPACE = 36, NO_SUCH_FIELD_NO = 37, ACCESS_DENIED = 42, NO_SUCH_USER = 45,
    TIMEOUT = 78, ACTIVE_TRANSACTION = 79, NO_SUCH_FUNCTION = 51, FUNC_EXISTS = 52,
    TRANSACTION_CONFLICT = 97, TRANSACTION_YIELD = 154,
}

-- The messages of the codes `box.error(code, ...)` formats (Tarantool 2.6's texts).
local templates = {
    [0] = 'Unknown error',
    [1] = 'Illegal parameters, %s',
    [32] = '%s',
    [33] = "Procedure '%s' is not defined",
    [36] = "Space '%s' does not exist",
    [45] = "User '%s' is not found",
    [78] = 'Timeout exceeded',
}

local function error_from_args(code, ...)
    local template = templates[code]
    local message
    if template ~= nil then
        local ok, text = pcall(string.format, template, ...)
        message = ok and text or template
    else
        message = select('#', ...) > 0 and tostring((...)) or 'Unknown error'
    end
    return new_error(code, message)
end

local function error_from(arg, ...)
    if type(arg) == 'table' and getmetatable(arg) == error_mt then
        return arg
    elseif type(arg) == 'table' then
        return new_error(arg.code or 0, arg.reason or 'Unknown error', arg.type)
    elseif type(arg) == 'number' then
        return error_from_args(arg, ...)
    end
    error('box.error(): bad arguments', 3)
end

-- A new error object remembers where it was made (its maker's chunk and line), as
-- Tarantool's do; an error passed in is kept as it is.
local function made_here(e, arg)
    if e ~= arg and rawget(e, 'trace') == nil then
        local info = debug.getinfo(3, 'Sl')
        if info ~= nil and info.currentline ~= nil and info.currentline > 0 then
            rawset(e, 'trace', { { file = info.short_src, line = info.currentline } })
        end
    end
    return e
end

box.error = setmetatable({
    new = function(arg, ...)
        local e = made_here(error_from(arg, ...), arg)
        return e -- not a tail call: made_here looks two frames up, at the caller
    end,
    is = function(e) return type(e) == 'table' and getmetatable(e) == error_mt end,
}, {
    __call = function(_, arg, ...) error(made_here(error_from(arg, ...), arg), 2) end,
    __index = codes,
})

-- An error a `box.internal` function raised, as a box.error object.
local function rethrow(e)
    if type(e) == 'userdata' then
        local code, message, etype, otype, oname, atype = internal.unpack_error(e)
        local err = new_error(code, message, etype)
        err.object_type, err.object_name, err.access_type = otype, oname, atype
        error(err, 3)
    end
    error(e, 3)
end

local function pack(...) return select('#', ...), { ... } end

local function checked(f, ...)
    local n, r = pack(pcall(f, ...))
    if not r[1] then rethrow(r[2]) end
    return unpack(r, 2, n)
end

-- Data ----------------------------------------------------------------------------------------

-- Statements by the number `internal.dml` takes.
local INSERT, REPLACE, DELETE, UPDATE, UPSERT = 1, 2, 3, 4, 5
local op_codes = { insert = INSERT, replace = REPLACE, delete = DELETE, update = UPDATE, upsert = UPSERT }
local internal_dml, internal_wait, dml_fast = internal.dml, internal.wait, internal.dml_fast

-- Spaces with triggers (space id -> true): their statements run in triggers.lua.
local triggered = {}
internal.triggered = triggered
local op_names = { 'insert', 'replace', 'delete', 'update', 'upsert' }

-- One statement: applied, then (outside box.begin) its fiber parks until the WAL answers.
-- Plain arguments take one raw C call (crates/lua/src/fast.rs); the rest the general path.
local function dml_op(op, space_id, a, b, c)
    if triggered[space_id] then return internal.triggered_dml(op_names[op], space_id, a, b, c) end
    local done, result, message, etype, otype, oname, atype = dml_fast(op, space_id, a, b, c)
    if done then
        if result == nil then return end
        return result
    end
    if done == false then
        local err = new_error(result, message, etype)
        err.object_type, err.object_name, err.access_type = otype, oname, atype
        error(err, 2)
    end
    local ok, seq
    ok, result, seq = pcall(internal_dml, op, space_id, a, b, c)
    if not ok then rethrow(result) end
    if seq ~= nil then
        local committed, code, text = internal_wait(seq)
        if not committed then error(new_error(code, text), 2) end
    end
    if result == nil then return end
    return result
end

local function dml(op, space_id, a, b, c)
    return dml_op(op_codes[op], space_id, a, b, c)
end

local iterator_codes = {
    EQ = 0, REQ = 1, ALL = 2, LT = 3, LE = 4, GE = 5, GT = 6,
    BITS_ALL_SET = 7, BITS_ANY_SET = 8, BITS_ALL_NOT_SET = 9, OVERLAPS = 10, NEIGHBOR = 11,
}
box.index = setmetatable({}, { __index = iterator_codes })

local function options(opts)
    if opts == nil then return nil, nil, nil end
    if type(opts) ~= 'table' then
        box.error(box.error.ILLEGAL_PARAMS, 'options should be a table')
    end
    local it = opts.iterator
    if type(it) == 'string' then it = iterator_codes[it:upper()] or it end
    return it, opts.offset, opts.limit
end

local index_mt = {}
index_mt.__index = index_mt

function index_mt:select(key, opts)
    local it, offset, limit = options(opts)
    if it == nil and (key == nil or (type(key) == 'table' and #key == 0)) then it = 2 end
    return checked(internal.select, self.space_id, self.id, it, key, offset, limit)
end

function index_mt:get(key)
    local found = checked(internal.select, self.space_id, self.id, 0, key, 0, 2)
    if #found > 1 then
        box.error(box.error.new(41, 'More than one tuple found by get()'))
    end
    if found[1] == nil then return end
    return found[1]
end

function index_mt:min(key)
    local found = checked(internal.select, self.space_id, self.id, 5, key, 0, 1)
    if found[1] == nil then return end
    return found[1]
end

function index_mt:max(key)
    local found = checked(internal.select, self.space_id, self.id, 4, key, 0, 1)
    if found[1] == nil then return end
    return found[1]
end

function index_mt:count(key, opts)
    local it = options(opts)
    if it == nil and (key == nil or (type(key) == 'table' and #key == 0)) then it = 2 end
    return #checked(internal.select, self.space_id, self.id, it, key, 0, 4294967295)
end

-- A luafun iterator over the selected tuples, as Tarantool's `pairs()` returns: a for loop
-- gets `(position, tuple)`, and `:map()`, `:filter()`, ... chain.
function index_mt:pairs(key, opts)
    return require('fun').wrap(ipairs(self:select(key, opts)))
end

function index_mt:delete(key) return dml_op(DELETE, self.space_id, key, nil, self.id) end
function index_mt:update(key, ops) return dml_op(UPDATE, self.space_id, key, ops, self.id) end
function index_mt:len() return checked(internal.len, self.space_id) end

local space_mt = {}
space_mt.__index = space_mt

function space_mt:insert(tuple) return dml_op(INSERT, self.id, tuple) end
function space_mt:replace(tuple) return dml_op(REPLACE, self.id, tuple) end
function space_mt:put(tuple) return dml_op(REPLACE, self.id, tuple) end
function space_mt:delete(key) return dml_op(DELETE, self.id, key, nil, 0) end
function space_mt:update(key, ops) return dml_op(UPDATE, self.id, key, ops, 0) end
function space_mt:upsert(tuple, ops) dml_op(UPSERT, self.id, tuple, ops) end
function space_mt:len() return checked(internal.len, self.id) end

local function primary(space)
    local pk = space.index[0]
    if pk == nil then
        box.error(box.error.new(35, string.format("No index #0 is defined in space '%s'", space.name)))
    end
    return pk
end

function space_mt:get(key) return primary(self):get(key) end
function space_mt:select(key, opts) return primary(self):select(key, opts) end
function space_mt:count(key, opts) return primary(self):count(key, opts) end
function space_mt:pairs(key, opts) return primary(self):pairs(key, opts) end
function space_mt:min(key) return primary(self):min(key) end
function space_mt:max(key) return primary(self):max(key) end

local function make_space(d)
    local space = setmetatable({
        id = d.id, name = d.name, engine = d.engine, field_count = d.field_count,
        enabled = true, index = {},
    }, space_mt)
    for _, idx in pairs(d.indexes) do
        local index = setmetatable({
            id = idx.id, name = idx.name, type = idx.type, unique = idx.unique,
            space_id = d.id,
        }, index_mt)
        space.index[idx.id] = index
        space.index[idx.name] = index
    end
    return space
end

box.space = setmetatable({}, {
    __index = function(_, key)
        local d = checked(internal.space, key)
        if d == nil then return nil end
        return make_space(d)
    end,
})

-- C-stack guard ---------------------------------------------------------------------------------

-- `string.gsub` with a function (or table) replacement and `table.sort` with a comparator
-- call Lua back from C: each nesting level takes C stack (about 9 KiB for gsub), and a fiber
-- has 512 KiB of it, which LuaJIT does not watch (Tarantool 2.6 dies at 58 nested gsubs). A
-- Lua thread may nest them CALLBACK_DEPTH_MAX deep; past that the call fails with an error.
local CALLBACK_DEPTH_MAX = 40
local callback_depth = setmetatable({}, { __mode = 'k' })

local function guarded(raw, needs_guard)
    return function(...)
        if not needs_guard(...) then return raw(...) end
        local co = coroutine.running() or 'main'
        local depth = (callback_depth[co] or 0) + 1
        if depth > CALLBACK_DEPTH_MAX then error('C stack overflow', 2) end
        callback_depth[co] = depth
        local n, r = pack(pcall(raw, ...))
        callback_depth[co] = depth - 1
        if not r[1] then error(r[2], 0) end
        return unpack(r, 2, n)
    end
end

string.gsub = guarded(string.gsub, function(_, _, repl)
    return type(repl) == 'function' or type(repl) == 'table'
end)
table.sort = guarded(table.sort, function(_, cmp) return cmp ~= nil end)

-- CALL and EVAL ---------------------------------------------------------------------------------

-- A dotted name from _G (`f`, `mod.f`, `box.space.tester:select`): the function and, for the
-- method form, the object it is called on; nil if a step is missing.
-- Names parsed once: `{parts..., method = m}`, or false for a malformed name. Bounded.
local NAME_CACHE_MAX = 1024
local parsed_names, parsed_count = {}, 0

local function parse_name(name)
    local parsed = parsed_names[name]
    if parsed ~= nil then return parsed end
    local path, method = name:match('^([^:]+):([^:.]+)$')
    path = path or name
    if path:find('%.%.') or path:sub(1, 1) == '.' or path:sub(-1) == '.' then
        parsed = false
    else
        parsed = { method = method }
        for part in string.gmatch(path, '[^.]+') do parsed[#parsed + 1] = part end
    end
    if parsed_count >= NAME_CACHE_MAX then parsed_names, parsed_count = {}, 0 end
    parsed_names[name] = parsed
    parsed_count = parsed_count + 1
    return parsed
end

local function resolve(name)
    local parsed = parse_name(name)
    if not parsed then return nil end
    local method = parsed.method
    local node = _G
    for i = 1, #parsed do
        if type(node) ~= 'table' and type(node) ~= 'userdata' then return nil end
        node = node[parsed[i]]
        if node == nil then return nil end
    end
    if method ~= nil then
        if type(node) ~= 'table' and type(node) ~= 'userdata' then return nil end
        local f = node[method]
        if f == nil then return nil end
        return f, node, true
    end
    if type(node) ~= 'function' and type(node) ~= 'table' then return nil end
    return node
end

-- For the other Lua files of the box API (schema, sessions, ...), which extend these.
internal.space_mt = space_mt
internal.index_mt = index_mt
internal.new_error = new_error
internal.error_mt = error_mt
internal.checked = checked
internal.run_dml = dml

function internal.call(name, ...)
    local f, object, is_method = resolve(name)
    if f == nil then
        return false, new_error(33, string.format("Procedure '%s' is not defined", name))
    end
    if is_method then return pcall(f, object, ...) end
    return pcall(f, ...)
end

-- Compiled EVAL expressions by text: clients send the same few again and again. A chunk is
-- a pure function of its text, so a cached one behaves as a fresh compile would.
local EVAL_CACHE_MAX = 256
local eval_cache, eval_cached = {}, 0

function internal.eval(expr, ...)
    local f = eval_cache[expr]
    if f == nil then
        local err
        f, err = loadstring(expr, '=eval')
        if f == nil then return false, err end
        if eval_cached >= EVAL_CACHE_MAX then eval_cache, eval_cached = {}, 0 end
        eval_cache[expr] = f
        eval_cached = eval_cached + 1
    end
    return pcall(f, ...)
end
