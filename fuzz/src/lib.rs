//! Helpers shared by pgrepl's fuzz targets: an input reader, frame builders, and an independent SCRAM-SHA-256
//! implementation used as an oracle (it never calls pgrepl's SCRAM code, so a bug there cannot hide itself).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Reads structured values off the front of a fuzz input; past the end every read yields zeros / empty.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    pub fn u64(&mut self) -> u64 {
        let mut v = 0u64;
        for _ in 0..8 {
            v = (v << 8) | u64::from(self.u8());
        }
        v
    }
    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }
    /// A length byte, then that many bytes.
    pub fn short_bytes(&mut self) -> &'a [u8] {
        let n = self.u8() as usize;
        self.bytes(n)
    }
    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// A backend (or tagged frontend) message: tag, big-endian length including itself, body.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 5);
    v.push(tag);
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// An `R` message with `code` and `data`.
pub fn auth_frame(code: i32, data: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(data);
    frame(b'R', &body)
}

/// Split tagged frontend messages (everything after the StartupMessage) into `(tag, body)`; `None` if the bytes
/// are not a whole number of well-formed frames.
pub fn split_frontend(mut b: &[u8]) -> Option<Vec<(u8, Vec<u8>)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let tag = *b.first()?;
        let len = u32::from_be_bytes(b.get(1..5)?.try_into().ok()?) as usize;
        if len < 4 {
            return None;
        }
        let body = b.get(5..1 + len)?;
        out.push((tag, body.to_vec()));
        b = b.get(1 + len..)?;
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------------------------
// SCRAM-SHA-256 oracle (RFC 5802 / RFC 7677), written from the RFC, independent of pgrepl::auth::scram.
// ---------------------------------------------------------------------------------------------------------------

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Hi(password, salt, i) = PBKDF2-HMAC-SHA-256 with one 32-byte block.
pub fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut u = hmac(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &[&u]);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

/// A strictly parsed server-first-message: `r=<nonce>,s=<base64 salt>,i=<positive decimal>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst {
    pub nonce: Vec<u8>,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

/// Parse a server-first-message the way RFC 5802 spells it, with no extensions (`m=`) and nothing after `i=`.
/// Nonce characters are `printable` (%x21-2B / %x2D-7E).
pub fn parse_server_first(msg: &[u8]) -> Option<ServerFirst> {
    let s = std::str::from_utf8(msg).ok()?;
    let mut parts = s.split(',');
    let nonce = parts.next()?.strip_prefix("r=")?;
    let salt = parts.next()?.strip_prefix("s=")?;
    let iters = parts.next()?.strip_prefix("i=")?;
    if parts.next().is_some() {
        return None;
    }
    if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
        return None;
    }
    if iters.is_empty() || !iters.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let iterations: u32 = iters.parse().ok()?;
    if iterations == 0 {
        return None;
    }
    let salt = STANDARD.decode(salt).ok()?;
    Some(ServerFirst { nonce: nonce.as_bytes().to_vec(), salt, iterations })
}

/// Everything a SCRAM exchange computes, from the password and the three messages before the proof.
pub struct ScramOracle {
    /// `c=…,r=…` (client-final-message-without-proof).
    pub client_final_without_proof: Vec<u8>,
    /// The expected `p=` value (base64).
    pub proof_b64: String,
    /// The expected server-final-message `v=…`.
    pub server_final: Vec<u8>,
}

impl ScramOracle {
    /// `password` must already be SASLprepped (printable ASCII is its own SASLprep). `cbind_input` is the GS2
    /// header followed by the channel-binding data, if any.
    pub fn new(
        password: &[u8],
        client_first_bare: &[u8],
        server_first: &[u8],
        sf: &ServerFirst,
        cbind_input: &[u8],
    ) -> ScramOracle {
        let salted = hi(password, &sf.salt, sf.iterations);
        let client_key = hmac(&salted, &[b"Client Key"]);
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac(&salted, &[b"Server Key"]);
        let mut cfwp = b"c=".to_vec();
        cfwp.extend_from_slice(STANDARD.encode(cbind_input).as_bytes());
        cfwp.extend_from_slice(b",r=");
        cfwp.extend_from_slice(&sf.nonce);
        let mut auth_message = client_first_bare.to_vec();
        auth_message.push(b',');
        auth_message.extend_from_slice(server_first);
        auth_message.push(b',');
        auth_message.extend_from_slice(&cfwp);
        let client_signature = hmac(&stored_key, &[&auth_message]);
        let mut proof = client_key;
        for (p, s) in proof.iter_mut().zip(client_signature.iter()) {
            *p ^= s;
        }
        let server_signature = hmac(&server_key, &[&auth_message]);
        let mut server_final = b"v=".to_vec();
        server_final.extend_from_slice(STANDARD.encode(server_signature).as_bytes());
        ScramOracle { client_final_without_proof: cfwp, proof_b64: STANDARD.encode(proof), server_final }
    }

    /// The whole client-final-message the client must send.
    pub fn client_final(&self) -> Vec<u8> {
        let mut v = self.client_final_without_proof.clone();
        v.extend_from_slice(b",p=");
        v.extend_from_slice(self.proof_b64.as_bytes());
        v
    }
}

/// Build a server-first-message from fuzz-chosen parts: the client nonce extended by `suffix` (mapped onto
/// printable characters, at least one), `salt`, and `iterations`.
pub fn honest_server_first(client_nonce: &[u8], suffix: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut m = b"r=".to_vec();
    m.extend_from_slice(client_nonce);
    if suffix.is_empty() {
        m.push(b'X');
    }
    for &b in suffix {
        // %x21-7E without ','
        let c = 0x21 + (b % 94);
        m.push(if c == b',' { b'-' } else { c });
    }
    m.extend_from_slice(b",s=");
    m.extend_from_slice(STANDARD.encode(salt).as_bytes());
    m.extend_from_slice(format!(",i={iterations}").as_bytes());
    m
}

/// base64 (standard alphabet, padded).
pub fn b64(b: &[u8]) -> String {
    STANDARD.encode(b)
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------------------------
// wal2json helpers
// ---------------------------------------------------------------------------------------------------------------

/// Every event of `payload` fed to `d`, owned; `Err` if feeding or any event fails.
pub fn events_of(
    d: &mut pgrepl::wal2json::ChunkedDecoder,
    payload: &[u8],
) -> pgrepl::Result<Vec<pgrepl::wal2json::Event<'static>>> {
    let mut out = Vec::new();
    for ev in d.events(payload)? {
        out.push(ev?.into_owned());
    }
    Ok(out)
}

/// Every event of `payload` fed to an [`pgrepl::wal2json::AnyDecoder`], owned.
pub fn any_events_of(
    d: &mut pgrepl::wal2json::AnyDecoder,
    payload: &[u8],
) -> pgrepl::Result<Vec<pgrepl::wal2json::Event<'static>>> {
    let mut out = Vec::new();
    for ev in d.events(payload)? {
        out.push(ev?.into_owned());
    }
    Ok(out)
}

/// Write `ev` with pgrepl's JSON writer, check serde_json parses it as one object, decode it back with the
/// format 2 decoder and check it is the same event.
pub fn writer_round_trip(ev: &pgrepl::wal2json::Event<'_>) {
    let mut out = Vec::new();
    pgrepl::wal2json::write_event(&mut out, ev);
    match serde_json::from_slice::<serde_json::Value>(&out) {
        Ok(serde_json::Value::Object(_)) => {}
        other => panic!("writer output is not a JSON object ({other:?}): {}", String::from_utf8_lossy(&out)),
    }
    // wal2json's identity entries have only name, type, typeoid and value: the writer keeps only those
    let mut want = ev.clone();
    if let pgrepl::wal2json::Event::Insert(c)
    | pgrepl::wal2json::Event::Update(c)
    | pgrepl::wal2json::Event::Delete(c) = &mut want
    {
        for k in &mut c.identity {
            (k.optional, k.position, k.default) = (None, None, pgrepl::wal2json::Nullable::Absent);
        }
    }
    let mut d = pgrepl::wal2json::Decoder::new();
    match d.decode(&out) {
        Ok(back) => assert_eq!(back, want, "decode(write(event)) differs: {}", String::from_utf8_lossy(&out)),
        Err(e) => panic!("writer output does not decode: {e}: {}", String::from_utf8_lossy(&out)),
    }
}

/// pgoutput messages written back as `logicalrep_write_*` (PostgreSQL's proto.c) writes them, from what
/// `pgrepl::pgoutput::parse` read: an independent writer, so that parse → write must give the payload back.
pub mod pgoutput {
    use pgrepl::pgoutput::message::TupleData;
    use pgrepl::pgoutput::{Message, OldKind, TupleValue};

    struct W(Vec<u8>);

    impl W {
        fn u8(&mut self, v: u8) -> &mut Self {
            self.0.push(v);
            self
        }
        fn u16(&mut self, v: u16) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u32(&mut self, v: u32) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i32(&mut self, v: i32) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i64(&mut self, v: i64) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn lsn(&mut self, v: pgrepl::Lsn) -> &mut Self {
            self.0.extend_from_slice(&v.0.to_be_bytes());
            self
        }
        fn str(&mut self, s: &str) -> &mut Self {
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(0);
            self
        }
        fn ns(&mut self, s: &str) -> &mut Self {
            // the server writes pg_catalog as an empty string; an explicit "pg_catalog" reads the same
            self.str(if s == "pg_catalog" { "" } else { s })
        }
        fn xid(&mut self, x: Option<u32>) -> &mut Self {
            if let Some(x) = x {
                self.u32(x);
            }
            self
        }
        fn counted(&mut self, b: &[u8]) -> &mut Self {
            self.i32(b.len() as i32);
            self.0.extend_from_slice(b);
            self
        }
        fn tuple(&mut self, t: &TupleData<'_>) -> &mut Self {
            self.u16(t.len() as u16);
            for v in t.iter() {
                match v {
                    TupleValue::Null => self.u8(b'n'),
                    TupleValue::Unchanged => self.u8(b'u'),
                    TupleValue::Text(b) => self.u8(b't').counted(b),
                    TupleValue::Binary(b) => self.u8(b'b').counted(b),
                };
            }
            self
        }
        fn old(&mut self, k: OldKind) -> &mut Self {
            self.u8(if k == OldKind::Key { b'K' } else { b'O' })
        }
    }

    /// The bytes of `m`.
    pub fn write(m: &Message<'_>) -> Vec<u8> {
        let mut w = W(vec![m.tag()]);
        match m {
            Message::Begin(x) => w.lsn(x.final_lsn).i64(x.commit_time).u32(x.xid),
            Message::Commit(x) => w.u8(x.flags).lsn(x.commit_lsn).lsn(x.end_lsn).i64(x.commit_time),
            Message::Origin(x) => w.lsn(x.lsn).str(x.name),
            Message::Relation(r) => {
                w.xid(r.xid).u32(r.id).ns(r.namespace).str(r.name).u8(r.replica_identity);
                w.u16(r.columns.len() as u16);
                for c in r.columns.iter() {
                    w.u8(c.flags).str(c.name).u32(c.type_oid).i32(c.typmod);
                }
                &mut w
            }
            Message::Type(t) => w.xid(t.xid).u32(t.id).ns(t.namespace).str(t.name),
            Message::Insert(i) => w.xid(i.xid).u32(i.relation_id).u8(b'N').tuple(&i.new),
            Message::Update(u) => {
                w.xid(u.xid).u32(u.relation_id);
                if let Some(o) = &u.old {
                    w.old(o.kind).tuple(&o.data);
                }
                w.u8(b'N').tuple(&u.new)
            }
            Message::Delete(d) => w.xid(d.xid).u32(d.relation_id).old(d.old.kind).tuple(&d.old.data),
            Message::Truncate(t) => {
                w.xid(t.xid).i32(t.relation_ids.len() as i32).u8(t.flags);
                for id in t.relation_ids.iter() {
                    w.u32(id);
                }
                &mut w
            }
            Message::Message(x) => w.xid(x.xid).u8(x.flags).lsn(x.lsn).str(x.prefix).counted(x.content),
            Message::StreamStart(x) => w.u32(x.xid).u8(u8::from(x.first_segment)),
            Message::StreamStop => &mut w,
            Message::StreamCommit(x) => w.u32(x.xid).u8(x.flags).lsn(x.commit_lsn).lsn(x.end_lsn).i64(x.commit_time),
            Message::StreamAbort(x) => {
                w.u32(x.xid).u32(x.subxid);
                if let (Some(l), Some(t)) = (x.abort_lsn, x.abort_time) {
                    w.lsn(l).i64(t);
                }
                &mut w
            }
            Message::BeginPrepare(x) => w.lsn(x.prepare_lsn).lsn(x.end_lsn).i64(x.prepare_time).u32(x.xid).str(x.gid),
            Message::Prepare(x) | Message::StreamPrepare(x) => {
                w.u8(x.flags).lsn(x.prepare_lsn).lsn(x.end_lsn).i64(x.prepare_time).u32(x.xid).str(x.gid)
            }
            Message::CommitPrepared(x) => {
                w.u8(x.flags).lsn(x.commit_lsn).lsn(x.end_lsn).i64(x.commit_time).u32(x.xid).str(x.gid)
            }
            Message::RollbackPrepared(x) => w
                .u8(x.flags)
                .lsn(x.prepare_end_lsn)
                .lsn(x.rollback_end_lsn)
                .i64(x.prepare_time)
                .i64(x.rollback_time)
                .u32(x.xid)
                .str(x.gid),
            _ => unreachable!("a pgoutput message this writer does not know"),
        };
        w.0
    }
}
