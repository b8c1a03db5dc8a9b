//! SASLprep (RFC 4013) of SCRAM passwords, with libpq's fallback.
//!
//! PostgreSQL normalizes a SCRAM password with SASLprep both when the secret is stored and when a client
//! authenticates. When the password is not valid UTF-8, or SASLprep rejects it (prohibited or unassigned
//! characters, bidi rules), libpq and the server both use the raw bytes instead; so must we, or such passwords
//! could never authenticate.

use std::borrow::Cow;

/// The bytes to feed PBKDF2 for `password`: its SASLprep form, or the raw bytes when it is not UTF-8 or
/// SASLprep rejects it.
pub(crate) fn prepare_password(password: &[u8]) -> Cow<'_, [u8]> {
    let Ok(s) = std::str::from_utf8(password) else {
        return Cow::Borrowed(password);
    };
    match stringprep::saslprep(s) {
        Ok(Cow::Borrowed(p)) => Cow::Borrowed(p.as_bytes()),
        Ok(Cow::Owned(p)) => Cow::Owned(p.into_bytes()),
        Err(_) => Cow::Borrowed(password),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep(s: &[u8]) -> Vec<u8> {
        prepare_password(s).into_owned()
    }

    #[test]
    fn ascii_is_unchanged() {
        assert_eq!(prep(b"pencil"), b"pencil");
        assert_eq!(prep(b"with space"), b"with space");
        assert_eq!(prep(b""), b"");
    }

    #[test]
    fn non_ascii_space_maps_to_space() {
        // RFC 4013 2.1: C.1.2 non-ASCII spaces map to SPACE.
        assert_eq!(prep("a\u{00A0}b".as_bytes()), b"a b");
        assert_eq!(prep("a\u{3000}b".as_bytes()), b"a b");
    }

    #[test]
    fn soft_hyphen_is_removed() {
        // RFC 4013 2.1: B.1 "commonly mapped to nothing".
        assert_eq!(prep("pass\u{00AD}word".as_bytes()), b"password");
    }

    #[test]
    fn nfkc_normalization() {
        assert_eq!(prep("\u{2168}".as_bytes()), b"IX"); // ROMAN NUMERAL NINE
        assert_eq!(prep("\u{FB01}x".as_bytes()), b"fix"); // LATIN SMALL LIGATURE FI
    }

    #[test]
    fn prohibited_character_uses_raw_bytes() {
        // U+E000 is private use (C.3), prohibited by SASLprep.
        let raw = "pw\u{E000}\u{00A0}".as_bytes();
        assert_eq!(prep(raw), raw);
        // An ASCII control character (C.2.1) is prohibited too.
        assert_eq!(prep(b"pw\x07"), b"pw\x07");
        // Bidi violation: RandALCat and LCat mixed.
        let raw = "\u{05D0}a\u{05D0}".as_bytes();
        assert_eq!(prep(raw), raw);
    }

    #[test]
    fn invalid_utf8_uses_raw_bytes() {
        let raw = b"pw\xff\xfe\xc3";
        assert_eq!(prep(raw), raw);
    }
}
