//! `decimal`: Tarantool's 38-digit decimals over libdecnumber (the library Tarantool uses).
//! `new`, `is_decimal`, arithmetic with numbers, strings and other decimals (`+ - * / % ^`,
//! unary minus), comparisons, `tostring` keeping the scale (`1.10`), `abs`, `sqrt`, `ln`,
//! `log10`, `exp`, `round`, `rescale`, `trim`, `scale`, `precision`. The Lua half
//! (`decimal.lua`) converts arguments and raises Tarantool's errors; this file does the
//! arithmetic. In MessagePack a decimal is extension type 1: its scale, then packed BCD
//! digits and a sign nibble.

use std::cmp::Ordering;

use dec::{Context, Rounding};
use mlua::{AnyUserData, Lua, MetaMethod, Table, UserData, UserDataMethods, Value};

/// Room for 42 digits: results hold 38, a few more let rounding see its carry and let
/// MessagePack payloads of up to 42 digits (which Tarantool accepts) through.
pub type Dec = dec::Decimal<14>;

/// Tarantool's `DECIMAL_MAX_DIGITS`.
const MAX_DIGITS: usize = 38;

/// A decimal held by Lua.
#[derive(Clone, Copy)]
pub struct LuaDecimal(pub Dec);

/// MessagePack extension type of a decimal.
pub const EXT_DECIMAL: i8 = 1;

impl LuaDecimal {
    pub fn text(&self) -> String {
        text(&self.0)
    }
}

/// The context of every operation: 38 digits, half-up rounding, and exponents that keep
/// values below 10^38 (`emax` 37) with at most 38 digits after the point (`emin` -1 makes
/// anything smaller subnormal, rounded at 10^-38).
fn context() -> Context<Dec> {
    let mut ctx = Context::<Dec>::default();
    // The three setters only refuse values outside decNumber's limits, which these are not.
    let _ = ctx.set_precision(MAX_DIGITS);
    let _ = ctx.set_max_exponent(MAX_DIGITS as isize - 1);
    let _ = ctx.set_min_exponent(-1);
    ctx.set_rounding(Rounding::HalfUp);
    ctx.set_clamp(false);
    ctx
}

/// `d` if the operation that made it under `ctx` succeeded: rounding, underflow to zero
/// and subnormal results are fine, anything else (overflow, division by zero, an invalid
/// operation) is a failure.
fn checked(ctx: &Context<Dec>, d: Dec) -> Option<Dec> {
    let s = ctx.status();
    let failed = s.invalid_operation()
        || s.division_by_zero()
        || s.division_impossible()
        || s.division_undefined()
        || s.overflow()
        || s.insufficient_storage()
        || s.invalid_context()
        || s.conversion_syntax();
    (!failed && d.is_finite()).then_some(d)
}

/// A decimal from its text (`12.5`, `-1e-3`, `.5`); no spaces, infinities or NaNs.
pub fn parse_text(s: &str) -> Option<Dec> {
    let mut ctx = context();
    let d = ctx.parse(s).ok()?;
    checked(&ctx, d)
}

/// The text Tarantool prints: every digit, no exponent (`1E+3` is `1000`, zeros too).
pub fn text(d: &Dec) -> String {
    let digits: Vec<u8> = d.coefficient_digits();
    let first = digits
        .iter()
        .position(|&c| c != 0)
        .unwrap_or(digits.len().saturating_sub(1));
    let digits: String = digits
        .get(first..)
        .unwrap_or_default()
        .iter()
        .map(|&c| char::from(b'0' + c))
        .collect();
    let digits = if digits.is_empty() {
        "0".into()
    } else {
        digits
    };
    let mut out = String::with_capacity(digits.len() + 4);
    if d.is_negative() {
        out.push('-');
    }
    let exp = d.exponent();
    if exp >= 0 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', exp as usize));
        return out;
    }
    let frac = exp.unsigned_abs() as usize;
    if digits.len() > frac {
        let (int, rest) = digits.split_at(digits.len() - frac);
        out.push_str(int);
        out.push('.');
        out.push_str(rest);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', frac - digits.len()));
        out.push_str(&digits);
    }
    out
}

/// Digits after the point (0 for integers).
fn scale(d: &Dec) -> i32 {
    (-d.exponent()).max(0)
}

/// Digits in all, counting the zeros an exponent stands for (`0.001` has 3, `1E+5` 6).
fn precision(d: &Dec) -> i64 {
    let digits = i64::from(d.digits());
    let exp = i64::from(d.exponent());
    if exp <= 0 {
        digits.max(-exp)
    } else {
        digits + exp
    }
}

/// A zero whose exponent is `exp`: the pattern `quantize` rounds to.
fn quantum(exp: i32) -> Dec {
    let mut q = Dec::zero();
    q.set_exponent(exp);
    q
}

/// `decimal.round` (`pad` false) and `decimal.rescale` (`pad` true): `d` rounded half up
/// to `to` digits after the point. A scale outside 0..=38 leaves `d` as it is, so does a
/// larger scale unless padding, and so does padding that would need more than 38 digits.
/// When rounding carries into a new digit the result keeps the digit count instead of the
/// scale (`9.99` to 1 place is `10`), as Tarantool's digit-count rounding does. `None`:
/// the rounded value does not fit.
fn round(d: Dec, to: i32, pad: bool) -> Option<Dec> {
    let from = scale(&d);
    if !(0..=MAX_DIGITS as i32).contains(&to) || (to >= from && !pad) {
        return Some(d);
    }
    if to >= from {
        let mut ctx = context();
        let mut r = d;
        ctx.quantize(&mut r, &quantum(-to));
        return Some(checked(&ctx, r).unwrap_or(d));
    }
    let keep = (precision(&d) - i64::from(from) + i64::from(to)).max(1);
    let mut wide = Context::<Dec>::default();
    wide.set_rounding(Rounding::HalfUp);
    let mut r = d;
    wide.quantize(&mut r, &quantum(-to));
    if i64::from(r.digits()) > keep {
        let exp = r.exponent() + 1;
        wide.quantize(&mut r, &quantum(exp));
    }
    let fits = r.digits() as usize <= MAX_DIGITS
        && i64::from(r.digits()) + i64::from(r.exponent()) <= MAX_DIGITS as i64;
    (fits && !wide.status().invalid_operation()).then_some(r)
}

fn binary(op: &str, mut a: Dec, b: &Dec) -> Option<Dec> {
    let mut ctx = context();
    match op {
        "add" => ctx.add(&mut a, b),
        "sub" => ctx.sub(&mut a, b),
        "mul" => ctx.mul(&mut a, b),
        "div" => ctx.div(&mut a, b),
        "mod" => ctx.rem(&mut a, b),
        "pow" => ctx.pow(&mut a, b),
        _ => return None,
    }
    checked(&ctx, a)
}

fn unary(op: &str, mut a: Dec) -> Option<Dec> {
    let mut ctx = context();
    match op {
        "minus" => ctx.minus(&mut a),
        "abs" => ctx.abs(&mut a),
        "sqrt" => ctx.sqrt(&mut a),
        // libdecnumber gives ln(1) and log10(1) as -0, Tarantool prints 0.
        "ln" | "log10" => {
            if op == "ln" {
                ctx.ln(&mut a);
            } else {
                ctx.log10(&mut a);
            }
            if a.is_zero() {
                ctx.abs(&mut a);
            }
        }
        "exp" => ctx.exp(&mut a),
        "trim" => a.trim(),
        _ => return None,
    }
    checked(&ctx, a)
}

fn get(v: &AnyUserData) -> mlua::Result<Dec> {
    Ok(v.borrow::<LuaDecimal>()?.0)
}

impl UserData for LuaDecimal {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, d, ()| Ok(d.text()));
    }
}

/// The Rust half handed to `decimal.lua`: every function returns nil where the Lua half
/// raises the error.
fn raw(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "is",
        lua.create_function(|_, v: Value| {
            Ok(matches!(v, Value::UserData(ud) if ud.is::<LuaDecimal>()))
        })?,
    )?;
    t.set(
        "parse",
        lua.create_function(|_, s: mlua::String| Ok(parse_text(&s.to_str()?).map(LuaDecimal)))?,
    )?;
    t.set(
        "binary",
        lua.create_function(|_, (op, a, b): (String, AnyUserData, AnyUserData)| {
            Ok(binary(&op, get(&a)?, &get(&b)?).map(LuaDecimal))
        })?,
    )?;
    t.set(
        "unary",
        lua.create_function(|_, (op, a): (String, AnyUserData)| {
            Ok(unary(&op, get(&a)?).map(LuaDecimal))
        })?,
    )?;
    t.set(
        "cmp",
        lua.create_function(|_, (a, b): (AnyUserData, AnyUserData)| {
            let mut ctx = context();
            Ok(match ctx.partial_cmp(&get(&a)?, &get(&b)?) {
                Some(Ordering::Less) => -1,
                Some(Ordering::Equal) => 0,
                _ => 1,
            })
        })?,
    )?;
    t.set(
        "round",
        lua.create_function(|_, (a, to, pad): (AnyUserData, f64, bool)| {
            let to = to.clamp(-1.0, 1000.0) as i32;
            Ok(round(get(&a)?, to, pad).map(LuaDecimal))
        })?,
    )?;
    t.set(
        "scale",
        lua.create_function(|_, a: AnyUserData| Ok(scale(&get(&a)?)))?,
    )?;
    t.set(
        "precision",
        lua.create_function(|_, a: AnyUserData| Ok(precision(&get(&a)?)))?,
    )?;
    Ok(t)
}

/// Builds the module at once, so that decimals decoded from MessagePack get their
/// arithmetic even where no script required `decimal`, and registers it for `require`.
/// The Lua half returns the module and the metamethods, set here on the metatable all
/// decimal userdata share.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let (module, metamethods): (Table, Table) = lua
        .load(include_str!("decimal.lua"))
        .set_name("@builtin/decimal.lua")
        .call(raw(lua)?)?;
    let meta = lua.create_userdata(LuaDecimal(Dec::zero()))?.metatable()?;
    for pair in metamethods.pairs::<String, Value>() {
        let (name, f) = pair?;
        meta.set(name, f)?;
    }
    let preload: Table = lua.globals().get::<Table>("package")?.get("preload")?;
    preload.set(
        "decimal",
        lua.create_function(move |_, ()| Ok(module.clone()))?,
    )
}

/// The MessagePack extension payload of `d`: scale (a MessagePack integer), then BCD digits
/// with the sign in the last nibble (`0x0c` plus, `0x0d` minus).
pub fn ext_payload(d: &Dec) -> Vec<u8> {
    let mut out = Vec::new();
    let scale = -i64::from(d.exponent());
    if scale >= 0 {
        spindle_proto::mp::write_uint(&mut out, scale as u64);
    } else {
        spindle_proto::mp::write_int(&mut out, scale);
    }
    let mut nibbles = d.coefficient_digits();
    nibbles.push(if d.is_negative() { 0x0d } else { 0x0c });
    if nibbles.len() % 2 == 1 {
        nibbles.insert(0, 0);
    }
    for pair in nibbles.chunks(2) {
        let hi = pair.first().copied().unwrap_or(0);
        let lo = pair.get(1).copied().unwrap_or(0);
        out.push((hi << 4) | lo);
    }
    out
}

/// A decimal from its MessagePack extension payload; `None` for a malformed one or a scale
/// outside -37..=38 (which Tarantool refuses too).
pub fn from_ext(mut data: &[u8]) -> Option<Dec> {
    let scale = match spindle_proto::mp::read_value(&mut data).ok()? {
        spindle_proto::mp::Value::Uint(u) => i64::try_from(u).ok()?,
        spindle_proto::mp::Value::Int(i) => i,
        _ => return None,
    };
    let limit = MAX_DIGITS as i64;
    if scale > limit || scale <= -limit {
        return None;
    }
    let (&last, body) = data.split_last()?;
    let sign = last & 0x0f;
    let mut digits = String::with_capacity(data.len() * 2 + 12);
    if sign == 0x0b || sign == 0x0d {
        digits.push('-');
    } else if sign < 0x0a {
        return None;
    }
    for n in body
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0f])
        .chain([last >> 4])
    {
        if n > 9 {
            return None;
        }
        digits.push(char::from(b'0' + n));
    }
    digits.push_str(&format!("E{}", -scale));
    // Parsed without rounding: the payload keeps every digit it carries.
    let mut ctx = Context::<Dec>::default();
    let d = ctx.parse(digits).ok()?;
    let s = ctx.status();
    (d.is_finite() && !s.inexact() && !s.conversion_syntax()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dec {
        parse_text(s).unwrap_or_else(Dec::nan)
    }

    #[test]
    fn ext_payload_matches_tarantool() {
        assert_eq!(ext_payload(&d("1.10")), [0x02, 0x11, 0x0c]);
        assert_eq!(ext_payload(&d("-12.345")), [0x03, 0x12, 0x34, 0x5d]);
        assert_eq!(ext_payload(&d("-0")), [0x00, 0x0d]);
        assert_eq!(ext_payload(&d("1e37")), [0xd0, 0xdb, 0x1c]);
        for s in [
            "1.10",
            "-12.345",
            "0",
            "123456789.000001",
            "-7",
            "1e37",
            "-1e-38",
        ] {
            let back = from_ext(&ext_payload(&d(s))).map(|x| text(&x));
            assert_eq!(back, Some(text(&d(s))), "{s}");
        }
    }

    #[test]
    fn text_and_rounding_match_tarantool() {
        assert_eq!(text(&d("0e10")), "00000000000");
        assert_eq!(
            text(&d("1e-39")),
            "0.00000000000000000000000000000000000000"
        );
        assert_eq!(
            text(&d("0.123456789012345678901234567890123456789")),
            "0.12345678901234567890123456789012345679"
        );
        assert!(parse_text("1e38").is_none());
        assert!(parse_text(" 1").is_none());
        assert!(parse_text("inf").is_none());
        let r = |s: &str, to: i32| round(d(s), to, false).map(|x| text(&x));
        assert_eq!(r("9.99", 1).as_deref(), Some("10"));
        assert_eq!(r("0.05", 1).as_deref(), Some("0.1"));
        assert_eq!(r("-0.0001", 2).as_deref(), Some("-0.00"));
        assert_eq!(
            r("9999999999999999999999999999999999999.95", 1).as_deref(),
            Some("10000000000000000000000000000000000000")
        );
        assert!(parse_text("99999999999999999999999999999999999999.5").is_none());
        let p = |s: &str, to: i32| round(d(s), to, true).map(|x| text(&x));
        assert_eq!(p("1e5", 2).as_deref(), Some("100000.00"));
        assert_eq!(p("1", 38).as_deref(), Some("1"));
    }
}
