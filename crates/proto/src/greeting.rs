//! The 128-byte greeting a server sends on accept (iproto.md §1.1): two 64-byte lines, each
//! space-padded and ending in `\n`.
//!
//! ```text
//! Tarantool 2.6.0 (Binary) 233a5d6e-aedd-4aa7-8ad3-08fed2e0afb6   ...\n
//! <base64 of the 32-byte salt>                                     ...\n
//! ```

use base64::Engine as _;
use spindle_types::iproto::{GREETING_SIZE, SALT_SIZE, SCRAMBLE_SIZE};

const LINE_SIZE: usize = GREETING_SIZE / 2;
/// Canonical textual UUID length.
const UUID_LEN: usize = 36;
/// Tarantool's decoder refuses salts of 64 bytes or more.
const SALT_DECODED_MAX: usize = 63;

/// Copies as much of `text` as fits before the line's final `\n`.
fn fill_line(line: &mut [u8], text: &[u8]) {
    let room = line.len().saturating_sub(1);
    let n = text.len().min(room);
    if let (Some(dst), Some(src)) = (line.get_mut(..n), text.get(..n)) {
        dst.copy_from_slice(src);
    }
}

/// Builds the greeting. The version should be plain `major.minor.patch`: clients pick their
/// code paths from it (see `GREETING_VERSION`). Over-long input is cut so both `\n` stay put.
pub fn encode_greeting(
    version: &str,
    instance_uuid: &str,
    salt: &[u8; SALT_SIZE],
) -> [u8; GREETING_SIZE] {
    let mut out = [b' '; GREETING_SIZE];
    let (first, second) = out.split_at_mut(LINE_SIZE);
    // "Tarantool " + version + " (Binary) " + uuid, assembled without allocating.
    let parts: [&[u8]; 4] = [
        b"Tarantool ",
        version.as_bytes(),
        b" (Binary) ",
        instance_uuid.as_bytes(),
    ];
    let mut at = 0;
    for part in parts {
        if let Some(rest) = first.get_mut(at..) {
            fill_line(rest, part);
        }
        at = (at + part.len()).min(LINE_SIZE - 1);
    }
    let mut salt_text = [0u8; 64];
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(salt, &mut salt_text)
        .unwrap_or(0);
    fill_line(second, salt_text.get(..n).unwrap_or_default());
    first[LINE_SIZE - 1] = b'\n';
    second[LINE_SIZE - 1] = b'\n';
    out
}

/// A parsed greeting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    /// `(major, minor, patch)` as announced.
    pub version: (u32, u32, u32),
    /// The word in parentheses: `Binary` for IPROTO, `Lua console` for the text console.
    pub protocol: String,
    /// Empty unless the protocol is `Binary`.
    pub instance_uuid: String,
    /// The decoded salt (32 bytes from Tarantool); empty unless the protocol is `Binary`.
    pub salt: Vec<u8>,
}

/// Parses "2.6.0" or "2.6.0-0-g47aa4e01e" (anything after the patch number is ignored).
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut numbers = text.splitn(3, '.');
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    let rest = numbers.next()?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let patch = rest.get(..digits)?.parse().ok()?;
    Some((major, minor, patch))
}

/// Parses a greeting; None if it is not one. A `Binary` greeting must carry a UUID and a salt
/// of at least 20 bytes, as Tarantool's own decoder requires.
pub fn decode_greeting(buf: &[u8; GREETING_SIZE]) -> Option<Greeting> {
    let (first, second) = buf.split_at(LINE_SIZE);
    if first.last() != Some(&b'\n') || second.last() != Some(&b'\n') {
        return None;
    }
    let line = std::str::from_utf8(first).ok()?;
    let rest = line.strip_prefix("Tarantool ")?;
    let (version, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix('(')?;
    let (protocol, rest) = rest.split_once(')')?;
    let mut greeting = Greeting {
        version: parse_version(version)?,
        protocol: protocol.to_string(),
        instance_uuid: String::new(),
        salt: Vec::new(),
    };
    if protocol == "Binary" {
        let uuid = rest.strip_prefix(' ')?.get(..UUID_LEN)?;
        greeting.instance_uuid = uuid.to_string();
        greeting.salt = decode_salt(second)?;
    }
    Some(greeting)
}

fn decode_salt(line: &[u8]) -> Option<Vec<u8>> {
    let text = line.split(|&b| b == b' ' || b == b'\n').next()?;
    let salt = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    (SCRAMBLE_SIZE..=SALT_DECODED_MAX)
        .contains(&salt.len())
        .then_some(salt)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "233a5d6e-aedd-4aa7-8ad3-08fed2e0afb6";

    #[test]
    fn matches_captured_layout() {
        let salt = base64::engine::general_purpose::STANDARD
            .decode("Qy7Ape9ocn0DV6QLKAXETH3Z6QiRWh5bM5pCRuDDF1M=")
            .unwrap();
        let salt: [u8; 32] = salt.try_into().unwrap();
        let g = encode_greeting("2.6.0", UUID, &salt);
        let expected = format!(
            "{:<63}\n{:<63}\n",
            format!("Tarantool 2.6.0 (Binary) {UUID}"),
            "Qy7Ape9ocn0DV6QLKAXETH3Z6QiRWh5bM5pCRuDDF1M="
        );
        assert_eq!(&g[..], expected.as_bytes());
        let parsed = decode_greeting(&g).unwrap();
        assert_eq!(parsed.version, (2, 6, 0));
        assert_eq!(parsed.protocol, "Binary");
        assert_eq!(parsed.instance_uuid, UUID);
        assert_eq!(parsed.salt, salt);
    }

    #[test]
    fn overlong_fields_keep_the_newlines() {
        let long = "x".repeat(200);
        let g = encode_greeting(&long, &long, &[0; 32]);
        assert_eq!(g[63], b'\n');
        assert_eq!(g[127], b'\n');
        assert!(decode_greeting(&g).is_none());
    }

    #[test]
    fn console_greeting_and_garbage() {
        let text = format!(
            "{:<63}\n{:<63}\n",
            "Tarantool 2.6.0 (Lua console)", "type 'help' for interactive help"
        );
        let buf: [u8; 128] = text.as_bytes().try_into().unwrap();
        let g = decode_greeting(&buf).unwrap();
        assert_eq!(g.protocol, "Lua console");
        assert!(g.salt.is_empty());
        assert!(decode_greeting(&[0u8; 128]).is_none());
        assert!(decode_greeting(&[b'\n'; 128]).is_none());
        assert_eq!(parse_version("2.6.0-0-g47aa4e01e"), Some((2, 6, 0)));
        assert_eq!(parse_version("2.6"), None);
        let newer = format!(
            "{:<63}\n{:<63}\n",
            format!("Tarantool 2.11.12 (Binary) {UUID}"),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        );
        let g = decode_greeting(newer.as_bytes().try_into().unwrap()).unwrap();
        assert_eq!(g.version, (2, 11, 12));
        assert_eq!(g.salt.len(), 21);
        let short_salt = format!(
            "{:<63}\n{:<63}\n",
            format!("Tarantool 2.6.0 (Binary) {UUID}"),
            "AAAA"
        );
        assert!(decode_greeting(short_salt.as_bytes().try_into().unwrap()).is_none());
    }
}
