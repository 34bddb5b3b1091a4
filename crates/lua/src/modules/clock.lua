-- `clock`: realtime, monotonic, process and thread CPU clocks from clock_gettime(2), as
-- seconds (doubles) and as uint64 nanoseconds (`*64`), and `bench`.
local ffi = require('ffi')

ffi.cdef[[
typedef struct { long sec; long nsec; } spindle_clock_timespec;
int clock_gettime(int clk_id, spindle_clock_timespec *tp);
]]

local ts = ffi.new('spindle_clock_timespec')
local REALTIME, MONOTONIC, PROCESS, THREAD = 0, 1, 2, 3

local function seconds(id)
    ffi.C.clock_gettime(id, ts)
    return tonumber(ts.sec) + tonumber(ts.nsec) / 1e9
end

local function nanoseconds(id)
    ffi.C.clock_gettime(id, ts)
    return ffi.cast('uint64_t', ts.sec) * 1000000000ULL + ffi.cast('uint64_t', ts.nsec)
end

local clock = {}
for name, id in pairs({realtime = REALTIME, time = REALTIME, monotonic = MONOTONIC,
                       proc = PROCESS, thread = THREAD}) do
    clock[name] = function() return seconds(id) end
    clock[name .. '64'] = function() return nanoseconds(id) end
end

-- CPU seconds `fn(...)` took, then its results.
function clock.bench(fn, ...)
    local start = seconds(PROCESS)
    local result = {fn(...)}
    table.insert(result, 1, seconds(PROCESS) - start)
    return result
end

return clock
