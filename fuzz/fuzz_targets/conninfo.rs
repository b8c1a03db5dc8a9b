//! Connection strings: `key=value` conninfo and `postgres://` URIs (`Config::parse`).
//!
//! Input: the string (invalid UTF-8 is skipped).
//!
//! Invariants beyond "no panic":
//! - render ↔ parse round trip: whenever a string parses, `Config::render` of the result parses back to an
//!   equal `Config` (rendering is documented to be lossless for everything parsing can produce; a
//!   `require_auth` deny-list comes back as the allow-list allowing the same methods);
//! - Debug output never shows the password: it is what Debug shows without a password, up to the redaction
//!   marker, and does not contain the password bytes unless they occur in the other fields;
//! - parsing is deterministic (twice the same answer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgrepl::auth::AuthMethod;
use pgrepl::config::Config;
use pgrepl_fuzz::contains;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(c) = Config::parse(s) else {
        assert!(Config::parse(s).is_err());
        return;
    };
    assert_eq!(Config::parse(s).ok().as_ref(), Some(&c), "parsing is not deterministic");

    let rendered = c.render();
    match Config::parse(&rendered) {
        Ok(mut back) => {
            // documented: a require_auth deny-list is rendered as the allow-list that allows the same methods
            for m in [AuthMethod::None, AuthMethod::Password, AuthMethod::Md5, AuthMethod::ScramSha256] {
                assert_eq!(back.require_auth.allows(m), c.require_auth.allows(m), "require_auth changed: {rendered}");
            }
            back.require_auth = c.require_auth.clone();
            assert_eq!(back, c, "render -> parse changed the config; rendered: {rendered}")
        }
        Err(e) => panic!("rendered config does not parse: {e}\nrendered: {rendered}\nfrom: {s:?}"),
    }

    if let Some(pw) = &c.password {
        let mut without = c.clone();
        without.password = None;
        let dbg_without = format!("{without:?}");
        let dbg = format!("{c:?}");
        if pw.len() >= 4 && !contains(dbg_without.as_bytes(), pw) && !contains(b"Some(\"<redacted>\")", pw) {
            assert!(!contains(dbg.as_bytes(), pw), "password shown by Debug");
        }
    }
});
