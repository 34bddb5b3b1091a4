-- The Lua half of `socket` (see socket.rs): socket objects with Tarantool 2.6's methods,
-- `tcp_connect`, `tcp_server`, `getaddrinfo`. `raw.io` is the one function that parks;
-- every call of it follows a `fiber.yield()`, so that waiting on a socket is a yield like
-- any other (it hands control over, it aborts an open memtx transaction).
local raw = ...
local ffi = require('ffi')
local fiber = require('fiber')
local errno = require('errno')

local READ, WRITE, ACCEPT, CONNECT, RESOLVE = 1, 2, 3, 4, 5
local CHUNK = 65536
local EBADF, EAGAIN, ETIMEDOUT, EINVAL = 9, 11, 110, 22
-- Longest a read waits before it looks whether its fiber was cancelled, seconds.
local SLICE = 1

local methods = {}
local socket_mt = {__index = methods}

local function wrap(id)
    -- A proxy whose finalizer closes a socket nobody closed or detached.
    local gc = newproxy(true)
    getmetatable(gc).__gc = function() raw.close(id) end
    return setmetatable({_id = id, _rbuf = '', _nonblock = true, _gc = gc}, socket_mt)
end

local function check(self)
    if type(self) ~= 'table' or getmetatable(self) ~= socket_mt then
        error('Usage: socket:method()', 3)
    end
    if self._id == nil then error('attempt to use closed socket', 3) end
    return self._id
end

-- nil, with errno set on the object and in the C errno.
local function fail(self, err)
    if self ~= nil then self._errno = err end
    ffi.errno(err)
    return nil
end

local function ok(self)
    self._errno = nil
    return true
end

local function deadline_of(timeout)
    timeout = tonumber(timeout)
    if timeout == nil or timeout < 0 or timeout >= 1e15 then return nil end
    return fiber.clock() + timeout
end

local function left_of(deadline)
    if deadline == nil then return -1 end
    return math.max(deadline - fiber.clock(), 0)
end

-- Waits for and takes the next chunk the socket has: data, '' at end of stream, or nil and
-- errno. The wait goes in slices: between two, a cancelled fiber raises, as a cancel ends a
-- socket wait in Tarantool (a wake-up does not).
local function fetch(self, deadline)
    local data, err = raw.recv(self._id, CHUNK)
    if data ~= nil or err ~= EAGAIN then return data, err end
    fiber.yield()
    while true do
        if self._id == nil then return nil, EBADF end
        local left = left_of(deadline)
        if left == 0 then return nil, ETIMEDOUT end
        if left < 0 or left > SLICE then left = SLICE end
        data, err = raw.io(READ, self._id, CHUNK, left)
        if data ~= nil or err ~= ETIMEDOUT then return data, err end
        fiber.testcancel()
    end
end

-- `read(size | delimiter | {chunk = n, delimiter = s}[, timeout])`.
function methods.read(self, opts, timeout)
    check(self)
    local size, delim
    if type(opts) == 'number' then
        size = opts
    elseif type(opts) == 'string' then
        delim = opts
    elseif type(opts) == 'table' then
        size = opts.chunk or opts.size
        delim = opts.delimiter or opts.line
        if type(delim) == 'table' then delim = delim[1] end
    else
        error('Usage: s:read(delimiter|chunk|{delimiter = x, chunk = x}, timeout)', 2)
    end
    local deadline = deadline_of(timeout)
    while true do
        local buf = self._rbuf
        local cut
        if delim ~= nil and delim ~= '' then
            local at = buf:find(delim, 1, true)
            if at ~= nil then cut = at + #delim - 1 end
        end
        if size ~= nil and #buf >= size and (cut == nil or cut > size) then cut = size end
        if cut ~= nil then
            self._rbuf = buf:sub(cut + 1)
            ok(self)
            return buf:sub(1, cut)
        end
        local data, err = fetch(self, deadline)
        if data == nil then return fail(self, err) end
        if data == '' then
            self._rbuf = ''
            ok(self)
            return buf
        end
        self._rbuf = buf .. data
    end
end

-- `write(data[, timeout])`: every byte, waiting while the socket is full.
function methods.write(self, data, timeout)
    local id = check(self)
    if type(data) ~= 'string' then
        error("attempt to get length of local 'octets' (a " .. type(data) .. ' value)', 2)
    end
    local sent, err = raw.send(id, data)
    if sent == nil and err ~= EAGAIN then return fail(self, err) end
    sent = sent or 0
    if sent < #data then
        local deadline = deadline_of(timeout)
        fiber.yield()
        if self._id == nil then return fail(self, EBADF) end
        local more
        more, err = raw.io(WRITE, id, data:sub(sent + 1), left_of(deadline))
        if more == nil then return fail(self, err) end
        sent = sent + more
    end
    ok(self)
    return sent
end
methods.send = methods.write

-- `recv(size)`, `sysread(size)`: what the socket has now, without waiting.
function methods.recv(self, size)
    local id = check(self)
    local data, err = raw.recv(id, tonumber(size) or 512)
    if data == nil then return fail(self, err) end
    ok(self)
    return data
end

function methods.sysread(self, size)
    return methods.recv(self, size)
end

function methods.syswrite(self, data)
    local id = check(self)
    local sent, err = raw.send(id, tostring(data))
    if sent == nil then return fail(self, err) end
    ok(self)
    return sent
end

-- `readable([timeout])`: true once data (or the end of the stream) is there.
function methods.readable(self, timeout)
    check(self)
    if #self._rbuf > 0 then return true end
    local data = fetch(self, deadline_of(timeout))
    if data == nil then return false end
    self._rbuf = self._rbuf .. data
    return true
end

function methods.wait(self, timeout)
    return methods.readable(self, timeout) and 'R' or nil
end

function methods.writable(self)
    check(self)
    return true
end

function methods.close(self)
    local id = check(self)
    self._id = nil
    raw.close(id)
    return true
end

function methods.detach(self)
    local id = check(self)
    self._id = nil
    raw.detach(id)
    return true
end

function methods.fd(self)
    local fd = raw.fd(check(self))
    return fd
end

function methods.nonblock(self, flag)
    check(self)
    -- Recorded only: may needs the descriptor non-blocking, and every wait here parks the
    -- fiber, never the thread.
    if flag ~= nil then self._nonblock = flag and true or false end
    return self._nonblock
end

local SHUT = {R = 0, W = 1, RW = 2, SHUT_RD = 0, SHUT_WR = 1, SHUT_RDWR = 2}

function methods.shutdown(self, how)
    local id = check(self)
    how = SHUT[how] or tonumber(how) or 2
    local done, err = raw.shutdown(id, how)
    if done == nil then return fail(self, err) end
    return ok(self)
end

function methods.name(self)
    local t, err = raw.name(check(self))
    if t == nil then return fail(self, err) end
    return t
end

function methods.peer(self)
    local t, err = raw.peer(check(self))
    if t == nil then return fail(self, err) end
    return t
end

function methods.errno(self)
    return self._errno or 0
end

function methods.error(self)
    if self._errno == nil then return nil end
    return errno.strerror(self._errno)
end

function methods.setsockopt(self, level, name, value)
    local id = check(self)
    if type(value) == 'boolean' then value = value and 1 or 0 end
    local done, err = raw.setsockopt(id, tostring(level), tostring(name), tonumber(value) or 0)
    if done == nil then return fail(self, err) end
    return ok(self)
end

function methods.getsockopt(self, level, name)
    local id = check(self)
    local v, err = raw.getsockopt(id, tostring(level), tostring(name))
    if v == nil then return fail(self, err) end
    return v
end

function methods.linger(self, active, timeout)
    local id = check(self)
    local on, seconds, err = raw.linger(id, active, tonumber(timeout))
    if on == nil then return fail(self, err) end
    return on, seconds
end

function socket_mt.__serialize(self)
    if self._id == nil then return {} end
    return {fd = raw.fd(self._id), name = raw.name(self._id), peer = raw.peer(self._id)}
end

function socket_mt.__tostring(self)
    if self._id == nil then return 'socket (closed)' end
    local text = 'fd ' .. tostring(raw.fd(self._id))
    local name = raw.name(self._id)
    if name ~= nil then text = text .. ', aka ' .. name.host .. ':' .. name.port end
    local peer = raw.peer(self._id)
    if peer ~= nil then text = text .. ', peer ' .. peer.host .. ':' .. peer.port end
    return text
end

-- Module ------------------------------------------------------------------------------------

local M = {}

local UNIX = 'unix/'

local function port_of(port)
    local n = tonumber(port)
    if n == nil or n < 0 or n > 65535 or n % 1 ~= 0 then return nil end
    return n
end

-- The port as `raw` takes it: a number's text, or for host `unix/` the socket's path.
local function endpoint(host, port)
    if host == UNIX then
        if port == nil then return nil end
        return tostring(port)
    end
    port = port_of(port)
    return port and tostring(port)
end

function M.tcp_connect(host, port, timeout)
    port = endpoint(host, port)
    if host == nil or port == nil then return fail(nil, EINVAL) end
    local deadline = deadline_of(timeout)
    fiber.yield()
    local id, err = raw.io(CONNECT, tostring(host), port, left_of(deadline))
    if id == nil then return fail(nil, err) end
    return wrap(id)
end

-- The accepted client's fiber: runs the handler, then closes what it left open.
local function serve(handler, client, from)
    local done, err = pcall(handler, client, from)
    if client._id ~= nil then client:close() end
    if not done then error(err, 0) end
end

function M.tcp_server(host, port, opts, timeout)
    local handler, name = opts, 'server'
    if type(opts) == 'table' then
        handler, name = opts.handler, opts.name or name
    end
    if type(handler) ~= 'function' and
            not (type(handler) == 'table' and getmetatable(handler) and
                 getmetatable(handler).__call) then
        error('Usage: socket.tcp_server(host, port, handler | opts)', 2)
    end
    local _ = timeout
    port = endpoint(host, port)
    if host == nil or port == nil then return fail(nil, EINVAL) end
    local id, err = raw.bind(tostring(host), port)
    if id == nil then return fail(nil, err) end
    local server = wrap(id)
    fiber.create(function()
        fiber.name(name)
        while server._id ~= nil do
            fiber.yield()
            local cid, chost, cport = raw.io(ACCEPT, id)
            if cid == nil then
                if server._id == nil then break end
                -- Out of descriptors or the like: try again a little later.
                fiber.sleep(0.1)
            else
                local client = wrap(cid)
                local family = chost == UNIX and 'AF_UNIX' or
                               chost:find(':', 1, true) and 'AF_INET6' or 'AF_INET'
                local from = {host = chost, port = cport, family = family}
                local f = fiber.new(serve, handler, client, from)
                f:name(name .. '/' .. chost .. ':' .. cport)
            end
        end
    end)
    return server
end

function M.getaddrinfo(host, port, timeout, opts)
    if type(timeout) == 'table' then timeout, opts = nil, timeout end
    opts = opts or {}
    local p = port_of(port) or ({http = 80, https = 443})[port]
    if host == nil or p == nil then return fail(nil, EINVAL) end
    fiber.yield()
    local text, err = raw.io(RESOLVE, tostring(host), p)
    if text == nil then return fail(nil, err) end
    local out = {}
    for family, ip, port_text in text:gmatch('(%S+) (%S+) (%d+)') do
        if opts.family == nil or opts.family == family then
            out[#out + 1] = {host = ip, family = family, type = opts.type or 'SOCK_STREAM',
                             protocol = opts.protocol or 'tcp', port = tonumber(port_text)}
        end
    end
    return out
end

return setmetatable(M, {
    __call = function()
        -- Only the TCP helpers are there: plain socket(domain, type, protocol) is not.
        return fail(nil, 97)
    end,
})
