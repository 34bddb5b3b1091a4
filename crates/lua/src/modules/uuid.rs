//! `uuid`: `new()`/`uuid()` (random, version 4), `str()`, `bin()`, `fromstr`, `frombin`,
//! `NULL`, objects with `:str()`, `:bin()`, `:isnil()`, `tostring` and `==`. In MessagePack a
//! UUID is extension type 2 with its 16 bytes (RFC 4122 order).

use mlua::{Lua, MetaMethod, Table, UserData, UserDataMethods, Value};

/// A UUID held by Lua.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LuaUuid(pub [u8; 16]);

/// MessagePack extension type of a UUID.
pub const EXT_UUID: i8 = 2;

impl LuaUuid {
    pub fn text(&self) -> String {
        uuid::Uuid::from_bytes(self.0).hyphenated().to_string()
    }

    /// The 16 bytes: by default (and for `'h'`/`'host'`/`'l'`) the first three fields
    /// little-endian, the host order on x86 as Tarantool gives them; `'b'`/`'n'`/`'network'`
    /// in RFC 4122 order.
    fn bin(&self, order: Option<&str>) -> [u8; 16] {
        let mut b = self.0;
        if !matches!(order, Some("b" | "n" | "network")) {
            b[0..4].reverse();
            b[4..6].reverse();
            b[6..8].reverse();
        }
        b
    }
}

impl UserData for LuaUuid {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("str", |_, u, ()| Ok(u.text()));
        methods.add_method("bin", |lua, u, order: Option<String>| {
            lua.create_string(u.bin(order.as_deref()))
        });
        methods.add_method("isnil", |_, u, ()| Ok(u.0 == [0; 16]));
        methods.add_meta_method(MetaMethod::ToString, |_, u, ()| Ok(u.text()));
        methods.add_meta_method(MetaMethod::Eq, |_, u, other: Value| {
            Ok(match other {
                Value::UserData(o) => o.borrow::<LuaUuid>().is_ok_and(|o| *o == *u),
                _ => false,
            })
        });
    }
}

pub fn install(lua: &Lua) -> mlua::Result<()> {
    super::preload_rust(lua, "uuid", module)
}

fn random() -> LuaUuid {
    LuaUuid(*uuid::Uuid::new_v4().as_bytes())
}

fn parse(s: &str) -> Option<LuaUuid> {
    // Tarantool takes the 36-character hyphenated form only.
    if s.len() != 36 {
        return None;
    }
    uuid::Uuid::parse_str(s)
        .ok()
        .map(|u| LuaUuid(*u.as_bytes()))
}

fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set("NULL", LuaUuid([0; 16]))?;
    let new = lua.create_function(|_, ()| Ok(random()))?;
    m.set("new", new.clone())?;
    m.set("uuid", new)?;
    m.set("str", lua.create_function(|_, ()| Ok(random().text()))?)?;
    m.set(
        "bin",
        lua.create_function(|lua, order: Option<String>| {
            lua.create_string(random().bin(order.as_deref()))
        })?,
    )?;
    m.set(
        "fromstr",
        lua.create_function(|_, s: Value| {
            Ok(match s {
                Value::String(s) => parse(&s.to_string_lossy()),
                _ => None,
            })
        })?,
    )?;
    m.set(
        "frombin",
        lua.create_function(|_, (s, order): (mlua::String, Option<String>)| {
            let bytes = s.as_bytes();
            let Ok(arr) = <[u8; 16]>::try_from(&bytes[..]) else {
                return Err(mlua::Error::runtime("frombin(bin, [byteorder])"));
            };
            // The byte order swap is its own inverse.
            Ok(Some(LuaUuid(LuaUuid(arr).bin(order.as_deref()))))
        })?,
    )?;
    // `uuid()` calls `new`.
    let meta = lua.create_table()?;
    meta.set(
        "__call",
        lua.create_function(|_, _: mlua::MultiValue| Ok(random()))?,
    )?;
    m.set_metatable(Some(meta))?;
    Ok(m)
}
