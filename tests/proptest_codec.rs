//! Property tests of every codec (issue 4): encode → decode round trips for every frontend message (decoded by a
//! small server-side parser written here, independent of pgrepl), CopyData payloads and status updates; LSN
//! text ↔ value; conninfo rendering ↔ parsing; split-read invariance of the backend framing decoder over a
//! recorded server transcript and over generated ones.
//!
//! The fuzz targets (fuzz/, scripts/fuzz.sh) attack the same code with arbitrary bytes; these tests check that
//! what pgrepl produces, the other side reads back exactly.
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

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use pgrepl::config::{Config, Host};
use pgrepl::proto::backend::{BackendMessage, Decoder};
use pgrepl::proto::feedback::Boundary;
use pgrepl::proto::frontend;
use pgrepl::proto::replication::{Keepalive, ReplicationMessage, StatusUpdate, XLogData};
use pgrepl::Lsn;

// ---------------------------------------------------------------------------------------------------------------
// A server-side reader of frontend messages (what the PostgreSQL backend does in pq_getmessage & co.)
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum Frontend {
    Startup {
        version: i32,
        params: Vec<(String, String)>,
    },
    SslRequest,
    /// `p` as a PasswordMessage: a NUL-terminated string.
    Password(Vec<u8>),
    /// `p` as a SASLInitialResponse.
    SaslInitial {
        mechanism: String,
        data: Option<Vec<u8>>,
    },
    /// `p` as a SASLResponse: the raw body.
    SaslResponse(Vec<u8>),
    Query(String),
    CopyData(Vec<u8>),
    CopyDone,
    Terminate,
}

/// Which `p` message the server expects: it knows from the authentication request it sent.
#[derive(Clone, Copy)]
enum Expect {
    Startup,
    Password,
    SaslInitial,
    SaslResponse,
    Any,
}

/// Read one frontend message from the front of `b`; returns the message and the bytes it used.
fn read_frontend(b: &[u8], expect: Expect) -> Result<(Frontend, usize), String> {
    fn cstr(b: &[u8]) -> Result<(&[u8], &[u8]), String> {
        let nul = b.iter().position(|&c| c == 0).ok_or("unterminated string")?;
        Ok((&b[..nul], &b[nul + 1..]))
    }
    fn be32(b: &[u8]) -> Result<i32, String> {
        Ok(i32::from_be_bytes(b.get(..4).ok_or("short")?.try_into().map_err(|_| "short")?))
    }
    if let Expect::Startup = expect {
        let len = be32(b)? as usize;
        let body = b.get(4..len).ok_or("short startup packet")?;
        let version = be32(body)?;
        if version == frontend::SSL_REQUEST_CODE {
            return if len == 8 { Ok((Frontend::SslRequest, 8)) } else { Err("SSLRequest length".into()) };
        }
        let mut rest = &body[4..];
        let mut params = Vec::new();
        loop {
            let (k, r) = cstr(rest)?;
            rest = r;
            if k.is_empty() {
                break;
            }
            let (v, r) = cstr(rest)?;
            rest = r;
            params.push((String::from_utf8(k.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap()));
        }
        if !rest.is_empty() {
            return Err("trailing bytes in startup packet".into());
        }
        return Ok((Frontend::Startup { version, params }, len));
    }
    let tag = *b.first().ok_or("empty")?;
    let len = be32(&b[1..])? as usize;
    if len < 4 {
        return Err("length below 4".into());
    }
    let body = b.get(5..1 + len).ok_or("short message")?;
    let msg = match (tag, expect) {
        (b'p', Expect::Password) => {
            let (s, rest) = cstr(body)?;
            if !rest.is_empty() {
                return Err("trailing bytes after password".into());
            }
            Frontend::Password(s.to_vec())
        }
        (b'p', Expect::SaslInitial) => {
            let (m, rest) = cstr(body)?;
            let n = be32(rest)?;
            let data = &rest[4..];
            let data = if n == -1 {
                if !data.is_empty() {
                    return Err("data after length -1".into());
                }
                None
            } else {
                if n as usize != data.len() {
                    return Err("SASL data length mismatch".into());
                }
                Some(data.to_vec())
            };
            Frontend::SaslInitial { mechanism: String::from_utf8(m.to_vec()).unwrap(), data }
        }
        (b'p', Expect::SaslResponse) => Frontend::SaslResponse(body.to_vec()),
        (b'Q', _) => {
            let (s, rest) = cstr(body)?;
            if !rest.is_empty() {
                return Err("trailing bytes after query".into());
            }
            Frontend::Query(String::from_utf8(s.to_vec()).unwrap())
        }
        (b'd', _) => Frontend::CopyData(body.to_vec()),
        (b'c', _) if body.is_empty() => Frontend::CopyDone,
        (b'X', _) if body.is_empty() => Frontend::Terminate,
        _ => return Err(format!("unexpected message {:?}", tag as char)),
    };
    Ok((msg, 1 + len))
}

#[test]
fn ssl_request_round_trip() {
    let mut b = BytesMut::new();
    frontend::ssl_request(&mut b);
    assert_eq!(one(&b, Expect::Startup), Frontend::SslRequest);
}

fn one(b: &BytesMut, expect: Expect) -> Frontend {
    let (m, used) = read_frontend(b, expect).unwrap_or_else(|e| panic!("{e}: {b:?}"));
    assert_eq!(used, b.len(), "the encoder wrote more than one message");
    m
}

fn no_nul() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,40}"
}

fn no_nul_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1u8..=255, 0..64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn startup_round_trip(params in proptest::collection::vec((no_nul().prop_filter("non-empty", |k| !k.is_empty()), no_nul()), 0..6)) {
        let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut b = BytesMut::new();
        frontend::startup(&refs, &mut b).unwrap();
        prop_assert_eq!(one(&b, Expect::Startup), Frontend::Startup { version: frontend::PROTOCOL_VERSION, params });
    }

    #[test]
    fn password_round_trip(pw in no_nul_bytes()) {
        let mut b = BytesMut::new();
        frontend::password(&pw, &mut b).unwrap();
        prop_assert_eq!(one(&b, Expect::Password), Frontend::Password(pw));
    }

    #[test]
    fn sasl_round_trip(mech in "[A-Z0-9-]{1,20}", first in proptest::collection::vec(any::<u8>(), 0..100), fin in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut b = BytesMut::new();
        frontend::sasl_initial_response(&mech, &first, &mut b).unwrap();
        prop_assert_eq!(one(&b, Expect::SaslInitial), Frontend::SaslInitial { mechanism: mech, data: Some(first) });
        let mut b = BytesMut::new();
        frontend::sasl_response(&fin, &mut b).unwrap();
        prop_assert_eq!(one(&b, Expect::SaslResponse), Frontend::SaslResponse(fin));
    }

    #[test]
    fn query_round_trip(sql in no_nul()) {
        let mut b = BytesMut::new();
        frontend::query(&sql, &mut b).unwrap();
        prop_assert_eq!(one(&b, Expect::Any), Frontend::Query(sql));
    }

    #[test]
    fn nul_is_refused_and_leaves_the_buffer_alone(a in no_nul(), b2 in no_nul()) {
        let s = format!("{a}\0{b2}");
        let mut b = BytesMut::from(&b"keep"[..]);
        prop_assert!(frontend::query(&s, &mut b).is_err());
        prop_assert!(frontend::password(s.as_bytes(), &mut b).is_err());
        prop_assert!(frontend::startup(&[("user", &s)], &mut b).is_err());
        prop_assert_eq!(&b[..], b"keep");
    }

    #[test]
    fn copy_messages_round_trip(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut b = BytesMut::new();
        frontend::copy_data(&data, &mut b).unwrap();
        frontend::copy_done(&mut b);
        frontend::terminate(&mut b);
        let (m1, n1) = read_frontend(&b, Expect::Any).unwrap();
        let (m2, n2) = read_frontend(&b[n1..], Expect::Any).unwrap();
        let (m3, n3) = read_frontend(&b[n1 + n2..], Expect::Any).unwrap();
        prop_assert_eq!(n1 + n2 + n3, b.len());
        prop_assert_eq!((m1, m2, m3), (Frontend::CopyData(data), Frontend::CopyDone, Frontend::Terminate));
    }

    /// A status update: encode → the server reads one CopyData whose payload is the `r` message (walreceiver's
    /// layout: 'r', write, flush, apply, clock, reply flag) → `StatusUpdate::parse` gives it back.
    #[test]
    fn status_update_round_trip(w: u64, f: u64, a: u64, t: i64, r: bool) {
        let s = StatusUpdate { write: Lsn(w), flush: Lsn(f), apply: Lsn(a), client_time: t, reply_requested: r };
        let mut b = BytesMut::new();
        s.encode(&mut b);
        let Frontend::CopyData(p) = one(&b, Expect::Any) else { panic!("not CopyData") };
        prop_assert_eq!(p.len(), StatusUpdate::LEN);
        prop_assert_eq!(p[0], b'r');
        prop_assert_eq!(u64::from_be_bytes(p[1..9].try_into().unwrap()), w);
        prop_assert_eq!(u64::from_be_bytes(p[9..17].try_into().unwrap()), f);
        prop_assert_eq!(u64::from_be_bytes(p[17..25].try_into().unwrap()), a);
        prop_assert_eq!(i64::from_be_bytes(p[25..33].try_into().unwrap()), t);
        prop_assert_eq!(p[33], u8::from(r));
        prop_assert_eq!(StatusUpdate::parse(&Bytes::from(p)).unwrap(), s);
        // and the payload encoder alone, inside frontend::copy_data, frames the same bytes
        let mut payload = BytesMut::new();
        s.encode_payload(&mut payload);
        let mut framed = BytesMut::new();
        frontend::copy_data(&payload, &mut framed).unwrap();
        prop_assert_eq!(&framed[..], &b[..]);
    }

    /// XLogData and keepalive as the server builds them (walsender.c) → CopyData framing → the backend decoder
    /// → `ReplicationMessage::parse`.
    #[test]
    fn replication_payloads_round_trip(start: u64, end: u64, t: i64, data in proptest::collection::vec(any::<u8>(), 0..300), reply: bool) {
        let x = XLogData { wal_start: Lsn(start), wal_end: Lsn(end), server_time: t, data: Bytes::from(data), boundary: Boundary::Whole };
        let k = Keepalive { wal_end: Lsn(end), server_time: t, reply_requested: reply };
        let mut wire = BytesMut::new();
        // the session is past startup (CopyData is refused before the first ReadyForQuery)
        wire.put_slice(&backend_frame(b'Z', b"I"));
        wire.put_slice(&backend_frame(b'd', &xlogdata_payload(&x)));
        wire.put_slice(&backend_frame(b'd', &keepalive_payload(&k)));
        let msgs = decode_all(&wire, &[wire.len()]).unwrap();
        let parsed: Vec<ReplicationMessage> = msgs
            .into_iter()
            .skip(1)
            .map(|m| match m {
                BackendMessage::CopyData(p) => ReplicationMessage::parse(p).unwrap(),
                o => panic!("{o:?}"),
            })
            .collect();
        prop_assert_eq!(parsed, vec![ReplicationMessage::XLogData(x), ReplicationMessage::Keepalive(k)]);
    }

    #[test]
    fn lsn_text_round_trip(v: u64) {
        let text = Lsn(v).to_string();
        prop_assert_eq!(Lsn::parse(&text).unwrap(), Lsn(v));
        // the server's %X/%X: upper case, no leading zeros
        prop_assert_eq!(&text, &format!("{:X}/{:X}", v >> 32, v as u32));
        // and any spelling of the same halves (lower case, leading zeros up to 8 digits) parses to it
        let alt = format!("{:08x}/{:x}", v >> 32, v as u32);
        prop_assert_eq!(Lsn::parse(&alt).unwrap(), Lsn(v));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Backend framing: split-read invariance
// ---------------------------------------------------------------------------------------------------------------

fn backend_frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn xlogdata_payload(x: &XLogData) -> Vec<u8> {
    let mut p = vec![b'w'];
    p.extend_from_slice(&x.wal_start.0.to_be_bytes());
    p.extend_from_slice(&x.wal_end.0.to_be_bytes());
    p.extend_from_slice(&x.server_time.to_be_bytes());
    p.extend_from_slice(&x.data);
    p
}

fn keepalive_payload(k: &Keepalive) -> Vec<u8> {
    let mut p = vec![b'k'];
    p.extend_from_slice(&k.wal_end.0.to_be_bytes());
    p.extend_from_slice(&k.server_time.to_be_bytes());
    p.push(u8::from(k.reply_requested));
    p
}

/// Decode `bytes` arriving in reads of the given sizes (cycled); the decoder leaves startup mode at the first
/// ReadyForQuery, as the driver does. Every byte must be consumed.
fn decode_all(bytes: &[u8], reads: &[usize]) -> Result<Vec<BackendMessage>, String> {
    let mut d = Decoder::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut i = 0;
    while fed < bytes.len() {
        let n = reads[i % reads.len()].max(1);
        i += 1;
        let end = (fed + n).min(bytes.len());
        buf.put_slice(&bytes[fed..end]);
        fed = end;
        while let Some(m) = d.decode(&mut buf).map_err(|e| e.to_string())? {
            if matches!(m, BackendMessage::ReadyForQuery(_)) {
                d.set_startup_done();
            }
            out.push(m);
        }
    }
    if !buf.is_empty() {
        return Err(format!("{} bytes left over", buf.len()));
    }
    Ok(out)
}

/// A hand-built session: SCRAM authentication, parameter statuses, BackendKeyData, ReadyForQuery,
/// IDENTIFY_SYSTEM's result, CopyBothResponse, then many XLogData and keepalives of every size.
fn synthetic_transcript() -> Vec<u8> {
    let mut t = Vec::new();
    let auth = |code: i32, data: &[u8]| {
        let mut b = code.to_be_bytes().to_vec();
        b.extend_from_slice(data);
        backend_frame(b'R', &b)
    };
    t.extend(auth(10, b"SCRAM-SHA-256\0\0"));
    t.extend(auth(11, b"r=abcdefghijklmnopqrstuvwxyzABCD,s=c2FsdA==,i=4096"));
    t.extend(auth(12, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="));
    t.extend(auth(0, b""));
    for (k, v) in [
        ("server_version", "15.4"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("integer_datetimes", "on"),
    ] {
        t.extend(backend_frame(b'S', format!("{k}\0{v}\0").as_bytes()));
    }
    t.extend(backend_frame(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]));
    t.extend(backend_frame(b'Z', b"I"));
    let mut rd = 4i16.to_be_bytes().to_vec();
    for name in ["systemid", "timeline", "xlogpos", "dbname"] {
        rd.extend_from_slice(name.as_bytes());
        rd.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]);
    }
    t.extend(backend_frame(b'T', &rd));
    t.extend(backend_frame(
        b'D',
        b"\0\x04\0\0\0\x137311311311311311311\0\0\0\x011\0\0\0\x090/1512098\0\0\0\x08postgres",
    ));
    t.extend(backend_frame(b'C', b"IDENTIFY_SYSTEM\0"));
    t.extend(backend_frame(b'Z', b"I"));
    t.extend(backend_frame(b'W', b"\0\0\0"));
    let mut lsn = 0x0151_2098_u64;
    for i in 0..200u64 {
        lsn += 0x38 + i;
        if i % 17 == 0 {
            t.extend(backend_frame(
                b'd',
                &keepalive_payload(&Keepalive {
                    wal_end: Lsn(lsn),
                    server_time: i as i64,
                    reply_requested: i % 34 == 0,
                }),
            ));
            continue;
        }
        let body = format!(
            "{{\"action\":\"I\",\"xid\":{i},\"table\":\"t\",\"columns\":[{{\"name\":\"v\",\"value\":\"{}\"}}]}}",
            "x".repeat((i * 37 % 900) as usize)
        );
        let x = XLogData {
            wal_start: Lsn(lsn),
            wal_end: Lsn(lsn + 8),
            server_time: i as i64,
            data: Bytes::from(body),
            boundary: Boundary::Whole,
        };
        t.extend(backend_frame(b'd', &xlogdata_payload(&x)));
    }
    t.extend(backend_frame(b'c', b""));
    t.extend(backend_frame(b'C', b"COPY 0\0"));
    t.extend(backend_frame(b'Z', b"I"));
    t
}

/// A real session recorded from PostgreSQL 15 through a proxy (fuzz/src/bin/capture.rs): pg_recvlogical with
/// SCRAM authentication, IDENTIFY_SYSTEM, START_REPLICATION with wal2json format 2, keepalives, end position.
const RECORDED: &[u8] = include_bytes!("../fuzz/captures/scram-v2.bin");

fn reads() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(prop_oneof![1usize..8, 1usize..64, 1usize..2048, Just(65536)], 1..16)
}

#[test]
fn transcripts_decode_whole() {
    for t in [RECORDED.to_vec(), synthetic_transcript()] {
        let msgs = decode_all(&t, &[t.len()]).unwrap();
        assert!(msgs.iter().any(|m| matches!(m, BackendMessage::CopyBothResponse(_))));
        let copies = msgs.iter().filter(|m| matches!(m, BackendMessage::CopyData(_))).count();
        assert!(copies >= 10, "{copies} CopyData messages");
        for m in &msgs {
            if let BackendMessage::CopyData(p) = m {
                ReplicationMessage::parse(p.clone()).unwrap();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn recorded_transcript_split_reads(sizes in reads()) {
        let whole = decode_all(RECORDED, &[RECORDED.len()]).unwrap();
        prop_assert_eq!(decode_all(RECORDED, &sizes).unwrap(), whole);
    }

    #[test]
    fn synthetic_transcript_split_reads(sizes in reads()) {
        let t = synthetic_transcript();
        let whole = decode_all(&t, &[t.len()]).unwrap();
        prop_assert_eq!(decode_all(&t, &sizes).unwrap(), whole);
    }

    /// Generated message sequences, generated read sizes.
    #[test]
    fn generated_streams_split_reads(
        payloads in proptest::collection::vec((any::<u64>(), proptest::collection::vec(any::<u8>(), 0..200), any::<bool>()), 1..40),
        sizes in reads(),
    ) {
        let mut t = backend_frame(b'Z', b"I");
        t.extend(backend_frame(b'W', b"\0\0\0"));
        let mut want = vec![];
        for (lsn, data, keep) in &payloads {
            let p = if *keep {
                keepalive_payload(&Keepalive { wal_end: Lsn(*lsn), server_time: 1, reply_requested: data.len() % 2 == 0 })
            } else {
                xlogdata_payload(&XLogData { wal_start: Lsn(*lsn), wal_end: Lsn(*lsn), server_time: 1, data: Bytes::from(data.clone()), boundary: Boundary::Whole })
            };
            t.extend(backend_frame(b'd', &p));
            want.push(p);
        }
        let msgs = decode_all(&t, &sizes).unwrap();
        prop_assert_eq!(msgs.len(), want.len() + 2);
        for (m, p) in msgs[2..].iter().zip(&want) {
            prop_assert_eq!(m, &BackendMessage::CopyData(Bytes::from(p.clone())));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// conninfo: render ↔ parse
// ---------------------------------------------------------------------------------------------------------------

/// Text that conninfo must quote: spaces, quotes, backslashes, `=`, non-ASCII; never NUL.
fn value_text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z][a-z0-9_]{0,12}", "[ -~]{1,20}", "[a-zA-Z0-9 '\\\\=é€🐘]{1,16}",]
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5})?".prop_map(Host::Tcp),
        Just(Host::Tcp("127.0.0.1".into())),
        Just(Host::Tcp("::1".into())),
        "/[a-z]{1,8}(/[a-z ]{1,8})?".prop_map(|p| Host::Unix(p.into())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any `Config` built from representable values renders to a string that parses back to it.
    #[test]
    fn config_render_parse_round_trip(
        hosts in proptest::collection::vec((host(), 1u16..), 1..4),
        user in value_text(),
        password in proptest::option::of(proptest::collection::vec(1u8..=255, 1..24)),
        dbname in value_text(),
        app in proptest::option::of(value_text()),
        options in proptest::option::of(value_text()),
        replication in proptest::option::of(prop_oneof![Just("true"), Just("false"), Just("database")]),
        require in prop_oneof![Just(""), Just("scram-sha-256"), Just("md5,scram-sha-256"), Just("none"), Just("password")],
        timeout in proptest::option::of(2u64..100_000),
        keep in proptest::option::of(0u32..100_000),
    ) {
        let mut c = Config::parse("host=localhost").unwrap();
        c.hosts = hosts;
        c.user = user;
        c.password = password;
        c.dbname = dbname;
        c.application_name = app;
        c.options = options;
        c.replication = replication.map(str::to_owned);
        c.require_auth = pgrepl::auth::RequireAuth::parse(require).unwrap();
        c.connect_timeout = timeout.map(std::time::Duration::from_secs);
        c.keepalives_idle = keep;
        let rendered = c.render();
        let back = Config::parse(&rendered).unwrap_or_else(|e| panic!("{e}\nrendered: {rendered}"));
        prop_assert_eq!(back, c, "rendered: {}", rendered);
    }

    /// Key/value strings and URIs that parse render to strings that parse to the same config.
    #[test]
    fn conninfo_parse_render_parse(
        host in "[a-z]{1,8}",
        port in 1u16..,
        user in value_text(),
        pw in value_text(),
        // a dbname with '=' is itself a connection string (expanded): not a literal name here
        db in value_text().prop_filter("no '='", |d| !d.contains('=')),
        uri in any::<bool>(),
    ) {
        let s = if uri {
            let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
            format!("postgresql://{}:{}@{host}:{port}/{}", enc(&user), enc(&pw), enc(&db))
        } else {
            let q = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
            format!("host={host} port={port} user={} password={} dbname={}", q(&user), q(&pw), q(&db))
        };
        let c = Config::parse(&s).unwrap_or_else(|e| panic!("{e}: {s}"));
        prop_assert_eq!(&c.user, &user);
        prop_assert_eq!(c.password.as_deref(), Some(pw.as_bytes()));
        prop_assert_eq!(&c.dbname, &db);
        prop_assert_eq!(Config::parse(&c.render()).unwrap(), c);
    }
}
