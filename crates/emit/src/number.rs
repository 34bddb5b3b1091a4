//! Numbers as Tarantool's serializers print them and the strings Lua reads as numbers.
//!
//! Both serializers print doubles with `%.14g` (`encode_number_precision`); glibc's `printf`
//! is reproduced here, `nan`/`-nan`/`inf` included. The YAML emitter quotes strings that Lua
//! would convert to a number (`lua_isnumber`, LuaJIT's `lj_strscan`), so they read back as
//! strings.

/// C's `printf("%.<prec>g", x)` as glibc prints it (`-nan` for a NaN with the sign bit).
pub fn fmt_g(x: f64, prec: usize) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let p = prec.max(1);
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let sci = format!("{:.*e}", p - 1, x);
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse::<i32>().unwrap_or(0)),
        None => (sci.clone(), 0),
    };
    if exp < -4 || exp >= p as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!(
            "{}e{}{:02}",
            strip_fraction_zeros(&mantissa),
            sign,
            exp.unsigned_abs()
        )
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        strip_fraction_zeros(&format!("{:.*}", decimals, x))
    }
}

fn strip_fraction_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// `%.14g`, the serializers' `encode_number_precision`.
pub fn fmt_g14(x: f64) -> String {
    fmt_g(x, 14)
}

// ---------------------------------------------------------------------------------------
// lua_isnumber() on strings: LuaJIT's lj_strscan with STRSCAN_OPT_TONUM, validity only.

fn lj_isspace(c: u8) -> bool {
    matches!(c, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

fn casecmp(c: u8, k: u8) -> bool {
    (c | 0x20) == k
}

/// Whether Lua would convert the string to a number (`lua_isnumber`), e.g. `"1"`, `" 0x1F "`,
/// `"1e5"`, `"-inf"`, `"nan"`, `"0b101"`.
pub fn lua_isnumber(s: &[u8]) -> bool {
    // The string is NUL-terminated in Lua: reading past the end yields 0.
    let at = |i: usize| -> u8 { s.get(i).copied().unwrap_or(0) };
    let pe = s.len();
    let mut p = 0usize;
    if !at(p).is_ascii_digit() {
        while lj_isspace(at(p)) {
            p += 1;
        }
        if at(p) == b'+' || at(p) == b'-' {
            p += 1;
        }
        if at(p) >= b'A' {
            if casecmp(at(p), b'i') && casecmp(at(p + 1), b'n') && casecmp(at(p + 2), b'f') {
                p += 3;
                if casecmp(at(p), b'i')
                    && casecmp(at(p + 1), b'n')
                    && casecmp(at(p + 2), b'i')
                    && casecmp(at(p + 3), b't')
                    && casecmp(at(p + 4), b'y')
                {
                    p += 5;
                }
            } else if casecmp(at(p), b'n') && casecmp(at(p + 1), b'a') && casecmp(at(p + 2), b'n') {
                p += 3;
            }
            while lj_isspace(at(p)) {
                p += 1;
            }
            return at(p) == 0 && p >= pe;
        }
    }
    let mut base = 10;
    let mut hasdig = false;
    let mut dp: Option<usize> = None;
    if at(p) <= b'0' {
        if at(p) == b'0' {
            if casecmp(at(p + 1), b'x') {
                base = 16;
                p += 2;
            } else if casecmp(at(p + 1), b'b') {
                base = 2;
                p += 2;
            }
        }
        loop {
            match at(p) {
                b'0' => hasdig = true,
                b'.' => {
                    if dp.is_some() {
                        return false;
                    }
                    dp = Some(p);
                }
                _ => break,
            }
            p += 1;
        }
    }
    let sp = p;
    let mut dig: u32 = 0;
    loop {
        let c = at(p);
        let is_digit = if base == 16 {
            c.is_ascii_hexdigit()
        } else {
            c.is_ascii_digit()
        };
        if is_digit {
            dig += 1;
        } else if c == b'.' {
            if dp.is_some() {
                return false;
            }
            dp = Some(p);
        } else {
            break;
        }
        p += 1;
    }
    if !hasdig && dig == 0 {
        return false;
    }
    let mut ex: i64 = 0;
    if let Some(d) = dp {
        if dig > 0 {
            ex = d as i64 - (p as i64 - 1);
            let mut q = p as i64 - 1;
            while ex < 0 {
                let c = if q >= 0 { at(q as usize) } else { 0 };
                q -= 1;
                if c != b'0' {
                    break;
                }
                ex += 1;
                dig -= 1;
            }
        }
    }
    if base >= 10 && casecmp(at(p), if base == 16 { b'p' } else { b'e' }) {
        p += 1;
        if at(p) == b'+' || at(p) == b'-' {
            p += 1;
        }
        if !at(p).is_ascii_digit() {
            return false;
        }
        while at(p).is_ascii_digit() {
            p += 1;
        }
    }
    // Any suffix (i, u, l, ll, ull) needs options tonumber() does not pass.
    while lj_isspace(at(p)) {
        p += 1;
    }
    if at(p) != 0 || p < pe {
        return false;
    }
    if base == 2 {
        if ex != 0 || dig > 64 {
            return false;
        }
        return (0..dig as usize).all(|i| (at(sp + i) & !1) == b'0');
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g14_formatting() {
        assert_eq!(fmt_g14(1795242743.7442), "1795242743.7442");
        assert_eq!(fmt_g14(1e100), "1e+100");
        assert_eq!(fmt_g14(0.1), "0.1");
        assert_eq!(fmt_g14(123.456), "123.456");
        assert_eq!(fmt_g14(1.5), "1.5");
        assert_eq!(fmt_g14(0.0001), "0.0001");
        assert_eq!(fmt_g14(0.00001), "1e-05");
        assert_eq!(fmt_g14(1e15 + 0.5), "1e+15");
        assert_eq!(fmt_g14(f64::NAN), "nan");
        assert_eq!(fmt_g14(-f64::NAN), "-nan");
        assert_eq!(fmt_g14(f64::NEG_INFINITY), "-inf");
        assert_eq!(fmt_g14(0.1f32 as f64), "0.10000000149012");
    }

    #[test]
    fn strings_that_look_like_numbers() {
        for s in [
            "1", "1.5", " 12 ", "0x1F", "1e5", "-inf", "nan", "0b101", ".5", "5.", "+3", "Infinity",
        ] {
            assert!(lua_isnumber(s.as_bytes()), "{s}");
        }
        for s in [
            "", "a", "1a", "0x", "1e", "0b102", "0b1.1", "1u", "1ll", "infin", "1..2", "1\0",
        ] {
            assert!(!lua_isnumber(s.as_bytes()), "{s:?}");
        }
    }
}
