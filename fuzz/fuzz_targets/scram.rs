//! SCRAM-SHA-256(-PLUS) client messages directly: `ScramSha256::handle_server_first` / `handle_server_final`
//! against an independent oracle implementation of RFC 5802 / RFC 7677.
//!
//! Input: byte 0 = flags (bits 0-1: channel binding n / y / p; bit 2: honest server-first built from the input
//! (nonce suffix, salt, iterations) rather than raw bytes; bit 3: honest server-final (then bytes 1-2 may
//! corrupt it: position, xor); bit 4: a password from the input instead of the fixed one), then the parts.
//!
//! Invariants beyond "no panic":
//! - a server-first is accepted only if it is well formed: `r=` nonce extending ours (longer), valid base64
//!   salt, 1 ≤ i ≤ cap, nothing else; and then the client-final-message equals the oracle's byte for byte
//!   (channel-binding attribute, nonce, proof);
//! - a server-final is accepted if and only if it is exactly `v=` + base64(the oracle's server signature),
//!   and only then `is_verified()`; nothing is accepted after a failure or a second time;
//! - the password never appears in an error message or in Debug output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgrepl::auth::{ChannelBinding, ScramSha256};
use pgrepl_fuzz::{b64, contains, honest_server_first, parse_server_first, Input, ScramOracle};

const PW: &[u8] = b"pencil-fuzz-pw";
const CAP: u32 = 64;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let corrupt_pos = inp.u8();
    let corrupt_xor = inp.u8();
    let nonce: [u8; 18] = std::array::from_fn(|i| i as u8 * 13);
    let hash = vec![0x5a; 32];
    let binding = match flags & 3 {
        0 => ChannelBinding::Unsupported,
        1 => ChannelBinding::Unrequested,
        _ => ChannelBinding::TlsServerEndPoint(hash.clone()),
    };
    let (gs2, cbind_data): (&[u8], &[u8]) = match flags & 3 {
        0 => (b"n,,", b""),
        1 => (b"y,,", b""),
        _ => (b"p=tls-server-end-point,,", &hash),
    };
    let fuzzed_pw = inp.short_bytes();
    let password: &[u8] = if flags & 16 != 0 { fuzzed_pw } else { PW };
    // printable ASCII is its own SASLprep: only then can the oracle check the proof
    let oracle_ok = password.iter().all(|b| (0x21..=0x7e).contains(b));
    // only the fixed, distinctive password can be looked for in messages (a fuzzed one may be any word)
    let secret = flags & 16 == 0;

    let mut s = ScramSha256::new(password, binding, nonce).with_iteration_cap(CAP);
    let client_nonce = b64(&nonce);
    let first = s.client_first();
    assert_eq!(first, [gs2, b"n=,r=", client_nonce.as_bytes()].concat());

    let server_first = if flags & 4 != 0 {
        let suffix = inp.short_bytes();
        let salt = inp.short_bytes();
        let i = u32::from(inp.u8() % 8) + 1;
        honest_server_first(client_nonce.as_bytes(), suffix, salt, i)
    } else {
        inp.short_bytes().to_vec()
    };
    let raw_final = inp.rest();

    // (a server that echoes the password back in its own error text is not a leak)
    let echoed = pgrepl_fuzz::contains(&server_first, password) || pgrepl_fuzz::contains(raw_final, password);
    let no_leak = |what: &str| {
        if secret && !echoed {
            assert!(!contains(what.as_bytes(), password), "password leaked: {what}");
        }
    };
    no_leak(&format!("{s:?}"));

    let client_final = match s.handle_server_first(&server_first) {
        Ok(cf) => cf,
        Err(e) => {
            no_leak(&e.to_string());
            assert!(s.handle_server_final(b"v=").is_err());
            assert!(!s.is_verified());
            return;
        }
    };
    let parsed = parse_server_first(&server_first).unwrap_or_else(|| panic!("accepted {server_first:?}"));
    assert!(parsed.nonce.starts_with(client_nonce.as_bytes()) && parsed.nonce.len() > client_nonce.len());
    assert!(parsed.iterations >= 1 && parsed.iterations <= CAP);
    no_leak(&format!("{s:?}"));

    let expected_final = if oracle_ok {
        let cbind = [gs2, cbind_data].concat();
        let o = ScramOracle::new(password, &first[gs2.len()..], &server_first, &parsed, &cbind);
        assert_eq!(client_final, o.client_final(), "client-final differs from the oracle's");
        Some(o.server_final)
    } else {
        None
    };

    let server_final = match (&expected_final, flags & 8 != 0) {
        (Some(f), true) => {
            let mut f = f.clone();
            let n = f.len();
            if corrupt_xor != 0 {
                f[corrupt_pos as usize % n] ^= corrupt_xor;
            }
            f
        }
        _ => raw_final.to_vec(),
    };
    match s.handle_server_final(&server_final) {
        Ok(()) => {
            assert!(s.is_verified());
            if let Some(f) = &expected_final {
                assert_eq!(&server_final, f, "accepted a wrong server-final");
            }
            assert!(s.handle_server_final(&server_final).is_err(), "second server-final accepted");
            assert!(s.handle_server_first(&server_first).is_err(), "server-first accepted after the exchange");
        }
        Err(e) => {
            no_leak(&e.to_string());
            assert!(!s.is_verified());
            if let Some(f) = &expected_final {
                assert_ne!(&server_final, f, "refused the correct server-final: {e}");
            }
            assert!(s.handle_server_final(&server_final).is_err());
        }
    }
});
