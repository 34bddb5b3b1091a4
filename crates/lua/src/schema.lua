-- box.schema: spaces, indexes, users, roles, privileges, persistent functions and box.once,
-- all done as changes of the system spaces, which the Rust side validates and applies (with
-- Tarantool 2.6's errors). Also the `box.space` and `box.func` tables, rebuilt from the system
-- spaces when the schema changes. Loaded after box.lua, with the same `internal` table.
local internal = ...

local space_mt, index_mt = internal.space_mt, internal.index_mt
local new_error, run_dml = internal.new_error, internal.run_dml
local sys_select = internal.sys_select

local SCHEMA, COLLATION, SPACE, INDEX, FUNC, USER, PRIV = 272, 276, 280, 288, 296, 304, 312
local SEQUENCE, TRUNCATE, SPACE_SEQUENCE = 284, 330, 340
local SYSTEM_USER_MAX = 31

local function raise(code, message)
    error(new_error(code, message), 3)
end

local function illegal(message)
    error(new_error(1, 'Illegal parameters, ' .. message), 3)
end

local function map(t)
    return setmetatable(t or {}, { __serialize = 'map' })
end

-- Options: `template` maps each allowed key to its type, or to several (`'string, number'`).
local function check_options(opts, template)
    if opts == nil then return {} end
    if type(opts) ~= 'table' then illegal('options should be a table') end
    for k, v in pairs(opts) do
        local want = template[k]
        if want == nil then illegal(string.format("unexpected option '%s'", tostring(k))) end
        if want ~= 'any' and not string.find(want, type(v), 1, true) then
            illegal(string.format("options parameter '%s' should be of type %s", k, want))
        end
    end
    return opts
end

local function first(rows)
    return rows[1]
end

-- The greatest id in a system space's primary key, or nil when it is empty.
local function max_id(space_id)
    local max
    for _, row in ipairs(sys_select(space_id, 0, nil)) do
        if max == nil or row[1] > max then max = row[1] end
    end
    return max
end

-- 2.6 takes a new user's or function's id with `auto_increment`, which reads the space as
-- the caller.
local function check_read(space_id)
    local denied = internal.read_denied(space_id)
    if denied ~= nil then
        local e = new_error(42, denied[1], 'AccessDeniedError')
        e.object_type, e.object_name, e.access_type = denied[2], denied[3], denied[4]
        error(e, 3)
    end
end

-- box.space -----------------------------------------------------------------------------------

local spaces = {}      -- the box.space table
local objects = {}     -- space id -> its object, kept across refreshes and updated in place
local loaded_version = nil

local function part_from_row(part)
    if part[1] ~= nil then
        return { fieldno = part[1] + 1, type = part[2], is_nullable = false }
    end
    return {
        fieldno = (part.field or 0) + 1, type = part.type, is_nullable = part.is_nullable == true,
    }
end

local function fill_index(index, row)
    index.space_id, index.id, index.name = row[1], row[2], row[3]
    index.type = string.upper(row[4])
    index.unique = row[5].unique ~= false
    local parts = {}
    for i, part in ipairs(row[6]) do parts[i] = part_from_row(part) end
    index.parts = parts
end

local refresh

-- A space's `index` table: a miss looks again after catching up with the schema (an index
-- made through `_index` in the same request).
local index_table_mt = {
    __index = function(t, key)
        refresh()
        return rawget(t, key)
    end,
}

local function fill_space(space, row, index_rows)
    space.id, space.name, space.engine, space.field_count = row[1], row[3], row[4], row[5]
    local flags = row[6] or {}
    space.temporary = flags.temporary == true
    space.is_local = flags.group_id == 1 or flags.is_local == true
    space.is_sync = flags.is_sync == true
    space.enabled = true
    space.index = space.index or setmetatable({}, index_table_mt)
    local old = {}
    for k, v in pairs(space.index) do
        if type(k) == 'number' then old[k] = v end
        space.index[k] = nil
    end
    for _, irow in ipairs(index_rows) do
        local index = old[irow[2]] or setmetatable({}, index_mt)
        fill_index(index, irow)
        space.index[index.id] = index
        space.index[index.name] = index
    end
end

-- Rebuilds box.space when the schema version moved: objects of live spaces keep their
-- identity (a `local s = box.space.x` sees a rename), dropped ones leave the table.
function refresh()
    local version = internal.schema_version()
    if version == loaded_version then return end
    loaded_version = version
    local by_space = {}
    for _, irow in ipairs(sys_select(INDEX, 0, nil)) do
        local list = by_space[irow[1]] or {}
        list[#list + 1] = irow
        by_space[irow[1]] = list
    end
    for k in pairs(spaces) do rawset(spaces, k, nil) end
    local live = {}
    for _, row in ipairs(sys_select(SPACE, 0, nil)) do
        local space = objects[row[1]] or setmetatable({}, space_mt)
        fill_space(space, row, by_space[row[1]] or {})
        live[space.id] = space
        rawset(spaces, space.id, space)
        rawset(spaces, space.name, space)
    end
    for id, space in pairs(objects) do
        if live[id] == nil then space.enabled = false end
    end
    objects = live
end

setmetatable(spaces, {
    __index = function(_, key)
        refresh()
        return rawget(spaces, key)
    end,
})
box.space = spaces

-- The space a method was called on, if it still exists.
local function live_space(space, method)
    if type(space) ~= 'table' or space.id == nil then
        -- A plain Lua error, as 2.6 raises it (with a position in box.schema's code).
        error(string.format('Use space:%s(...) instead of space.%s(...)', method, method), 3)
    end
    refresh()
    if rawget(spaces, space.id) == nil then
        error(new_error(36, string.format("Space '%s' does not exist", tostring(space.name))), 3)
    end
    return space
end

-- Spaces ----------------------------------------------------------------------------------------

-- A format as `_space` stores it: `{name=, type=}` entries from every accepted shorthand.
local function normalize_format(format)
    local out = {}
    for i, given in ipairs(format) do
        local field = {}
        if type(given) ~= 'table' then
            field.name = given
        else
            for k, v in pairs(given) do
                if type(k) == 'string' then field[k] = v end
            end
            if given.name == nil then
                field.name = given[1]
                if given.type == nil then field.type = given[2] end
            elseif given.type == nil then
                field.type = given[1]
            end
        end
        if type(field.name) ~= 'string' then
            illegal(string.format('format[%d]: name (string) is expected', i))
        end
        if field.type == nil then field.type = 'any' end
        if type(field.type) ~= 'string' then
            illegal(string.format('format[%d]: type must be a string', i))
        end
        if type(field.collation) == 'string' then
            local found = first(sys_select(COLLATION, 1, { field.collation }))
            if found == nil then
                illegal(string.format("format[%d]: collation was not found by name '%s'",
                    i, field.collation))
            end
            field.collation = found[1]
        end
        out[i] = map(field)
    end
    return out
end

local function user_row(key)
    if type(key) == 'number' then return first(sys_select(USER, 0, { key })) end
    if type(key) == 'string' then return first(sys_select(USER, 2, { key })) end
    return nil
end

local function next_space_id()
    local row = run_dml('update', SCHEMA, { 'max_id' }, { { '+', 2, 1 } }, 0)
    if row ~= nil then return row[2] end
    local id = math.max(max_id(SPACE) or 0, 511) + 1
    run_dml('insert', SCHEMA, { 'max_id', id })
    return id
end

local space_options = {
    if_not_exists = 'boolean', engine = 'string', id = 'number', field_count = 'number',
    user = 'string, number', format = 'table', is_local = 'boolean', temporary = 'boolean',
    is_sync = 'boolean',
}

local function create_space(name, opts)
    if type(name) ~= 'string' then illegal('name should be a string') end
    opts = check_options(opts, space_options)
    refresh()
    if rawget(spaces, name) ~= nil then
        if opts.if_not_exists then return spaces[name], 'not created' end
        raise(10, string.format("Space '%s' already exists", name))
    end
    -- As in 2.6, the id is taken before the owner and the format are checked.
    local id = opts.id or next_space_id()
    local owner = internal.current_uid()
    if opts.user ~= nil then
        local u = user_row(opts.user)
        if u == nil then raise(45, string.format("User '%s' is not found", opts.user)) end
        owner = u[1]
    end
    local format = normalize_format(opts.format or {})
    local flags = map()
    if opts.temporary then flags.temporary = true end
    if opts.is_local then flags.group_id = 1 end
    if opts.is_sync then flags.is_sync = true end
    run_dml('insert', SPACE, {
        id, owner, name, opts.engine or 'memtx', opts.field_count or 0, flags, format,
    })
    refresh()
    return spaces[id], 'created'
end

box.schema = box.schema or {}
box.schema.SYSTEM_ID_MAX = 511
box.schema.SYSTEM_USER_ID_MAX = SYSTEM_USER_MAX
box.schema.create_space = create_space
box.schema.space = { create = create_space }

function space_mt:format(format)
    live_space(self, 'format')
    if format == nil then
        local row = first(sys_select(SPACE, 0, { self.id }))
        return row and row[7] or {}
    end
    if type(format) ~= 'table' then illegal('format should be a table') end
    run_dml('update', SPACE, { self.id }, { { '=', 7, normalize_format(format) } }, 0)
    refresh()
end

function space_mt:rename(name)
    live_space(self, 'rename')
    if type(name) ~= 'string' then illegal('space_name should be a string') end
    run_dml('update', SPACE, { self.id }, { { '=', 3, name } }, 0)
    refresh()
end

function space_mt:truncate()
    live_space(self, 'truncate')
    if self.id <= box.schema.SYSTEM_ID_MAX then
        raise(137, string.format("Can't truncate a system space, space '%s'", self.name))
    end
    local seq = internal.checked(internal.truncate, self.id)
    if seq ~= nil then
        local ok, code, message = internal.wait(seq)
        if not ok then error(new_error(code, message), 2) end
    end
end

local function delete_privs_on(object_type, object_id)
    for _, row in ipairs(sys_select(PRIV, 2, { object_type, object_id })) do
        run_dml('delete', PRIV, { row[2], row[3], row[4] }, nil, 0)
    end
end

function space_mt:drop()
    live_space(self, 'drop')
    local id = self.id
    -- The deletes 2.6 makes whether or not there is a row (they need write access).
    run_dml('delete', SPACE_SEQUENCE, { id }, nil, 0)
    local iids = {}
    for _, row in ipairs(sys_select(INDEX, 0, { id })) do iids[#iids + 1] = row[2] end
    for i = #iids, 1, -1 do run_dml('delete', INDEX, { id, iids[i] }, nil, 0) end
    delete_privs_on('space', id)
    run_dml('delete', TRUNCATE, { id }, nil, 0)
    run_dml('delete', SPACE, { id }, nil, 0)
    refresh()
end

-- Indexes ---------------------------------------------------------------------------------------

local legacy_types = { num = 'unsigned', str = 'string' }

local function space_format(space_id)
    local row = first(sys_select(SPACE, 0, { space_id }))
    return row and row[7] or {}
end

-- 0-based field number of a part's field given by number or format name.
local function part_field(field, format, i)
    if type(field) == 'number' then return field - 1 end
    if type(field) == 'string' then
        for no, f in ipairs(format) do
            if f.name == field then return no - 1 end
        end
        illegal(string.format("options.parts[%d]: field was not found by name '%s'", i, field))
    end
    illegal(string.format('options.parts[%d]: field (name or number) is expected', i))
end

-- Parts as `{field, type, is_nullable, collation}` records from the table and flat forms.
local function parse_parts(parts, format)
    if #parts == 0 then illegal('options.parts must have at least one part') end
    local out = {}
    if type(parts[1]) ~= 'table' then
        for i = 1, #parts, 2 do
            out[#out + 1] = { field = parts[i], type = parts[i + 1] }
        end
    else
        for i, part in ipairs(parts) do
            if type(part) ~= 'table' then
                illegal(string.format('options.parts[%d]: field (name or number) is expected', i))
            end
            out[i] = {
                field = part.field or part[1], type = part.type or part[2],
                is_nullable = part.is_nullable, collation = part.collation,
            }
        end
    end
    for i, part in ipairs(out) do
        part.field = part_field(part.field, format, i)
        local declared = format[part.field + 1]
        if part.type == nil then
            part.type = declared and declared.type or 'scalar'
        end
        part.type = legacy_types[part.type] or part.type
        if part.is_nullable == nil and declared and declared.is_nullable then
            part.is_nullable = true
        end
    end
    return out
end

-- Parts as `_index` stores them: `[field, type]` pairs unless a part says more.
local function parts_row(parts)
    local long = false
    for _, part in ipairs(parts) do
        if part.is_nullable ~= nil or part.collation ~= nil then long = true end
    end
    local out = {}
    for i, part in ipairs(parts) do
        if long then
            out[i] = map({
                field = part.field, type = part.type, is_nullable = part.is_nullable,
                collation = part.collation,
            })
        else
            out[i] = { part.field, part.type }
        end
    end
    return out
end

local index_options = {
    type = 'string', parts = 'table', unique = 'boolean', id = 'number',
    if_not_exists = 'boolean', sequence = 'boolean, number, string, table',
    dimension = 'number', distance = 'string', func = 'number, string', hint = 'boolean',
    bloom_fpr = 'number', page_size = 'number', range_size = 'number',
    run_count_per_level = 'number', run_size_ratio = 'number', name = 'string',
}

local function index_opts_row(opts, unique)
    local row = map({ unique = unique })
    for _, k in ipairs({ 'dimension', 'distance', 'hint' }) do
        if opts[k] ~= nil then row[k] = opts[k] end
    end
    return row
end

function space_mt:create_index(name, opts)
    live_space(self, 'create_index')
    if type(name) ~= 'string' then illegal('name should be a string') end
    opts = check_options(opts, index_options)
    local existing = self.index[name]
    if existing ~= nil then
        if opts.if_not_exists then return existing end
        raise(85, string.format("Index '%s' already exists", name))
    end
    if opts.sequence then raise(5, 'spindle does not support sequences') end
    local format = space_format(self.id)
    local parts = opts.parts
    if parts == nil then
        parts = { { 1, format[1] and format[1].type or 'unsigned' } }
    end
    local iid = opts.id
    if iid == nil then
        iid = 0
        for _, row in ipairs(sys_select(INDEX, 0, { self.id })) do
            if row[2] >= iid then iid = row[2] + 1 end
        end
    end
    local unique = opts.unique ~= false
    run_dml('insert', INDEX, {
        self.id, iid, name, opts.type or 'tree', index_opts_row(opts, unique),
        parts_row(parse_parts(parts, format)),
    })
    refresh()
    return self.index[name]
end

local function check_index(index, method)
    if type(index) ~= 'table' or index.space_id == nil then
        error(string.format('Use index:%s(...) instead of index.%s(...)', method, method), 3)
    end
end

-- Dropping, renaming or altering an index that is gone changes nothing, as in 2.6.
function index_mt:drop()
    check_index(self, 'drop')
    run_dml('delete', INDEX, { self.space_id, self.id }, nil, 0)
    refresh()
end

function index_mt:rename(name)
    check_index(self, 'rename')
    if type(name) ~= 'string' then illegal('name should be a string') end
    run_dml('update', INDEX, { self.space_id, self.id }, { { '=', 3, name } }, 0)
    refresh()
end

function index_mt:alter(opts)
    check_index(self, 'alter')
    opts = check_options(opts, index_options)
    if opts.if_not_exists ~= nil then illegal("unexpected option 'if_not_exists'") end
    local row = first(sys_select(INDEX, 0, { self.space_id, self.id }))
    if row == nil then return end
    local unique = row[5].unique ~= false
    if opts.unique ~= nil then unique = opts.unique end
    local parts = row[6]
    if opts.parts ~= nil then
        parts = parts_row(parse_parts(opts.parts, space_format(self.space_id)))
    end
    -- One update of the whole row: a new id fails as a change of `_index`'s primary key.
    run_dml('update', INDEX, { row[1], row[2] }, {
        { '=', 2, opts.id or row[2] }, { '=', 3, opts.name or row[3] },
        { '=', 4, opts.type or row[4] }, { '=', 5, index_opts_row(opts, unique) },
        { '=', 6, parts },
    }, 0)
    refresh()
end

-- Users, roles and privileges -------------------------------------------------------------------

local priv_bits = {
    read = 1, write = 2, execute = 4, session = 8, usage = 16, create = 32, drop = 64,
    alter = 128, reference = 256, trigger = 512, insert = 1024, update = 2048, delete = 4096,
}
local priv_order = {
    'read', 'write', 'execute', 'session', 'usage', 'create', 'drop', 'alter', 'reference',
    'trigger', 'insert', 'update', 'delete',
}
-- Privileges each object type accepts (what 2.6 checks before granting).
local allowed = {
    universe = 8191,
    space = 8191 - 8,
    ['function'] = 4 + 16 + 32 + 64,
    sequence = 1 + 2 + 16 + 32 + 64 + 128,
    role = 4 + 16 + 32 + 64,
    user = 32 + 64 + 128,
}

local function privilege_bits(privilege, object_type)
    if type(privilege) == 'number' then return privilege end
    if type(privilege) ~= 'string' then
        raise(98, string.format("Unsupported %s privilege '%s'", object_type, tostring(privilege)))
    end
    local bits = 0
    local text = string.lower(string.gsub(privilege, ' ', ''))
    for word in string.gmatch(text, '[^,]+') do
        local b = priv_bits[word]
        if b == nil or bit.band(b, allowed[object_type]) == 0 then
            raise(98, string.format("Unsupported %s privilege '%s'", object_type, privilege))
        end
        bits = bit.bor(bits, b)
    end
    return bits
end

local function privilege_text(bits)
    local names = {}
    for _, name in ipairs(priv_order) do
        if bit.band(bits, priv_bits[name]) ~= 0 then names[#names + 1] = name end
    end
    return table.concat(names, ',')
end

local function is_role(row) return row ~= nil and row[4] == 'role' end
local function is_user(row) return row ~= nil and row[4] == 'user' end

local function space_row(key)
    if type(key) == 'number' then return first(sys_select(SPACE, 0, { key })) end
    return first(sys_select(SPACE, 2, { key }))
end

local function func_row(key)
    if type(key) == 'number' then return first(sys_select(FUNC, 0, { key })) end
    if type(key) ~= 'string' then return nil end
    return first(sys_select(FUNC, 2, { key }))
end

local function sequence_row(key)
    if type(key) == 'number' then return first(sys_select(SEQUENCE, 0, { key })) end
    return first(sys_select(SEQUENCE, 2, { key }))
end

-- The `_priv` object id of a grant's object: 0 for the universe, '' for every object of a
-- type, the id of a named one.
local function object_id(object_type, name)
    if object_type == 'universe' then return 0 end
    if name == nil then return '' end
    local row
    if object_type == 'space' then
        row = space_row(name)
        if row == nil then raise(36, string.format("Space '%s' does not exist", name)) end
    elseif object_type == 'function' then
        row = func_row(name)
        if row == nil then raise(51, string.format("Function '%s' does not exist", name)) end
    elseif object_type == 'sequence' then
        row = sequence_row(name)
        if row == nil then raise(145, string.format("Sequence '%s' does not exist", name)) end
    elseif object_type == 'role' then
        row = user_row(name)
        if not is_role(row) then raise(82, string.format("Role '%s' is not found", name)) end
    elseif object_type == 'user' then
        row = user_row(name)
        if not is_user(row) then raise(45, string.format("User '%s' is not found", name)) end
    end
    return row[1]
end

local function object_name(object_type, id)
    if object_type == 'universe' or id == '' then return '' end
    local row
    if object_type == 'space' then row = space_row(id)
    elseif object_type == 'function' then row = func_row(id)
    elseif object_type == 'sequence' then row = sequence_row(id)
    else row = user_row(id) end
    return row and row[3] or ''
end

local function grantee(name, want_role)
    local row = user_row(name)
    if want_role and not is_role(row) then
        raise(82, string.format("Role '%s' is not found", tostring(name)))
    end
    if row == nil then raise(45, string.format("User '%s' is not found", tostring(name))) end
    return row
end

-- Grant arguments in full: `grant(user, 'role')` is `grant(user, 'execute', 'role', 'role')`.
local function grant_args(privilege, object_type, name, opts)
    if object_type == nil and name == nil then
        return 'execute', 'role', privilege, opts
    end
    if allowed[object_type] == nil then
        raise(49, string.format("Unknown object type '%s'", tostring(object_type)))
    end
    return privilege, object_type, name, opts
end

local grant_options = { if_not_exists = 'boolean', grantor = 'string, number' }

local function grant(want_role, user, privilege, object_type, name, opts)
    local row = grantee(user, want_role)
    privilege, object_type, name, opts = grant_args(privilege, object_type, name, opts)
    opts = check_options(opts, grant_options)
    local bits = privilege_bits(privilege, object_type)
    local oid = object_id(object_type, name)
    local grantor = internal.current_uid()
    if opts.grantor ~= nil then
        local row = user_row(opts.grantor)
        if row == nil then
            -- 2.6 writes the unresolved grantor (nil) into the `_priv` row.
            raise(23, 'Tuple field 1 type does not match one required by operation: '
                .. 'expected unsigned')
        end
        grantor = row[1]
    end
    local old = first(sys_select(PRIV, 0, { row[1], object_type, oid }))
    local old_bits = old and old[5] or 0
    if old ~= nil and bit.band(old_bits, bits) == bits then
        if opts.if_not_exists then return end
        if object_type == 'role' then
            raise(90, string.format("User '%s' already has role '%s'", tostring(user), name))
        end
        local on = object_type
        if object_type ~= 'universe' then
            on = string.format("%s '%s'", on, tostring(name or ''))
        end
        raise(89, string.format("User '%s' already has %s access on %s", tostring(user),
            tostring(privilege), on))
    end
    run_dml('replace', PRIV, { grantor, row[1], object_type, oid, bit.bor(old_bits, bits) })
end

local function revoke(want_role, user, privilege, object_type, name, opts)
    local row = grantee(user, want_role)
    privilege, object_type, name, opts = grant_args(privilege, object_type, name, opts)
    -- 2.6 reads revoke's options without checking them.
    if type(opts) ~= 'table' then opts = {} end
    local bits = privilege_bits(privilege, object_type)
    local oid = object_id(object_type, name)
    local old = first(sys_select(PRIV, 0, { row[1], object_type, oid }))
    if old == nil or bit.band(old[5], bits) == 0 then
        if opts.if_exists then return end
        if object_type == 'role' then
            raise(92, string.format("User '%s' does not have role '%s'", tostring(user), name))
        end
        raise(91, string.format("User '%s' does not have %s access on %s '%s'", tostring(user),
            tostring(privilege), object_type, tostring(name or '')))
    end
    local left = bit.band(old[5], bit.bnot(bits))
    if left == 0 then
        run_dml('delete', PRIV, { row[1], object_type, oid }, nil, 0)
    else
        run_dml('replace', PRIV, { old[1], row[1], object_type, oid, left })
    end
end

local function info(row)
    local out = {}
    for _, p in ipairs(sys_select(PRIV, 0, { row[1] })) do
        out[#out + 1] = { privilege_text(p[5]), p[3], object_name(p[3], p[4]) }
    end
    return out
end

local function exists_as(kind, name)
    local row = user_row(name)
    return row ~= nil and row[4] == kind
end

-- Removes everything a user or role owns or is granted, then the row itself.
local function drop_grantee(row)
    local uid = row[1]
    for _, s in ipairs(sys_select(SPACE, 1, { uid })) do
        local space = spaces[s[1]]
        if space ~= nil then space:drop() end
    end
    for _, f in ipairs(sys_select(FUNC, 1, { uid })) do
        delete_privs_on('function', f[1])
        run_dml('delete', FUNC, { f[1] }, nil, 0)
    end
    delete_privs_on('role', uid)
    -- As in 2.6, the grantee's own privileges go as the admin (their grantors may be anyone;
    -- only dropping the user itself is checked), and grants on the user object stay.
    box.session.su('admin', function()
        for _, p in ipairs(sys_select(PRIV, 0, { uid })) do
            run_dml('delete', PRIV, { p[2], p[3], p[4] }, nil, 0)
        end
    end)
    run_dml('delete', USER, { uid }, nil, 0)
end

local function next_user_id()
    check_read(USER)
    return (max_id(USER) or 0) + 1
end

local user = {}
box.schema.user = user

function user.password(password)
    return internal.password_hash(password)
end

function user.create(name, opts)
    opts = check_options(opts, { password = 'string', if_not_exists = 'boolean' })
    if name == nil then
        raise(19, 'Invalid key part count in an exact match (expected 1, got 0)')
    end
    if user_row(name) ~= nil then
        if opts.if_not_exists then return end
        raise(46, string.format("User '%s' already exists", name))
    end
    local auth = map()
    if opts.password ~= nil then auth['chap-sha1'] = internal.password_hash(opts.password) end
    local uid = next_user_id()
    run_dml('insert', USER, { uid, internal.current_uid(), name, 'user', auth })
    grant(false, uid, 'execute', 'role', 'public', { if_not_exists = true })
    -- Only the admin may grant on the universe: 2.6 grants these as the admin.
    box.session.su('admin', grant, false, uid, 'session,usage', 'universe', nil,
                   { if_not_exists = true })
    grant(false, uid, 'alter', 'user', uid, { if_not_exists = true })
end

function user.exists(name)
    return exists_as('user', name)
end

function user.drop(name, opts)
    opts = check_options(opts, { if_exists = 'boolean' })
    local row = user_row(name)
    if not is_user(row) then
        if opts.if_exists then return end
        raise(45, string.format("User '%s' is not found", tostring(name)))
    end
    if row[1] <= SYSTEM_USER_MAX then
        raise(44, string.format(
            "Failed to drop user or role '%s': the user or the role is a system", row[3]))
    end
    drop_grantee(row)
end

local function set_password(uid, password)
    local auth = map({ ['chap-sha1'] = internal.password_hash(password) })
    run_dml('update', USER, { uid }, { { '=', 5, auth } }, 0)
end

function user.passwd(name, password)
    if password == nil then
        if name == nil then
            raise(32, 'Usage: box.schema.user.passwd([user,] password)')
        end
        -- A user may always change its own password: 2.6 does it as the admin.
        local uid = internal.current_uid()
        return box.session.su('admin', set_password, uid, name)
    end
    local row = user_row(name)
    if not is_user(row) then
        raise(45, string.format("User '%s' is not found", tostring(name)))
    end
    set_password(row[1], password)
end

function user.info(name)
    local row = user_row(name == nil and internal.current_uid() or name)
    if row == nil then raise(45, string.format("User '%s' is not found", tostring(name))) end
    return info(row)
end

function user.grant(...) return grant(false, ...) end
function user.revoke(...) return revoke(false, ...) end

local role = {}
box.schema.role = role

function role.create(name, opts)
    opts = check_options(opts, { if_not_exists = 'boolean' })
    if user_row(name) ~= nil then
        if opts.if_not_exists then return end
        raise(83, string.format("Role '%s' already exists", tostring(name)))
    end
    run_dml('insert', USER, { next_user_id(), internal.current_uid(), name, 'role', map() })
end

function role.exists(name)
    return exists_as('role', name)
end

function role.drop(name, opts)
    opts = check_options(opts, { if_exists = 'boolean' })
    local row = user_row(name)
    if not is_role(row) then
        if opts.if_exists then return end
        raise(82, string.format("Role '%s' is not found", tostring(name)))
    end
    if row[1] <= SYSTEM_USER_MAX then
        raise(44, string.format(
            "Failed to drop user or role '%s': the user or the role is a system", row[3]))
    end
    drop_grantee(row)
end

function role.info(name)
    local row = user_row(name)
    if not is_role(row) then raise(82, string.format("Role '%s' is not found", tostring(name))) end
    return info(row)
end

function role.grant(...) return grant(true, ...) end
function role.revoke(...) return revoke(true, ...) end

-- Persistent functions --------------------------------------------------------------------------

local funcs = {}       -- the box.func table
local compiled = {}    -- name -> { id, body, fn }: bodies compiled once per version

-- The function a body defines: `body` is an expression (`function(a) ... end`), evaluated
-- with no globals (as 2.6 does); the function it gives runs with the global environment.
local function compile(name, body)
    local failed = "Failed to dynamically load function '%s': %s"
    local chunk, err = loadstring('return ' .. body)
    if chunk == nil then return nil, string.format(failed, name, err) end
    setfenv(chunk, {})
    local ok, fn = pcall(chunk)
    if not ok then return nil, string.format(failed, name, tostring(fn)) end
    if type(fn) ~= 'function' then
        return nil, string.format(failed, name, "given body doesn't define a function")
    end
    return setfenv(fn, _G)
end

-- The compiled body of a `box.func` object, or nil when it has none (a global path).
local function body_of(f)
    if f == nil or f.body == nil or string.upper(f.language) ~= 'LUA' then return nil end
    local cached = compiled[f.name]
    if cached ~= nil and cached.id == f.id and cached.body == f.body then return cached.fn end
    local fn, err = compile(f.name, f.body)
    if fn == nil then error(new_error(99, err), 0) end
    compiled[f.name] = { id = f.id, body = f.body, fn = fn }
    return fn
end

local func_methods = {}
local func_mt = { __index = func_methods }

function func_methods.call(f, args)
    if type(f) ~= 'table' or getmetatable(f) ~= func_mt then
        error('Use func:call(...) instead of func.call(...)', 2)
    end
    args = args or {}
    if type(args) ~= 'table' then error('Use func:call(table)', 2) end
    internal.fresh()
    local results = { internal.call(f.name, unpack(args, 1, table.maxn(args))) }
    if not results[1] then error(results[2], 2) end
    return unpack(results, 2, table.maxn(results))
end

local function add_func(row)
    local exports = { lua = false, sql = false }
    for _, language in ipairs(type(row[15]) == 'table' and row[15] or {}) do
        exports[string.lower(language)] = true
    end
    local opts = type(row[16]) == 'table' and row[16] or {}
    local f = setmetatable({
        id = row[1], name = row[3], setuid = row[4] == 1, language = row[5],
        returns = row[9], aggregate = row[10], is_deterministic = row[12] == true,
        exports = exports, is_multikey = opts.is_multikey == true,
    }, func_mt)
    if row[6] ~= nil and row[6] ~= '' then
        f.body, f.is_sandboxed = row[6], row[13] == true
    end
    rawset(funcs, f.id, f)
    rawset(funcs, f.name, f)
end

-- box.func lists the functions Lua can call (SQL built-ins stay out, as in 2.6).
local function refresh_funcs()
    for k in pairs(funcs) do rawset(funcs, k, nil) end
    for _, row in ipairs(sys_select(FUNC, 0, nil)) do
        if row[5] ~= 'SQL_BUILTIN' then add_func(row) end
    end
end

box.func = setmetatable(funcs, {
    __index = function(_, name)
        refresh_funcs()
        return rawget(funcs, name)
    end,
})

-- `_func` changes leave the schema version alone: its row count tells creates and drops.
-- Every request starts from the current schema, whatever changed it (DDL through the system
-- spaces, a replica's rows): the runtime calls `internal.fresh` before a CALL or EVAL when
-- the schema version moved since the last one (a call from Lua to C per request would cost
-- the JIT a trace exit). CALL runs a `_func` function's body if it has one; otherwise the
-- name resolves as a global path (box.lua's `call`).
local call = internal.call
local schema_version = internal.schema_version
-- The schema version the objects were last refreshed at: a `_func` change bumps it too, so
-- one number tells a request whether anything needs reloading.
local seen_version

function internal.fresh()
    local version = schema_version()
    if version == seen_version then return end
    pcall(refresh)
    pcall(refresh_funcs)
    seen_version = version
end

function internal.call(name, ...)
    local f = rawget(funcs, name)
    if f ~= nil then
        local found, body = pcall(body_of, f)
        if not found then return false, body end
        if body ~= nil then return pcall(body, ...) end
    end
    return call(name, ...)
end

local func_options = {
    setuid = 'boolean', if_not_exists = 'boolean', language = 'string', body = 'string',
    is_deterministic = 'boolean', is_sandboxed = 'boolean', is_multikey = 'boolean',
    returns = 'string', param_list = 'table', exports = 'table', comment = 'string',
    aggregate = 'string', routine_type = 'string', sql_data_access = 'string',
    is_null_call = 'boolean', opts = 'table',
}

local func = {}
box.schema.func = func

function func.create(name, opts)
    opts = check_options(opts, func_options)
    if type(name) ~= 'string' then
        -- What 2.6's lookup of the name in `_func` fails with.
        raise(18, 'Supplied key type of part 0 does not match index part type: expected string')
    end
    if func_row(name) ~= nil then
        if opts.if_not_exists then return end
        raise(52, string.format("Function '%s' already exists", name))
    end
    local language = string.upper(opts.language or 'LUA')
    if opts.body ~= nil and language == 'LUA' then
        local fn, err = compile(name, opts.body)
        if fn == nil then raise(99, err) end
    end
    local now = os.date('%Y-%m-%d %H:%M:%S')
    check_read(FUNC)
    run_dml('insert', FUNC, {
        (max_id(FUNC) or 0) + 1, internal.current_uid(), name, opts.setuid and 1 or 0,
        language, opts.body or '', opts.routine_type or 'function', opts.param_list or {},
        opts.returns or 'any', opts.aggregate or 'none', opts.sql_data_access or 'none',
        opts.is_deterministic or false, opts.is_sandboxed or false,
        opts.is_null_call ~= false, opts.exports or { 'LUA' }, map(opts.opts),
        opts.comment or '', now, now,
    })
    refresh_funcs()
end

function func.exists(name)
    return func_row(name) ~= nil
end

function func.drop(name, opts)
    opts = check_options(opts, { if_exists = 'boolean' })
    local row = func_row(name)
    if row == nil then
        if opts.if_exists then return end
        raise(51, string.format("Function '%s' does not exist", tostring(name)))
    end
    if row[5] == 'SQL_BUILTIN' then
        -- 2.6 names the function by its owner's id in this message.
        raise(71, string.format("Can't drop function %d: function is SQL built-in", row[2]))
    end
    delete_privs_on('function', row[1])
    run_dml('delete', FUNC, { row[1] }, nil, 0)
    compiled[row[3]] = nil
    refresh_funcs()
end

-- box.once --------------------------------------------------------------------------------------

function box.once(key, fn, ...)
    if type(key) ~= 'string' or type(fn) ~= 'function' then
        illegal('Usage: box.once(key, func, ...)')
    end
    local done_key = 'once' .. key
    if first(sys_select(SCHEMA, 0, { done_key })) ~= nil then return end
    run_dml('replace', SCHEMA, { done_key })
    return fn(...)
end
