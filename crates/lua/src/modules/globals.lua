-- Tarantool's additions to Lua's standard library: `string` (split, strip, startswith,
-- hex, ljust, ...), `table` (copy, deepcopy, new), `os` (setenv, environ, exit), and the
-- globals `tonumber64`, `dostring` and `_TARANTOOL`. Runs once when the state is made.
local internal = ...
local ffi = require('ffi')

_TARANTOOL = '2.6.0-0-spindle'

-- string --------------------------------------------------------------------------------------

local function arg_error(n, fname, expected, got, level)
    error(string.format("bad argument #%d to '%s' (%s expected, got %s)", n, fname, expected, got),
          level or 3)
end

local function check_string(v, n, fname)
    if type(v) ~= 'string' then arg_error(n, fname, 'string', type(v)) end
end

local function split_spaces(s, max)
    local out = {}
    local pos = s:find('%S')
    while pos do
        if max and #out == max then
            out[#out + 1] = s:sub(pos)
            break
        end
        local stop = s:find('%s', pos)
        if not stop then
            out[#out + 1] = s:sub(pos)
            break
        end
        out[#out + 1] = s:sub(pos, stop - 1)
        pos = s:find('%S', stop)
    end
    return out
end

function string.split(s, sep, max)
    check_string(s, 1, 'string.split')
    if sep ~= nil then check_string(sep, 2, 'string.split') end
    if max ~= nil and (type(max) ~= 'number' or max < 0) then
        arg_error(3, 'string.split', 'positive integer', type(max))
    end
    if sep == nil then return split_spaces(s, max) end
    if sep == '' then
        arg_error(2, 'string.split', 'non-empty string', 'empty string')
    end
    local out = {}
    local pos = 1
    while true do
        if max and #out == max then break end
        local first, last = s:find(sep, pos, true)
        if not first then break end
        out[#out + 1] = s:sub(pos, first - 1)
        pos = last + 1
    end
    out[#out + 1] = s:sub(pos)
    return out
end

local function strip_class(chars)
    if chars == nil then return '%s' end
    return '[' .. chars:gsub('[%%%]%^%-]', '%%%0') .. ']'
end

function string.lstrip(s, chars)
    check_string(s, 1, 'string.lstrip')
    if chars ~= nil then check_string(chars, 2, 'string.lstrip') end
    return (s:gsub('^' .. strip_class(chars) .. '+', ''))
end

function string.rstrip(s, chars)
    check_string(s, 1, 'string.rstrip')
    if chars ~= nil then check_string(chars, 2, 'string.rstrip') end
    local class = strip_class(chars)
    local stop = #s
    while stop > 0 and s:sub(stop, stop):find('^' .. class .. '$') do stop = stop - 1 end
    return s:sub(1, stop)
end

function string.strip(s, chars)
    check_string(s, 1, 'string.strip')
    if chars ~= nil then check_string(chars, 2, 'string.strip') end
    return string.rstrip(string.lstrip(s, chars), chars)
end

-- Lua-style bounds: negative positions count from the end.
local function bounds(len, first, last)
    first = first or 1
    last = last or len
    if first < 0 then first = len + first + 1 end
    if last < 0 then last = len + last + 1 end
    if first < 1 then first = 1 end
    if last > len then last = len end
    return first, last
end

function string.startswith(s, prefix, first, last)
    check_string(s, 1, 'string.startswith')
    check_string(prefix, 2, 'string.startswith')
    first, last = bounds(#s, first, last)
    if #prefix == 0 then return true end
    if last - first + 1 < #prefix then return false end
    return s:sub(first, first + #prefix - 1) == prefix
end

function string.endswith(s, suffix, first, last)
    check_string(s, 1, 'string.endswith')
    check_string(suffix, 2, 'string.endswith')
    first, last = bounds(#s, first, last)
    if #suffix == 0 then return true end
    if last - first + 1 < #suffix then return false end
    return s:sub(last - #suffix + 1, last) == suffix
end

function string.hex(s)
    check_string(s, 1, 'string.hex')
    return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end))
end

function string.fromhex(s)
    check_string(s, 1, 'string.fromhex')
    if #s % 2 ~= 0 then
        arg_error(1, 'string.fromhex', 'even amount of chars', 'odd amount')
    end
    if s:find('[^%x]') then
        arg_error(1, 'string.fromhex', 'hex string', 'non hex chars')
    end
    return (s:gsub('%x%x', function(h) return string.char(tonumber(h, 16)) end))
end

local function check_fill(fname, width, char)
    if type(width) ~= 'number' then arg_error(2, fname, 'number', type(width), 4) end
    if char == nil then return ' ' end
    if type(char) ~= 'string' or #char ~= 1 then
        arg_error(3, fname, 'char', type(char), 4)
    end
    return char
end

function string.ljust(s, width, char)
    check_string(s, 1, 'string.ljust')
    char = check_fill('string.ljust', width, char)
    if #s >= width then return s end
    return s .. char:rep(width - #s)
end

function string.rjust(s, width, char)
    check_string(s, 1, 'string.rjust')
    char = check_fill('string.rjust', width, char)
    if #s >= width then return s end
    return char:rep(width - #s) .. s
end

function string.center(s, width, char)
    check_string(s, 1, 'string.center')
    char = check_fill('string.center', width, char)
    if #s >= width then return s end
    local left = math.floor((width - #s) / 2)
    return char:rep(left) .. s .. char:rep(width - #s - left)
end

-- table ---------------------------------------------------------------------------------------

table.new = table.new or require('table.new')

function table.copy(orig)
    if type(orig) ~= 'table' then return orig end
    local mt = getmetatable(orig)
    if type(mt) == 'table' and mt.__copy then return mt.__copy(orig) end
    local copy = {}
    for k, v in pairs(orig) do copy[k] = v end
    return setmetatable(copy, mt)
end

local function deepcopy(orig, seen)
    if type(orig) ~= 'table' then return orig end
    if seen[orig] then return seen[orig] end
    local mt = getmetatable(orig)
    if type(mt) == 'table' and mt.__copy then return mt.__copy(orig) end
    local copy = {}
    seen[orig] = copy
    for k, v in pairs(orig) do copy[deepcopy(k, seen)] = deepcopy(v, seen) end
    return setmetatable(copy, mt)
end

function table.deepcopy(orig) return deepcopy(orig, {}) end

-- tonumber64, dostring --------------------------------------------------------------------------

-- Integers Lua numbers hold exactly (Tarantool's DBL_INT_MAX) stay numbers.
local DBL_INT_MAX = 99999999999999
local U64_MAX = ffi.new('uint64_t', -1)

local function digit(c)
    local b = c:byte()
    if b >= 48 and b <= 57 then return b - 48 end
    b = bit.bor(b, 0x20)
    if b >= 97 and b <= 122 then return b - 87 end
    return 99
end

function tonumber64(v, base)
    if type(v) == 'number' or type(v) == 'cdata' then return v end
    if type(v) ~= 'string' then return nil end
    local s = v:match('^%s*(.-)%s*$')
    local neg = false
    if s:sub(1, 1) == '-' then neg, s = true, s:sub(2)
    elseif s:sub(1, 1) == '+' then s = s:sub(2) end
    local prefix = s:sub(1, 2):lower()
    if (base == nil or base == 16) and prefix == '0x' then base, s = 16, s:sub(3)
    elseif (base == nil or base == 2) and prefix == '0b' then base, s = 2, s:sub(3) end
    base = base or 10
    if s == '' then return nil end
    local acc = ffi.new('uint64_t', 0)
    for i = 1, #s do
        local d = digit(s:sub(i, i))
        if d >= base then return nil end
        if acc > (U64_MAX - d) / base then return nil end
        acc = acc * base + d
    end
    if neg then
        if acc > 9223372036854775808ULL then return nil end
        if acc <= DBL_INT_MAX then return -tonumber(acc) end
        return -ffi.cast('int64_t', acc)
    end
    if acc <= DBL_INT_MAX then return tonumber(acc) end
    return acc
end

function dostring(s, ...)
    local chunk, err = loadstring(s)
    if chunk == nil then error(err, 0) end
    return chunk(...)
end

-- os ------------------------------------------------------------------------------------------

os.setenv = internal.setenv
os.environ = internal.environ

function os.exit(code)
    io.stdout:flush()
    io.stderr:flush()
    -- Only a number is a status: anything else (true, false, nil) exits with 0.
    internal.exit(type(code) == 'number' and code or 0)
end
