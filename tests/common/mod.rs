//! Helpers shared by the integration tests: one throwaway cluster per test binary, a scripted hostile server,
//! backend-message builders, and an independent SCRAM-SHA-256 / MD5 server side.
//!
//! Each test binary compiles this module separately and uses only part of it.
#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use pgrepl::client::Client;
use pgrepl::config::Config;
use pgrepl::{DbError, Error};

// ---------------------------------------------------------------------------------------------------------------
// One cluster per test binary
// ---------------------------------------------------------------------------------------------------------------

mod shared_cluster {
    use super::*;
    use pgrepl_testkit::{ClusterOptions, TempCluster};

    static CLUSTER: Mutex<Option<Arc<TempCluster>>> = Mutex::new(None);
    static AT_EXIT: Once = Once::new();

    extern "C" {
        fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
    }

    /// Runs when the test binary exits (libtest returns from `main` or calls `process::exit`): statics are never
    /// dropped, so the cluster is stopped and removed here.
    extern "C" fn stop_cluster_at_exit() {
        let cluster = CLUSTER.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(cluster);
    }

    /// The binary's cluster, started on first use; every test shares it (use unique slot and table names).
    pub fn cluster() -> Arc<TempCluster> {
        let mut guard = CLUSTER.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = guard.as_ref() {
            return c.clone();
        }
        let t = Instant::now();
        let c = Arc::new(TempCluster::start(ClusterOptions::default()).unwrap_or_else(|e| panic!("cluster: {e}")));
        eprintln!("cluster on port {} started in {:?}", c.port(), t.elapsed());
        // SAFETY: registering a plain `extern "C" fn()` with the C library's atexit has no preconditions.
        AT_EXIT.call_once(|| unsafe {
            atexit(stop_cluster_at_exit);
        });
        *guard = Some(c.clone());
        c
    }
}

#[allow(unused_imports)]
pub use shared_cluster::cluster;

// ---------------------------------------------------------------------------------------------------------------
// Notices
// ---------------------------------------------------------------------------------------------------------------

/// A notice handler that collects every notice, and the collection.
pub fn notice_collector() -> (pgrepl::client::NoticeHandler, Arc<Mutex<Vec<DbError>>>) {
    let seen: Arc<Mutex<Vec<DbError>>> = Arc::default();
    let s = seen.clone();
    (Arc::new(move |n: &DbError| s.lock().unwrap_or_else(PoisonError::into_inner).push(n.clone())), seen)
}

// ---------------------------------------------------------------------------------------------------------------
// The hostile server
// ---------------------------------------------------------------------------------------------------------------

/// How long a fake server waits for the client at most, whatever its script says: no test can hang on it.
const PEER_LIMIT: Duration = Duration::from_secs(15);

/// The server end of one accepted connection, handed to a script. Every byte the client sends is recorded.
pub struct Peer {
    sock: TcpStream,
    recorded: Arc<Mutex<Vec<u8>>>,
    pending: Vec<u8>,
    /// The StartupMessage body (after the length), as received.
    pub startup: Vec<u8>,
}

impl Peer {
    /// Send raw bytes; errors (the client went away) are ignored.
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.sock.write_all(bytes).await;
        let _ = self.sock.flush().await;
    }

    /// Read more bytes into the pending buffer; false on EOF, error or after [`PEER_LIMIT`].
    async fn fill(&mut self) -> bool {
        let mut buf = vec![0u8; 64 * 1024];
        match tokio::time::timeout(PEER_LIMIT, self.sock.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let got = buf.get(..n).unwrap_or_default();
                self.recorded.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(got);
                self.pending.extend_from_slice(got);
                true
            }
            _ => false,
        }
    }

    async fn read_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.pending.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.pending.drain(..n).collect())
    }

    /// Read one frontend message: `(tag, body)`; `None` when the client closed (or went silent).
    pub async fn read_message(&mut self) -> Option<(u8, Vec<u8>)> {
        let header = self.read_exact(5).await?;
        let tag = header[0];
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        assert!((4..1 << 20).contains(&len), "client sent message {:?} with length {len}", tag as char);
        let body = self.read_exact(len - 4).await?;
        Some((tag, body))
    }

    /// Read one message and insist on its tag.
    pub async fn expect(&mut self, tag: u8) -> Vec<u8> {
        match self.read_message().await {
            Some((t, body)) if t == tag => body,
            Some((t, body)) => panic!("fake server expected {:?}, got {:?} {:?}", tag as char, t as char, body),
            None => panic!("fake server expected {:?}, the client closed", tag as char),
        }
    }

    /// Read (and record) whatever the client sends until it closes the connection.
    pub async fn drain(mut self) {
        while self.fill().await {}
    }

    /// Send nothing more and keep the connection open until the client gives up (or [`PEER_LIMIT`]).
    pub async fn hang(self) {
        self.drain().await
    }
}

/// A scripted fake server on 127.0.0.1 that accepts one connection.
pub struct FakeServer {
    /// The port it listens on.
    pub port: u16,
    task: JoinHandle<()>,
    recorded: Arc<Mutex<Vec<u8>>>,
}

const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;
const PROTOCOL_3_0: u32 = 196608;

impl FakeServer {
    /// Bind, then (in a task) accept one connection, read the startup packet (answering `N` to an SSLRequest or
    /// GSSENCRequest), and run `script` on the connection. Dropping the [`Peer`] closes the connection.
    pub async fn start<F, Fut>(script: F) -> FakeServer
    where
        F: FnOnce(Peer) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local_addr").port();
        let recorded: Arc<Mutex<Vec<u8>>> = Arc::default();
        let rec = recorded.clone();
        let task = tokio::spawn(async move {
            let Ok(Ok((sock, _))) = tokio::time::timeout(PEER_LIMIT, listener.accept()).await else {
                return;
            };
            let _ = sock.set_nodelay(true);
            let mut peer = Peer { sock, recorded: rec, pending: Vec::new(), startup: Vec::new() };
            loop {
                let Some(len) = peer.read_exact(4).await else { return };
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                assert!((8..10_000).contains(&len), "startup packet length {len}");
                let Some(body) = peer.read_exact(len - 4).await else { return };
                let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                if code == SSL_REQUEST || code == GSSENC_REQUEST {
                    peer.send(b"N").await;
                    continue;
                }
                assert_eq!(code, PROTOCOL_3_0, "startup packet protocol version");
                peer.startup = body;
                break;
            }
            script(peer).await;
        });
        FakeServer { port, task, recorded }
    }

    /// Wait for the script to end (the client must have closed the connection by then, or the script ended it)
    /// and return every byte the client sent.
    pub async fn finish(self) -> Vec<u8> {
        match tokio::time::timeout(PEER_LIMIT + Duration::from_secs(5), self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("fake server script failed: {e}"),
            Err(_) => panic!("fake server script did not end"),
        }
        let rec = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        rec.clone()
    }

    /// The bytes recorded so far.
    pub fn recorded(&self) -> Vec<u8> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The password every hostile-server client uses.
pub const FAKE_PASSWORD: &str = "secret";

/// `host=127.0.0.1 port=N user=u dbname=d password=secret connect_timeout=5 sslmode=disable`, then `extra`.
pub fn fake_config(port: u16, extra: &str) -> Config {
    let s = format!(
        "host=127.0.0.1 port={port} user=u dbname=d password={FAKE_PASSWORD} connect_timeout=5 sslmode=disable {extra}"
    );
    Config::parse(&s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Connect to the fake server and insist on an error, within `limit`; the error must not reveal the password.
pub async fn connect_err(port: u16, extra: &str, limit: Duration) -> Error {
    let cfg = fake_config(port, extra);
    let (handler, _) = notice_collector();
    let t = Instant::now();
    let r = tokio::time::timeout(limit + Duration::from_secs(5), Client::connect_with_notices(&cfg, handler)).await;
    let elapsed = t.elapsed();
    let e = match r {
        Err(_) => panic!("connect hung for {elapsed:?}"),
        Ok(Ok(c)) => panic!("connect succeeded against a hostile server: {c:?}"),
        Ok(Err(e)) => e,
    };
    assert!(elapsed < limit, "connect took {elapsed:?} (limit {limit:?}) to fail with {e}");
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(FAKE_PASSWORD), "the password leaked into an error: {shown}");
    e
}

/// The frontend messages in `recorded` (after the startup packet and any SSLRequest): `(tag, body)`.
pub fn client_messages(recorded: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut rest = recorded;
    // untagged packets first
    loop {
        assert!(rest.len() >= 8, "no startup packet in {recorded:?}");
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let code = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        rest = &rest[len..];
        if code == PROTOCOL_3_0 {
            break;
        }
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        assert!(rest.len() >= 5, "truncated frontend message: {rest:?}");
        let tag = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        assert!(len >= 4 && rest.len() > len, "bad frontend message length {len}: {rest:?}");
        out.push((tag, rest[5..1 + len].to_vec()));
        rest = &rest[1 + len..];
    }
    out
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------------------------
// Backend messages
// ---------------------------------------------------------------------------------------------------------------

/// A framed backend message.
pub fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A message header only, with an arbitrary length.
pub fn header(tag: u8, len: u32) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&len.to_be_bytes());
    v
}

/// An Authentication request with code and data.
pub fn auth(code: i32, data: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(data);
    msg(b'R', &body)
}

pub fn auth_ok() -> Vec<u8> {
    auth(0, b"")
}

/// AuthenticationSASL with these mechanisms.
pub fn auth_sasl(mechs: &[&str]) -> Vec<u8> {
    let mut data = Vec::new();
    for m in mechs {
        data.extend_from_slice(m.as_bytes());
        data.push(0);
    }
    data.push(0);
    auth(10, &data)
}

pub fn sasl_continue(data: &[u8]) -> Vec<u8> {
    auth(11, data)
}

pub fn sasl_final(data: &[u8]) -> Vec<u8> {
    auth(12, data)
}

pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

pub fn parameter_status(name: &str, value: &str) -> Vec<u8> {
    let mut b = cstr(name);
    b.extend(cstr(value));
    msg(b'S', &b)
}

pub fn ready() -> Vec<u8> {
    msg(b'Z', b"I")
}

/// ErrorResponse / NoticeResponse from `(field, value)` pairs.
pub fn fields(tag: u8, f: &[(u8, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in f {
        b.push(*k);
        b.extend(cstr(v));
    }
    b.push(0);
    msg(tag, &b)
}

/// What a server sends after AuthenticationOk up to ReadyForQuery.
pub fn after_auth_ok() -> Vec<u8> {
    let mut v = parameter_status("server_version", "15.4");
    v.extend(parameter_status("server_encoding", "UTF8"));
    v.extend(parameter_status("client_encoding", "UTF8"));
    v.extend(msg(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]));
    v.extend(ready());
    v
}

// ---------------------------------------------------------------------------------------------------------------
// SCRAM-SHA-256 server side (independent of pgrepl's client code) and MD5
// ---------------------------------------------------------------------------------------------------------------

pub mod scram {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    use super::Peer;

    pub fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac key");
        m.update(data);
        m.finalize().into_bytes().into()
    }

    pub fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
        let mut first = salt.to_vec();
        first.extend_from_slice(&1u32.to_be_bytes());
        let mut u = hmac(password, &first);
        let mut out = u;
        for _ in 1..iterations {
            u = hmac(password, &u);
            for (o, x) in out.iter_mut().zip(u) {
                *o ^= x;
            }
        }
        out
    }

    pub fn b64(b: &[u8]) -> String {
        STANDARD.encode(b)
    }

    pub fn unb64(s: &str) -> Vec<u8> {
        STANDARD.decode(s).expect("base64")
    }

    /// The server side of one exchange, up to (not including) server-final.
    pub struct Exchange {
        /// SASLInitialResponse mechanism.
        pub mechanism: String,
        /// client-first-message.
        pub client_first: String,
        /// The client's nonce (`r=` of client-first).
        pub client_nonce: String,
        /// The client-final-message, once received.
        pub client_final: Option<String>,
        /// The correct server-final `v=…`, once the proof checked out.
        pub server_final: Option<String>,
    }

    /// Parse a SASLInitialResponse body: mechanism and client-first-message.
    pub fn parse_initial(body: &[u8]) -> (String, String) {
        let nul = body.iter().position(|&b| b == 0).expect("mechanism terminator");
        let mech = String::from_utf8(body[..nul].to_vec()).expect("utf8 mechanism");
        let len = i32::from_be_bytes(body[nul + 1..nul + 5].try_into().expect("len")) as usize;
        let data = &body[nul + 5..];
        assert_eq!(data.len(), len, "SASLInitialResponse data length");
        (mech, String::from_utf8(data.to_vec()).expect("utf8 client-first"))
    }

    /// Offer SCRAM-SHA-256 and read the client-first-message.
    pub async fn begin(peer: &mut Peer) -> Exchange {
        peer.send(&super::auth_sasl(&["SCRAM-SHA-256"])).await;
        let body = peer.expect(b'p').await;
        let (mechanism, client_first) = parse_initial(&body);
        assert_eq!(mechanism, "SCRAM-SHA-256");
        let bare = client_first.strip_prefix("n,,").expect("gs2 header n,,");
        let client_nonce = bare.strip_prefix("n=,r=").expect("n=,r=").to_string();
        assert_eq!(client_nonce.len(), 24, "18 random bytes, base64");
        assert_eq!(unb64(&client_nonce).len(), 18);
        Exchange { mechanism, client_first, client_nonce, client_final: None, server_final: None }
    }

    pub const SALT: &[u8] = b"pgrepl-test-salt";
    pub const ITERATIONS: u32 = 4096;

    impl Exchange {
        /// A correct server-first-message.
        pub fn server_first(&self) -> String {
            format!("r={}SeRvErNoNcE,s={},i={ITERATIONS}", self.client_nonce, b64(SALT))
        }

        /// Send a correct server-first, read the client-final, check the proof against `password`, and keep the
        /// correct server-final. Returns the client-final-message.
        pub async fn run_to_final(&mut self, peer: &mut Peer, password: &str) -> String {
            let server_first = self.server_first();
            peer.send(&super::sasl_continue(server_first.as_bytes())).await;
            let body = peer.expect(b'p').await;
            let client_final = String::from_utf8(body).expect("utf8 client-final");
            let (without_proof, proof) = client_final.rsplit_once(",p=").expect("proof");
            assert_eq!(without_proof, format!("c=biws,r={}SeRvErNoNcE", self.client_nonce));

            let salted = salted_password(password.as_bytes(), SALT, ITERATIONS);
            let client_key = hmac(&salted, b"Client Key");
            let stored_key: [u8; 32] = Sha256::digest(client_key).into();
            let server_key = hmac(&salted, b"Server Key");
            let bare = self.client_first.strip_prefix("n,,").expect("bare");
            let auth_message = format!("{bare},{server_first},{without_proof}");
            let client_signature = hmac(&stored_key, auth_message.as_bytes());
            let mut expected_proof = client_key;
            for (p, s) in expected_proof.iter_mut().zip(client_signature) {
                *p ^= s;
            }
            assert_eq!(unb64(proof), expected_proof, "the client's SCRAM proof is wrong");
            let server_signature = hmac(&server_key, auth_message.as_bytes());
            self.server_final = Some(format!("v={}", b64(&server_signature)));
            self.client_final = Some(client_final.clone());
            client_final
        }
    }
}

/// PostgreSQL's MD5 password: `"md5" + md5hex(md5hex(password + user) + salt)`.
pub fn md5_password(user: &str, password: &str, salt: [u8; 4]) -> String {
    use md5::{Digest, Md5};
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let inner = hex(&Md5::digest(format!("{password}{user}")));
    let mut outer = inner.into_bytes();
    outer.extend_from_slice(&salt);
    format!("md5{}", hex(&Md5::digest(&outer)))
}

// ---------------------------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------------------------

/// The process's peak resident set size in KiB (`VmHWM` in /proc/self/status).
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}
