//! TLS for server connections (feature `tls`, or `tls-aws-lc`): rustls with the *ring* or the aws-lc-rs crypto
//! provider (`provider.rs`), libpq's `sslmode` meanings, a hardened SSLRequest exchange, and the
//! `tls-server-end-point` data for SCRAM-SHA-256-PLUS.
//!
//! [`crate::connect`] uses this module for each connection attempt; nothing here needs calling directly, except the
//! channel-binding helpers ([`server_end_point_hash`], [`EndPointHash`]) which are public for tests and tools.
//!
//! # `sslmode`, as libpq (16) reads it
//!
//! | `sslmode` | SSLRequest answered `S` | answered `N` | server error during startup |
//! |---|---|---|---|
//! | `disable` | (no SSLRequest: plaintext) | | |
//! | `allow` | (first attempt plaintext, no SSLRequest) | | retry once with TLS (`require`'s rules) |
//! | `prefer` (default) | TLS | plaintext on the same connection | over TLS: retry once in plaintext |
//! | `require` | TLS | fail | fail |
//! | `verify-ca` | TLS, chain verified | fail | fail |
//! | `verify-full` | TLS, chain and host name verified | fail | fail |
//!
//! - The server certificate is verified against `sslrootcert` (a PEM file; default `~/.postgresql/root.crt`
//!   when that exists) whenever one is there, also with `allow`/`prefer`/`require` (libpq does the same:
//!   `require` with a root certificate behaves like `verify-ca`). `verify-ca`/`verify-full` without one fail.
//!   `sslrootcert=system` uses the platform's trust store (through `rustls-native-certs`, which reads what
//!   OpenSSL would: `SSL_CERT_FILE`/`SSL_CERT_DIR` or the distribution's bundle) and makes `verify-full` the
//!   default (the configuration refuses weaker modes with it, as libpq 16).
//! - `verify-full` checks the host name against the certificate's subject alternative names: DNS names, and
//!   IP addresses for an IP host. Unlike libpq, the subject's CN is never used as a fallback (webpki follows
//!   RFC 6125 here); certificates made in the last decade all carry SANs.
//! - With `prefer`, a failed TLS handshake (or a server error during startup over TLS) is followed by one
//!   plaintext attempt, as libpq does — `prefer` never protected against an active attacker, who can simply
//!   answer `N`. With `channel_binding=require` there is no plaintext retry, since it could not succeed.
//! - With `hostaddr`, pgrepl connects to that address and, as libpq, checks the certificate against the `host`
//!   given beside it and sends that name as SNI ([`crate::config::Host::Addr`]); `verify-full` with a
//!   `hostaddr` and no `host` is refused ("host name must be specified for a verified SSL connection").
//! - Unix-domain sockets never use TLS, whatever `sslmode` says (libpq skips SSLRequest on them too; the
//!   server would answer `N`).
//! - Client certificates: `sslcert`/`sslkey` (PEM; default `~/.postgresql/postgresql.crt` and `.key`, used
//!   when the certificate file exists). The key file must not be readable by group or others (0600), or
//!   0640 when owned by root — libpq's rule. Encrypted keys (`sslpassword`) are not supported.
//!   `sslcertmode=disable` never sends one (nor reads the files); `allow` is the default; `require` is refused
//!   (rustls does not tell whether the server asked for a certificate).
//! - `sslsni` (default on) sends the host name as SNI, never for an IP address.
//! - ALPN `postgresql` is offered on every TLS connection (libpq 17 does the same; older servers ignore it).
//!
//! # SSLRequest hardening (security checklist item 5)
//!
//! After SSLRequest exactly one byte is read. `S`: TLS starts, and any byte the server sent after the `S`
//! before our ClientHello is an attack (CVE-2021-23222, data injected to be read as if it came over TLS), so
//! the connection fails. `N`: plaintext, only where `sslmode` allows it. `E`: the server (or someone in the
//! middle) sent an error before any authentication; its text is not read or shown (CVE-2024-10977) and the
//! connection fails, never falling back to plaintext. Any other byte is a protocol error.
//!
//! `sslnegotiation=direct` (libpq 17, PostgreSQL 17 servers) skips SSLRequest: the TLS ClientHello is the
//! first thing sent, with ALPN `postgresql`, and the server must select that protocol. The configuration only
//! accepts it with `sslmode=require` or stronger, as libpq.
//!
//! # Channel binding
//!
//! [`server_end_point_hash`] gives RFC 5929's `tls-server-end-point` data for the server certificate, as
//! PostgreSQL computes it (`end_point.rs` has the rules).
//!
//! # Crypto provider
//!
//! Chosen in one place, `provider.rs`, with its cipher suites and key-exchange groups listed there rather than
//! taken from rustls's defaults: *ring* with the `tls` feature (classical key exchange, X25519 first), aws-lc-rs
//! with `tls-aws-lc` (post-quantum X25519MLKEM768 first, then the same classical groups), which wins when both
//! are on.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, Resumption, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::auth::TlsInfo;
use crate::config::{ChannelBinding, Config, Host, SslCertMode, SslMode, SslNegotiation};
use crate::conn::{Endpoint, Socket};
use crate::error::{Error, ErrorKind, Result};
use crate::proto::frontend;

mod end_point;
mod provider;
pub use end_point::{server_end_point_hash, signature_algorithm, EndPointHash};

/// The ALPN protocol name PostgreSQL registered (and PostgreSQL 17 requires with direct TLS).
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

// ---------------------------------------------------------------------------------------------------------------
// Connection attempts
// ---------------------------------------------------------------------------------------------------------------

/// How one connection attempt uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// No TLS: `disable`, `allow`'s first attempt, `prefer`'s fallback, Unix sockets.
    Plain,
    /// SSLRequest; TLS on `S`, plaintext on `N` (`prefer`).
    Preferred,
    /// SSLRequest; TLS on `S`, failure otherwise (`require`, `verify-*`, `allow`'s retry).
    Required,
    /// The TLS handshake straight away, with ALPN (`sslnegotiation=direct`).
    Direct,
}

/// The TLS side of connecting to one host: how the next attempt starts, and whether a failed attempt is
/// followed by one the other way (`sslmode=allow` and `prefer`, as libpq).
///
/// [`Plan::negotiate`] runs after the socket is connected and before the StartupMessage; when the attempt
/// fails, [`Plan::retry_after`] says whether to connect again.
#[derive(Debug)]
pub(crate) struct Plan {
    mode: SslMode,
    attempt: Attempt,
    binding_required: bool,
    retried: bool,
    /// This attempt completed a TLS handshake.
    used_tls: bool,
    /// This attempt's TLS handshake failed.
    handshake_failed: bool,
}

impl Plan {
    /// The plan for `host` under `cfg`'s `sslmode` and `sslnegotiation`.
    pub(crate) fn new(cfg: &Config, host: &Host) -> Plan {
        let attempt = match (host, cfg.sslmode) {
            (Host::Unix(_), _) | (_, SslMode::Disable | SslMode::Allow) => Attempt::Plain,
            (_, SslMode::Prefer) => Attempt::Preferred,
            _ if cfg.sslnegotiation == SslNegotiation::Direct => Attempt::Direct,
            _ => Attempt::Required,
        };
        Plan {
            mode: cfg.sslmode,
            attempt,
            binding_required: cfg.channel_binding == ChannelBinding::Require,
            retried: false,
            used_tls: false,
            handshake_failed: false,
        }
    }

    /// Start TLS on a freshly connected socket as this attempt says, before anything else is sent. Returns the
    /// socket to use (TLS or the plain one) and, for TLS, what the authenticator needs for channel binding.
    pub(crate) async fn negotiate(
        &mut self,
        cfg: &Config,
        host: &Host,
        endpoint: &Endpoint,
        sock: Socket,
    ) -> Result<(Socket, Option<TlsInfo>)> {
        self.used_tls = false;
        self.handshake_failed = false;
        let (mut tcp, addr) = match (sock, endpoint) {
            (Socket::Tcp(tcp), Endpoint::Tcp(addr)) => (tcp, *addr),
            (sock, _) => return Ok((sock, None)),
        };
        // The certificate is checked against (and SNI names) the host name, not the address connected to: for
        // `hostaddr`, the `host` given beside it (libpq).
        let name = host.tls_name();
        let endpoint = || match name {
            Some(n) if n != addr.ip().to_string() => format!("{} ({n})", addr),
            _ => addr.to_string(),
        };
        match self.attempt {
            Attempt::Plain => Ok((Socket::Tcp(tcp), None)),
            Attempt::Direct => {
                let setup = TlsSetup::new(cfg, name, addr.ip())?;
                self.handshake(setup, tcp, true, &endpoint()).await
            }
            Attempt::Preferred | Attempt::Required => match ssl_request(&mut tcp, &endpoint()).await? {
                SslAnswer::Tls => {
                    let setup = TlsSetup::new(cfg, name, addr.ip())?;
                    self.handshake(setup, tcp, false, &endpoint()).await
                }
                SslAnswer::Plain if self.attempt == Attempt::Preferred => Ok((Socket::Tcp(tcp), None)),
                SslAnswer::Plain => Err(Error::new(
                    ErrorKind::Tls,
                    format!("server {} does not support SSL, but SSL was required (sslmode={})", endpoint(), self.mode),
                )),
            },
        }
    }

    async fn handshake(
        &mut self,
        setup: TlsSetup,
        tcp: TcpStream,
        direct: bool,
        endpoint: &str,
    ) -> Result<(Socket, Option<TlsInfo>)> {
        let connector = TlsConnector::from(setup.config);
        let stream = match connector.connect(setup.server_name, tcp).await {
            Ok(s) => s,
            Err(e) => {
                self.handshake_failed = true;
                return Err(handshake_error(e, endpoint, direct));
            }
        };
        self.used_tls = true;
        let info = check_session(&stream, direct, endpoint)?;
        Ok((Socket::Tls(Box::new(stream)), Some(info)))
    }

    /// Whether a failed attempt is followed by another, and if so prepare it. At most one retry:
    /// - `allow`: the plaintext attempt got an error from the server (say, a `hostssl` rule) → TLS;
    /// - `prefer`: the TLS handshake failed, or the server sent an error during startup over TLS → plaintext
    ///   (not with `channel_binding=require`, which plaintext cannot satisfy). Not after a refused SSLRequest
    ///   answer (`E`, bytes injected after `S`): those are attacks or broken servers, and final.
    pub(crate) fn retry_after(&mut self, err: &Error) -> bool {
        if self.retried {
            return false;
        }
        let next = match (self.mode, self.attempt) {
            // any error the server reported, whatever its kind (AuthFailed for pg_hba's 28000 among them)
            (SslMode::Allow, Attempt::Plain) if err.as_db().is_some() => Attempt::Required,
            (SslMode::Prefer, Attempt::Preferred)
                if !self.binding_required && (self.handshake_failed || (self.used_tls && err.as_db().is_some())) =>
            {
                Attempt::Plain
            }
            _ => return false,
        };
        self.attempt = next;
        self.retried = true;
        true
    }
}

/// The two answers to SSLRequest that let the connection go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslAnswer {
    /// `S`.
    Tls,
    /// `N`.
    Plain,
}

/// Send SSLRequest and read exactly one byte of answer (security checklist item 5).
async fn ssl_request(tcp: &mut TcpStream, endpoint: &str) -> Result<SslAnswer> {
    let mut out = BytesMut::with_capacity(8);
    frontend::ssl_request(&mut out);
    tcp.write_all(&out).await.map_err(|e| Error::io(format!("sending SSLRequest to {endpoint}"), e))?;
    let mut answer = [0u8; 1];
    match tcp.read_exact(&mut answer).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(Error::closed(format!("server {endpoint} closed the connection in reply to SSLRequest")))
        }
        Err(e) => return Err(Error::io(format!("reading the answer to SSLRequest from {endpoint}"), e)),
    }
    match answer {
        [b'S'] => {
            // The server sends nothing more until our ClientHello: anything already here was injected to be
            // read as if it had come through TLS (CVE-2021-23222).
            let mut probe = [0u8; 1];
            match tcp.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(SslAnswer::Tls),
                Ok(0) => Err(Error::closed(format!("server {endpoint} closed the connection after accepting SSL"))),
                Ok(_) => Err(Error::new(
                    ErrorKind::Tls,
                    format!("received unencrypted data after SSL response from {endpoint}: refusing the connection"),
                )),
                Err(e) => Err(Error::io(format!("reading from {endpoint}"), e)),
            }
        }
        [b'N'] => Ok(SslAnswer::Plain),
        // The text that follows is unauthenticated and may come from an attacker: it is neither read nor shown
        // (CVE-2024-10977), and there is no plaintext fallback.
        [b'E'] => Err(Error::new(
            ErrorKind::Tls,
            format!(
                "server {endpoint} answered SSLRequest with an error (its text is not shown: it is unauthenticated); \
                 the connection is not continued without TLS"
            ),
        )),
        [other] => Err(Error::protocol(format!(
            "received invalid response to SSL negotiation from {endpoint}: byte 0x{other:02x}"
        ))),
    }
}

/// After a successful handshake: ALPN where required, and the channel-binding data.
fn check_session(stream: &TlsStream<TcpStream>, direct: bool, endpoint: &str) -> Result<TlsInfo> {
    let (_, conn) = stream.get_ref();
    if direct && conn.alpn_protocol() != Some(ALPN_POSTGRESQL) {
        return Err(Error::new(
            ErrorKind::Tls,
            format!(
                "direct SSL connection to {endpoint} was established without ALPN protocol negotiation \
                 (the server must select \"postgresql\")"
            ),
        ));
    }
    let hash = conn.peer_certificates().and_then(|c| c.first()).and_then(|c| server_end_point_hash(c));
    Ok(TlsInfo { server_end_point_hash: hash })
}

fn handshake_error(e: std::io::Error, endpoint: &str, direct: bool) -> Error {
    let what = format!("TLS handshake with {endpoint} failed");
    if direct && matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset) {
        // A server before PostgreSQL 17 reads the ClientHello as a startup packet of impossible length and hangs
        // up without a word. A setting error, not a transient one: kind Tls, never retried (libpq fails too).
        return Error::new(
            ErrorKind::Tls,
            format!(
                "{what}: the server closed the connection ({e}); sslnegotiation=direct needs PostgreSQL 17 or \
                 later, older servers expect SSLRequest first (sslnegotiation=postgres)"
            ),
        );
    }
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => Error::new(ErrorKind::Tls, format!("{what}: {tls}")),
        None => Error::io(what, e),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// rustls configuration
// ---------------------------------------------------------------------------------------------------------------

/// What the handshake needs: the client configuration and the name to verify (and send as SNI).
struct TlsSetup {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl TlsSetup {
    /// `name`: what the certificate must name (`sslmode=verify-full`) and SNI carries; `None` when the host was
    /// given only as `hostaddr`, which `verify-full` refuses (libpq: "host name must be specified"). `addr`: the
    /// address connected to.
    fn new(cfg: &Config, name: Option<&str>, addr: IpAddr) -> Result<TlsSetup> {
        let provider = Arc::new(provider::crypto_provider());
        let algs = provider.signature_verification_algorithms;
        let roots = trust_anchors(cfg)?;
        let parsed_name = name.and_then(|n| ServerName::try_from(n.to_owned()).ok());
        let verifier: Arc<dyn ServerCertVerifier> = match (cfg.sslmode, roots) {
            (SslMode::VerifyFull, Some(roots)) => {
                let Some(host) = name else {
                    return Err(Error::config(
                        "host",
                        format!(
                            "host name must be specified for a verified SSL connection (sslmode=verify-full with \
                             hostaddr={addr} and no host)"
                        ),
                    ));
                };
                if parsed_name.is_none() {
                    return Err(Error::config(
                        "host",
                        format!("{host:?} is neither a valid DNS name nor an IP address, so sslmode=verify-full cannot check it"),
                    ));
                }
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| Error::new(ErrorKind::Tls, format!("cannot verify server certificates: {e}")))?
            }
            (_, Some(roots)) => Arc::new(Lenient { roots: Some(roots), algs }),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(Error::config(
                    "sslrootcert",
                    format!(
                        "root certificate file {:?} does not exist; either provide the file, use the system's \
                         trusted roots with sslrootcert=system, or change sslmode to disable server certificate \
                         verification",
                        root_cert_path(cfg).unwrap_or_else(|| PathBuf::from("~/.postgresql/root.crt"))
                    ),
                ))
            }
            (_, None) => Arc::new(Lenient { roots: None, algs }),
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::new(ErrorKind::Tls, format!("TLS setup: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match client_certificate(cfg)? {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::config("sslkey", format!("cannot use the client certificate and key: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        config.enable_sni = cfg.sslsni;
        // Every handshake carries the certificate, which channel binding hashes.
        config.resumption = Resumption::disabled();
        // No name, or one that is neither DNS nor IP, can only be used where names are not checked: the address
        // stands in (an IP name makes rustls send no SNI).
        let server_name = parsed_name.unwrap_or(ServerName::IpAddress(addr.into()));
        Ok(TlsSetup { config: Arc::new(config), server_name })
    }
}

/// `~/.postgresql/<file>`.
fn default_path(file: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(Path::new(&home).join(".postgresql").join(file))
}

/// The trust anchors for the server certificate, if any: `sslrootcert=system`, the `sslrootcert` file, or
/// `~/.postgresql/root.crt`. A file that does not exist means none (libpq: then only `verify-*` fail).
fn trust_anchors(cfg: &Config) -> Result<Option<RootCertStore>> {
    if cfg.sslrootcert.as_deref().is_some_and(|p| p.as_os_str() == "system") {
        return system_roots().map(Some);
    }
    let Some(path) = root_cert_path(cfg) else { return Ok(None) };
    if std::fs::metadata(&path).is_err() {
        return Ok(None);
    }
    let bad = |e: &dyn std::fmt::Display| {
        Error::config("sslrootcert", format!("could not read root certificate file {path:?}: {e}"))
    };
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| bad(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad(&"no usable certificate in it"));
    }
    Ok(Some(store))
}

/// The root certificate file: `sslrootcert`, else `~/.postgresql/root.crt`.
fn root_cert_path(cfg: &Config) -> Option<PathBuf> {
    cfg.sslrootcert.clone().or_else(|| default_path("root.crt"))
}

/// The platform's trust store (`sslrootcert=system`).
fn system_roots() -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map(|e| format!(": {e}")).unwrap_or_default();
        return Err(Error::config(
            "sslrootcert",
            format!("sslrootcert=system, but no trusted root certificate was found on this system{why}"),
        ));
    }
    Ok(store)
}

/// The client certificate chain and key: `sslcert`/`sslkey`, else `~/.postgresql/postgresql.crt`/`.key`.
/// No certificate file means no client certificate (libpq); a certificate without its key is an error.
fn client_certificate(cfg: &Config) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>> {
    if cfg.sslcertmode == SslCertMode::Disable {
        return Ok(None);
    }
    let Some(cert_path) = cfg.sslcert.clone().or_else(|| default_path("postgresql.crt")) else { return Ok(None) };
    if std::fs::metadata(&cert_path).is_err() {
        return Ok(None);
    }
    let bad_cert = |e: &dyn std::fmt::Display| {
        Error::config("sslcert", format!("could not read certificate file {cert_path:?}: {e}"))
    };
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| bad_cert(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(&e))?;
    if chain.is_empty() {
        return Err(bad_cert(&"no certificate in it"));
    }
    let key_path = match cfg.sslkey.clone().or_else(|| default_path("postgresql.key")) {
        Some(p) if std::fs::metadata(&p).is_ok() => p,
        p => {
            return Err(Error::config(
                "sslkey",
                format!("certificate present, but not private key file {:?}", p.unwrap_or_default()),
            ))
        }
    };
    check_key_permissions(&key_path)?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| Error::config("sslkey", format!("could not load private key file {key_path:?}: {e}")))?;
    Ok(Some((chain, key)))
}

/// libpq's rule: the key file is a regular file with no group/other access (0600 or less), or, when root owns
/// it, at most group read (0640).
fn check_key_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::config("sslkey", format!("could not stat private key file {path:?}: {e}")))?;
    if !meta.is_file() {
        return Err(Error::config("sslkey", format!("private key file {path:?} is not a regular file")));
    }
    let mode = meta.mode();
    let too_open = if meta.uid() == 0 { mode & 0o037 != 0 } else { mode & 0o077 != 0 };
    if too_open {
        return Err(Error::config(
            "sslkey",
            format!(
                "private key file {path:?} has group or world access; file must have permissions u=rw (0600) \
                 or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root"
            ),
        ));
    }
    Ok(())
}

/// Every sslmode but `verify-full` (which uses rustls' own WebPKI verifier):
/// - with a root certificate (`verify-ca`, and `require`/`prefer`/`allow` when one is there): the chain must
///   lead to a trusted root; the name is not checked;
/// - without one (`require`/`prefer`/`allow`): any certificate is accepted, as in libpq.
///
/// Either way the handshake signature is checked, so the peer does hold the certificate's key — which is what
/// channel binding builds on.
#[derive(Debug)]
struct Lenient {
    roots: Option<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(&cert, roots, intermediates, now, self.algs.all)?;
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn cfg(s: &str) -> Config {
        Config::parse(&format!("user=u dbname=d {s}")).unwrap()
    }

    #[test]
    fn plan_per_sslmode() {
        let tcp = Host::Tcp("localhost".into());
        let unix = Host::Unix("/tmp".into());
        let cases = [
            ("sslmode=disable", Attempt::Plain),
            ("sslmode=allow", Attempt::Plain),
            ("sslmode=prefer", Attempt::Preferred),
            ("", Attempt::Preferred),
            ("sslmode=require", Attempt::Required),
            ("sslmode=verify-ca", Attempt::Required),
            ("sslmode=verify-full", Attempt::Required),
            ("sslmode=require sslnegotiation=direct", Attempt::Direct),
            ("sslmode=verify-full sslnegotiation=direct", Attempt::Direct),
        ];
        for (s, want) in cases {
            let c = cfg(s);
            assert_eq!(Plan::new(&c, &tcp).attempt, want, "{s}");
            assert_eq!(Plan::new(&c, &unix).attempt, Attempt::Plain, "{s} over a Unix socket");
        }
    }

    #[test]
    fn retries_as_libpq() {
        let tcp = Host::Tcp("localhost".into());
        let db = Error::db(crate::error::DbError { code: "28000".into(), ..Default::default() });
        let auth = Error::auth("refused");
        let tls_err = Error::new(ErrorKind::Tls, "handshake");

        // allow: a server error on the plaintext attempt → one TLS attempt; nothing else.
        let mut p = Plan::new(&cfg("sslmode=allow"), &tcp);
        assert!(!p.retry_after(&auth));
        assert!(p.retry_after(&db));
        assert_eq!(p.attempt, Attempt::Required);
        assert!(!p.retry_after(&db), "only one retry");

        // prefer: after a failed handshake, or a server error over TLS → plaintext once.
        let mut p = Plan::new(&cfg("sslmode=prefer"), &tcp);
        p.handshake_failed = true;
        assert!(p.retry_after(&tls_err));
        assert_eq!(p.attempt, Attempt::Plain);
        p.handshake_failed = false;
        assert!(!p.retry_after(&db));

        let mut p = Plan::new(&cfg("sslmode=prefer"), &tcp);
        p.used_tls = true;
        assert!(!p.retry_after(&auth), "client-side refusals are final");
        assert!(p.retry_after(&db));

        // prefer, but the server said N (no TLS used): a server error is final.
        let mut p = Plan::new(&cfg("sslmode=prefer"), &tcp);
        assert!(!p.retry_after(&db));
        // A refused SSLRequest answer (E, injected bytes) is neither a handshake failure nor TLS use: final.
        assert!(!p.retry_after(&tls_err));

        // prefer with channel_binding=require: plaintext cannot succeed, so no retry.
        let mut p = Plan::new(&cfg("sslmode=prefer channel_binding=require"), &tcp);
        p.handshake_failed = true;
        assert!(!p.retry_after(&tls_err));

        for s in ["sslmode=disable", "sslmode=require", "sslmode=verify-full"] {
            let mut p = Plan::new(&cfg(s), &tcp);
            p.handshake_failed = true;
            p.used_tls = true;
            assert!(!p.retry_after(&db) && !p.retry_after(&tls_err), "{s}");
        }
    }

    /// Connect a plan to a listener on 127.0.0.1 and return what the client sent first and the client's result.
    async fn first_bytes(conninfo: &str, reply: &'static [u8]) -> (Vec<u8>, Result<(Socket, Option<TlsInfo>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = vec![0u8; 16 * 1024];
            let n = s.read(&mut got).await.unwrap();
            got.truncate(n);
            s.write_all(reply).await.unwrap();
            // Then EOF, after the reply (a client that waits for more must see the end), and everything the
            // client sends read until it closes, so that closing never resets a connection with unread bytes
            // (a reset may discard the reply before the client has read it). Not "keep the socket open for
            // 200 ms", which a slow client could outlast.
            s.shutdown().await.unwrap();
            tokio::spawn(async move {
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(std::time::Duration::from_secs(60), s.read_to_end(&mut rest)).await;
            });
            got
        });
        let c = cfg(&format!("host=127.0.0.1 port={port} {conninfo}"));
        let host = Host::Tcp("127.0.0.1".into());
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut plan = Plan::new(&c, &host);
        let r = plan.negotiate(&c, &host, &Endpoint::Tcp(([127, 0, 0, 1], port).into()), Socket::Tcp(tcp)).await;
        (server.await.unwrap(), r)
    }

    const SSL_REQUEST: &[u8] = &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

    /// The read-coalescing socket options (client.rs) reach the TCP connection under TLS: set on a
    /// [`Socket::Tls`], read back from the TCP socket underneath.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn socket_options_reach_the_tcp_connection_under_tls() {
        use crate::conn::tests::sockopt;
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(provider::crypto_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        server.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(s).await.unwrap();
            // one exchange each way, so that the kernel has round-trip samples
            tls.write_all(b"x").await.unwrap();
            tls.flush().await.unwrap();
            let mut b = [0u8; 1];
            tls.read_exact(&mut b).await.unwrap();
            tls
        });
        let c = cfg(&format!("host=127.0.0.1 port={port} sslmode=require sslnegotiation=direct"));
        let host = Host::Tcp("127.0.0.1".into());
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut plan = Plan::new(&c, &host);
        let (mut sock, _) =
            plan.negotiate(&c, &host, &Endpoint::Tcp(([127, 0, 0, 1], port).into()), Socket::Tcp(tcp)).await.unwrap();
        let mut b = [0u8; 1];
        sock.read_exact(&mut b).await.unwrap();
        sock.write_all(b"y").await.unwrap();
        sock.flush().await.unwrap();
        let _peer = server.await.unwrap();
        let Socket::Tls(tls) = &sock else { panic!("not TLS") };
        let tcp = tls.get_ref().0;
        assert!(sock.set_recv_lowat(4096));
        assert_eq!(sockopt(tcp, libc::SOL_SOCKET, libc::SO_RCVLOWAT), 4096);
        assert!(sock.set_recv_buf(96 * 1024));
        assert!(sockopt(tcp, libc::SOL_SOCKET, libc::SO_RCVBUF) >= 2 * 4096);
        #[cfg(any(target_env = "gnu", target_env = "musl"))]
        assert!(sock.min_rtt().is_some());
        if let (true, Some(opt)) = (sock.can_unlock_recv_buf(), crate::conn::SO_BUF_LOCK) {
            assert_eq!(sockopt(tcp, libc::SOL_SOCKET, opt), 2);
            assert!(sock.unlock_recv_buf());
            assert_eq!(sockopt(tcp, libc::SOL_SOCKET, opt), 0);
        }
    }

    #[tokio::test]
    async fn direct_negotiation_sends_client_hello_with_alpn_first() {
        let (got, r) = first_bytes("sslmode=require sslnegotiation=direct", b"").await;
        // A TLS handshake record (0x16, version 3.x), no SSLRequest before it, ALPN "postgresql" inside.
        assert_eq!(got[0], 0x16, "{got:02x?}");
        assert_eq!(got[1], 0x03);
        assert_ne!(&got[..8], SSL_REQUEST);
        assert!(got.windows(ALPN_POSTGRESQL.len()).any(|w| w == ALPN_POSTGRESQL), "ALPN offered");
        // the listener is no TLS server: it hangs up on the ClientHello, as every server before PostgreSQL 17
        // does, which is a setting error naming what direct TLS needs, not a retryable I/O error
        let Err(e) = r else { panic!("a TLS session with a listener that hung up") };
        assert_eq!(e.kind(), ErrorKind::Tls, "{e:?}");
        assert!(!e.is_retryable(), "{e}");
        assert!(e.to_string().contains("sslnegotiation=direct needs PostgreSQL 17 or later"), "{e}");
    }

    #[tokio::test]
    async fn postgres_negotiation_sends_ssl_request_first() {
        let (got, r) = first_bytes("sslmode=require", b"N").await;
        assert_eq!(got, SSL_REQUEST);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Tls);
        assert!(e.to_string().contains("does not support SSL"), "{e}");

        // prefer goes on in plaintext on the same socket after N.
        let (got, r) = first_bytes("sslmode=prefer", b"N").await;
        assert_eq!(got, SSL_REQUEST);
        let (sock, tls) = r.unwrap();
        assert!(matches!(sock, Socket::Tcp(_)) && tls.is_none());
    }

    #[tokio::test]
    async fn ssl_request_answers_are_hardened() {
        for mode in ["prefer", "require", "verify-full"] {
            // Bytes after S, before the handshake: refused, never handed to TLS.
            let (_, r) = first_bytes(&format!("sslmode={mode}"), b"SZ\0\0\0\x05I").await;
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Tls, "{mode}: {e}");
            assert!(e.to_string().contains("unencrypted data after SSL response"), "{e}");

            // E: no plaintext fallback, and the (unauthenticated) text is not shown.
            let (_, r) = first_bytes(&format!("sslmode={mode}"), b"E\0\0\0\x20SFATAL\0Mforged by mallory\0\0").await;
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Tls, "{mode}: {e}");
            assert!(!e.to_string().contains("mallory"), "{e}");

            // Anything else: protocol error.
            let (_, r) = first_bytes(&format!("sslmode={mode}"), b"X").await;
            assert_eq!(r.unwrap_err().kind(), ErrorKind::Protocol);

            // EOF.
            let (_, r) = first_bytes(&format!("sslmode={mode}"), b"").await;
            assert_eq!(r.unwrap_err().kind(), ErrorKind::Closed);
        }
    }

    #[tokio::test]
    async fn plain_attempts_send_nothing() {
        for s in ["sslmode=disable", "sslmode=allow"] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let c = cfg(&format!("host=127.0.0.1 port={port} {s}"));
            let host = Host::Tcp("127.0.0.1".into());
            let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let (mut server, _) = listener.accept().await.unwrap();
            let (sock, tls) = Plan::new(&c, &host)
                .negotiate(&c, &host, &Endpoint::Tcp(([127, 0, 0, 1], port).into()), Socket::Tcp(tcp))
                .await
                .unwrap();
            assert!(matches!(sock, Socket::Tcp(_)) && tls.is_none());
            drop(sock);
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "{s}: sent {rest:02x?}");
        }
    }
}
