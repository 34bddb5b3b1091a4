-- The Lua half of `decimal`: argument conversion and Tarantool's error messages over the
-- arithmetic of decimal.rs (`raw`). Returns the module and the metamethods of decimals.
local raw = ...
local is = raw.is

-- Every error carries the position of the code that called the decimal function or
-- operator, `level` frames above fail's caller.
local function fail(msg, level)
    error(msg, level + 1)
end

-- `v` as a decimal; errors name argument `n` (`level` as in fail).
local function to_dec(v, n, level)
    if is(v) then return v end
    local kind, s = type(v), nil
    if kind == 'number' then
        s = string.format('%.15g', v)
    elseif kind == 'string' then
        s = v
    elseif kind == 'cdata' then
        s = tostring(v):match('^(-?%d+)U?LL$')
    end
    if s == nil then
        fail('expected decimal, number or string as ' .. n .. ' argument', level)
    end
    local d = raw.parse(s)
    if d == nil then
        fail('incorrect value to convert to decimal as ' .. n .. ' argument', level)
    end
    return d
end

local function check_decimal(v)
    if not is(v) then fail('expected cdata as 1 argument', 3) end
    return v
end

local M = {}

function M.new(...)
    if select('#', ...) == 0 then fail('usage: decimal.new(value)', 2) end
    local d = to_dec((...), 1, 3)
    return d
end

function M.is_decimal(...)
    if select('#', ...) == 0 then fail('usage: decimal.is_decimal(value)', 2) end
    return is((...))
end

for _, op in ipairs({'abs', 'sqrt', 'ln', 'log10', 'exp'}) do
    M[op] = function(v)
        local r = raw.unary(op, to_dec(v, 1, 3))
        if r == nil then fail('decimal operation failed', 2) end
        return r
    end
end

function M.trim(v)
    return raw.unary('trim', check_decimal(v))
end

function M.scale(v)
    return raw.scale(check_decimal(v))
end

function M.precision(v)
    return raw.precision(check_decimal(v))
end

local function rounder(name, pad)
    return function(...)
        if select('#', ...) < 2 then
            fail('usage: decimal.' .. name .. '(decimal, scale)', 2)
        end
        local v, to = ...
        check_decimal(v)
        to = tonumber(to) or 0
        to = to < 0 and math.ceil(to) or math.floor(to)
        local r = raw.round(v, to, pad)
        if r == nil then fail('incorrect value to convert to decimal as 1 argument', 2) end
        return r
    end
end
M.round = rounder('round', false)
M.rescale = rounder('rescale', true)

local mt = {}

local function arith(op)
    return function(a, b)
        local r = raw.binary(op, to_dec(a, 1, 3), to_dec(b, 2, 3))
        if r == nil then fail('decimal operation failed', 2) end
        return r
    end
end
mt.__add = arith('add')
mt.__sub = arith('sub')
mt.__mul = arith('mul')
mt.__div = arith('div')
mt.__mod = arith('mod')
mt.__pow = arith('pow')

function mt.__unm(a)
    return raw.unary('minus', a)
end

local function compare(a, b)
    return raw.cmp(to_dec(a, 1, 4), to_dec(b, 2, 4))
end
function mt.__eq(a, b) return compare(a, b) == 0 end
function mt.__lt(a, b) return compare(a, b) < 0 end
function mt.__le(a, b) return compare(a, b) <= 0 end

return M, mt
