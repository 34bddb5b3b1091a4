//! The schema: space and index definitions parsed from `_space` and `_index` rows, and the
//! triggers that turn a change of those rows into creating, altering or dropping spaces and
//! indexes — the way box.schema does it, with Tarantool 2.6's validation and error texts.

use hashbrown::HashMap;
use spindle_memtx::format::{
    parse_format_type, parse_space_format_in, FieldDef, FormatDdl, TupleFormat,
};
use spindle_memtx::index::{IndexDef, IndexKind};
use spindle_memtx::key_def::{KeyDef, KeyPart};
use spindle_memtx::space::{Space, SpaceFlags};
use spindle_memtx::FieldType;
use spindle_proto::mp::{self, Value};
use spindle_types::error::code;
use spindle_types::limits::SPACE_ID_MAX;
use spindle_types::{BoxError, BoxResult};

/// Ids of the system spaces spindle gives behaviour to.
pub mod sys {
    pub const SCHEMA: u32 = 272;
    pub const COLLATION: u32 = 276;
    pub const SPACE: u32 = 280;
    pub const INDEX: u32 = 288;
    pub const FUNC: u32 = 296;
    pub const USER: u32 = 304;
    pub const PRIV: u32 = 312;
    pub const CLUSTER: u32 = 320;
    pub const TRUNCATE: u32 = 330;
    /// `BOX_SYSTEM_ID_MAX`: ids up to this are system spaces.
    pub const SYSTEM_ID_MAX: u32 = 511;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Memtx,
    /// A read-only view over another system space, filtered by the reader's privileges.
    Sysview,
    Blackhole,
    Service,
}

#[derive(Clone, Debug)]
pub struct SpaceDef {
    pub id: u32,
    pub owner: u32,
    pub name: String,
    pub engine: Engine,
    pub field_count: u32,
    pub temporary: bool,
    pub group_id: u32,
    pub format: Vec<FieldDef>,
}

pub struct SpaceEntry {
    pub def: SpaceDef,
    pub space: Space,
}

impl SpaceEntry {
    pub fn is_system(&self) -> bool {
        self.def.id <= sys::SYSTEM_ID_MAX
    }
}

#[derive(Default)]
pub struct Catalog {
    spaces: HashMap<u32, SpaceEntry>,
    names: HashMap<String, u32>,
    version: u32,
}

impl Catalog {
    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn bump_version(&mut self) {
        self.version = self.version.wrapping_add(1).max(1);
    }

    pub fn get(&self, id: u32) -> Option<&SpaceEntry> {
        self.spaces.get(&id)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut SpaceEntry> {
        self.spaces.get_mut(&id)
    }

    pub fn id_by_name(&self, name: &str) -> Option<u32> {
        self.names.get(name).copied()
    }

    /// Space ids in ascending order (snapshot and JOIN order).
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.spaces.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// A space by id, or ER_NO_SUCH_SPACE naming the id as Tarantool does.
    pub fn space(&self, id: u32) -> BoxResult<&SpaceEntry> {
        self.spaces
            .get(&id)
            .ok_or_else(|| BoxError::no_such_space(&id.to_string()))
    }

    pub fn space_mut(&mut self, id: u32) -> BoxResult<&mut SpaceEntry> {
        self.spaces
            .get_mut(&id)
            .ok_or_else(|| BoxError::no_such_space(&id.to_string()))
    }

    /// The trigger on `_space`: create, alter or drop a space.
    pub fn on_space(&mut self, old: Option<&[u8]>, new: Option<&[u8]>) -> BoxResult<()> {
        match (old, new) {
            (_, Some(new)) => {
                let existing = space_row_id(new).is_some_and(|id| self.spaces.contains_key(&id));
                let def = parse_space_def(new, existing)?;
                if existing {
                    self.alter_space(def)?;
                } else {
                    self.create_space(def)?;
                }
            }
            (Some(old), None) => {
                let def = parse_space_def(old, true)?;
                self.drop_space(def.id)?;
            }
            (None, None) => return Ok(()),
        }
        self.bump_version();
        Ok(())
    }

    fn create_space(&mut self, def: SpaceDef) -> BoxResult<()> {
        let format = TupleFormat::new(def.format.clone(), def.field_count, &[])?;
        let flags = SpaceFlags {
            temporary: def.temporary,
            is_local: def.group_id == 1,
        };
        let space = Space::new(def.id, def.name.clone(), flags, format);
        self.names.insert(def.name.clone(), def.id);
        self.spaces.insert(def.id, SpaceEntry { def, space });
        Ok(())
    }

    fn alter_space(&mut self, def: SpaceDef) -> BoxResult<()> {
        let entry = self.space_mut(def.id)?;
        if entry.def.engine != def.engine {
            return Err(BoxError::alter_space(
                &def.name,
                "can not change space engine",
            ));
        }
        let format = TupleFormat::new(def.format.clone(), def.field_count, &[])?;
        entry.space.set_format(format)?;
        entry.space.name = def.name.clone();
        let old_name = std::mem::replace(&mut entry.def, def.clone()).name;
        if old_name != def.name {
            self.names.remove(&old_name);
            self.names.insert(def.name, def.id);
        }
        Ok(())
    }

    fn drop_space(&mut self, id: u32) -> BoxResult<()> {
        let entry = self.space(id)?;
        if !entry.space.indexes().is_empty() {
            return Err(BoxError::drop_space(
                &entry.def.name,
                "the space has indexes",
            ));
        }
        if let Some(entry) = self.spaces.remove(&id) {
            self.names.remove(&entry.def.name);
        }
        Ok(())
    }

    /// The trigger on `_index`: create, rebuild or drop an index.
    pub fn on_index(&mut self, old: Option<&[u8]>, new: Option<&[u8]>) -> BoxResult<()> {
        match (old, new) {
            (Some(old), None) => {
                let (space_id, iid) = index_ids(old)?;
                self.drop_index(space_id, iid)?;
            }
            (old, Some(new)) => {
                let space_id = index_ids(new)?.0;
                let entry = self.space(space_id)?;
                let def = parse_index_def(new, &entry.def.name, &entry.def.format)?;
                let entry = self.space_mut(space_id)?;
                if def.id != 0 && entry.space.index(0).is_none() {
                    return Err(BoxError::alter_space(
                        &entry.def.name,
                        "can not add a secondary key before primary",
                    ));
                }
                let _ = old;
                if entry.space.index(def.id).is_some() {
                    replace_index(&mut entry.space, def)?;
                } else {
                    entry.space.add_index(def)?;
                }
            }
            (None, None) => return Ok(()),
        }
        self.bump_version();
        Ok(())
    }

    fn drop_index(&mut self, space_id: u32, iid: u32) -> BoxResult<()> {
        let Some(entry) = self.spaces.get_mut(&space_id) else {
            return Ok(());
        };
        if iid == 0 {
            if entry.is_system() {
                return Err(BoxError::last_drop(&entry.def.name));
            }
            if entry.space.indexes().len() > 1 {
                return Err(BoxError::drop_primary_key(&entry.def.name));
            }
        }
        if entry.space.index(iid).is_some() {
            entry.space.drop_index(iid)?;
        }
        Ok(())
    }

    /// Creates a system space directly (before any row exists to trigger it).
    pub fn preload_space(&mut self, space_row: &[u8]) -> BoxResult<()> {
        let def = parse_space_def(space_row, false)?;
        if !self.spaces.contains_key(&def.id) {
            self.create_space(def)?;
        }
        Ok(())
    }

    pub fn preload_index(&mut self, index_row: &[u8]) -> BoxResult<()> {
        let (space_id, iid) = index_ids(index_row)?;
        if self.space(space_id)?.space.index(iid).is_some() {
            return Ok(());
        }
        self.on_index(None, Some(index_row))
    }
}

/// Alters an existing index (the data stays); an identical definition is a no-op (system
/// indexes are preloaded before their `_index` rows are loaded).
fn replace_index(space: &mut Space, def: IndexDef) -> BoxResult<()> {
    if space.index(def.id).is_some_and(|i| *i.def() == def) {
        return Ok(());
    }
    space.alter_index(def)
}

fn bad(details: &str) -> BoxError {
    BoxError::illegal_params(details)
}

fn read_u32(cur: &mut &[u8]) -> BoxResult<u32> {
    match mp::read_value(cur) {
        Ok(Value::Uint(v)) => u32::try_from(v).map_err(|_| bad("id is out of range")),
        _ => Err(bad("expected an unsigned id")),
    }
}

fn read_string(cur: &mut &[u8]) -> BoxResult<String> {
    let s = mp::read_str(cur).map_err(|_| bad("expected a string"))?;
    Ok(String::from_utf8_lossy(s).into_owned())
}

/// Tarantool's identifier rule: non-empty, printable, at most 65000 bytes.
fn check_identifier(name: &str) -> BoxResult<()> {
    let ok = !name.is_empty() && name.len() <= 65000 && name.chars().all(|c| !c.is_control());
    if ok {
        Ok(())
    } else {
        Err(BoxError::identifier(name))
    }
}

fn space_row_id(tuple: &[u8]) -> Option<u32> {
    let mut cur = tuple;
    mp::read_array_len(&mut cur).ok()?;
    mp::read_uint(&mut cur)
        .ok()
        .and_then(|id| u32::try_from(id).ok())
}

/// Parses a `_space` row: [id, owner, name, engine, field_count, flags, format]. `existing`
/// selects the error wording of an alter rather than a create.
pub fn parse_space_def(tuple: &[u8], existing: bool) -> BoxResult<SpaceDef> {
    let mut cur = tuple;
    let count = mp::read_array_len(&mut cur).map_err(|_| BoxError::tuple_not_array())?;
    if count < 7 {
        return Err(BoxError::field_missing(&(count + 1).to_string()));
    }
    let id = read_u32(&mut cur)?;
    let owner = read_u32(&mut cur)?;
    let name = read_string(&mut cur)?;
    let engine_name = read_string(&mut cur)?;
    let field_count = read_u32(&mut cur)?;
    let flags = mp::take_value(&mut cur).map_err(|_| bad("flags"))?;
    let format = mp::take_value(&mut cur).map_err(|_| bad("format"))?;
    check_identifier(&name)?;
    if id > SPACE_ID_MAX {
        return Err(BoxError::create_space(&name, "space id is too big"));
    }
    let engine = match engine_name.as_str() {
        "memtx" => Engine::Memtx,
        "sysview" => Engine::Sysview,
        "blackhole" => Engine::Blackhole,
        "service" => Engine::Service,
        "vinyl" => return Err(BoxError::unsupported("spindle", "the vinyl engine")),
        other => return Err(BoxError::no_such_engine(other)),
    };
    let (temporary, group_id) = parse_space_flags(flags)?;
    let ddl = if existing {
        FormatDdl::Alter(&name)
    } else {
        FormatDdl::Create(&name)
    };
    let format = parse_space_format_in(ddl, format)?
        .into_iter()
        .map(|f| f.def)
        .collect();
    Ok(SpaceDef {
        id,
        owner,
        name,
        engine,
        field_count,
        temporary,
        group_id,
        format,
    })
}

fn parse_space_flags(flags: &[u8]) -> BoxResult<(bool, u32)> {
    let mut cur = flags;
    let entries = mp::read_map_len(&mut cur)
        .map_err(|_| BoxError::wrong_space_options("(field 5): expected a map"))?;
    let (mut temporary, mut group_id) = (false, 0);
    for _ in 0..entries {
        let key = mp::read_str(&mut cur).map_err(|_| bad("space option key"))?;
        let value = mp::read_value(&mut cur).map_err(|_| bad("space option"))?;
        match (key, value) {
            (b"temporary", Value::Bool(b)) => temporary = b,
            (b"group_id", Value::Uint(g)) => group_id = g as u32,
            (b"is_local", Value::Bool(b)) => group_id = u32::from(b),
            (b"is_sync" | b"view" | b"sql" | b"checks" | b"constraint", _) => {}
            (k, _) => {
                let k = String::from_utf8_lossy(k);
                return Err(BoxError::new(
                    code::ER_WRONG_SPACE_OPTIONS,
                    format!("Wrong space options (field 5): unexpected option '{k}'"),
                ));
            }
        }
        if let Value::Array(_) | Value::Map(_) = value {
            return Err(bad("space option value"));
        }
    }
    Ok((temporary, group_id))
}

fn index_ids(tuple: &[u8]) -> BoxResult<(u32, u32)> {
    let mut cur = tuple;
    let count = mp::read_array_len(&mut cur).map_err(|_| BoxError::tuple_not_array())?;
    if count < 2 {
        return Err(BoxError::field_missing(&(count + 1).to_string()));
    }
    Ok((read_u32(&mut cur)?, read_u32(&mut cur)?))
}

/// Parses an `_index` row: [space_id, iid, name, type, opts, parts].
pub fn parse_index_def(tuple: &[u8], space: &str, format: &[FieldDef]) -> BoxResult<IndexDef> {
    let mut cur = tuple;
    let count = mp::read_array_len(&mut cur).map_err(|_| BoxError::tuple_not_array())?;
    if count < 6 {
        return Err(BoxError::field_missing(&(count + 1).to_string()));
    }
    let _space_id = read_u32(&mut cur)?;
    let iid = read_u32(&mut cur)?;
    let name = read_string(&mut cur)?;
    let type_name = read_string(&mut cur)?;
    let opts = mp::take_value(&mut cur).map_err(|_| bad("index options"))?;
    let parts = mp::take_value(&mut cur).map_err(|_| bad("index parts"))?;
    check_identifier(&name)?;
    if iid >= spindle_types::limits::INDEX_MAX {
        return Err(BoxError::modify_index(&name, space, "index id too big"));
    }
    let kind = match type_name.to_ascii_lowercase().as_str() {
        "tree" => IndexKind::Tree,
        "hash" => IndexKind::Hash,
        "bitset" | "rtree" => {
            return Err(BoxError::unsupported(
                "spindle",
                &format!("{type_name} indexes"),
            ))
        }
        _ => return Err(BoxError::index_type(&name, space)),
    };
    let unique = parse_index_opts(opts)?;
    if iid == 0 && !unique {
        return Err(BoxError::modify_index(
            &name,
            space,
            "primary key must be unique",
        ));
    }
    if kind == IndexKind::Hash && !unique {
        return Err(BoxError::modify_index(
            &name,
            space,
            "HASH index must be unique",
        ));
    }
    let key_parts = parse_parts(parts, format)?;
    check_parts(&key_parts, &name, space, iid, kind)?;
    Ok(IndexDef {
        id: iid,
        name,
        kind,
        unique,
        key_def: KeyDef { parts: key_parts },
    })
}

fn parse_index_opts(opts: &[u8]) -> BoxResult<bool> {
    let mut cur = opts;
    let entries = mp::read_map_len(&mut cur)
        .map_err(|_| BoxError::wrong_index_options("(field 4): expected a map"))?;
    let mut unique = true;
    for _ in 0..entries {
        let key = mp::read_str(&mut cur).map_err(|_| bad("index option key"))?;
        let value = mp::read_value(&mut cur).map_err(|_| bad("index option"))?;
        match key {
            b"unique" => unique = matches!(value, Value::Bool(true)),
            b"dimension"
            | b"distance"
            | b"range_size"
            | b"page_size"
            | b"run_count_per_level"
            | b"run_size_ratio"
            | b"bloom_fpr"
            | b"lsn"
            | b"func"
            | b"hint" => {
                if let Value::Array(n) | Value::Map(n) = value {
                    let _ = n;
                    mp::skip(&mut cur).ok();
                }
            }
            k => {
                let k = String::from_utf8_lossy(k);
                return Err(BoxError::new(
                    code::ER_WRONG_INDEX_OPTIONS,
                    format!("Wrong index options (field 4): unexpected option '{k}'"),
                ));
            }
        }
    }
    Ok(unique)
}

fn wrong_parts(details: &str) -> BoxError {
    BoxError::new(
        code::ER_WRONG_INDEX_PARTS,
        format!(
            "Wrong index parts: {details}; expected field1 id (number), field1 type (string), ..."
        ),
    )
}

fn parse_parts(parts: &[u8], format: &[FieldDef]) -> BoxResult<Vec<KeyPart>> {
    let mut cur = parts;
    let count = mp::read_array_len(&mut cur).map_err(|_| wrong_parts("expected an array"))?;
    let mut out = Vec::with_capacity(count.min(256) as usize);
    for _ in 0..count {
        out.push(match mp::peek_type(cur) {
            Ok(mp::MpType::Map) => parse_map_part(&mut cur, format)?,
            Ok(mp::MpType::Array) => parse_compact_part(&mut cur, format)?,
            _ => return Err(wrong_parts("expected a map or an array")),
        });
    }
    Ok(out)
}

fn part_type(name: &[u8]) -> BoxResult<FieldType> {
    parse_format_type(name).ok_or_else(|| wrong_parts("unknown field type"))
}

fn format_nullable(format: &[FieldDef], fieldno: u32) -> bool {
    format.get(fieldno as usize).is_some_and(|f| f.is_nullable)
}

/// `[fieldno, 'type']` (also the 1.6 style with more entries: extra ones are ignored).
fn parse_compact_part(cur: &mut &[u8], format: &[FieldDef]) -> BoxResult<KeyPart> {
    let n = mp::read_array_len(cur).map_err(|_| wrong_parts("expected an array"))?;
    if n < 2 {
        return Err(wrong_parts("expected field id and type"));
    }
    let fieldno = field_no(cur, format)?;
    let type_name = mp::read_str(cur).map_err(|_| wrong_parts("field type is not a string"))?;
    let field_type = part_type(type_name)?;
    for _ in 2..n {
        mp::skip(cur).map_err(|_| wrong_parts("malformed part"))?;
    }
    let is_nullable = format_nullable(format, fieldno);
    Ok(KeyPart {
        fieldno,
        field_type,
        is_nullable,
        collation: None,
    })
}

/// `{field = n | 'name', type = 'type', is_nullable = bool, collation = id}`.
fn parse_map_part(cur: &mut &[u8], format: &[FieldDef]) -> BoxResult<KeyPart> {
    let n = mp::read_map_len(cur).map_err(|_| wrong_parts("expected a map"))?;
    let (mut fieldno, mut field_type, mut nullable, mut collation) = (None, None, None, None);
    for _ in 0..n {
        let key = mp::read_str(cur).map_err(|_| wrong_parts("part key is not a string"))?;
        match key {
            b"field" => fieldno = Some(field_no(cur, format)?),
            b"type" => {
                let t = mp::read_str(cur).map_err(|_| wrong_parts("field type is not a string"))?;
                field_type = Some(part_type(t)?);
            }
            b"is_nullable" => nullable = mp::read_bool(cur).ok(),
            b"collation" => collation = mp::read_uint(cur).ok().map(|c| c as u32),
            _ => mp::skip(cur).map_err(|_| wrong_parts("malformed part"))?,
        }
    }
    let fieldno = fieldno.ok_or_else(|| wrong_parts("field id is not specified"))?;
    let field_type = field_type.ok_or_else(|| wrong_parts("field type is not specified"))?;
    let is_nullable = nullable.unwrap_or_else(|| format_nullable(format, fieldno));
    // Only binary collations are supported: 'none' (0) and 'binary' (3) compare bytewise.
    let collation = collation.filter(|c| *c != 0 && *c != 3);
    Ok(KeyPart {
        fieldno,
        field_type,
        is_nullable,
        collation,
    })
}

/// A part's field: a 0-based number, or a name from the space format.
fn field_no(cur: &mut &[u8], format: &[FieldDef]) -> BoxResult<u32> {
    match mp::read_value(cur).map_err(|_| wrong_parts("malformed field id"))? {
        Value::Uint(n) => u32::try_from(n).map_err(|_| wrong_parts("field id is too big")),
        Value::Str(s) => format
            .iter()
            .position(|f| f.name.as_bytes() == s)
            .map(|p| p as u32)
            .ok_or_else(|| wrong_parts("field was not found by name")),
        _ => Err(wrong_parts("field id must be a number")),
    }
}

fn check_parts(
    parts: &[KeyPart],
    name: &str,
    space: &str,
    iid: u32,
    kind: IndexKind,
) -> BoxResult<()> {
    if parts.is_empty() {
        return Err(BoxError::modify_index(
            name,
            space,
            "part count must be positive",
        ));
    }
    for part in parts {
        if !part.field_type.is_indexable() {
            let details = format!("field type '{}' is not supported", part.field_type.name());
            return Err(BoxError::modify_index(name, space, &details));
        }
        if part.collation.is_some() {
            return Err(BoxError::unsupported("spindle", "ICU collations"));
        }
        if part.is_nullable && iid == 0 {
            return Err(BoxError::modify_index(
                name,
                space,
                "primary key cannot be nullable",
            ));
        }
        if part.is_nullable && kind == IndexKind::Hash {
            return Err(BoxError::modify_index(
                name,
                space,
                "HASH index cannot be nullable",
            ));
        }
    }
    Ok(())
}
