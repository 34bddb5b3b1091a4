-- `log`: `error`, `warn`, `info`, `verbose`, `debug` with printf formatting (a table is
-- logged as JSON), `log.level([n])`, `log.cfg{level = ...}`; lines go to the server's log
-- through Rust's `tracing`.
local write = ...
local json = require('json')

local LEVELS = {fatal = 0, syserror = 1, error = 2, crit = 3, warn = 4, info = 5,
                verbose = 6, debug = 7}
local current = 5

local function text(fmt, ...)
    if type(fmt) == 'table' then return json.encode(fmt) end
    if select('#', ...) == 0 then return tostring(fmt) end
    local args = {...}
    for i = 1, select('#', ...) do
        if type(args[i]) == 'table' then args[i] = json.encode(args[i]) end
    end
    return string.format(tostring(fmt), unpack(args, 1, select('#', ...)))
end

local log = {}

local function level_of(v)
    if type(v) == 'string' then v = LEVELS[v] end
    if type(v) ~= 'number' then error('log: invalid level', 3) end
    return v
end

for name, level in pairs(LEVELS) do
    log[name] = function(fmt, ...)
        if level > current then return end
        write(level, text(fmt, ...))
    end
end

function log.level(v)
    if v == nil then return current end
    current = level_of(v)
    rawset(log.cfg, 'level', current)
end

-- `log.cfg{level = ...}` configures; `log.cfg.level` reads.
log.cfg = setmetatable({level = current}, {
    __call = function(self, opts)
        if type(opts) == 'table' and opts.level ~= nil then
            current = level_of(opts.level)
            rawset(self, 'level', current)
        end
        return self
    end,
})

function log.pid() return 0 end
function log.rotate() end

return log
