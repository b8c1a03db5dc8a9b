//! The client against a scripted in-process server that plays hostile or broken bytes (security.md 1-10, 13).
//!
//! Every case must end in a typed error, quickly, in little memory, never a hang and never a panic; cases that
//! refuse to authenticate also prove, from the bytes the client sent, that no password went out.
// Test code: a failed unwrap, expect, index or panic is a failed test; the library's no-panic policy
// (Cargo.toml [workspace.lints.clippy]) is lifted for the whole test crate, its helpers included.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod common;

use std::time::{Duration, Instant};

use pgrepl::client::Client;
use pgrepl::stream::StreamConfig;
use pgrepl::{ErrorKind, Lsn};

use common::scram;
use common::*;

/// Counts heap allocations so that the memory test can prove no claimed length is ever allocated (RSS alone
/// would not show an untouched `reserve(1 GiB)`).
mod tracking {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct Tracking;
    /// The largest single allocation (or reallocation) requested so far.
    pub static LARGEST: AtomicUsize = AtomicUsize::new(0);
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    /// The most heap bytes live at once.
    pub static PEAK: AtomicUsize = AtomicUsize::new(0);

    fn grew(size: usize) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(live, Ordering::Relaxed);
    }

    // SAFETY: every call is forwarded to `System` unchanged; only counters are updated.
    unsafe impl GlobalAlloc for Tracking {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                grew(layout.size());
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                grew(layout.size());
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
                grew(new_size);
            }
            p
        }
    }
}

#[global_allocator]
static ALLOCATOR: tracking::Tracking = tracking::Tracking;

/// Every case must fail within this: well under `PEER_LIMIT` (15 s, tests/common), when a fake server gives up
/// on a silent client, so a client that waits for the server instead of failing by itself is caught, while a
/// correct one (milliseconds) passes on any machine under any load. (It was 3 s: a bound on machine speed.)
const FAST: Duration = Duration::from_secs(10);

/// Run `script` as the server, connect with `extra` conninfo, and return the error and every byte the client sent.
async fn run_case<F, Fut>(extra: &str, script: F) -> (pgrepl::Error, Vec<u8>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let server = FakeServer::start(script).await;
    let e = connect_err(server.port, extra, FAST).await;
    let recorded = server.finish().await;
    (e, recorded)
}

/// The server plays `bytes` after the startup packet, then waits for the client to hang up.
async fn play(bytes: Vec<u8>) -> (pgrepl::Error, Vec<u8>) {
    run_case("", move |mut p| async move {
        p.send(&bytes).await;
        p.drain().await;
    })
    .await
}

fn assert_kind(e: &pgrepl::Error, kind: ErrorKind, needles: &[&str]) {
    assert_eq!(e.kind(), kind, "wrong kind for: {e}");
    let text = e.to_string();
    for n in needles {
        assert!(text.contains(n), "{n:?} not in {text:?}");
    }
}

/// The client sent no PasswordMessage / SASL message at all, and the password's bytes never appear.
fn assert_no_password_sent(recorded: &[u8]) {
    let msgs = client_messages(recorded);
    assert!(msgs.iter().all(|(t, _)| *t != b'p'), "the client answered an authentication request: {msgs:?}");
    assert!(!contains(recorded, FAKE_PASSWORD.as_bytes()), "the password went out: {recorded:?}");
}

// ---- the startup packet ----

#[tokio::test]
async fn startup_packet_is_protocol_3_with_our_parameters() {
    let (e, rec) = play(fields(b'E', &[(b'S', "FATAL"), (b'V', "FATAL"), (b'C', "28000"), (b'M', "go away")])).await;
    assert_kind(&e, ErrorKind::AuthFailed, &["go away"]);
    let startup = {
        let len = u32::from_be_bytes([rec[0], rec[1], rec[2], rec[3]]) as usize;
        rec[8..len].to_vec()
    };
    let params: Vec<&[u8]> = startup.split(|&b| b == 0).collect();
    assert!(params.windows(2).any(|w| w == [&b"user"[..], b"u"]), "{params:?}");
    assert!(params.windows(2).any(|w| w == [&b"database"[..], b"d"]), "{params:?}");
    assert!(startup.ends_with(b"\0\0"), "startup packet must end with an empty name: {startup:?}");
    // an ErrorResponse during startup keeps its fields
    let db = e.as_db().expect("DbError");
    assert_eq!((db.severity.as_str(), db.code.as_str(), db.message.as_str()), ("FATAL", "28000", "go away"));
    assert_eq!(e.code(), Some("28000"));
    assert_no_password_sent(&rec);
}

// ---- framing (security.md 1-3) ----

#[tokio::test]
async fn length_below_4() {
    for tag in [b'R', b'S', b'Z', b'd', b'D'] {
        for len in [0u32, 3] {
            let (e, _) = play(header(tag, len)).await;
            assert_eq!(e.kind(), ErrorKind::Protocol, "{} len {len}: {e}", tag as char);
        }
    }
}

#[tokio::test]
async fn authentication_message_too_long_or_too_short() {
    let (e, _) = play(header(b'R', 2001)).await;
    assert_kind(&e, ErrorKind::Protocol, &["2001"]);
    let (e, _) = play(header(b'R', 0xFFFF_FFFF)).await;
    assert_kind(&e, ErrorKind::Protocol, &[]);
    // 4..7: too short to hold the request code
    for len in [4u32, 7] {
        let (e, _) = play(header(b'R', len)).await;
        assert_kind(&e, ErrorKind::Protocol, &[]);
    }
    // a well-framed AuthenticationOk with trailing bytes
    let (e, _) = play(auth(0, b"xx")).await;
    assert_kind(&e, ErrorKind::Protocol, &[]);
    // an MD5 request without its salt
    let (e, rec) = play(auth(5, b"ab")).await;
    assert_kind(&e, ErrorKind::Protocol, &[]);
    assert_no_password_sent(&rec);
}

#[tokio::test]
async fn small_type_above_30000() {
    for tag in [b'S', b'K', b'Z', b'C', b'v', b'G', b'H', b'W', b'c', b'I'] {
        let (e, _) = play(header(tag, 30001)).await;
        assert_kind(&e, ErrorKind::Protocol, &["30001"]);
    }
}

#[tokio::test]
async fn copydata_length_ffffffff() {
    let (e, _) = play(header(b'd', 0xFFFF_FFFF)).await;
    assert_kind(&e, ErrorKind::Protocol, &[]);
    let (e, _) = play(header(b'D', 0xFFFF_FFFF)).await;
    assert_kind(&e, ErrorKind::Protocol, &[]);
}

#[tokio::test]
async fn not_a_postgres_server() {
    // rsync daemon
    let (e, rec) = play(b"@RSYNCD: 31.0\n".to_vec()).await;
    assert_kind(&e, ErrorKind::Protocol, &[]);
    assert_no_password_sent(&rec);
    // an HTTP server: 'H' is CopyOutResponse, and "TTP/" is an absurd length
    let (e, _) = play(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()).await;
    assert_kind(&e, ErrorKind::Protocol, &[]);
    // SSH, SMTP banners
    let (e, _) = play(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()).await;
    assert_kind(&e, ErrorKind::Protocol, &[]);
    let (e, _) = play(b"220 mail.example.com ESMTP\r\n".to_vec()).await;
    assert_kind(&e, ErrorKind::Protocol, &[]);
}

#[tokio::test]
async fn pre_3_0_plain_text_error() {
    // What the postmaster writes when fork() fails (report_fork_failure_to_client), NUL included.
    let text = "could not fork new process for connection: Resource temporarily unavailable";
    let (e, _) = play(format!("E{text}\n\0").into_bytes()).await;
    assert_kind(&e, ErrorKind::Protocol, &[text]);
    // A pre-3.0 server's "unsupported frontend protocol": its "length" is ASCII, below 8 here.
    let (e, _) = play(b"E\0\0\0\x05".to_vec()).await;
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    let (e, _) = play(b"EFATAL:  unsupported frontend protocol 3.0: server supports 1.0 to 2.0\n\0".to_vec()).await;
    assert_kind(&e, ErrorKind::Protocol, &["unsupported frontend protocol"]);
}

#[tokio::test]
async fn unknown_message_type() {
    for tag in [b'X', b'Q', b'!', 0u8, 0xFF] {
        let (e, _) = play(msg(tag, b"")).await;
        assert_kind(&e, ErrorKind::Protocol, &["unknown"]);
    }
    // after authentication too
    let mut b = auth_ok();
    b.extend(msg(b'Y', b"abc"));
    let (e, _) = play(b).await;
    assert_kind(&e, ErrorKind::Protocol, &["unknown"]);
}

#[tokio::test]
async fn out_of_order_messages_during_startup() {
    // ReadyForQuery before authentication, CopyData during startup, BackendKeyData before AuthenticationOk
    for m in [ready(), msg(b'd', b"w"), msg(b'K', &[0, 0, 0, 1, 9, 9, 9, 9]), parameter_status("a", "b")] {
        let (e, _) = play(m).await;
        assert_kind(&e, ErrorKind::Protocol, &["unexpected"]);
    }
    // AuthenticationOk twice
    let mut b = auth_ok();
    b.extend(auth_ok());
    let (e, _) = play(b).await;
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    // NegotiateProtocolVersion naming an option we never sent
    let mut body = 0i32.to_be_bytes().to_vec();
    body.extend(1i32.to_be_bytes());
    body.extend(cstr("_pq_.evil"));
    let (e, _) = play(msg(b'v', &body)).await;
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    // ... or claiming 2^31-1 options in a few bytes
    let mut body = 0i32.to_be_bytes().to_vec();
    body.extend(i32::MAX.to_be_bytes());
    let (e, _) = play(msg(b'v', &body)).await;
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
}

#[tokio::test]
async fn truncated_strings() {
    // ErrorResponse whose last field has no terminator, and one without the final empty field
    let (e, _) = play(msg(b'E', b"SFATAL\0C28000\0Mno terminator")).await;
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    let (e, _) = play(msg(b'E', b"SFATAL\0C28000\0Mmissing end\0")).await;
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    // NoticeResponse likewise
    let (e, _) = play(msg(b'N', b"SNOTICE\0Mhalf")).await;
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    // ParameterStatus with the value unterminated, and with only a name
    for body in [&b"server_version\x0015.4"[..], b"server_version\0", b"server_version"] {
        let mut b = auth_ok();
        b.extend(msg(b'S', body));
        let (e, _) = play(b).await;
        assert_eq!(e.kind(), ErrorKind::Protocol, "{body:?}: {e}");
    }
    // SASL mechanism list without its terminator
    let (e, rec) = play(auth(10, b"SCRAM-SHA-256\0")).await;
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    assert_no_password_sent(&rec);
}

#[tokio::test]
async fn server_closes_mid_message() {
    for bytes in [b"".to_vec(), b"R".to_vec(), b"R\0\0".to_vec(), auth(0, b"")[..7].to_vec(), {
        let mut v = auth_ok();
        v.extend(&parameter_status("server_version", "15.4")[..10]);
        v
    }] {
        let (e, _) = run_case("", move |mut p| async move {
            p.send(&bytes).await;
            // dropping the peer closes the connection
        })
        .await;
        assert!(matches!(e.kind(), ErrorKind::Closed | ErrorKind::Io), "{e}");
    }
}

#[tokio::test]
async fn server_hangs_after_startup_until_connect_timeout() {
    for bytes in [vec![], auth_ok(), b"R\0\0\0".to_vec()] {
        let server = FakeServer::start(move |mut p| async move {
            p.send(&bytes).await;
            p.hang().await;
        })
        .await;
        let t = Instant::now();
        // (the upper bound is FAST, below PEER_LIMIT: a connect_timeout that never fires ends only there)
        let e = connect_err(server.port, "connect_timeout=2", FAST).await;
        let elapsed = t.elapsed();
        assert_kind(&e, ErrorKind::Timeout, &[]);
        assert!(elapsed >= Duration::from_millis(1900), "timed out early: {elapsed:?}");
        server.finish().await;
    }
}

#[tokio::test]
async fn error_response_during_startup_is_typed_db() {
    let (e, rec) = play(fields(
        b'E',
        &[
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', "53300"),
            (b'M', "sorry, too many clients already"),
            (b'D', "some detail"),
            (b'H', "some hint"),
            (b'R', "ProcessStartupPacket"),
        ],
    ))
    .await;
    assert_eq!(e.kind(), ErrorKind::Db);
    assert_eq!(e.code(), Some("53300"));
    let db = e.as_db().unwrap();
    assert_eq!(db.severity, "FATAL");
    assert_eq!(db.message, "sorry, too many clients already");
    assert_eq!(db.detail.as_deref(), Some("some detail"));
    assert_eq!(db.hint.as_deref(), Some("some hint"));
    assert_no_password_sent(&rec);
}

#[tokio::test]
async fn notice_during_startup_reaches_the_handler() {
    let server = FakeServer::start(|mut p| async move {
        let mut b =
            fields(b'N', &[(b'S', "WARNING"), (b'V', "WARNING"), (b'C', "01000"), (b'M', "hello from startup")]);
        b.extend(auth_ok());
        b.extend(after_auth_ok());
        p.send(&b).await;
        p.expect(b'X').await; // Terminate
        p.drain().await;
    })
    .await;
    let (handler, seen) = notice_collector();
    let client = Client::connect_with_notices(&fake_config(server.port, ""), handler).await.unwrap();
    assert_eq!(client.session().parameter("server_version"), Some("15.4"));
    client.close().await.unwrap();
    server.finish().await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].message, "hello from startup");
}

// ---- authentication requests and require_auth (security.md 10, 13) ----

#[tokio::test]
async fn unsupported_methods_are_typed_auth_errors() {
    for (code, name) in [(7, "GSSAPI"), (9, "SSPI"), (2, "Kerberos"), (6, "SCM")] {
        let (e, rec) = play(auth(code, b"")).await;
        assert_kind(&e, ErrorKind::Auth, &[name]);
        assert_no_password_sent(&rec);
    }
    // an unknown request code
    let (e, rec) = play(auth(99, b"")).await;
    assert!(matches!(e.kind(), ErrorKind::Auth | ErrorKind::Protocol), "{e}");
    assert_no_password_sent(&rec);
}

#[tokio::test]
async fn require_scram_refuses_cleartext_before_sending_the_password() {
    // control: without require_auth the password does go out in cleartext
    let (_, rec) = run_case("", |mut p| async move {
        p.send(&auth(3, b"")).await;
        p.expect(b'p').await;
        // then hang up
    })
    .await;
    let msgs = client_messages(&rec);
    assert_eq!(msgs.first().map(|m| m.0), Some(b'p'), "{msgs:?}");
    assert_eq!(msgs[0].1, cstr(FAKE_PASSWORD));

    let (e, rec) = run_case("require_auth=scram-sha-256", |mut p| async move {
        p.send(&auth(3, b"")).await;
        p.drain().await;
    })
    .await;
    assert_kind(&e, ErrorKind::Auth, &["password", "require_auth"]);
    assert_no_password_sent(&rec);
}

#[tokio::test]
async fn require_scram_refuses_md5_before_sending_anything() {
    // control: without require_auth the client answers with the right MD5 hash
    let (_, rec) = run_case("", |mut p| async move {
        p.send(&auth(5, &[1, 2, 3, 4])).await;
        p.expect(b'p').await;
    })
    .await;
    let msgs = client_messages(&rec);
    assert_eq!(msgs.first().map(|m| m.0), Some(b'p'), "{msgs:?}");
    assert_eq!(msgs[0].1, cstr(&md5_password("u", FAKE_PASSWORD, [1, 2, 3, 4])));

    for require in ["require_auth=scram-sha-256", "require_auth=!md5", "require_auth=password", "require_auth=none"] {
        let (e, rec) = run_case(require, |mut p| async move {
            p.send(&auth(5, &[1, 2, 3, 4])).await;
            p.drain().await;
        })
        .await;
        assert_kind(&e, ErrorKind::Auth, &["md5"]);
        assert_no_password_sent(&rec);
    }
}

#[tokio::test]
async fn require_scram_refuses_authentication_ok_without_exchange() {
    for require in ["require_auth=scram-sha-256", "require_auth=md5", "require_auth=password,md5", "require_auth=!none"]
    {
        let (e, rec) = run_case(require, |mut p| async move {
            let mut b = auth_ok();
            b.extend(after_auth_ok());
            p.send(&b).await;
            p.drain().await;
        })
        .await;
        assert_kind(&e, ErrorKind::Auth, &[]);
        assert_no_password_sent(&rec);
    }
}

#[tokio::test]
async fn require_none_refuses_sasl() {
    let (e, rec) = run_case("require_auth=none", |mut p| async move {
        p.send(&auth_sasl(&["SCRAM-SHA-256"])).await;
        p.drain().await;
    })
    .await;
    assert_kind(&e, ErrorKind::Auth, &["scram-sha-256"]);
    assert_no_password_sent(&rec);
}

#[tokio::test]
async fn md5_exchange_then_ok_connects() {
    let server = FakeServer::start(|mut p| async move {
        p.send(&auth(5, &[9, 8, 7, 6])).await;
        let body = p.expect(b'p').await;
        assert_eq!(body, cstr(&md5_password("u", FAKE_PASSWORD, [9, 8, 7, 6])));
        let mut b = auth_ok();
        b.extend(after_auth_ok());
        p.send(&b).await;
        p.drain().await;
    })
    .await;
    let c = Client::connect(&fake_config(server.port, "require_auth=md5")).await.unwrap();
    c.close().await.unwrap();
    server.finish().await;
}

#[tokio::test]
async fn plus_only_offered_without_tls() {
    for mechs in [&["SCRAM-SHA-256-PLUS"][..], &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]] {
        let (e, rec) = run_case("", move |mut p| async move {
            p.send(&auth_sasl(mechs)).await;
            p.drain().await;
        })
        .await;
        assert_kind(&e, ErrorKind::Auth, &["PLUS"]);
        assert_no_password_sent(&rec);
    }
    // no mechanism we know
    let (e, rec) = run_case("", |mut p| async move {
        p.send(&auth_sasl(&["SCRAM-SHA-1", "OAUTHBEARER"])).await;
        p.drain().await;
    })
    .await;
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert_no_password_sent(&rec);
}

// ---- SCRAM (security.md 7-10) ----

/// A correct exchange: the fake server checks the client's proof; the client checks the server's signature.
#[tokio::test]
async fn scram_exchange_against_independent_server_side() {
    let server = FakeServer::start(|mut p| async move {
        let mut x = scram::begin(&mut p).await;
        x.run_to_final(&mut p, FAKE_PASSWORD).await;
        let mut b = sasl_final(x.server_final.clone().unwrap().as_bytes());
        b.extend(auth_ok());
        b.extend(after_auth_ok());
        p.send(&b).await;
        p.drain().await;
    })
    .await;
    let c = Client::connect(&fake_config(server.port, "require_auth=scram-sha-256")).await.unwrap();
    c.close().await.unwrap();
    let rec = server.finish().await;
    assert!(!contains(&rec, FAKE_PASSWORD.as_bytes()));
}

/// Offer SCRAM, read client-first, send the server-first built from the client nonce, then wait.
async fn scram_server_first(server_first: fn(&str) -> String) -> (pgrepl::Error, Vec<u8>) {
    run_case("", move |mut p| async move {
        let x = scram::begin(&mut p).await;
        p.send(&sasl_continue(server_first(&x.client_nonce).as_bytes())).await;
        p.drain().await;
    })
    .await
}

/// After a bad server-first the client must not answer (no SASLResponse, no proof).
fn assert_no_client_final(rec: &[u8]) {
    let msgs = client_messages(rec);
    let p: Vec<_> = msgs.iter().filter(|(t, _)| *t == b'p').collect();
    assert_eq!(p.len(), 1, "only the SASLInitialResponse may go out: {msgs:?}");
}

const SALT_B64: &str = "cGdyZXBsLXRlc3Qtc2FsdA==";

#[tokio::test]
async fn scram_nonce_not_extending_ours() {
    let (e, rec) = scram_server_first(|_| format!("r=AAAAAAAAAAAAAAAAAAAAAAAAserver,s={SALT_B64},i=4096")).await;
    assert_kind(&e, ErrorKind::Protocol, &["nonce"]);
    assert_no_client_final(&rec);
    // a prefix of ours
    let (e, _) = scram_server_first(|n| format!("r={},s={SALT_B64},i=4096", &n[..10])).await;
    assert_kind(&e, ErrorKind::Protocol, &["nonce"]);
}

#[tokio::test]
async fn scram_nonce_equal_to_ours() {
    let (e, rec) = scram_server_first(|n| format!("r={n},s={SALT_B64},i=4096")).await;
    assert_kind(&e, ErrorKind::Protocol, &["nonce"]);
    assert_no_client_final(&rec);
}

#[tokio::test]
async fn scram_bad_salt() {
    for f in [
        (|n: &str| format!("r={n}x,s=!!notbase64!!,i=4096")) as fn(&str) -> String,
        |n| format!("r={n}x,s=,i=4096"),
        |n| format!("r={n}x,s=abc,i=4096"),
    ] {
        let (e, rec) = scram_server_first(f).await;
        assert_kind(&e, ErrorKind::Protocol, &["salt"]);
        assert_no_client_final(&rec);
    }
}

#[tokio::test]
async fn scram_bad_iteration_counts() {
    let (e, rec) = scram_server_first(|n| format!("r={n}x,s={SALT_B64},i=0")).await;
    assert_kind(&e, ErrorKind::Protocol, &["iteration"]);
    assert_no_client_final(&rec);
    for f in [
        (|n: &str| format!("r={n}x,s={SALT_B64},i=-1")) as fn(&str) -> String,
        |n| format!("r={n}x,s={SALT_B64},i="),
        |n| format!("r={n}x,s={SALT_B64},i=4096x"),
        |n| format!("r={n}x,s={SALT_B64},i= 4096"),
    ] {
        let (e, rec) = scram_server_first(f).await;
        assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
        assert_no_client_final(&rec);
    }
}

#[tokio::test]
async fn scram_huge_iteration_count_is_refused_before_any_work() {
    // One above the default cap of 10,000,000, 2^32-1 (u32::MAX), and beyond u32: each must fail at once.
    for f in [
        (|n: &str| format!("r={n}x,s={SALT_B64},i=10000001")) as fn(&str) -> String,
        |n| format!("r={n}x,s={SALT_B64},i=4294967295"),
        |n| format!("r={n}x,s={SALT_B64},i=99999999999999999999999"),
    ] {
        // (any work at these counts takes minutes in a debug build: FAST tells "refused" from "computed")
        let t = Instant::now();
        let (e, rec) = scram_server_first(f).await;
        assert!(t.elapsed() < FAST, "took {:?}", t.elapsed());
        assert_kind(&e, ErrorKind::Auth, &["iteration"]);
        assert_no_client_final(&rec);
    }
}

#[tokio::test]
async fn scram_server_first_trailing_data_or_bad_order() {
    for f in [
        (|n: &str| format!("r={n}x,s={SALT_B64},i=4096,x=extra")) as fn(&str) -> String,
        |n| format!("r={n}x,s={SALT_B64},i=4096,"),
        |n| format!("s={SALT_B64},r={n}x,i=4096"),
        |n| format!("m=ext,r={n}x,s={SALT_B64},i=4096"),
        |n| format!("r={n}x,s={SALT_B64}"),
        |_| String::new(),
    ] {
        let (e, rec) = scram_server_first(f).await;
        assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
        assert_no_client_final(&rec);
    }
}

/// Run a correct exchange up to server-final, then let `finish` pick what the server sends.
async fn scram_then(finish: fn(&str) -> Vec<u8>) -> (pgrepl::Error, Vec<u8>) {
    run_case("", move |mut p| async move {
        let mut x = scram::begin(&mut p).await;
        x.run_to_final(&mut p, FAKE_PASSWORD).await;
        p.send(&finish(x.server_final.as_deref().unwrap())).await;
        p.drain().await;
    })
    .await
}

#[tokio::test]
async fn scram_wrong_server_signature() {
    let (e, _) = scram_then(|_| {
        let mut b = sasl_final(format!("v={}", scram::b64(&[7u8; 32])).as_bytes());
        b.extend(auth_ok());
        b.extend(after_auth_ok());
        b
    })
    .await;
    assert_kind(&e, ErrorKind::Auth, &["signature"]);
    // one flipped bit of the right signature
    let (e, _) = scram_then(|good| {
        let mut sig = scram::unb64(&good[2..]);
        sig[31] ^= 1;
        let mut b = sasl_final(format!("v={}", scram::b64(&sig)).as_bytes());
        b.extend(auth_ok());
        b
    })
    .await;
    assert_kind(&e, ErrorKind::Auth, &["signature"]);
    // a signature of the wrong length, not base64, trailing data
    for bad in ["v=AAAA", "v=***", "x=1"] {
        let (e, _) = run_case("", move |mut p| async move {
            let mut x = scram::begin(&mut p).await;
            x.run_to_final(&mut p, FAKE_PASSWORD).await;
            p.send(&sasl_final(bad.as_bytes())).await;
            p.drain().await;
        })
        .await;
        assert_eq!(e.kind(), ErrorKind::Protocol, "{bad}: {e}");
    }
    let (e, _) = scram_then(|good| sasl_final(format!("{good},x=1").as_bytes())).await;
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
}

#[tokio::test]
async fn scram_server_error_is_surfaced() {
    let (e, _) = scram_then(|_| sasl_final(b"e=invalid-proof")).await;
    assert_kind(&e, ErrorKind::Auth, &["invalid-proof"]);
    // the usual real-server path: ErrorResponse after a bad proof
    let (e, _) = scram_then(|_| {
        fields(b'E', &[(b'S', "FATAL"), (b'C', "28P01"), (b'M', "password authentication failed for user \"u\"")])
    })
    .await;
    assert_eq!(e.code(), Some("28P01"), "{e}");
}

#[tokio::test]
async fn scram_authentication_ok_without_final_is_refused() {
    let (e, _) = scram_then(|_| {
        let mut b = auth_ok();
        b.extend(after_auth_ok());
        b
    })
    .await;
    assert_kind(&e, ErrorKind::Auth, &["prove"]);
    // AuthenticationOk right after SASL, before any SASLContinue
    let (e, _) = run_case("", |mut p| async move {
        let _x = scram::begin(&mut p).await;
        let mut b = auth_ok();
        b.extend(after_auth_ok());
        p.send(&b).await;
        p.drain().await;
    })
    .await;
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
}

#[tokio::test]
async fn sasl_continue_or_final_without_sasl() {
    for m in [sasl_continue(b"r=abc,s=c2FsdA==,i=4096"), sasl_final(b"v=AAAA")] {
        let (e, rec) = play(m).await;
        assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
        assert_no_password_sent(&rec);
    }
}

#[tokio::test]
async fn second_sasl_request() {
    let (e, _) = run_case("", |mut p| async move {
        let _x = scram::begin(&mut p).await;
        p.send(&auth_sasl(&["SCRAM-SHA-256"])).await;
        p.drain().await;
    })
    .await;
    assert_kind(&e, ErrorKind::Protocol, &["SASL"]);
    // and a second SASL after a completed exchange
    let (e, _) = scram_then(|good| {
        let mut b = sasl_final(good.as_bytes());
        b.extend(auth_sasl(&["SCRAM-SHA-256"]));
        b
    })
    .await;
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    // a second SASLContinue after the client-final
    let (e, _) = scram_then(|_| sasl_continue(b"r=x,s=c2FsdA==,i=1")).await;
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    // a cleartext request in the middle of SCRAM
    let (e, _) = scram_then(|_| auth(3, b"")).await;
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
}

// ---- the replication phase (security.md 6) ----

/// A normal startup, then START_REPLICATION answered with CopyBothResponse and `payload` as CopyData.
async fn replication_case(payload: Vec<u8>) -> pgrepl::Error {
    let server = FakeServer::start(move |mut p| async move {
        let mut b = auth_ok();
        b.extend(after_auth_ok());
        p.send(&b).await;
        let q = p.expect(b'Q').await;
        assert_eq!(q, cstr("START_REPLICATION SLOT \"s\" LOGICAL 0/0"));
        p.send(&msg(b'W', b"\0\0\0")).await;
        p.send(&msg(b'd', &payload)).await;
        p.drain().await;
    })
    .await;
    let client = Client::connect(&fake_config(server.port, "replication=database")).await.unwrap();
    let cfg = StreamConfig { adapt_to_sender_timeout: false, ..Default::default() };
    let t = Instant::now();
    let mut stream = client.start_replication("s", &pgrepl::plugin::Wal2json, Lsn::INVALID, &[], cfg).await.unwrap();
    let r = tokio::time::timeout(FAST, stream.next()).await.expect("stream.next() hung");
    assert!(t.elapsed() < FAST);
    let e = match r {
        Ok(m) => panic!("expected an error, got {m:?}"),
        Err(e) => e,
    };
    // the stream has ended
    assert!(matches!(stream.next().await, Ok(None) | Err(_)));
    drop(stream);
    server.finish().await;
    e
}

fn xlogdata(len: usize) -> Vec<u8> {
    let mut v = vec![b'w'];
    v.resize(len, 0);
    v
}

#[tokio::test]
async fn replication_short_xlogdata() {
    for len in [1, 24] {
        let e = replication_case(xlogdata(len)).await;
        assert_kind(&e, ErrorKind::Protocol, &["XLogData"]);
    }
}

#[tokio::test]
async fn replication_unknown_copydata_tag() {
    let e = replication_case(b"zwhatever".to_vec()).await;
    assert_kind(&e, ErrorKind::Protocol, &["unknown"]);
    let e = replication_case(Vec::new()).await;
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
}

#[tokio::test]
async fn replication_keepalive_wrong_size() {
    for len in [17usize, 19] {
        let mut k = vec![b'k'];
        k.resize(len, 0);
        let e = replication_case(k).await;
        assert_kind(&e, ErrorKind::Protocol, &["keepalive"]);
    }
}

#[tokio::test]
async fn replication_well_formed_messages_pass() {
    // control for the cases above: a valid XLogData arrives as data
    let server = FakeServer::start(|mut p| async move {
        let mut b = auth_ok();
        b.extend(after_auth_ok());
        p.send(&b).await;
        p.expect(b'Q').await;
        p.send(&msg(b'W', b"\0\0\0")).await;
        let mut k = vec![b'k'];
        k.extend(0x10u64.to_be_bytes());
        k.extend(0i64.to_be_bytes());
        k.push(0);
        p.send(&msg(b'd', &k)).await;
        let mut w = vec![b'w'];
        w.extend(0x20u64.to_be_bytes());
        w.extend(0x30u64.to_be_bytes());
        w.extend(0i64.to_be_bytes());
        w.extend(b"{\"action\":\"M\"}");
        p.send(&msg(b'd', &w)).await;
        p.drain().await;
    })
    .await;
    let client = Client::connect(&fake_config(server.port, "replication=database")).await.unwrap();
    let cfg = StreamConfig { adapt_to_sender_timeout: false, ..Default::default() };
    let mut stream = client.start_replication("s", &pgrepl::plugin::Wal2json, Lsn::INVALID, &[], cfg).await.unwrap();
    let x = tokio::time::timeout(FAST, stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(x.wal_start, Lsn(0x20));
    assert_eq!(&x.data[..], b"{\"action\":\"M\"}");
    drop(stream);
    server.finish().await;
}

// ---- memory: claimed lengths are never allocated (security.md 2) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_claimed_lengths_stay_small() {
    // Startup phase: headers claiming up to the 1 GiB cap (accepted as lengths) followed by a few MB of real
    // bytes, then the server closes; and claims above every cap.
    let chunk = vec![b'x'; 4 << 20];
    for (h, extra) in [
        (header(b'd', (1 << 30) - 1), 3usize),
        (header(b'D', 1 << 30), 3),
        (header(b'T', 0x3FFF_FFFF), 1),
        (header(b'E', 0x7FFF_FFFF), 1),
        (header(b'd', 0xFFFF_FFFF), 1),
        (header(b'R', 0x4000_0000), 1),
    ] {
        let chunk = chunk.clone();
        let server = FakeServer::start(move |mut p| async move {
            p.send(&h).await;
            for _ in 0..extra {
                p.send(&chunk).await;
            }
        })
        .await;
        let e = connect_err(server.port, "", FAST).await;
        assert!(matches!(e.kind(), ErrorKind::Closed | ErrorKind::Io | ErrorKind::Protocol), "{e}");
        server.finish().await;
    }

    // Replication phase: CopyData claiming just under 1 GiB, 12 MB of it arrive, then the server closes.
    let server = FakeServer::start(move |mut p| async move {
        let mut b = auth_ok();
        b.extend(after_auth_ok());
        p.send(&b).await;
        p.expect(b'Q').await;
        p.send(&msg(b'W', b"\0\0\0")).await;
        p.send(&header(b'd', (1 << 30) - 1)).await;
        p.send(b"w").await;
        for _ in 0..3 {
            p.send(&chunk).await;
        }
    })
    .await;
    let client = Client::connect(&fake_config(server.port, "")).await.unwrap();
    let cfg = StreamConfig { adapt_to_sender_timeout: false, ..Default::default() };
    let mut stream = client.start_replication("s", &pgrepl::plugin::Wal2json, Lsn::INVALID, &[], cfg).await.unwrap();
    let e = tokio::time::timeout(FAST, stream.next()).await.unwrap().expect_err("truncated CopyData");
    assert!(matches!(e.kind(), ErrorKind::Closed | ErrorKind::Io), "{e}");
    drop(stream);
    server.finish().await;

    let peak_mib = peak_rss_kib() / 1024;
    let largest_mib = tracking::LARGEST.load(std::sync::atomic::Ordering::Relaxed) >> 20;
    let heap_mib = tracking::PEAK.load(std::sync::atomic::Ordering::Relaxed) >> 20;
    eprintln!("peak RSS: {peak_mib} MiB, peak heap: {heap_mib} MiB, largest allocation: {largest_mib} MiB");
    assert!(peak_mib < 200, "peak RSS {peak_mib} MiB: a claimed length was allocated");
    assert!(heap_mib < 200, "peak heap {heap_mib} MiB: a claimed length was allocated");
    // 12 MB really arrived in one frame, so buffers of up to 32 MiB are legitimate; 1 GiB is not.
    assert!(largest_mib < 64, "an allocation of {largest_mib} MiB: a claimed length was reserved");
}

// ---- split reads, failover, and startup-phase hardening ----

/// A correct startup dribbled one byte per write: the client reassembles every frame.
#[tokio::test]
async fn dribbled_bytes_still_connect() {
    let server = FakeServer::start(|mut p| async move {
        let mut b = fields(b'N', &[(b'S', "NOTICE"), (b'C', "00000"), (b'M', "dribble")]);
        b.extend(auth(5, &[1, 1, 2, 3]));
        for byte in b {
            p.send(&[byte]).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(p.expect(b'p').await, cstr(&md5_password("u", FAKE_PASSWORD, [1, 1, 2, 3])));
        let mut b = auth_ok();
        b.extend(after_auth_ok());
        for byte in b {
            p.send(&[byte]).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        p.drain().await;
    })
    .await;
    let (handler, seen) = notice_collector();
    let c = Client::connect_with_notices(&fake_config(server.port, ""), handler).await.unwrap();
    assert_eq!(c.session().process_id, Some(12345));
    assert_eq!(seen.lock().unwrap().len(), 1);
    c.close().await.unwrap();
    server.finish().await;
}

/// Connection-level failures (closed, timeout) move on to the next host; authentication refusals do not.
#[tokio::test]
async fn next_host_only_after_connection_failures() {
    let bad = FakeServer::start(|mut p| async move { p.send(b"R\0\0").await }).await;
    let good = FakeServer::start(|mut p| async move {
        let mut b = auth_ok();
        b.extend(after_auth_ok());
        p.send(&b).await;
        p.drain().await;
    })
    .await;
    let cfg = pgrepl::config::Config::parse(&format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=u dbname=d password=secret connect_timeout=5 sslmode=disable",
        bad.port, good.port
    ))
    .unwrap();
    let c = Client::connect(&cfg).await.unwrap();
    c.close().await.unwrap();
    bad.finish().await;
    good.finish().await;

    // a require_auth refusal on the first host is final: the second host never sees a connection
    let refusing = FakeServer::start(|mut p| async move {
        p.send(&auth(3, b"")).await;
        p.drain().await;
    })
    .await;
    let untouched = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = pgrepl::config::Config::parse(&format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=u dbname=d password=secret connect_timeout=5 sslmode=disable \
         require_auth=scram-sha-256",
        refusing.port,
        untouched.local_addr().unwrap().port()
    ))
    .unwrap();
    let e = Client::connect(&cfg).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert_no_password_sent(&refusing.finish().await);
    let second = tokio::time::timeout(Duration::from_millis(200), untouched.accept()).await;
    assert!(second.is_err(), "the client went on to the second host after an authentication refusal");
}

/// The postmaster's fork-failure text may arrive in more than one read; libpq waits for its NUL terminator.
#[tokio::test]

async fn pre_3_0_error_split_across_reads_keeps_the_whole_text() {
    let text = "could not fork new process for connection: Resource temporarily unavailable";
    let (e, _) = run_case("", move |mut p| async move {
        p.send(b"Ecould").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        p.send(format!("{}\n\0", &text[5..]).as_bytes()).await;
        p.drain().await;
    })
    .await;
    assert_kind(&e, ErrorKind::Protocol, &[text]);
}

/// During startup only R/E/N/v/S/K/Z can come; libpq rejects anything else on its header. A frame of another
/// type claiming up to the 1 GiB cap should fail at once, not after the server has streamed (and the client
/// buffered) up to 1 GiB or connect_timeout fired.
#[tokio::test]

async fn startup_rejects_large_message_types_on_their_header() {
    for tag in [b'd', b'D', b'T', b'A'] {
        let (e, _) = play(header(tag, (1 << 30) - 1)).await;
        assert_eq!(e.kind(), ErrorKind::Protocol, "{}: {e}", tag as char);
    }
}

/// The iteration cap bounds the work a server can demand, but PBKDF2 at the cap (10,000,000) runs inline on the
/// runtime thread, where connect_timeout (a tokio timer) cannot interrupt it: measured ~2.5 s in release and
/// ~230 s in a debug build with connect_timeout=2, during which a current-thread runtime runs nothing else.
#[tokio::test]

async fn scram_iterations_at_the_cap_respect_connect_timeout() {
    let server = FakeServer::start(|mut p| async move {
        let x = scram::begin(&mut p).await;
        let sf = format!("r={}x,s={},i=10000000", x.client_nonce, scram::b64(scram::SALT));
        p.send(&sasl_continue(sf.as_bytes())).await;
        p.drain().await;
    })
    .await;
    // FAST, not 2 s plus a margin that machine load eats: the derivation left running would take ~230 s here
    let e = connect_err(server.port, "connect_timeout=2", FAST).await;
    assert_kind(&e, ErrorKind::Timeout, &[]);
    server.finish().await;
}

#[tokio::test]
async fn connection_refused_is_io() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = connect_err(port, "", FAST).await;
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
}

/// sslmode=require against a server that answers `N` to SSLRequest: no plaintext fallback, nothing but the
/// SSLRequest ever goes out (CVE-2024-10977).
#[tokio::test]
async fn sslmode_require_never_falls_back_to_plaintext() {
    let server = FakeServer::start(|p| async move { p.drain().await }).await;
    let e = connect_err(server.port, "sslmode=require", FAST).await;
    assert!(matches!(e.kind(), ErrorKind::Tls | ErrorKind::Config), "{e}");
    let rec = server.finish().await;
    assert_eq!(rec, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], "only an SSLRequest may go out");
}
