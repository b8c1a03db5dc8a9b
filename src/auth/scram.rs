//! SCRAM-SHA-256 and SCRAM-SHA-256-PLUS client (RFC 5802, RFC 7677), sans-IO.
//!
//! The exchange, as PostgreSQL runs it:
//!
//! ```text
//! client-first  (SASLInitialResponse)  n,,n=,r=<client nonce>
//! server-first  (SASLContinue)         r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>
//! client-final  (SASLResponse)         c=<base64 gs2 header + cbind data>,r=<nonce>,p=<base64 proof>
//! server-final  (SASLFinal)            v=<base64 server signature>
//! ```
//!
//! [`ScramSha256`] is a small state machine: `Start → ProofSent → Verified`; any error moves it to a terminal
//! failed state, so a server can never reach `Verified` by retrying. The nonce's random bytes are injected by the
//! caller (see [`random_nonce`]), which keeps the machine deterministic and testable. The user name is sent
//! empty (`n=`) because PostgreSQL takes it from the startup packet.
//!
//! Every server message is parsed strictly: attributes in the order the RFC gives, no extensions, no trailing
//! data; the server's nonce must extend ours; the iteration count is capped (default
//! [`DEFAULT_ITERATION_CAP`]) so a hostile server cannot make us burn CPU; the server signature is compared in
//! constant time. A server that cannot prove it knows the password is refused.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::saslprep::prepare_password;
use crate::error::{Error, ErrorKind, Result};

type HmacSha256 = Hmac<Sha256>;

/// The SASL mechanism name without channel binding.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// The SASL mechanism name with channel binding.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The default maximum iteration count accepted from a server (PostgreSQL's default is 4096).
pub const DEFAULT_ITERATION_CAP: u32 = 10_000_000;
/// The number of random bytes in a client nonce (as libpq: 18 bytes, 24 base64 characters).
pub const NONCE_LEN: usize = 18;

const KEY_LEN: usize = 32;

/// The channel-binding flag of the GS2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelBinding {
    /// The client does not support channel binding (no TLS, or `channel_binding=disable`): `n,,`.
    Unsupported,
    /// The client supports channel binding but the server did not offer SCRAM-SHA-256-PLUS: `y,,`.
    /// A server that does support it will then refuse the exchange, which defeats a downgrade.
    Unrequested,
    /// `tls-server-end-point` channel binding (mechanism SCRAM-SHA-256-PLUS): `p=tls-server-end-point,,`,
    /// with the hash of the server's certificate (RFC 5929) as the channel-binding data.
    TlsServerEndPoint(Vec<u8>),
}

impl ChannelBinding {
    fn gs2_header(&self) -> &'static str {
        match self {
            ChannelBinding::Unsupported => "n,,",
            ChannelBinding::Unrequested => "y,,",
            ChannelBinding::TlsServerEndPoint(_) => "p=tls-server-end-point,,",
        }
    }

    /// The `c=` attribute value: base64 of the GS2 header followed by the channel-binding data.
    fn c_attr(&self) -> String {
        let mut input = self.gs2_header().as_bytes().to_vec();
        if let ChannelBinding::TlsServerEndPoint(hash) = self {
            input.extend_from_slice(hash);
        }
        STANDARD.encode(input)
    }
}

/// Bytes wiped (best effort) when dropped.
struct Secret(Vec<u8>);

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

fn wipe(b: &mut [u8]) {
    b.fill(0);
    std::hint::black_box(b);
}

enum State {
    /// client-first may be sent; waiting for server-first.
    Start { password: Secret },
    /// client-final sent; waiting for server-final.
    ProofSent { server_key: [u8; KEY_LEN], auth_message: Vec<u8> },
    /// The server proved it knows the password.
    Verified,
    /// An error happened; every further message is refused.
    Failed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Start { .. } => "start",
            State::ProofSent { .. } => "proof-sent",
            State::Verified => "verified",
            State::Failed => "failed",
        }
    }
}

/// A SCRAM-SHA-256(-PLUS) client exchange. See the [module documentation](self).
pub struct ScramSha256 {
    state: State,
    channel_binding: ChannelBinding,
    client_nonce: String,
    client_first_bare: String,
    iteration_cap: u32,
    cancel: Option<CancelFlag>,
}

/// Set to abandon a key derivation in progress (e.g. when the connection attempt it serves timed out).
pub type CancelFlag = std::sync::Arc<std::sync::atomic::AtomicBool>;

impl fmt::Debug for ScramSha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password nor derived keys.
        f.debug_struct("ScramSha256")
            .field("mechanism", &self.mechanism())
            .field("state", &self.state.name())
            .field("iteration_cap", &self.iteration_cap)
            .finish_non_exhaustive()
    }
}

impl ScramSha256 {
    /// Start an exchange for `password` (SASLprepped here, falling back to the raw bytes as libpq does).
    ///
    /// `nonce` must come from a CSPRNG (see [`random_nonce`]); it is base64-encoded into the client nonce.
    pub fn new(password: &[u8], channel_binding: ChannelBinding, nonce: [u8; NONCE_LEN]) -> Self {
        let client_nonce = STANDARD.encode(nonce);
        Self::build("", password, channel_binding, client_nonce)
    }

    /// Start an exchange with an explicit user name and client-nonce string.
    ///
    /// This exists to reproduce published test vectors (RFC 7677 §3 sends `n=user`); PostgreSQL clients use
    /// [`ScramSha256::new`], which sends an empty user name and a random nonce. The user name is escaped as
    /// RFC 5802 requires (`=` → `=3D`, `,` → `=2C`) but not SASLprepped. The nonce must be non-empty printable
    /// ASCII without `,`.
    pub fn with_client_nonce(
        user: &str,
        password: &[u8],
        channel_binding: ChannelBinding,
        client_nonce: &str,
    ) -> Result<Self> {
        if client_nonce.is_empty() || !client_nonce.bytes().all(is_nonce_char) {
            return Err(Error::new(
                ErrorKind::Config,
                "SCRAM client nonce must be non-empty printable ASCII without ','",
            ));
        }
        let user = user.replace('=', "=3D").replace(',', "=2C");
        Ok(Self::build(&user, password, channel_binding, client_nonce.to_owned()))
    }

    fn build(user: &str, password: &[u8], channel_binding: ChannelBinding, client_nonce: String) -> Self {
        let client_first_bare = format!("n={user},r={client_nonce}");
        ScramSha256 {
            state: State::Start { password: Secret(prepare_password(password).into_owned()) },
            channel_binding,
            client_nonce,
            client_first_bare,
            iteration_cap: DEFAULT_ITERATION_CAP,
            cancel: None,
        }
    }

    /// Check `flag` while deriving the salted password: once it is set, [`handle_server_first`](Self::handle_server_first)
    /// (Self::handle_server_first) stops within a few thousand iterations with [`ErrorKind::Timeout`].
    pub fn with_cancel(mut self, flag: CancelFlag) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// The largest iteration count accepted from the server (default [`DEFAULT_ITERATION_CAP`]); a larger
    /// count fails with [`ErrorKind::Auth`] before any work is done.
    pub fn with_iteration_cap(mut self, cap: u32) -> Self {
        self.iteration_cap = cap;
        self
    }

    /// The SASL mechanism name to send in SASLInitialResponse.
    pub fn mechanism(&self) -> &'static str {
        match self.channel_binding {
            ChannelBinding::TlsServerEndPoint(_) => SCRAM_SHA_256_PLUS,
            _ => SCRAM_SHA_256,
        }
    }

    /// The client-first-message (the SASLInitialResponse data), e.g. `n,,n=,r=<nonce>`.
    pub fn client_first(&self) -> Vec<u8> {
        let mut m = self.channel_binding.gs2_header().as_bytes().to_vec();
        m.extend_from_slice(self.client_first_bare.as_bytes());
        m
    }

    /// Handle the server-first-message (SASLContinue data) and return the client-final-message.
    ///
    /// Malformed messages fail with [`ErrorKind::Protocol`]; an iteration count above the cap fails with
    /// [`ErrorKind::Auth`]. Any error ends the exchange.
    pub fn handle_server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>> {
        let password = match std::mem::replace(&mut self.state, State::Failed) {
            State::Start { password } => password,
            State::ProofSent { .. } | State::Verified => {
                return Err(Error::protocol("unexpected SCRAM server-first-message: already received"))
            }
            State::Failed => return Err(failed()),
        };
        let first = parse_server_first(msg, &self.client_nonce, self.iteration_cap)?;

        let mut salted = pbkdf2_sha256_cancellable(&password.0, &first.salt, first.iterations, self.cancel.as_deref())?;
        drop(password);
        let client_key = hmac_sha256(&salted, &[b"Client Key"]);
        let server_key = hmac_sha256(&salted, &[b"Server Key"]);
        wipe(&mut salted);
        let mut client_key = client_key?;
        let server_key = server_key?;
        let stored_key: [u8; KEY_LEN] = Sha256::digest(client_key).into();

        let mut client_final = format!("c={},r=", self.channel_binding.c_attr()).into_bytes();
        client_final.extend_from_slice(first.nonce);

        let mut auth_message = Vec::with_capacity(self.client_first_bare.len() + msg.len() + client_final.len() + 2);
        auth_message.extend_from_slice(self.client_first_bare.as_bytes());
        auth_message.push(b',');
        auth_message.extend_from_slice(msg);
        auth_message.push(b',');
        auth_message.extend_from_slice(&client_final);

        let client_signature = hmac_sha256(&stored_key, &[&auth_message])?;
        let mut proof = client_key;
        xor_in_place(&mut proof, &client_signature);
        wipe(&mut client_key);

        client_final.extend_from_slice(b",p=");
        client_final.extend_from_slice(STANDARD.encode(proof).as_bytes());
        self.state = State::ProofSent { server_key, auth_message };
        Ok(client_final)
    }

    /// Handle the server-final-message (SASLFinal data): verify the server signature.
    ///
    /// `e=<value>` fails with [`ErrorKind::Auth`] carrying the server's value; a wrong signature fails with
    /// [`ErrorKind::Auth`]; a malformed message with [`ErrorKind::Protocol`].
    pub fn handle_server_final(&mut self, msg: &[u8]) -> Result<()> {
        let (server_key, auth_message) = match std::mem::replace(&mut self.state, State::Failed) {
            State::ProofSent { server_key, auth_message } => (server_key, auth_message),
            State::Start { .. } => {
                return Err(Error::protocol("unexpected SCRAM server-final-message before server-first-message"))
            }
            State::Verified => return Err(Error::protocol("unexpected SCRAM server-final-message: already received")),
            State::Failed => return Err(failed()),
        };
        match msg {
            [b'e', b'=', rest @ ..] => {
                let value = rest.split(|&b| b == b',').next().unwrap_or_default();
                Err(Error::auth(format!("server reported SCRAM error: {}", printable(value))))
            }
            [b'v', b'=', rest @ ..] => {
                if rest.contains(&b',') {
                    return Err(Error::protocol(
                        "malformed SCRAM server-final-message: trailing data after the server signature",
                    ));
                }
                let signature = STANDARD
                    .decode(rest)
                    .map_err(|_| Error::protocol("malformed SCRAM server-final-message: invalid base64 signature"))?;
                if signature.len() != KEY_LEN {
                    return Err(Error::protocol(format!(
                        "malformed SCRAM server-final-message: signature is {} bytes, expected {KEY_LEN}",
                        signature.len()
                    )));
                }
                let expected = hmac_sha256(&server_key, &[&auth_message])?;
                if !ct_eq(&signature, &expected) {
                    return Err(Error::auth(
                        "incorrect SCRAM server signature: the server did not prove it knows the password",
                    ));
                }
                self.state = State::Verified;
                Ok(())
            }
            _ => Err(Error::protocol("malformed SCRAM server-final-message: expected \"v=\" or \"e=\"")),
        }
    }

    /// Whether the server signature was verified (the exchange completed successfully).
    pub fn is_verified(&self) -> bool {
        matches!(self.state, State::Verified)
    }

    /// Whether this exchange uses channel binding (SCRAM-SHA-256-PLUS).
    pub fn is_channel_bound(&self) -> bool {
        matches!(self.channel_binding, ChannelBinding::TlsServerEndPoint(_))
    }
}

/// 18 random bytes from the operating system's CSPRNG, for [`ScramSha256::new`].
pub fn random_nonce() -> Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce)
        .map_err(|e| Error::new(ErrorKind::Io, format!("could not generate a SCRAM nonce: {e}")))?;
    Ok(nonce)
}

fn failed() -> Error {
    Error::protocol("SCRAM exchange already failed")
}

/// RFC 5802 `printable`: %x21-2B / %x2D-7E (visible ASCII except ',').
fn is_nonce_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

/// A server-supplied value made safe to show in an error: lossy UTF-8, escaped, truncated.
fn printable(v: &[u8]) -> String {
    const MAX: usize = 200;
    let s = String::from_utf8_lossy(v);
    let mut out: String = s.chars().take(MAX).flat_map(char::escape_debug).collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

struct ServerFirst<'a> {
    nonce: &'a [u8],
    salt: Vec<u8>,
    iterations: u32,
}

/// `a=value` with the expected attribute name, else a protocol error.
fn attr(part: Option<&[u8]>, name: u8) -> Result<&[u8]> {
    match part {
        Some([n, b'=', value @ ..]) if *n == name => Ok(value),
        _ => Err(Error::protocol(format!(
            "malformed SCRAM server-first-message: attribute \"{}\" expected",
            char::from(name)
        ))),
    }
}

fn parse_server_first<'a>(msg: &'a [u8], client_nonce: &str, iteration_cap: u32) -> Result<ServerFirst<'a>> {
    let mut parts = msg.split(|&b| b == b',');
    // A leading "m=" (mandatory extension) is not supported: it fails here as "r expected".
    let nonce = attr(parts.next(), b'r')?;
    let salt = attr(parts.next(), b's')?;
    let iterations = attr(parts.next(), b'i')?;
    if parts.next().is_some() {
        return Err(Error::protocol("malformed SCRAM server-first-message: unexpected data after the iteration count"));
    }

    let ours = client_nonce.as_bytes();
    let prefix_matches = nonce.get(..ours.len()).is_some_and(|p| ct_eq(p, ours));
    if !prefix_matches || nonce.len() <= ours.len() {
        return Err(Error::protocol("invalid SCRAM server-first-message: nonce does not extend the client nonce"));
    }
    if !nonce.iter().all(|&b| is_nonce_char(b)) {
        return Err(Error::protocol("invalid SCRAM server-first-message: nonce contains non-printable characters"));
    }

    let salt =
        STANDARD.decode(salt).map_err(|_| Error::protocol("invalid SCRAM server-first-message: salt is not base64"))?;
    if salt.is_empty() {
        return Err(Error::protocol("invalid SCRAM server-first-message: empty salt"));
    }

    if iterations.is_empty() || !iterations.iter().all(u8::is_ascii_digit) {
        return Err(Error::protocol("invalid SCRAM server-first-message: iteration count is not a number"));
    }
    let count = iterations.iter().try_fold(0u32, |n, &d| n.checked_mul(10)?.checked_add(u32::from(d - b'0')));
    let iterations = match count {
        Some(0) => return Err(Error::protocol("invalid SCRAM server-first-message: iteration count is 0")),
        Some(n) if n <= iteration_cap => n,
        _ => {
            return Err(Error::auth(format!(
                "SCRAM iteration count {} requested by the server exceeds the limit of {iteration_cap}",
                printable(iterations)
            )))
        }
    };
    Ok(ServerFirst { nonce, salt, iterations })
}

fn new_hmac(key: &[u8]) -> Result<HmacSha256> {
    // HMAC accepts keys of any length; this never fails.
    <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| Error::new(ErrorKind::Auth, "HMAC-SHA-256 key rejected"))
}

pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Result<[u8; KEY_LEN]> {
    let mut mac = new_hmac(key)?;
    for p in parts {
        mac.update(p);
    }
    Ok(mac.finalize().into_bytes().into())
}

/// PBKDF2-HMAC-SHA-256 with a 32-byte output (one block), `iterations` ≥ 1 (0 is treated as 1).
#[cfg(test)]
pub(crate) fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> Result<[u8; KEY_LEN]> {
    pbkdf2_sha256_cancellable(password, salt, iterations, None)
}

/// PBKDF2-HMAC-SHA-256 (one 32-byte block) that gives up (with [`ErrorKind::Timeout`]) once `cancel` is set, checked every 1024 rounds.
pub(crate) fn pbkdf2_sha256_cancellable(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<[u8; KEY_LEN]> {
    let prf = new_hmac(password)?;
    let mut mac = prf.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; KEY_LEN] = mac.finalize().into_bytes().into();
    let mut out = u;
    for i in 1..iterations {
        if i % 1024 == 0 && cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
            wipe(&mut u);
            wipe(&mut out);
            return Err(Error::timeout("SCRAM key derivation abandoned: the connection attempt was cancelled"));
        }
        let mut mac = prf.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        xor_in_place(&mut out, &u);
    }
    wipe(&mut u);
    Ok(out)
}

fn xor_in_place(acc: &mut [u8; KEY_LEN], other: &[u8; KEY_LEN]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a ^= b;
    }
}

/// Equality in time independent of the contents (lengths are not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A SCRAM server simulation for tests (also used by the authenticator's tests).
#[cfg(test)]
pub(crate) mod sim {
    use super::*;

    /// A server that knows `password` (already in the form fed to PBKDF2, i.e. as the server stored it).
    pub(crate) struct Server {
        pub password: Vec<u8>,
        pub salt: Vec<u8>,
        pub iterations: u32,
        pub server_nonce: String,
        /// The `c=` the server expects (the decoded GS2 header + cbind data).
        pub expected_cbind: Vec<u8>,
        client_first_bare: Vec<u8>,
        server_first: Vec<u8>,
    }

    impl Server {
        pub(crate) fn new(password: &[u8], expected_cbind: &[u8]) -> Self {
            Server {
                password: password.to_vec(),
                salt: b"some salt bytes".to_vec(),
                iterations: 2,
                server_nonce: "SeRvEr+NoNcE/1234".into(),
                expected_cbind: expected_cbind.to_vec(),
                client_first_bare: Vec::new(),
                server_first: Vec::new(),
            }
        }

        /// Answer client-first with server-first.
        pub(crate) fn first(&mut self, client_first: &[u8]) -> Vec<u8> {
            let gs2_len = client_first.windows(2).position(|w| w == b",,").expect("gs2 header") + 2;
            let bare = &client_first[gs2_len..];
            let r = bare.split(|&b| b == b',').find_map(|p| p.strip_prefix(b"r=")).expect("client nonce");
            self.client_first_bare = bare.to_vec();
            self.server_first = format!(
                "r={}{},s={},i={}",
                std::str::from_utf8(r).unwrap(),
                self.server_nonce,
                STANDARD.encode(&self.salt),
                self.iterations
            )
            .into_bytes();
            self.server_first.clone()
        }

        /// Check client-final and answer with server-final, or say why the client is refused.
        pub(crate) fn finish(&mut self, client_final: &[u8]) -> std::result::Result<Vec<u8>, String> {
            let s = std::str::from_utf8(client_final).map_err(|e| e.to_string())?;
            let (without_proof, proof) = s.rsplit_once(",p=").ok_or("no proof")?;
            let mut it = without_proof.split(',');
            let c = it.next().and_then(|c| c.strip_prefix("c=")).ok_or("no c=")?;
            if STANDARD.decode(c).map_err(|e| e.to_string())? != self.expected_cbind {
                return Err("channel binding mismatch".into());
            }
            let salted = pbkdf2_sha256(&self.password, &self.salt, self.iterations).unwrap();
            let client_key = hmac_sha256(&salted, &[b"Client Key"]).unwrap();
            let stored_key: [u8; 32] = Sha256::digest(client_key).into();
            let server_key = hmac_sha256(&salted, &[b"Server Key"]).unwrap();
            let mut auth = self.client_first_bare.clone();
            auth.push(b',');
            auth.extend_from_slice(&self.server_first);
            auth.push(b',');
            auth.extend_from_slice(without_proof.as_bytes());
            let client_sig = hmac_sha256(&stored_key, &[&auth]).unwrap();
            let proof = STANDARD.decode(proof).map_err(|e| e.to_string())?;
            if proof.len() != 32 {
                return Err("bad proof length".into());
            }
            let recovered: Vec<u8> = proof.iter().zip(client_sig).map(|(a, b)| a ^ b).collect();
            if Sha256::digest(&recovered).as_slice() != stored_key {
                return Err("invalid-proof".into());
            }
            let v = hmac_sha256(&server_key, &[&auth]).unwrap();
            Ok(format!("v={}", STANDARD.encode(v)).into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sim::Server;
    use super::*;
    use proptest::prelude::*;

    const RFC_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_FIRST: &[u8] =
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &[u8] = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &[u8] = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    const NONCE: [u8; 18] = [7; 18];

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn rfc() -> ScramSha256 {
        ScramSha256::with_client_nonce("user", b"pencil", ChannelBinding::Unsupported, RFC_NONCE).unwrap()
    }

    /// A client whose nonce is "AAAA…" (24 chars), with a small iteration cap for fast tests.
    fn client() -> ScramSha256 {
        ScramSha256::new(b"pw", ChannelBinding::Unsupported, [0; 18])
    }
    const OURS: &str = "AAAAAAAAAAAAAAAAAAAAAAAA";

    fn first_err(msg: &[u8]) -> Error {
        let mut c = client();
        let e = c.handle_server_first(msg).unwrap_err();
        assert!(!c.is_verified());
        // the machine is dead afterwards
        assert!(c.handle_server_first(msg).is_err());
        assert!(c.handle_server_final(b"v=AAAA").is_err());
        e
    }

    /// A client that has sent client-final to a simulated server, and that server.
    fn after_first(password: &[u8], stored: &[u8]) -> (ScramSha256, Server, Vec<u8>) {
        let mut c = ScramSha256::new(password, ChannelBinding::Unsupported, NONCE);
        let mut s = Server::new(stored, b"n,,");
        let sf = s.first(&c.client_first());
        let cf = c.handle_server_first(&sf).unwrap();
        (c, s, cf)
    }

    fn final_err(msg: &[u8]) -> Error {
        let (mut c, _, _) = after_first(b"pw", b"pw");
        let e = c.handle_server_final(msg).unwrap_err();
        assert!(!c.is_verified());
        assert!(c.handle_server_final(msg).is_err());
        e
    }

    // ---- vectors ----

    #[test]
    fn rfc7677_vector() {
        let mut c = rfc();
        assert_eq!(c.mechanism(), "SCRAM-SHA-256");
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let cf = c.handle_server_first(RFC_SERVER_FIRST).unwrap();
        assert_eq!(std::str::from_utf8(&cf).unwrap(), std::str::from_utf8(RFC_CLIENT_FINAL).unwrap());
        assert!(!c.is_verified());
        c.handle_server_final(RFC_SERVER_FINAL).unwrap();
        assert!(c.is_verified());
    }

    #[test]
    fn rfc7677_wrong_signature_refused() {
        let mut c = rfc();
        c.handle_server_first(RFC_SERVER_FIRST).unwrap();
        // flip one bit of the real signature
        let mut sig = STANDARD.decode(&RFC_SERVER_FINAL[2..]).unwrap();
        sig[31] ^= 1;
        let msg = format!("v={}", STANDARD.encode(sig));
        let e = c.handle_server_final(msg.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(!c.is_verified());
    }

    #[test]
    fn pbkdf2_can_be_cancelled() {
        let flag = std::sync::atomic::AtomicBool::new(true);
        let e = pbkdf2_sha256_cancellable(b"pw", b"salt", 10_000_000, Some(&flag)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        flag.store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            pbkdf2_sha256_cancellable(b"pw", b"salt", 4096, Some(&flag)).unwrap(),
            pbkdf2_sha256(b"pw", b"salt", 4096).unwrap()
        );
    }

    #[test]
    fn pbkdf2_vectors() {
        // RFC 7914 §11 (first 32 bytes) and Python hashlib.pbkdf2_hmac.
        assert_eq!(
            hex(&pbkdf2_sha256(b"passwd", b"salt", 1).unwrap()),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        assert_eq!(
            hex(&pbkdf2_sha256(b"Password", b"NaCl", 80000).unwrap()),
            "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
        );
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        assert_eq!(
            hex(&pbkdf2_sha256(b"pencil", &salt, 4096).unwrap()),
            "c4a49510323ab4f952cac1fa99441939e78ea74d6be81ddf7096e87513dc615d"
        );
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"\x00", b"\x80"));
    }

    // ---- client-first / channel binding (7) ----

    #[test]
    fn client_first_postgres_style() {
        let c = ScramSha256::new(b"pw", ChannelBinding::Unsupported, [0; 18]);
        assert_eq!(c.client_first(), format!("n,,n=,r={OURS}").into_bytes());
        let c = ScramSha256::new(b"pw", ChannelBinding::Unsupported, NONCE);
        let first = String::from_utf8(c.client_first()).unwrap();
        let nonce = first.strip_prefix("n,,n=,r=").unwrap();
        assert_eq!(nonce.len(), 24);
        assert_eq!(STANDARD.decode(nonce).unwrap(), NONCE);
        assert!(nonce.bytes().all(is_nonce_char));
    }

    #[test]
    fn channel_binding_headers_and_mechanisms() {
        let c = ScramSha256::new(b"pw", ChannelBinding::Unrequested, [0; 18]);
        assert_eq!(c.mechanism(), SCRAM_SHA_256);
        assert!(!c.is_channel_bound());
        assert_eq!(c.client_first(), format!("y,,n=,r={OURS}").into_bytes());
        let c = ScramSha256::new(b"pw", ChannelBinding::TlsServerEndPoint(vec![1, 2, 3]), [0; 18]);
        assert_eq!(c.mechanism(), SCRAM_SHA_256_PLUS);
        assert!(c.is_channel_bound());
        assert_eq!(c.client_first(), format!("p=tls-server-end-point,,n=,r={OURS}").into_bytes());
    }

    #[test]
    fn client_final_c_attribute() {
        let hash = vec![0xde, 0xad, 0xbe, 0xef];
        let mut p = b"p=tls-server-end-point,,".to_vec();
        p.extend_from_slice(&hash);
        for (cb, c_attr) in [
            (ChannelBinding::Unsupported, "c=biws,".to_string()),
            (ChannelBinding::Unrequested, "c=eSws,".to_string()),
            (ChannelBinding::TlsServerEndPoint(hash.clone()), format!("c={},", STANDARD.encode(&p))),
        ] {
            let mut c = ScramSha256::new(b"pw", cb, [0; 18]);
            let cf = c.handle_server_first(format!("r={OURS}x,s=c2FsdA==,i=1").as_bytes()).unwrap();
            let cf = String::from_utf8(cf).unwrap();
            assert!(cf.starts_with(&c_attr), "{cf}");
            assert!(cf.contains(&format!(",r={OURS}x,p=")), "{cf}");
        }
    }

    #[test]
    fn full_exchanges_with_simulated_server() {
        let hash = vec![9u8; 32];
        let mut plus = b"p=tls-server-end-point,,".to_vec();
        plus.extend_from_slice(&hash);
        for (cb, expected) in [
            (ChannelBinding::Unsupported, b"n,,".to_vec()),
            (ChannelBinding::Unrequested, b"y,,".to_vec()),
            (ChannelBinding::TlsServerEndPoint(hash.clone()), plus),
        ] {
            let mut c = ScramSha256::new(b"secret", cb, NONCE);
            let mut s = Server::new(b"secret", &expected);
            s.iterations = 4096;
            let sf = s.first(&c.client_first());
            let cf = c.handle_server_first(&sf).unwrap();
            let sfin = s.finish(&cf).unwrap();
            c.handle_server_final(&sfin).unwrap();
            assert!(c.is_verified());
            // nothing more is accepted
            assert!(c.handle_server_final(&sfin).is_err());
            assert!(c.handle_server_first(&sf).is_err());
        }
    }

    #[test]
    fn server_without_password_cannot_prove() {
        // Our proof is refused by a server that stored another password.
        let (_, mut s, cf) = after_first(b"right", b"wrong");
        assert!(s.finish(&cf).is_err());
        // A server that does not know the password signs with the wrong key: refused.
        let (mut c, _, _) = after_first(b"right", b"right");
        let (_, mut s2, cf2) = after_first(b"wrong", b"wrong");
        let v2 = s2.finish(&cf2).unwrap();
        assert_eq!(c.handle_server_final(&v2).unwrap_err().kind(), ErrorKind::Auth);
        assert!(!c.is_verified());
        // A signature replayed from an exchange with another nonce: refused.
        let (mut c, _, _) = after_first(b"right", b"right");
        let mut other = ScramSha256::new(b"right", ChannelBinding::Unsupported, [1; 18]);
        let mut s3 = Server::new(b"right", b"n,,");
        let cf3 = other.handle_server_first(&s3.first(&other.client_first())).unwrap();
        let v3 = s3.finish(&cf3).unwrap();
        assert_eq!(c.handle_server_final(&v3).unwrap_err().kind(), ErrorKind::Auth);
        assert!(!c.is_verified());
    }

    // ---- server-first (8) ----

    #[test]
    fn server_first_must_start_with_r() {
        for m in [
            format!("s=c2FsdA==,r={OURS}x,i=1"),
            format!("m=ext,r={OURS}x,s=c2FsdA==,i=1"),
            format!(" r={OURS}x,s=c2FsdA==,i=1"),
            format!("R={OURS}x,s=c2FsdA==,i=1"),
            format!("r{OURS}x,s=c2FsdA==,i=1"),
            String::new(),
        ] {
            assert_eq!(first_err(m.as_bytes()).kind(), ErrorKind::Protocol, "{m}");
        }
    }

    #[test]
    fn server_nonce_must_extend_ours() {
        // equal (not strictly longer), shorter, different, empty, same length but different
        let different = format!("B{}", OURS.get(1..).unwrap());
        for n in [
            OURS.to_string(),
            OURS.get(..23).unwrap().to_string(),
            String::new(),
            format!("{different}xyz"),
            format!("x{OURS}"),
        ] {
            let m = format!("r={n},s=c2FsdA==,i=1");
            let e = first_err(m.as_bytes());
            assert_eq!(e.kind(), ErrorKind::Protocol, "{m}");
            assert!(e.message().contains("nonce"), "{e}");
        }
    }

    #[test]
    fn server_nonce_must_be_printable() {
        for suffix in [&b"x y"[..], b"x\x01", b"\x7f", b"\xc3\xa9", b"\x00", b"\t"] {
            let mut m = format!("r={OURS}").into_bytes();
            m.extend_from_slice(suffix);
            m.extend_from_slice(b",s=c2FsdA==,i=1");
            let e = first_err(&m);
            assert_eq!(e.kind(), ErrorKind::Protocol);
            assert!(e.message().contains("nonce"), "{e}");
        }
        // every printable character except ',' is fine
        let all: String = (0x21u8..=0x7e).filter(|&b| b != b',').map(char::from).collect();
        let mut c = client();
        c.handle_server_first(format!("r={OURS}{all},s=c2FsdA==,i=1").as_bytes()).unwrap();
    }

    #[test]
    fn salt_must_be_valid_nonempty_base64() {
        for s in ["", "!!!!", "c2FsdA", "c2FsdA=", "c2Fs dA==", "c2FsdA==\n", "====", "c2FsdA==="] {
            let m = format!("r={OURS}x,s={s},i=1");
            let e = first_err(m.as_bytes());
            assert_eq!(e.kind(), ErrorKind::Protocol, "{m}");
            assert!(e.message().contains("salt"), "{m}: {e}");
        }
        let m = format!("r={OURS}x,i=1");
        assert_eq!(first_err(m.as_bytes()).kind(), ErrorKind::Protocol);
    }

    #[test]
    fn iterations_digits_only_and_at_least_one() {
        for i in ["", "-1", "+1", " 1", "1 ", "1a", "0x10", "1.0", "٣", "1e3"] {
            let m = format!("r={OURS}x,s=c2FsdA==,i={i}");
            let e = first_err(m.as_bytes());
            assert_eq!(e.kind(), ErrorKind::Protocol, "{m}");
        }
        for i in ["0", "000"] {
            let m = format!("r={OURS}x,s=c2FsdA==,i={i}");
            let e = first_err(m.as_bytes());
            assert_eq!(e.kind(), ErrorKind::Protocol, "{m}");
            assert!(e.message().contains("0"));
        }
        let mut c = client();
        c.handle_server_first(format!("r={OURS}x,s=c2FsdA==,i=0001").as_bytes()).unwrap();
    }

    #[test]
    fn iterations_capped() {
        let ok = |cap: u32, i: &str| {
            let mut c = client().with_iteration_cap(cap);
            c.handle_server_first(format!("r={OURS}x,s=c2FsdA==,i={i}").as_bytes())
        };
        ok(5, "5").unwrap();
        let e = ok(5, "6").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(e.message().contains("exceeds"), "{e}");
        // default cap: 10_000_000 (refused before any work is done)
        for i in ["10000001", "4294967295", "4294967296", "99999999999999999999999"] {
            let e = ok(DEFAULT_ITERATION_CAP, i).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Auth, "{i}");
        }
        let e = client().handle_server_first(format!("r={OURS}x,s=c2FsdA==,i=10000001").as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth);
    }

    #[test]
    fn attributes_in_order() {
        for m in [
            format!("r={OURS}x,i=1,s=c2FsdA=="),
            format!("s=c2FsdA==,i=1,r={OURS}x"),
            format!("r={OURS}x,s=c2FsdA==,s=c2FsdA==,i=1"),
            format!("r={OURS}x,r={OURS}x,s=c2FsdA==,i=1"),
            format!("r={OURS}x,s=c2FsdA=="),
            format!("r={OURS}x"),
        ] {
            assert_eq!(first_err(m.as_bytes()).kind(), ErrorKind::Protocol, "{m}");
        }
    }

    #[test]
    fn server_first_trailing_data_rejected() {
        for tail in [",", ",x=ext", ",i=1", ",,", ",m=ext"] {
            let m = format!("r={OURS}x,s=c2FsdA==,i=1{tail}");
            let e = first_err(m.as_bytes());
            assert_eq!(e.kind(), ErrorKind::Protocol, "{m}");
        }
        // NUL or junk glued to the count is not a digit
        let e = first_err(format!("r={OURS}x,s=c2FsdA==,i=1\0").as_bytes());
        assert_eq!(e.kind(), ErrorKind::Protocol);
    }

    // ---- state order (10) ----

    #[test]
    fn server_first_twice_is_refused() {
        let mut c = rfc();
        c.handle_server_first(RFC_SERVER_FIRST).unwrap();
        let e = c.handle_server_first(RFC_SERVER_FIRST).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        // and the exchange is dead: even the right signature no longer verifies
        assert!(c.handle_server_final(RFC_SERVER_FINAL).is_err());
        assert!(!c.is_verified());
    }

    #[test]
    fn server_final_before_first_is_refused() {
        let mut c = rfc();
        let e = c.handle_server_final(RFC_SERVER_FINAL).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(!c.is_verified());
        assert!(c.handle_server_first(RFC_SERVER_FIRST).is_err());
    }

    #[test]
    fn server_final_twice_is_refused() {
        let mut c = rfc();
        c.handle_server_first(RFC_SERVER_FIRST).unwrap();
        c.handle_server_final(RFC_SERVER_FINAL).unwrap();
        assert!(c.handle_server_final(RFC_SERVER_FINAL).is_err());
    }

    // ---- server-final (9) ----

    #[test]
    fn server_error_is_reported() {
        let e = final_err(b"e=invalid-proof");
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(e.message().contains("invalid-proof"), "{e}");
        let e = final_err(b"e=channel-bindings-dont-match,x=ext");
        assert!(e.message().contains("channel-bindings-dont-match"), "{e}");
        assert!(!e.message().contains("x=ext"), "{e}");
        // control characters are escaped, long values truncated
        let e = final_err(b"e=bad\n\x1b[31mred");
        assert!(!e.message().contains('\n') && !e.message().contains('\x1b'), "{e}");
        let long = format!("e={}", "a".repeat(5000));
        assert!(final_err(long.as_bytes()).message().len() < 400);
        assert_eq!(final_err(b"e=").kind(), ErrorKind::Auth);
    }

    #[test]
    fn signature_must_decode_to_32_bytes() {
        for n in [0usize, 1, 31, 33, 64] {
            let m = format!("v={}", STANDARD.encode(vec![0u8; n]));
            let e = final_err(m.as_bytes());
            assert_eq!(e.kind(), ErrorKind::Protocol, "{n}");
        }
        for m in [&b"v=!!!!"[..], b"v=AAAA AAAA", b"v=\xff"] {
            assert_eq!(final_err(m).kind(), ErrorKind::Protocol);
        }
    }

    #[test]
    fn wrong_signature_refused() {
        let m = format!("v={}", STANDARD.encode([0u8; 32]));
        let e = final_err(m.as_bytes());
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(e.message().contains("signature"), "{e}");
    }

    #[test]
    fn server_final_trailing_data_rejected() {
        let (mut c, mut s, cf) = after_first(b"pw", b"pw");
        let mut v = s.finish(&cf).unwrap();
        v.extend_from_slice(b",x=ext");
        assert_eq!(c.handle_server_final(&v).unwrap_err().kind(), ErrorKind::Protocol);
        assert!(!c.is_verified());
        let (mut c, mut s, cf) = after_first(b"pw", b"pw");
        let mut v = s.finish(&cf).unwrap();
        v.push(b'\n');
        assert!(c.handle_server_final(&v).is_err());
        assert!(!c.is_verified());
        let (mut c, mut s, cf) = after_first(b"pw", b"pw");
        let mut v = s.finish(&cf).unwrap();
        v.push(b',');
        assert!(c.handle_server_final(&v).is_err());
        assert!(!c.is_verified());
    }

    #[test]
    fn server_final_must_be_v_or_e() {
        for m in [&b""[..], b"v", b"e", b"x=abc", b"V=AAAA", b" v=AAAA", b"m=ext"] {
            assert_eq!(final_err(m).kind(), ErrorKind::Protocol);
        }
    }

    // ---- SASLprep (11) ----

    fn exchange(client_pw: &[u8], server_pw: &[u8]) -> bool {
        let mut c = ScramSha256::new(client_pw, ChannelBinding::Unsupported, NONCE);
        let mut s = Server::new(server_pw, b"n,,");
        let cf = c.handle_server_first(&s.first(&c.client_first())).unwrap();
        match s.finish(&cf) {
            Ok(v) => c.handle_server_final(&v).is_ok() && c.is_verified(),
            Err(_) => false,
        }
    }

    #[test]
    fn saslprep_non_ascii_space_maps_to_space() {
        assert!(exchange("a\u{00A0}b".as_bytes(), b"a b"));
        assert!(!exchange("a\u{00A0}b".as_bytes(), "a\u{00A0}b".as_bytes()));
    }

    #[test]
    fn saslprep_soft_hyphen_removed() {
        assert!(exchange("pass\u{00AD}word".as_bytes(), b"password"));
    }

    #[test]
    fn saslprep_prohibited_uses_raw_bytes() {
        let raw = "pw\u{E000}\u{00A0}".as_bytes();
        assert!(exchange(raw, raw));
    }

    #[test]
    fn invalid_utf8_password_works() {
        assert!(exchange(b"pw\xff\xfe", b"pw\xff\xfe"));
        assert!(exchange(b"", b""));
    }

    // ---- secrets (15) ----

    #[test]
    fn password_never_in_debug_or_errors() {
        let pw = b"hunter2-very-secret";
        let mut c = ScramSha256::new(pw, ChannelBinding::Unsupported, NONCE);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        let e = c.handle_server_first(b"r=zz,s=AA==,i=1").unwrap_err();
        assert!(!format!("{e:?} {e}").contains("hunter2"));
        let (mut c, _, _) = after_first(pw, pw);
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = c.handle_server_final(b"v=AAAA").unwrap_err();
        assert!(!format!("{e:?} {e}").contains("hunter2"));
    }

    #[test]
    fn random_nonces_differ() {
        let a = random_nonce().unwrap();
        let b = random_nonce().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), NONCE_LEN);
    }

    #[test]
    fn explicit_nonce_and_user_validation() {
        for bad in ["", "a,b", "a b", "é", "\x01"] {
            assert!(ScramSha256::with_client_nonce("u", b"pw", ChannelBinding::Unsupported, bad).is_err(), "{bad:?}");
        }
        let c = ScramSha256::with_client_nonce("a=b,c", b"pw", ChannelBinding::Unsupported, "n").unwrap();
        assert_eq!(c.client_first(), b"n,,n=a=3Db=2Cc,r=n");
    }

    // ---- fuzz-style properties ----

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn server_first_arbitrary_bytes_never_panic(msg in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut c = client().with_iteration_cap(16);
            let _ = c.handle_server_first(&msg);
            prop_assert!(!c.is_verified());
        }

        #[test]
        fn server_first_near_valid_never_panic(
            suffix in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut msg = format!("r={OURS}").into_bytes();
            msg.extend_from_slice(&suffix);
            let mut c = client().with_iteration_cap(16);
            if c.handle_server_first(&msg).is_ok() {
                prop_assert!(!c.is_verified());
            }
        }

        #[test]
        fn server_final_arbitrary_bytes_never_verify(
            first_tail in "[!-+\\--~]{1,10}",
            salt in proptest::collection::vec(any::<u8>(), 1..20),
            iterations in 1u32..8,
            finals in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 1..4),
            sig in proptest::collection::vec(any::<u8>(), 32..=32),
        ) {
            let mut c = client();
            let sf = format!("r={OURS}{first_tail},s={},i={iterations}", STANDARD.encode(&salt));
            c.handle_server_first(sf.as_bytes()).unwrap();
            for f in &finals {
                let _ = c.handle_server_final(f);
                prop_assert!(!c.is_verified());
            }
            let mut c = client();
            c.handle_server_first(sf.as_bytes()).unwrap();
            let _ = c.handle_server_final(format!("v={}", STANDARD.encode(&sig)).as_bytes());
            prop_assert!(!c.is_verified());
        }
    }
}
