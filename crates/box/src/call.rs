//! CALL without Lua: the built-in procedures clients invoke on a Tarantool server —
//! `box.space.<space>[.index.<index>]:<method>` with `select`, `get`, `count`, `len`, `min`
//! and `max` (net.box implements `index:count()` this way; cartridge-java reads the schema
//! with `box.space._vspace:select`). Anything else is ER_NO_SUCH_PROC, after the same
//! execute-privilege check Tarantool makes.

use spindle_memtx::tuple::Tuple;
use spindle_proto::mp::{self, Value};
use spindle_types::iproto::IteratorType;
use spindle_types::{BoxError, BoxResult};

use crate::access::{ObjectType, ANY_OBJECT, PRIV_R, PRIV_U, PRIV_X};
use crate::catalog::Engine;
use crate::db::Db;
use crate::reply::Reply;

enum Method {
    Select,
    Get,
    Count,
    Len,
    Min,
    Max,
}

struct Target<'a> {
    space: &'a str,
    index: Option<&'a str>,
    method: Method,
}

fn parse(name: &str) -> Option<Target<'_>> {
    let rest = name.strip_prefix("box.space.")?;
    let (path, method) = rest.split_once(':')?;
    let method = match method {
        "select" => Method::Select,
        "get" => Method::Get,
        "count" => Method::Count,
        "len" => Method::Len,
        "min" => Method::Min,
        "max" => Method::Max,
        _ => return None,
    };
    let (space, index) = match path.split_once(".index.") {
        Some((space, index)) => (space, Some(index)),
        None => (path, None),
    };
    Some(Target {
        space,
        index,
        method,
    })
}

/// Options of select/count: `{iterator = 'GE' | 5, limit = n, offset = n}`.
struct Opts {
    iterator: Option<IteratorType>,
    limit: u32,
    offset: u32,
}

fn iterator_by_name(name: &[u8]) -> Option<IteratorType> {
    (0..12)
        .filter_map(IteratorType::from_code)
        .find(|it| it.name().as_bytes().eq_ignore_ascii_case(name))
}

fn parse_opts(bytes: Option<&[u8]>) -> BoxResult<Opts> {
    let mut opts = Opts {
        iterator: None,
        limit: u32::MAX,
        offset: 0,
    };
    let Some(mut cur) = bytes else {
        return Ok(opts);
    };
    let Ok(n) = mp::read_map_len(&mut cur) else {
        return Ok(opts);
    };
    for _ in 0..n {
        let key = mp::read_str(&mut cur).unwrap_or_default();
        let value =
            mp::read_value(&mut cur).map_err(|_| BoxError::invalid_msgpack("call arguments"))?;
        match (key, value) {
            (b"iterator", Value::Uint(c)) => opts.iterator = IteratorType::from_code(c),
            (b"iterator", Value::Str(s)) => {
                let it = iterator_by_name(s).ok_or_else(|| {
                    BoxError::new(
                        spindle_types::error::code::ER_ITERATOR_TYPE,
                        format!("Unknown iterator type '{}'", String::from_utf8_lossy(s)),
                    )
                })?;
                opts.iterator = Some(it);
            }
            (b"limit", Value::Uint(l)) => opts.limit = l.min(u32::MAX as u64) as u32,
            (b"offset", Value::Uint(o)) => opts.offset = o.min(u32::MAX as u64) as u32,
            (_, Value::Array(_) | Value::Map(_)) => {
                return Err(BoxError::illegal_params("options"))
            }
            _ => {}
        }
    }
    Ok(opts)
}

/// The key argument: an array, a scalar (wrapped into a one-part key) or absent (`[]`).
fn key_arg(arg: Option<&[u8]>) -> Vec<u8> {
    match arg {
        None => vec![0x90],
        Some(bytes) if matches!(mp::peek_type(bytes), Ok(mp::MpType::Array)) => bytes.to_vec(),
        Some(bytes) if matches!(mp::peek_type(bytes), Ok(mp::MpType::Nil)) => vec![0x90],
        Some(bytes) => {
            let mut key = vec![0x91];
            key.extend_from_slice(bytes);
            key
        }
    }
}

fn split_args(args: &[u8]) -> BoxResult<Vec<&[u8]>> {
    let mut cur = args;
    let n =
        mp::read_array_len(&mut cur).map_err(|_| BoxError::invalid_msgpack("call arguments"))?;
    (0..n)
        .map(|_| mp::take_value(&mut cur).map_err(|_| BoxError::invalid_msgpack("call arguments")))
        .collect()
}

/// The rights a CALL of `name` needs, checked before the name is looked up (so an unknown
/// name can answer ER_ACCESS_DENIED, as in Tarantool).
pub fn check_call_access(db: &mut Db, user: u32, name: &str) -> BoxResult<Option<FuncRef>> {
    let func = find_func(db, name);
    check_func_access(db, user, name, func)
}

/// `check_call_access` with the `_func` row of `name` looked up already (`find_func`).
pub fn check_func_access(
    db: &mut Db,
    user: u32,
    name: &str,
    func: Option<FuncRef>,
) -> BoxResult<Option<FuncRef>> {
    db.users.check_universe(user, PRIV_U)?;
    // A function in `_func` can be granted by itself, or is its owner's; any other name needs
    // execute on universe (or on every function).
    let (id, owner) = match func {
        Some(f) => (f.id, Some(f.owner)),
        None => (ANY_OBJECT, None),
    };
    db.users
        .check(user, PRIV_X, ObjectType::Function, id, name, owner)
        .map_err(|_| {
            BoxError::access_denied("Execute", "function", name, &db.users.name_of(user))
        })?;
    Ok(func)
}

/// What CALL needs of a `_func` row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncRef {
    pub id: u32,
    pub owner: u32,
    pub setuid: bool,
}

/// The `_func` row named `name`, if any (by its unique `name` index).
pub fn find_func(db: &Db, name: &str) -> Option<FuncRef> {
    let entry = db.catalog.space(crate::catalog::sys::FUNC).ok()?;
    let index = entry.space.index_by_name("name")?.id();
    let mut key = Vec::with_capacity(name.len() + 8);
    mp::write_array_len(&mut key, 1);
    mp::write_str(&mut key, name);
    let found = entry
        .space
        .select(index, IteratorType::Eq, &key, 0, 1)
        .ok()?;
    let tuple = found.first()?;
    let mut cur = tuple.data();
    mp::read_array_len(&mut cur).ok()?;
    let id = field_u32(&mut cur)?;
    let owner = field_u32(&mut cur)?;
    mp::read_value(&mut cur).ok()?;
    let setuid = matches!(
        mp::read_value(&mut cur).ok()?,
        Value::Uint(1) | Value::Bool(true)
    );
    Some(FuncRef { id, owner, setuid })
}

fn field_u32(cur: &mut &[u8]) -> Option<u32> {
    match mp::read_value(cur).ok()? {
        Value::Uint(v) => u32::try_from(v).ok(),
        _ => None,
    }
}

pub fn call(db: &mut Db, user: u32, name: &str, args: &[u8], is_16: bool) -> BoxResult<Reply> {
    check_call_access(db, user, name)?;
    let target = parse(name).ok_or_else(|| BoxError::no_such_proc(name))?;
    let space_id = db
        .catalog
        .id_by_name(target.space)
        .ok_or_else(|| BoxError::no_such_proc(name))?;
    let entry = db.catalog.space(space_id)?;
    let index_id = match target.index {
        None => 0,
        Some(index) => entry
            .space
            .index_by_name(index)
            .map(|i| i.id())
            .ok_or_else(|| BoxError::no_such_proc(name))?,
    };
    let (space_name, owner) = (entry.def.name.clone(), entry.def.owner);
    db.users.check(
        user,
        PRIV_R,
        ObjectType::Space,
        space_id,
        &space_name,
        Some(owner),
    )?;
    let args = split_args(args)?;
    let key = key_arg(args.first().copied());
    let opts = parse_opts(args.get(1).copied())?;
    let select =
        |db: &mut Db, it: IteratorType, offset: u32, limit: u32| -> BoxResult<Vec<Tuple>> {
            if db.catalog.space(space_id)?.def.engine == Engine::Sysview {
                crate::views::select(db, user, space_id, index_id, it, &key, offset, limit)
            } else {
                db.catalog
                    .space(space_id)?
                    .space
                    .select(index_id, it, &key, offset, limit)
            }
        };
    let empty_key = key == [0x90];
    match target.method {
        Method::Select => {
            let it = opts.iterator.unwrap_or(if empty_key {
                IteratorType::All
            } else {
                IteratorType::Eq
            });
            let tuples = select(db, it, opts.offset, opts.limit)?;
            Ok(tuples_result(tuples, is_16))
        }
        Method::Get => {
            let found = select(db, IteratorType::Eq, 0, 2)?;
            if found.len() > 1 {
                return Err(BoxError::more_than_one_tuple());
            }
            Ok(optional_tuple(found.into_iter().next(), is_16))
        }
        Method::Min | Method::Max => {
            let it = if matches!(target.method, Method::Min) {
                IteratorType::Ge
            } else {
                IteratorType::Le
            };
            Ok(optional_tuple(
                select(db, it, 0, 1)?.into_iter().next(),
                is_16,
            ))
        }
        Method::Count => {
            let it = opts.iterator.unwrap_or(if empty_key {
                IteratorType::All
            } else {
                IteratorType::Eq
            });
            let n = select(db, it, 0, u32::MAX)?.len();
            Ok(scalar_result(n as u64, is_16))
        }
        Method::Len => {
            let n = db.catalog.space(space_id)?.space.len();
            Ok(scalar_result(n as u64, is_16))
        }
    }
}

/// CALL returns the Lua values as they are; CALL_16 wraps every value as a tuple.
fn tuples_result(tuples: Vec<Tuple>, is_16: bool) -> Reply {
    if is_16 {
        return Reply::Tuples(tuples);
    }
    let mut data = Vec::new();
    mp::write_array_len(&mut data, tuples.len() as u32);
    for t in &tuples {
        data.extend_from_slice(t.data());
    }
    Reply::Data { count: 1, data }
}

fn optional_tuple(tuple: Option<Tuple>, _is_16: bool) -> Reply {
    Reply::Tuples(tuple.into_iter().collect())
}

fn scalar_result(n: u64, is_16: bool) -> Reply {
    let mut data = Vec::new();
    if is_16 {
        mp::write_array_len(&mut data, 1);
    }
    mp::write_uint(&mut data, n);
    Reply::Data { count: 1, data }
}
