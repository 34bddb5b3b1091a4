//! chap-sha1, the only authentication mechanism of Tarantool 2.6 (iproto.md §5.1).
//!
//! ```text
//! hash1    = SHA1(password)
//! hash2    = SHA1(hash1)                 (what `_user` stores, base64-encoded)
//! scramble = hash1 XOR SHA1(salt20 || hash2)
//! ```
//! The server never sees `hash1` directly: it recovers it from the scramble and its stored
//! `hash2`, then checks `SHA1(hash1) == hash2`.

use base64::Engine as _;
use sha1::{Digest, Sha1};
use spindle_types::iproto::SCRAMBLE_SIZE;

/// A SHA-1 digest; chap-sha1 uses nothing else.
pub type Hash = [u8; SCRAMBLE_SIZE];

/// The mechanism name clients put first in the AUTH tuple.
pub const CHAP_SHA1: &str = "chap-sha1";

fn sha1(parts: &[&[u8]]) -> Hash {
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Only the first 20 bytes of the 32-byte greeting salt take part in chap-sha1.
fn salt20(salt: &[u8]) -> &[u8] {
    salt.get(..SCRAMBLE_SIZE).unwrap_or(salt)
}

fn xor(a: &Hash, b: &Hash) -> Hash {
    let mut out = [0u8; SCRAMBLE_SIZE];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

/// The client's answer to `salt` for `password`.
pub fn scramble(salt: &[u8], password: &str) -> Hash {
    let hash1 = sha1(&[password.as_bytes()]);
    let hash2 = sha1(&[&hash1]);
    let mask = sha1(&[salt20(salt), &hash2]);
    xor(&hash1, &mask)
}

/// `SHA1(SHA1(password))`: the per-user secret the server keeps.
pub fn hash2(password: &str) -> Hash {
    sha1(&[&sha1(&[password.as_bytes()])])
}

/// `hash2` as `_user` stores it: `{"chap-sha1": <this>}`.
pub fn hash2_base64(password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(hash2(password))
}

/// Parses the stored `chap-sha1` value of a `_user` tuple; None unless it is 20 bytes of base64.
pub fn decode_hash2_base64(stored: &str) -> Option<Hash> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(stored)
        .ok()?;
    Hash::try_from(bytes.as_slice()).ok()
}

/// True if `scramble` proves knowledge of the password whose `hash2` is stored.
/// The final comparison does not stop at the first differing byte.
pub fn check_scramble(salt: &[u8], scramble: &[u8], stored_hash2: &Hash) -> bool {
    let Ok(scramble) = Hash::try_from(scramble) else {
        return false;
    };
    let mask = sha1(&[salt20(salt), stored_hash2]);
    let candidate_hash1 = xor(&scramble, &mask);
    let candidate_hash2 = sha1(&[&candidate_hash1]);
    candidate_hash2
        .iter()
        .zip(stored_hash2)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash2_matches_tarantool_vectors() {
        assert_eq!(hash2_base64("secret"), "FOZVZ6vbUTXQz9mnCzAywXmknuc=");
        assert_eq!(hash2_base64(""), "vhvewKp0tNyweZQ+cFKAlsyphfg=");
        assert_eq!(
            decode_hash2_base64("FOZVZ6vbUTXQz9mnCzAywXmknuc="),
            Some(hash2("secret"))
        );
        assert_eq!(decode_hash2_base64("AAAA"), None);
        assert_eq!(decode_hash2_base64("not base64!"), None);
    }

    #[test]
    fn scramble_verifies_only_with_the_right_password_and_salt() {
        let salt: Vec<u8> = (0..32).collect();
        let stored = hash2("pw");
        let s = scramble(&salt, "pw");
        assert!(check_scramble(&salt, &s, &stored));
        assert!(!check_scramble(&salt, &scramble(&salt, "pW"), &stored));
        let mut other_salt = salt.clone();
        other_salt[3] ^= 1;
        assert!(!check_scramble(&other_salt, &s, &stored));
        // Bytes 20..32 of the salt are not used.
        other_salt = salt.clone();
        other_salt[25] ^= 1;
        assert!(check_scramble(&other_salt, &s, &stored));
        assert!(!check_scramble(&salt, &s[..19], &stored));
    }

    #[test]
    fn empty_password_scramble_matches_guest_hash() {
        let salt = [7u8; 32];
        let stored = decode_hash2_base64("vhvewKp0tNyweZQ+cFKAlsyphfg=");
        assert!(stored.is_some_and(|h| check_scramble(&salt, &scramble(&salt, ""), &h)));
    }
}
