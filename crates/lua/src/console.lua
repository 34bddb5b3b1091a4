-- The `console` module: evaluation of console requests and their output formats. Sockets,
-- framing and the REPL's stdin are Rust (`console.rs`), which passes its functions in `...`.
local internal = ...

local NULL = internal.null

local HELP = [[
To get help, see the Tarantool manual at https://tarantool.io/en/doc/
To start the interactive Tarantool tutorial, type 'tutorial()' here.

Available backslash commands:

  \set language <language>   -- set language (lua or sql)
  \set output <format>       -- set output format (lua[,line|block] or yaml)
  \set delimiter <delimiter> -- set expression delimiter
  \help                      -- show this screen
  \quit                      -- quit interactive console
]]

-- The output format a new session starts with (`set_default_output`).
local default_output = {fmt = 'yaml', opts = nil}

-- Console sessions by the Lua thread serving them: what `delimiter()` and `eval()` find.
local consoles = setmetatable({}, {__mode = 'k'})
-- Sessions of other callers (binary connections running `console.eval`), by session id.
local others = {}

local function new_state(kind)
    return {
        kind = kind,
        delimiter = '',
        fmt = default_output.fmt,
        opts = default_output.opts,
        language = 'lua',
        running = true,
    }
end

local function session_id()
    local box = rawget(_G, 'box')
    local session = type(box) == 'table' and rawget(box, 'session')
    if type(session) == 'table' and type(session.id) == 'function' then
        local ok, id = pcall(session.id)
        if ok and id ~= nil then return id end
    end
    return 0
end

-- The state of the calling session: its console, or one kept per binary session.
local function current_state()
    local thread = coroutine.running()
    local state = thread ~= nil and consoles[thread] or nil
    if state ~= nil then return state end
    local id = session_id()
    state = others[id]
    if state == nil then
        state = new_state('binary')
        others[id] = state
    end
    return state
end

local function format_yaml(status, ...)
    if status then
        local ok, text = pcall(internal.format_yaml, ...)
        if ok then return text end
        local err = 'console: an exception occurred when formatting the output: ' ..
            tostring(text)
        return internal.format_yaml({error = err})
    end
    local err = ...
    if err == nil then err = NULL end
    return internal.format_yaml({error = err})
end

local function format_lua_value(status, block, value)
    if status then
        local ok, text = pcall(internal.format_lua, value, block)
        if ok then return text end
        value = string.format('console: exception while formatting output: "%s"',
            tostring(text))
    elseif value == nil then
        value = NULL
    end
    return internal.format_lua({error = value}, block)
end

local function format_lua(state, status, ...)
    local block = state.opts == 'block'
    local parts = {}
    for i = 1, select('#', ...) do
        parts[i] = format_lua_value(status, block, (select(i, ...)))
    end
    return table.concat(parts, ', ') .. ';'
end

-- `status, values...` (a pcall's results) as the session's output text.
local function format(state, status, ...)
    if state.fmt == 'lua' then
        return format_lua(state, status, ...)
    end
    return format_yaml(status, ...)
end

-- `fmt`, `opts` of an output spec (`yaml`, `lua`, `lua,line`, `lua,block`) or an error text.
local function parse_output(value)
    if value == nil then
        return nil, nil, 'Specify output format: lua or yaml.'
    end
    local fmt, opts = value:match('([^,]+),([^,]+)')
    if fmt == nil then fmt = value end
    if fmt ~= 'yaml' and fmt ~= 'lua' then
        return nil, nil,
            string.format('Invalid format "%s", supported languages: lua and yaml.', value)
    end
    if fmt == 'lua' and opts ~= nil and opts ~= 'line' and opts ~= 'block' then
        return nil, nil, string.format('Wrong option "%s", expecting: line or block.', opts)
    end
    return fmt, opts
end

-- Tarantool reports these with the position of its own source lines; clients print them so.
local NEED_CONSOLE = 'builtin/box/console.lua:253: console.delimiter(): need existing console'
local INVALID_DELIMITER = 'builtin/box/console.lua:260: invalid delimiter'

local function delimiter(d)
    local thread = coroutine.running()
    local state = thread ~= nil and consoles[thread] or nil
    if state == nil then
        error(NEED_CONSOLE, 0)
    end
    if d == nil then
        return state.delimiter
    elseif type(d) == 'string' then
        state.delimiter = d
    else
        error(INVALID_DELIMITER, 0)
    end
end

local function set_delimiter(state, value)
    if state.delimiter == '$EOF$' then
        return error('Can not install delimiter for net box sessions')
    end
    return delimiter(value or '')
end

local function set_language(state, value)
    if value == nil then
        return {language = state.language or 'lua'}
    end
    if value ~= 'lua' and value ~= 'sql' then
        return error(string.format(
            'Invalid language "%s", supported languages: lua and sql.', value))
    end
    state.language = value
    return true
end

local function set_output(state, value)
    local fmt, opts, err = parse_output(value)
    if err ~= nil then
        return error(err)
    end
    state.fmt = fmt
    state.opts = fmt == 'lua' and (opts or 'line') or nil
    return true
end

local setters = {
    language = set_language, lang = set_language, l = set_language,
    output = set_output, o = set_output,
    delimiter = set_delimiter, delim = set_delimiter, d = set_delimiter,
}

local function help()
    return {HELP}
end

local commands = {}

function commands.set(state, _, param, value)
    if param == nil then
        return format(state, false, 'Invalid set syntax, type \\help for help')
    end
    local setter = setters[param]
    if setter == nil then
        return format(state, false, 'Unknown parameter: ' .. tostring(param))
    end
    return format(state, pcall(setter, state, value))
end
commands.s = commands.set

function commands.help(state)
    return format(state, true, help())
end
commands.h = commands.help

function commands.quit(state)
    state.running = false
end
commands.q = commands.quit

-- A backslash command (without its backslash).
local function run_command(state, command)
    local words = {}
    for word in command:gmatch('%S+') do
        words[#words + 1] = word
    end
    if #words == 0 then
        return commands.help(state)
    end
    local handler = commands[words[1]]
    if handler == nil then
        return format(state, false,
            string.format('Invalid command \\%s. Type \\help for help.', command))
    end
    return handler(state, unpack(words))
end

-- One request as the console evaluates it: the formatted reply, or nil to close.
local function evaluate(state, line)
    if line:sub(1, 1) == '\\' then
        return run_command(state, line:sub(2))
    end
    if state.language == 'sql' then
        local box = rawget(_G, 'box')
        return format(state, pcall(type(box) == 'table' and box.execute or nil, line))
    end
    local chunk, err = loadstring('return ' .. line)
    if chunk == nil then
        chunk, err = loadstring(line)
    end
    if chunk == nil then
        return format(state, false, err)
    end
    return format(state, pcall(chunk))
end

-- Run by `console.rs` in a connection's Lua thread for each request.
function internal.serve(state, line)
    consoles[coroutine.running()] = state
    return evaluate(state, line)
end

function internal.format_error(state, message)
    return format(state, false, message)
end

function internal.new_session(kind)
    return new_state(kind)
end

-- Whether `buf` is a statement still missing its end (the REPL then reads another line).
function internal.incomplete(buf)
    local chunk, err = loadstring(buf)
    if chunk ~= nil or not err:find(" near '<eof>'$") then
        return false
    end
    return loadstring('return ' .. buf) == nil
end

local function eval(line)
    if type(line) ~= 'string' then
        return nil
    end
    return evaluate(current_state(), line)
end

local function set_default_output(value)
    if value == nil then
        error('Nil output value passed')
    end
    local fmt, opts, err = parse_output(value)
    if err ~= nil then
        error(err)
    end
    default_output.fmt = fmt
    default_output.opts = opts
end

local function get_default_output(...)
    if ... ~= nil then
        error('Arguments provided while prohibited')
    end
    return default_output
end

-- Tarantool raises these with the position of its own source line; clients print them so.
local LISTEN_ERROR_AT = 'builtin/box/console.lua:865: '
local USAGE_AT = 'builtin/box/console.lua:857: '

-- A server looks like Tarantool's server socket: `s:name()` (`{host, port, family, type,
-- protocol}`), `s:fd()`, `s:close()`, and it prints as `{fd, name}`.
local servers = setmetatable({}, {__mode = 'k'})
local server_methods = {}

function server_methods.name(self)
    return servers[self].info.name
end

function server_methods.fd(self)
    return servers[self].info.fd
end

function server_methods.close(self)
    return servers[self].handle:close()
end

local server_mt = {
    __index = server_methods,
    __serialize = function(self)
        return servers[self].info
    end,
    __tostring = function(self)
        local info = servers[self].info
        return string.format('fd %s, aka %s:%s', info.fd, info.name.host, info.name.port)
    end,
}

local function listen(uri)
    local handle, err = internal.listen(uri)
    if handle == nil then
        local at = err:find('^Usage') and USAGE_AT or LISTEN_ERROR_AT
        error(at .. err, 0)
    end
    local server = setmetatable({}, server_mt)
    servers[server] = {handle = handle, info = handle:describe()}
    return server
end

-- One statement from stdin: lines are joined while the statement is incomplete (or, with a
-- delimiter, until a line ends with it). Nil at the end of input.
local function read_statement(state)
    local prompt = 'tarantool> '
    local buf = ''
    while true do
        local line = internal.read_line(prompt)
        if line == nil then return nil end
        buf = buf .. line
        if buf:sub(1, 1) == '\\' then return buf end
        local d = state.delimiter
        if d == '' then
            if state.language ~= 'lua' or not internal.incomplete(buf) then return buf end
        elseif #buf >= #d and buf:sub(#buf - #d + 1) == d then
            return buf:sub(1, #buf - #d)
        end
        buf = buf .. '\n'
        prompt = string.rep(' ', #prompt - 2) .. '> '
    end
end

local hooks = {}

local function hook_setter(name)
    return function(f)
        if f ~= nil and type(f) ~= 'function' then
            error(string.format('Wrong type of %s hook: %s', name, type(f)))
        end
        hooks[name] = f
    end
end

-- Completion is the terminal's business here; the switch is kept for scripts that set it.
local function ac(yes_no)
    local thread = coroutine.running()
    local state = thread ~= nil and consoles[thread] or nil
    if state == nil then
        error('console.ac(): need existing console')
    end
    state.ac = not not yes_no
end

local function repl(state)
    consoles[coroutine.running()] = state
    if hooks.on_start ~= nil then
        hooks.on_start(state)
    end
    while state.running do
        local line = read_statement(state)
        if line == nil then break end
        local output = evaluate(state, line)
        if output == nil then break end
        internal.write(output .. '\n')
    end
    consoles[coroutine.running()] = nil
end

local started = false
-- The REPL runs in the calling fiber until stdin ends; called outside any fiber (a startup
-- script run directly on the TX thread), it starts a fiber of its own and returns.
local function start()
    if started then
        error('console is already started')
    end
    started = true
    local function run()
        local ok, err = pcall(repl, new_state('repl'))
        started = false
        if not ok then error(err, 0) end
    end
    if internal.in_fiber() then
        return run()
    end
    internal.spawn(run)
end

-- `help` prints the same text as `\help`; `help()` returns it.
rawset(_G, 'help', setmetatable({HELP}, {__call = help}))

return {
    listen = listen,
    eval = eval,
    delimiter = delimiter,
    start = start,
    set_default_output = set_default_output,
    get_default_output = get_default_output,
    on_start = hook_setter('on_start'),
    on_client_disconnect = hook_setter('on_client_disconnect'),
    ac = ac,
}
