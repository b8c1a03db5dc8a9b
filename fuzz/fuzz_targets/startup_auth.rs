//! The startup / authentication state machine (`Startup` + `Authenticator`, fixed nonce), fed arbitrary server
//! messages through the framing decoder: raw bytes, and scripted messages (SASL mechanism lists, an honest
//! SCRAM server-first/final computed by an independent oracle, corrupted finals, MD5 salts, cleartext requests,
//! AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery, errors) in an order the input chooses.
//!
//! Input: byte 0 picks `require_auth` (bits 0-2), TLS (bits 3-4) and `channel_binding` (bits 5-6); then ops.
//!
//! Invariants beyond "no panic" (shared/security.md 8-15):
//! - never Ready after a SASL exchange started unless the server's final message was exactly the signature the
//!   oracle computes for that transcript (the server proved it knows the password);
//! - every client-final-message equals the oracle's (correct channel binding, nonce and proof), and a
//!   server-first is accepted only if it is well formed (nonce extends ours, valid salt, 1 ≤ i ≤ cap);
//! - a cleartext or MD5 password is sent only if `require_auth` allows it and `channel_binding` is not
//!   `require`, and it is the right one; with `require_auth=scram-sha-256`, none is ever sent;
//! - Ready only after AuthenticationOk, and only with a method `require_auth` allows (`none` when nothing was
//!   exchanged); with `channel_binding=require`, only after a verified SCRAM-SHA-256-PLUS exchange;
//! - the password never appears in an error message.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgrepl::auth::{Authenticator, ChannelBindingMode, RequireAuth, TlsInfo};
use pgrepl::proto::backend::{Authentication, BackendMessage, Decoder};
use pgrepl::proto::startup::{Startup, StartupStatus};
use pgrepl_fuzz::{auth_frame, b64, contains, frame, honest_server_first, parse_server_first, split_frontend};
use pgrepl_fuzz::{Input, ScramOracle};

const USER: &[u8] = b"fuzzuser";
const PW: &[u8] = b"fuzz-secret-pw";
const NONCE: [u8; 18] = [7; 18];
const HASH: [u8; 32] = [0xab; 32];
const ITERATION_CAP: u32 = 64;

/// require_auth values and what each allows: [none, password, md5, scram].
const REQUIRE: [(&str, [bool; 4]); 8] = [
    ("", [true, true, true, true]),
    ("scram-sha-256", [false, false, false, true]),
    ("md5", [false, false, true, false]),
    ("password", [false, true, false, false]),
    ("none", [true, false, false, false]),
    ("!scram-sha-256", [true, true, true, false]),
    ("md5,scram-sha-256", [false, false, true, true]),
    ("!password,!md5,!none", [false, false, false, true]),
];

#[derive(Default)]
struct Seen {
    /// SASLInitialResponse sent: (mechanism, client-first-message).
    sasl: Option<(String, Vec<u8>)>,
    oracle: Option<ScramOracle>,
    verified: bool,
    password_sent: Option<&'static str>,
    auth_ok: bool,
}

fn md5_hex(parts: &[&[u8]]) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn cbind_input(client_first: &[u8], plus: bool) -> Vec<u8> {
    let end = client_first.windows(2).position(|w| w == b",,").map_or(0, |p| p + 2);
    let mut v = client_first[..end].to_vec();
    if plus {
        v.extend_from_slice(&HASH);
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let cfg = inp.u8();
    let (require_str, allows) = REQUIRE[(cfg & 7) as usize];
    let tls = match (cfg >> 3) & 3 {
        0 | 1 => None,
        2 => Some(TlsInfo { server_end_point_hash: Some(HASH.to_vec()) }),
        _ => Some(TlsInfo { server_end_point_hash: None }),
    };
    let cb = match (cfg >> 5) & 3 {
        0 => ChannelBindingMode::Disable,
        1 | 3 => ChannelBindingMode::Prefer,
        _ => ChannelBindingMode::Require,
    };
    let Ok(require) = RequireAuth::parse(require_str) else { panic!("{require_str}") };
    let auth = Authenticator::new(USER, Some(PW), require, tls, NONCE)
        .with_channel_binding(cb)
        .with_iteration_cap(ITERATION_CAP);
    let mut out = BytesMut::new();
    let Ok(mut startup) = Startup::new(auth, &[("user", "fuzzuser"), ("replication", "database")], &mut out) else {
        panic!("startup message")
    };
    let client_nonce = b64(&NONCE);

    // a server that echoes the password back in its own messages is not a leak
    let echoed = contains(data, PW);
    let mut seen = Seen::default();
    let mut decoder = Decoder::new();
    let mut wire = BytesMut::new();

    while !inp.is_empty() {
        // ---- the server's next bytes ----
        match inp.u8() % 12 {
            0 | 1 => wire.extend_from_slice(inp.short_bytes()),
            2 => {
                let m = inp.u8();
                let mut body = Vec::new();
                for (bit, name) in [(1, "SCRAM-SHA-256-PLUS"), (2, "SCRAM-SHA-256"), (4, "OAUTHBEARER")] {
                    if m & bit != 0 {
                        body.extend_from_slice(name.as_bytes());
                        body.push(0);
                    }
                }
                body.push(0);
                wire.extend_from_slice(&auth_frame(10, &body));
            }
            3 => {
                let n = inp_len(&mut inp, 32);
                let suffix = inp.bytes(n);
                let n = inp_len(&mut inp, 32);
                let salt = inp.bytes(n);
                let iterations = u32::from(inp.u8() % 8) + 1;
                let sf = honest_server_first(client_nonce.as_bytes(), suffix, salt, iterations);
                wire.extend_from_slice(&auth_frame(11, &sf));
            }
            4 | 5 => {
                let fin = match &seen.oracle {
                    Some(o) => o.server_final.clone(),
                    None => format!("v={}", b64(&[0u8; 32])).into_bytes(),
                };
                wire.extend_from_slice(&auth_frame(12, &fin));
            }
            6 => {
                let mut fin = match &seen.oracle {
                    Some(o) => o.server_final.clone(),
                    None => b"v=".to_vec(),
                };
                let pos = inp.u8() as usize;
                let x = inp.u8() | 1;
                let n = fin.len();
                if let Some(b) = fin.get_mut(pos % n) {
                    *b ^= x;
                }
                wire.extend_from_slice(&auth_frame(12, &fin));
            }
            7 => wire.extend_from_slice(&auth_frame(0, b"")),
            8 => wire.extend_from_slice(&auth_frame(3, b"")),
            9 => {
                let salt = [inp.u8(), inp.u8(), inp.u8(), inp.u8()];
                wire.extend_from_slice(&auth_frame(5, &salt));
            }
            10 => match inp.u8() % 4 {
                0 => wire.extend_from_slice(&frame(b'S', b"server_version\x0015.4\0")),
                1 => wire.extend_from_slice(&frame(b'K', &[0, 0, 0, 42, 1, 2, 3, 4])),
                2 => wire.extend_from_slice(&frame(b'Z', b"I")),
                _ => wire.extend_from_slice(&frame(b'N', b"SNOTICE\0VNOTICE\0C00000\0Mhello\0\0")),
            },
            _ => match inp.u8() % 4 {
                0 => wire.extend_from_slice(&auth_frame(11, inp.short_bytes())),
                1 => wire.extend_from_slice(&auth_frame(12, inp.short_bytes())),
                2 => wire.extend_from_slice(&auth_frame(12, b"e=invalid-proof")),
                _ => {
                    wire.extend_from_slice(&frame(b'E', b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed\0\0"))
                }
            },
        }

        // ---- the client handles every whole message ----
        loop {
            let msg = match decoder.decode(&mut wire) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    assert!(echoed || !contains(e.to_string().as_bytes(), PW));
                    return;
                }
            };
            let before = out.len();
            let req = match &msg {
                BackendMessage::Authentication(a) => Some(a.clone()),
                _ => None,
            };
            let res = startup.handle(msg, &mut out);
            let status = match res {
                Ok(s) => s,
                Err(e) => {
                    assert!(echoed || !contains(e.to_string().as_bytes(), PW), "password in an error: {e}");
                    assert!(echoed || !contains(format!("{e:?}").as_bytes(), PW), "password in an error: {e:?}");
                    return;
                }
            };
            let sent = split_frontend(&out[before..]).unwrap_or_else(|| panic!("malformed frontend bytes"));
            assert!(sent.len() <= 1);
            let reply = sent.first().map(|(t, b)| {
                assert_eq!(*t, b'p');
                b.clone()
            });
            match (req, reply) {
                (Some(Authentication::CleartextPassword), Some(r)) => {
                    assert!(allows[1] && cb != ChannelBindingMode::Require, "cleartext password sent ({require_str})");
                    assert_eq!(r, [PW, b"\0"].concat());
                    seen.password_sent = Some("password");
                }
                (Some(Authentication::Md5Password { salt }), Some(r)) => {
                    assert!(allows[2] && cb != ChannelBindingMode::Require, "MD5 password sent ({require_str})");
                    let inner = md5_hex(&[PW, USER]);
                    let outer = md5_hex(&[inner.as_bytes(), &salt]);
                    assert_eq!(r, format!("md5{outer}\0").into_bytes());
                    seen.password_sent = Some("md5");
                }
                (Some(Authentication::Sasl(_)), Some(r)) => {
                    assert!(allows[3], "SCRAM started although require_auth={require_str}");
                    let nul = r.iter().position(|&b| b == 0).unwrap_or_else(|| panic!("no mechanism"));
                    let mech = String::from_utf8(r[..nul].to_vec()).unwrap_or_default();
                    let len = i32::from_be_bytes(r[nul + 1..nul + 5].try_into().unwrap_or_default());
                    let first = r[nul + 5..].to_vec();
                    assert_eq!(len as usize, first.len());
                    let plus = mech == "SCRAM-SHA-256-PLUS";
                    let gs2: &[u8] = match (&tls_hash(cfg), cb, plus) {
                        (_, _, true) => b"p=tls-server-end-point,,",
                        (Some(_), ChannelBindingMode::Prefer, false) => b"y,,",
                        _ => b"n,,",
                    };
                    if cb == ChannelBindingMode::Require {
                        assert!(plus, "channel_binding=require without -PLUS");
                    }
                    assert_eq!(first, [gs2, b"n=,r=", client_nonce.as_bytes()].concat());
                    seen.sasl = Some((mech, first));
                }
                (Some(Authentication::SaslContinue(sf)), Some(r)) => {
                    let (mech, first) =
                        seen.sasl.clone().unwrap_or_else(|| panic!("SASLContinue answered without SASL"));
                    let parsed =
                        parse_server_first(&sf).unwrap_or_else(|| panic!("accepted a malformed server-first {sf:?}"));
                    assert!(
                        parsed.nonce.starts_with(client_nonce.as_bytes()) && parsed.nonce.len() > client_nonce.len()
                    );
                    assert!(parsed.iterations <= ITERATION_CAP);
                    let bare_start = first.windows(2).position(|w| w == b",,").map_or(0, |p| p + 2);
                    let cbind = cbind_input(&first, mech == "SCRAM-SHA-256-PLUS");
                    let o = ScramOracle::new(PW, &first[bare_start..], &sf, &parsed, &cbind);
                    assert_eq!(r, o.client_final(), "wrong client-final-message");
                    seen.oracle = Some(o);
                }
                (Some(Authentication::SaslFinal(fin)), None) => {
                    let o = seen.oracle.as_ref().unwrap_or_else(|| panic!("SASLFinal accepted before server-first"));
                    assert_eq!(&fin[..], &o.server_final[..], "accepted a wrong server signature");
                    seen.verified = true;
                }
                (Some(Authentication::Ok), None) => seen.auth_ok = true,
                (req, None) => assert!(
                    !matches!(
                        req,
                        Some(
                            Authentication::Sasl(_)
                                | Authentication::SaslContinue(_)
                                | Authentication::CleartextPassword
                                | Authentication::Md5Password { .. }
                        )
                    ),
                    "request accepted without a reply: {req:?}"
                ),
                (req, Some(_)) => panic!("unexpected reply to {req:?}"),
            }
            if status == StartupStatus::Ready {
                assert!(seen.auth_ok, "Ready without AuthenticationOk");
                assert!(startup.is_ready());
                if let Some((mech, _)) = &seen.sasl {
                    assert!(seen.verified, "Ready after SASL without a verified server signature");
                    if cb == ChannelBindingMode::Require {
                        assert_eq!(mech, "SCRAM-SHA-256-PLUS");
                    }
                } else if let Some(m) = seen.password_sent {
                    assert!(cb != ChannelBindingMode::Require, "{m}");
                } else {
                    assert!(allows[0], "Ready without any exchange although require_auth={require_str}");
                    assert!(cb != ChannelBindingMode::Require);
                }
                return;
            }
        }
    }
});

/// A length for a scripted field: the next byte, capped.
fn inp_len(inp: &mut Input<'_>, cap: usize) -> usize {
    inp.u8() as usize % (cap + 1)
}

fn tls_hash(cfg: u8) -> Option<()> {
    ((cfg >> 3) & 3 >= 2).then_some(())
}
