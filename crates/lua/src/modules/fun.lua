-- `fun`: iterators in the style of luafun (its documented API, written anew). An iterator is
-- a generator triple `gen, param, state`: `gen(param, state)` returns the next state and the
-- values, or nil at the end. Iterators are pure (the same object can be run again) and
-- chain as methods: `fun.iter(t):map(f):filter(g):totable()`. `fun.wrap(gen, param, state)`
-- makes one from any triple (space:pairs() uses it).

local unpack = unpack or table.unpack

local methods = {}
local iterator_mt = {
    __index = methods,
    __call = function(self, param, state) return self.gen(param, state) end,
    __tostring = function() return '<generator>' end,
}

local function wrap(gen, param, state)
    return setmetatable({gen = gen, param = param, state = state}, iterator_mt), param, state
end

function methods.unwrap(self) return self.gen, self.param, self.state end

local function nil_gen() return nil end

local ipairs_gen = ipairs({})

local function string_gen(s, i)
    i = i + 1
    if i > #s then return nil end
    return i, s:sub(i, i)
end

local function map_gen(t, key)
    local value
    key, value = next(t, key)
    return key, key, value
end

local function rawiter(obj, param, state)
    local kind = type(obj)
    if kind == 'table' then
        -- An iterator object comes with its own param and state (`wrap` returns them too).
        if getmetatable(obj) == iterator_mt then return obj.gen, obj.param, obj.state end
        if #obj > 0 then return ipairs(obj) end
        return map_gen, obj, nil
    elseif kind == 'function' then
        return obj, param, state
    elseif kind == 'string' then
        if #obj == 0 then return nil_gen, nil, nil end
        return string_gen, obj, 0
    end
    error(string.format('object %s of type "%s" is not iterable', tostring(obj), kind), 3)
end

local function iter(obj, param, state) return wrap(rawiter(obj, param, state)) end

local exports = {iter = iter, wrap = wrap}

-- Registers `f(arg..., gen, param, state)` as `fun.name(arg..., obj, param, state)` and as
-- the method `it:name(arg...)`; `nargs` is the number of leading arguments.
local function export(names, nargs, f)
    local function module_fn(...)
        local args = {...}
        local gen, param, state = rawiter(args[nargs + 1], args[nargs + 2], args[nargs + 3])
        args[nargs + 1], args[nargs + 2], args[nargs + 3] = gen, param, state
        return f(unpack(args, 1, nargs + 3))
    end
    local method
    if nargs == 0 then
        method = function(self) return f(self.gen, self.param, self.state) end
    elseif nargs == 1 then
        method = function(self, a) return f(a, self.gen, self.param, self.state) end
    else
        method = function(self, a, b) return f(a, b, self.gen, self.param, self.state) end
    end
    for _, name in ipairs(names) do
        exports[name] = module_fn
        methods[name] = method
    end
end

-- Generators -----------------------------------------------------------------------------------

local function range_gen(param, i)
    local stop, step = param[1], param[2]
    i = i + step
    if (step > 0 and i > stop) or (step < 0 and i < stop) then return nil end
    return i, i
end

function exports.range(start, stop, step)
    if stop == nil then
        if start == 0 then return wrap(nil_gen, nil, nil) end
        stop = start
        start = stop > 0 and 1 or -1
    end
    step = step or (start <= stop and 1 or -1)
    assert(step ~= 0, 'step must not be zero')
    return wrap(range_gen, {stop, step}, start - step)
end

local function dup_gen(param, state) return state + 1, unpack(param, 1, param.n) end

function exports.duplicate(...)
    return wrap(dup_gen, {n = select('#', ...), ...}, 0)
end
exports.xrepeat = exports.duplicate
exports.replicate = exports.duplicate

local function tab_gen(f, i) return i + 1, f(i) end
function exports.tabulate(f) return wrap(tab_gen, f, 0) end
function exports.zeros() return exports.duplicate(0) end
function exports.ones() return exports.duplicate(1) end

local function rands_gen(param, i)
    return i + 1, math.random(param[1], param[2] - 1)
end
function exports.rands(n, m)
    if n == nil and m == nil then
        return wrap(function(_, i) return i + 1, math.random() end, nil, 0)
    end
    if m == nil then n, m = 0, n end
    return wrap(rands_gen, {n, m}, 0)
end

-- Slicing --------------------------------------------------------------------------------------

local function first(s, ...)
    if s == nil then return nil end
    return ...
end

export({'nth'}, 1, function(n, gen, param, state)
    assert(n > 0, 'invalid first argument to nth')
    if gen == ipairs_gen then return param[state + n] end
    if gen == string_gen then
        if state + n <= #param then return param:sub(state + n, state + n) end
        return nil
    end
    for _ = 1, n - 1 do
        state = gen(param, state)
        if state == nil then return nil end
    end
    return first(gen(param, state))
end)

local function head_values(s, ...)
    if s == nil then error('head: iterator is empty', 3) end
    return ...
end
export({'head', 'car'}, 0, function(gen, param, state)
    return head_values(gen(param, state))
end)

export({'tail', 'cdr'}, 0, function(gen, param, state)
    state = gen(param, state)
    if state == nil then return wrap(nil_gen, nil, nil) end
    return wrap(gen, param, state)
end)

local function counted(i, s, ...)
    if s == nil then return nil end
    return {i, s}, ...
end

local function take_n_gen(param, state)
    local n, gen, p = param[1], param[2], param[3]
    local i, s = state[1], state[2]
    if i >= n then return nil end
    return counted(i + 1, gen(p, s))
end

local function take_n(n, gen, param, state)
    assert(n >= 0, 'invalid first argument to take_n')
    return wrap(take_n_gen, {n, gen, param}, {0, state})
end
export({'take_n'}, 1, take_n)

local function while_check(f, s, ...)
    if s == nil or not f(...) then return nil end
    return s, ...
end
local function take_while_gen(param, state)
    return while_check(param[1], param[2](param[3], state))
end
local function take_while(f, gen, param, state)
    return wrap(take_while_gen, {f, gen, param}, state)
end
export({'take_while'}, 1, take_while)

export({'take'}, 1, function(n_or_f, gen, param, state)
    if type(n_or_f) == 'number' then return take_n(n_or_f, gen, param, state) end
    return take_while(n_or_f, gen, param, state)
end)

local function drop_n(n, gen, param, state)
    assert(n >= 0, 'invalid first argument to drop_n')
    for _ = 1, n do
        state = gen(param, state)
        if state == nil then return wrap(nil_gen, nil, nil) end
    end
    return wrap(gen, param, state)
end
export({'drop_n'}, 1, drop_n)

local function drop_while(f, gen, param, state)
    while true do
        local before = state
        local function check(s, ...)
            if s == nil then return 'end' end
            if f(...) then return s end
            return 'stop'
        end
        local r = check(gen(param, state))
        if r == 'end' then return wrap(nil_gen, nil, nil) end
        if r == 'stop' then return wrap(gen, param, before) end
        state = r
    end
end
export({'drop_while'}, 1, drop_while)

export({'drop'}, 1, function(n_or_f, gen, param, state)
    if type(n_or_f) == 'number' then return drop_n(n_or_f, gen, param, state) end
    return drop_while(n_or_f, gen, param, state)
end)

export({'span', 'split', 'split_at'}, 1, function(n_or_f, gen, param, state)
    if type(n_or_f) == 'number' then
        return take_n(n_or_f, gen, param, state), drop_n(n_or_f, gen, param, state)
    end
    return take_while(n_or_f, gen, param, state), drop_while(n_or_f, gen, param, state)
end)

-- Indexing -------------------------------------------------------------------------------------

export({'index', 'index_of', 'elem_index'}, 1, function(x, gen, param, state)
    local i = 1
    while true do
        local s, v = gen(param, state)
        if s == nil then return nil end
        if v == x then return i end
        state, i = s, i + 1
    end
end)

local function indexes_gen(param, state)
    local x, gen, p = param[1], param[2], param[3]
    local i, s = state[1], state[2]
    while true do
        local v
        s, v = gen(p, s)
        if s == nil then return nil end
        i = i + 1
        if v == x then return {i, s}, i end
    end
end
export({'indexes', 'indices', 'elem_indexes', 'elem_indices'}, 1, function(x, gen, param, state)
    return wrap(indexes_gen, {x, gen, param}, {0, state})
end)

-- Filtering ------------------------------------------------------------------------------------

local filter_next
local function filter_check(f, gen, p, s, ...)
    if s == nil then return nil end
    if f(...) then return s, ... end
    return filter_next(f, gen, p, s)
end
filter_next = function(f, gen, p, s) return filter_check(f, gen, p, gen(p, s)) end

local function filter_gen(param, state)
    return filter_next(param[1], param[2], param[3], state)
end
local function filter(f, gen, param, state)
    return wrap(filter_gen, {f, gen, param}, state)
end
export({'filter', 'remove_if'}, 1, filter)

export({'grep'}, 1, function(pattern, gen, param, state)
    local f = pattern
    if type(pattern) == 'string' then
        f = function(x) return type(x) == 'string' and x:find(pattern) ~= nil end
    end
    return filter(f, gen, param, state)
end)

export({'partition'}, 1, function(f, gen, param, state)
    return filter(f, gen, param, state),
           filter(function(...) return not f(...) end, gen, param, state)
end)

-- Reducing -------------------------------------------------------------------------------------

local function fold_step(f, acc, s, ...)
    if s == nil then return nil, acc end
    return s, f(acc, ...)
end
local function foldl(f, start, gen, param, state)
    local acc = start
    while true do
        state, acc = fold_step(f, acc, gen(param, state))
        if state == nil then return acc end
    end
end
export({'foldl', 'reduce'}, 2, foldl)

export({'length'}, 0, function(gen, param, state)
    if gen == ipairs_gen and state == 0 then return #param end
    if gen == string_gen and state == 0 then return #param end
    local n = 0
    while true do
        state = gen(param, state)
        if state == nil then return n end
        n = n + 1
    end
end)

export({'is_null'}, 0, function(gen, param, state) return gen(param, state) == nil end)

export({'is_prefix_of'}, 1, function(prefix, gen, param, state)
    local pgen, pparam, pstate = rawiter(prefix)
    while true do
        local ps, pv = pgen(pparam, pstate)
        if ps == nil then return true end
        local s, v = gen(param, state)
        if s == nil or v ~= pv then return false end
        pstate, state = ps, s
    end
end)

local function test_step(f, s, ...)
    if s == nil then return nil end
    return s, f(...)
end
export({'all', 'every'}, 1, function(f, gen, param, state)
    while true do
        local ok
        state, ok = test_step(f, gen(param, state))
        if state == nil then return true end
        if not ok then return false end
    end
end)
export({'any', 'some'}, 1, function(f, gen, param, state)
    while true do
        local ok
        state, ok = test_step(f, gen(param, state))
        if state == nil then return false end
        if ok then return true end
    end
end)

export({'sum'}, 0, function(gen, param, state)
    return foldl(function(acc, x) return acc + x end, 0, gen, param, state)
end)
export({'product'}, 0, function(gen, param, state)
    return foldl(function(acc, x) return acc * x end, 1, gen, param, state)
end)

local function extreme(name, better)
    return function(gen, param, state)
        local s, best = gen(param, state)
        if s == nil then error(name .. ': iterator is empty', 3) end
        while true do
            local v
            s, v = gen(param, s)
            if s == nil then return best end
            if better(v, best) then best = v end
        end
    end
end
export({'min', 'minimum'}, 0, extreme('min', function(a, b) return a < b end))
export({'max', 'maximum'}, 0, extreme('max', function(a, b) return a > b end))
export({'min_by', 'minimum_by'}, 1, function(cmp, gen, param, state)
    return extreme('min', function(a, b) return cmp(a, b) == a and a ~= b end)(gen, param, state)
end)
export({'max_by', 'maximum_by'}, 1, function(cmp, gen, param, state)
    return extreme('max', function(a, b) return cmp(a, b) == a and a ~= b end)(gen, param, state)
end)

export({'totable'}, 0, function(gen, param, state)
    local t = {}
    while true do
        local v
        state, v = gen(param, state)
        if state == nil then return t end
        t[#t + 1] = v
    end
end)

export({'tomap'}, 0, function(gen, param, state)
    local t = {}
    while true do
        local k, v
        state, k, v = gen(param, state)
        if state == nil then return t end
        t[k] = v
    end
end)

local function each_step(f, s, ...)
    if s == nil then return nil end
    f(...)
    return s
end
export({'each', 'for_each', 'foreach'}, 1, function(f, gen, param, state)
    repeat state = each_step(f, gen(param, state)) until state == nil
end)

-- Transformations ------------------------------------------------------------------------------

local function map_apply(f, s, ...)
    if s == nil then return nil end
    return s, f(...)
end
local function map_fn_gen(param, state)
    return map_apply(param[1], param[2](param[3], state))
end
export({'map'}, 1, function(f, gen, param, state)
    return wrap(map_fn_gen, {f, gen, param}, state)
end)

local function numbered(i, s, ...)
    if s == nil then return nil end
    return {i, s}, i, ...
end
local function enumerate_gen(param, state)
    return numbered(state[1] + 1, param[1](param[2], state[2]))
end
export({'enumerate'}, 0, function(gen, param, state)
    return wrap(enumerate_gen, {gen, param}, {0, state})
end)

local function intersperse_gen(param, state)
    local x, gen, p = param[1], param[2], param[3]
    local i, s = state[1], state[2]
    if i % 2 == 1 then return {i + 1, s}, x end
    return counted(i + 1, gen(p, s))
end
export({'intersperse'}, 1, function(x, gen, param, state)
    return wrap(intersperse_gen, {x, gen, param}, {0, state})
end)

-- The iterators among `...`: an iterator object followed by its own param and state (as
-- `wrap` returns them, e.g. `it:zip(fun.range(3))`) counts once.
local function iterators(...)
    local args, out = {n = select('#', ...), ...}, {}
    local i = 1
    while i <= args.n do
        local obj = args[i]
        out[#out + 1] = obj
        if type(obj) == 'table' and getmetatable(obj) == iterator_mt
                and i + 2 <= args.n and rawequal(args[i + 1], obj.param)
                and rawequal(args[i + 2], obj.state) then
            i = i + 3
        else
            i = i + 1
        end
    end
    return out
end

-- Compositions ---------------------------------------------------------------------------------

local function zip_gen(param, state)
    local new_state, values = {}, {}
    for i = 1, param.n do
        local s, v = param[i][1](param[i][2], state[i])
        if s == nil then return nil end
        new_state[i], values[i] = s, v
    end
    return new_state, unpack(values, 1, param.n)
end

local function zip(...)
    local its = iterators(...)
    local n = #its
    local param, state = {n = n}, {}
    for i = 1, n do
        local gen, p, s = rawiter(its[i])
        param[i], state[i] = {gen, p}, s
    end
    return wrap(zip_gen, param, state)
end
exports.zip = zip
function methods.zip(self, ...) return zip(self, ...) end

local function chain_gen(param, state)
    local i, s = state[1], state[2]
    while i <= param.n do
        local part = param[i]
        local function step(s2, ...)
            if s2 == nil then return nil end
            return {i, s2}, ...
        end
        local r = {step(part[1](part[2], s))}
        if r[1] ~= nil then return unpack(r, 1, table.maxn(r)) end
        i = i + 1
        if param[i] then s = param[i][3] end
    end
    return nil
end

local function chain(...)
    local its = iterators(...)
    local n = #its
    local param = {n = n}
    for i = 1, n do
        local gen, p, s = rawiter(its[i])
        param[i] = {gen, p, s}
    end
    if n == 0 then return wrap(nil_gen, nil, nil) end
    return wrap(chain_gen, param, {1, param[1][3]})
end
exports.chain = chain
function methods.chain(self, ...) return chain(self, ...) end

local function cycle_gen(param, state)
    local gen, p, s0 = param[1], param[2], param[3]
    local function step(s, ...)
        if s == nil then return nil end
        return s, ...
    end
    local r = {step(gen(p, state))}
    if r[1] == nil then
        r = {step(gen(p, s0))}
        if r[1] == nil then return nil end
    end
    return unpack(r, 1, table.maxn(r))
end
export({'cycle'}, 0, function(gen, param, state)
    return wrap(cycle_gen, {gen, param, state}, state)
end)

-- Operators ------------------------------------------------------------------------------------

local operator = {
    lt = function(a, b) return a < b end, le = function(a, b) return a <= b end,
    eq = function(a, b) return a == b end, ne = function(a, b) return a ~= b end,
    ge = function(a, b) return a >= b end, gt = function(a, b) return a > b end,
    add = function(a, b) return a + b end, sub = function(a, b) return a - b end,
    mul = function(a, b) return a * b end, div = function(a, b) return a / b end,
    truediv = function(a, b) return a / b end,
    floordiv = function(a, b) return math.floor(a / b) end,
    intdiv = function(a, b)
        local q = a / b
        if q >= 0 then return math.floor(q) end
        return math.ceil(q)
    end,
    mod = function(a, b) return a % b end, pow = function(a, b) return a ^ b end,
    neg = function(a) return -a end, unm = function(a) return -a end,
    concat = function(a, b) return a .. b end, len = function(a) return #a end,
    length = function(a) return #a end,
    land = function(a, b) return a and b end, lor = function(a, b) return a or b end,
    lnot = function(a) return not a end, truth = function(a) return not not a end,
}
exports.operator = operator
exports.op = operator

return setmetatable(exports, {
    -- `require('fun')()` puts the functions into the globals.
    __call = function(self, env)
        env = env or _G
        for k, v in pairs(self) do env[k] = v end
    end,
})
