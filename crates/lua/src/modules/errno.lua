-- `errno`: `errno()` reads (and `errno(n)` sets) the C errno, `errno.strerror([n])`, and the
-- Linux error constants (`errno.ENOENT` = 2).
local ffi = require('ffi')

ffi.cdef[[
char *strerror(int errnum);
]]

local names = {
    'EPERM', 'ENOENT', 'ESRCH', 'EINTR', 'EIO', 'ENXIO', 'E2BIG', 'ENOEXEC', 'EBADF', 'ECHILD',
    'EAGAIN', 'ENOMEM', 'EACCES', 'EFAULT', 'ENOTBLK', 'EBUSY', 'EEXIST', 'EXDEV', 'ENODEV',
    'ENOTDIR', 'EISDIR', 'EINVAL', 'ENFILE', 'EMFILE', 'ENOTTY', 'ETXTBSY', 'EFBIG', 'ENOSPC',
    'ESPIPE', 'EROFS', 'EMLINK', 'EPIPE', 'EDOM', 'ERANGE', 'EDEADLK', 'ENAMETOOLONG', 'ENOLCK',
    'ENOSYS', 'ENOTEMPTY', 'ELOOP',
}
local errno = {}
for i, name in ipairs(names) do errno[name] = i end
errno.EWOULDBLOCK = errno.EAGAIN
errno.EDEADLOCK = errno.EDEADLK
local more = {
    ENOMSG = 42, EIDRM = 43, ENOSTR = 60, ENODATA = 61, ETIME = 62, ENOSR = 63, ENOLINK = 67,
    EPROTO = 71, EMULTIHOP = 72, EBADMSG = 74, EOVERFLOW = 75, EILSEQ = 84, EUSERS = 87,
    ENOTSOCK = 88, EDESTADDRREQ = 89, EMSGSIZE = 90, EPROTOTYPE = 91, ENOPROTOOPT = 92,
    EPROTONOSUPPORT = 93, ESOCKTNOSUPPORT = 94, EOPNOTSUPP = 95, ENOTSUP = 95,
    EPFNOSUPPORT = 96, EAFNOSUPPORT = 97, EADDRINUSE = 98, EADDRNOTAVAIL = 99, ENETDOWN = 100,
    ENETUNREACH = 101, ENETRESET = 102, ECONNABORTED = 103, ECONNRESET = 104, ENOBUFS = 105,
    EISCONN = 106, ENOTCONN = 107, ESHUTDOWN = 108, ETOOMANYREFS = 109, ETIMEDOUT = 110,
    ECONNREFUSED = 111, EHOSTDOWN = 112, EHOSTUNREACH = 113, EALREADY = 114,
    EINPROGRESS = 115, ESTALE = 116, EDQUOT = 122, ECANCELED = 125, EOWNERDEAD = 130,
    ENOTRECOVERABLE = 131,
}
for name, code in pairs(more) do errno[name] = code end

function errno.strerror(n)
    return ffi.string(ffi.C.strerror(n or ffi.errno()))
end

return setmetatable(errno, {
    __call = function(_, n)
        if n ~= nil then return ffi.errno(n) end
        return ffi.errno()
    end,
})
