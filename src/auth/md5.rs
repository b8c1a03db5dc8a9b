//! MD5 password authentication (`AuthenticationMD5Password`).
//!
//! The reply is `"md5" + hex(md5(hex(md5(password + user)) + salt))`, lower-case hex. MD5 is weak and is
//! deprecated by PostgreSQL; `require_auth=!md5` (or an allow-list without `md5`) refuses it.

use md5::{Digest, Md5};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Append the lower-case hex of `bytes` to `out`.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            // `nibble` < 16, so `get` always succeeds; the fallback is unreachable.
            out.push(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'));
        }
    }
}

/// The MD5 password reply: `"md5" + hex(md5(hex(md5(password + user)) + salt))`.
///
/// The result is 35 ASCII bytes without a trailing NUL (the message encoder adds it).
pub fn md5_password(user: &[u8], password: &[u8], salt: [u8; 4]) -> Vec<u8> {
    let mut inner = Md5::new();
    inner.update(password);
    inner.update(user);
    let mut inner_hex = Vec::with_capacity(32);
    push_hex(&mut inner_hex, &inner.finalize());

    let mut outer = Md5::new();
    outer.update(&inner_hex);
    outer.update(salt);
    let mut out = Vec::with_capacity(35);
    out.extend_from_slice(b"md5");
    push_hex(&mut out, &outer.finalize());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed independently with Python's hashlib:
    //   'md5' + md5(md5(p + u).hexdigest().encode() + salt).hexdigest()
    #[test]
    fn known_vectors() {
        assert_eq!(md5_password(b"postgres", b"secret", [1, 2, 3, 4]), b"md5bb41a296aab6baccb36ff243a562abff".to_vec());
        assert_eq!(
            md5_password(b"alice", "p\u{e4}ss".as_bytes(), [0xff, 0x00, 0x7f, 0x80]),
            b"md5b1862132e5cff922b3e77b46a5b2e3dc".to_vec()
        );
    }

    #[test]
    fn shape() {
        let r = md5_password(b"", b"", [0; 4]);
        assert_eq!(r.len(), 35);
        assert!(r.starts_with(b"md5"));
        assert!(!r.contains(&0));
        assert!(r[3..].iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));
    }
}
