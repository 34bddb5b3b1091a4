//! `decimal`: `new(string | number)`, `is_decimal`, arithmetic with numbers, strings and
//! other decimals (`+ - * / % ^` and unary minus), `==`, `<`, `<=` between decimals,
//! `tostring` keeping the scale (`1.10`), `abs`, `round`, `scale`, `precision`. In
//! MessagePack a decimal is extension type 1: its scale, then packed BCD digits and a sign
//! nibble. Backed by `rust_decimal` (28 significant digits, where Tarantool has 38).

use std::str::FromStr;

use mlua::{Lua, MetaMethod, Table, UserData, UserDataMethods, Value};
use rust_decimal::prelude::{FromPrimitive, MathematicalOps, ToPrimitive};
use rust_decimal::Decimal;

/// A decimal held by Lua.
#[derive(Clone, Copy, PartialEq)]
pub struct LuaDecimal(pub Decimal);

/// MessagePack extension type of a decimal.
pub const EXT_DECIMAL: i8 = 1;

impl LuaDecimal {
    pub fn text(&self) -> String {
        self.0.to_string()
    }
}

fn parse_text(s: &str) -> Option<Decimal> {
    let s = s.trim();
    Decimal::from_str(s)
        .ok()
        .or_else(|| Decimal::from_scientific(s).ok())
}

/// A Lua operand as a decimal: decimals, numbers (as `%.15g` prints them), numeric strings.
fn operand(v: &Value) -> Option<Decimal> {
    match v {
        Value::UserData(ud) => ud.borrow::<LuaDecimal>().ok().map(|d| d.0),
        Value::Integer(i) => Some(Decimal::from(*i)),
        Value::Number(n) if n.is_finite() => parse_text(&spindle_emit::fmt_g(*n, 15)),
        Value::String(s) => parse_text(&s.to_string_lossy()),
        _ => None,
    }
}

fn bad_operand() -> mlua::Error {
    mlua::Error::runtime("expected decimal, number or string as 2 argument")
}

fn binary(
    a: &Value,
    b: &Value,
    op: fn(Decimal, Decimal) -> Option<Decimal>,
) -> mlua::Result<LuaDecimal> {
    let (Some(x), Some(y)) = (operand(a), operand(b)) else {
        return Err(bad_operand());
    };
    op(x, y)
        .map(LuaDecimal)
        .ok_or_else(|| mlua::Error::runtime("decimal operation failed"))
}

impl UserData for LuaDecimal {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, d, ()| Ok(d.text()));
        methods.add_meta_function(MetaMethod::Add, |_, (a, b): (Value, Value)| {
            binary(&a, &b, |x, y| x.checked_add(y))
        });
        methods.add_meta_function(MetaMethod::Sub, |_, (a, b): (Value, Value)| {
            binary(&a, &b, |x, y| x.checked_sub(y))
        });
        methods.add_meta_function(MetaMethod::Mul, |_, (a, b): (Value, Value)| {
            binary(&a, &b, |x, y| x.checked_mul(y))
        });
        methods.add_meta_function(MetaMethod::Div, |_, (a, b): (Value, Value)| {
            if operand(&b) == Some(Decimal::ZERO) {
                return Err(mlua::Error::runtime("decimal operation failed"));
            }
            binary(&a, &b, |x, y| x.checked_div(y).map(|q| q.normalize()))
        });
        methods.add_meta_function(MetaMethod::Mod, |_, (a, b): (Value, Value)| {
            binary(&a, &b, |x, y| x.checked_rem(y))
        });
        methods.add_meta_function(MetaMethod::Pow, |_, (a, b): (Value, Value)| {
            binary(&a, &b, |x, y| x.checked_powd(y))
        });
        methods.add_meta_method(MetaMethod::Unm, |_, d, ()| Ok(LuaDecimal(-d.0)));
        methods.add_meta_function(MetaMethod::Eq, |_, (a, b): (Value, Value)| {
            Ok(operand(&a).is_some() && operand(&a) == operand(&b))
        });
        methods.add_meta_function(MetaMethod::Lt, |_, (a, b): (Value, Value)| {
            match (operand(&a), operand(&b)) {
                (Some(x), Some(y)) => Ok(x < y),
                _ => Err(bad_operand()),
            }
        });
        methods.add_meta_function(MetaMethod::Le, |_, (a, b): (Value, Value)| {
            match (operand(&a), operand(&b)) {
                (Some(x), Some(y)) => Ok(x <= y),
                _ => Err(bad_operand()),
            }
        });
    }
}

pub fn install(lua: &Lua) -> mlua::Result<()> {
    super::preload_rust(lua, "decimal", module)
}

fn one(v: &Value) -> mlua::Result<Decimal> {
    operand(v).ok_or_else(|| mlua::Error::runtime("decimal: expected decimal, number or string"))
}

fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "new",
        super::function(lua, |_, v: Value| {
            operand(&v)
                .map(LuaDecimal)
                .ok_or_else(|| "incorrect value to convert to decimal as 1 argument".to_string())
        })?,
    )?;
    m.set(
        "is_decimal",
        lua.create_function(|_, v: Value| {
            Ok(matches!(v, Value::UserData(ud) if ud.is::<LuaDecimal>()))
        })?,
    )?;
    m.set(
        "abs",
        lua.create_function(|_, v: Value| Ok(LuaDecimal(one(&v)?.abs())))?,
    )?;
    m.set(
        "round",
        lua.create_function(|_, (v, n): (Value, u32)| Ok(LuaDecimal(one(&v)?.round_dp(n))))?,
    )?;
    m.set(
        "scale",
        lua.create_function(|_, v: Value| Ok(one(&v)?.scale()))?,
    )?;
    m.set(
        "precision",
        lua.create_function(|_, v: Value| {
            let d = one(&v)?;
            let digits = d.mantissa().unsigned_abs().to_string().len() as u32;
            Ok(digits.max(d.scale()))
        })?,
    )?;
    m.set(
        "sqrt",
        lua.create_function(|_, v: Value| Ok(one(&v)?.sqrt().map(LuaDecimal)))?,
    )?;
    m.set(
        "tonumber",
        lua.create_function(|_, v: Value| Ok(one(&v)?.to_f64()))?,
    )?;
    Ok(m)
}

/// The MessagePack extension payload of `d`: scale (a MessagePack integer), then BCD digits
/// with the sign in the last nibble (`0x0c` plus, `0x0d` minus).
pub fn ext_payload(d: &Decimal) -> Vec<u8> {
    let mut out = Vec::new();
    spindle_proto::mp::write_uint(&mut out, u64::from(d.scale()));
    let digits = d.mantissa().unsigned_abs().to_string();
    let mut nibbles: Vec<u8> = digits.bytes().map(|c| c - b'0').collect();
    nibbles.push(if d.is_sign_negative() { 0x0d } else { 0x0c });
    if nibbles.len() % 2 == 1 {
        nibbles.insert(0, 0);
    }
    for pair in nibbles.chunks(2) {
        out.push((pair[0] << 4) | pair.get(1).copied().unwrap_or(0));
    }
    out
}

/// A decimal from its MessagePack extension payload.
pub fn from_ext(mut data: &[u8]) -> Option<Decimal> {
    let scale = match spindle_proto::mp::read_value(&mut data).ok()? {
        spindle_proto::mp::Value::Uint(u) => i64::try_from(u).ok()?,
        spindle_proto::mp::Value::Int(i) => i,
        _ => return None,
    };
    let mut nibbles: Vec<u8> = data.iter().flat_map(|b| [b >> 4, b & 0x0f]).collect();
    let sign = nibbles.pop()?;
    let mut mantissa: i128 = 0;
    for n in nibbles {
        if n > 9 {
            return None;
        }
        mantissa = mantissa.checked_mul(10)?.checked_add(i128::from(n))?;
    }
    if sign == 0x0d || sign == 0x0b {
        mantissa = -mantissa;
    }
    if scale >= 0 {
        Decimal::try_from_i128_with_scale(mantissa, u32::try_from(scale).ok()?).ok()
    } else {
        let factor = Decimal::from_i128(10i128.checked_pow(u32::try_from(-scale).ok()?)?)?;
        Decimal::from_i128(mantissa)?.checked_mul(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_payload_matches_tarantool() {
        let d = |s: &str| parse_text(s).expect("decimal");
        assert_eq!(ext_payload(&d("1.10")), [0x02, 0x11, 0x0c]);
        assert_eq!(ext_payload(&d("-12.345")), [0x03, 0x12, 0x34, 0x5d]);
        for s in ["1.10", "-12.345", "0", "123456789.000001", "-7"] {
            assert_eq!(from_ext(&ext_payload(&d(s))), Some(d(s)), "{s}");
        }
    }
}
