//! Authentication: cleartext, MD5 and SCRAM-SHA-256 as sans-IO state machines.
//!
//! [`Authenticator`] sequences the server's authentication requests (`R` messages, decoded by the caller into
//! [`AuthRequest`]) and produces the replies to send ([`AuthReply`]); it never touches a socket. It enforces
//! `require_auth` ([`RequireAuth`]) *before* producing any reply, refuses out-of-order requests, accepts
//! AuthenticationOk after SCRAM only once the server's signature verified, and applies `channel_binding`
//! ([`ChannelBindingMode`]) with the TLS facts the caller supplies ([`TlsInfo`]).
//!
//! ```
//! use pgrepl::auth::{AuthReply, AuthRequest, Authenticator, RequireAuth};
//! let mut auth = Authenticator::new(b"alice", Some(b"secret"), RequireAuth::default(), None, [0; 18]);
//! let reply = auth.handle(AuthRequest::CleartextPassword).unwrap();
//! assert_eq!(reply, Some(AuthReply::Password(b"secret".to_vec())));
//! assert_eq!(auth.handle(AuthRequest::Ok).unwrap(), None);
//! assert!(auth.is_done());
//! ```

pub mod md5;
pub mod require;
mod saslprep;
pub mod scram;

pub use md5::md5_password;
pub use require::{AuthMethod, RequireAuth};
pub use scram::{random_nonce, ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS};

use std::fmt;

use crate::error::{Error, ErrorKind, Result};

/// The `channel_binding` connection option (as libpq); [`crate::config::Config::channel_binding`] holds one
/// (`crate::config::ChannelBinding` is the same type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ChannelBindingMode {
    /// Never use channel binding (`n,,`), even when the server offers SCRAM-SHA-256-PLUS.
    Disable,
    /// Use channel binding when TLS is in use and the server offers SCRAM-SHA-256-PLUS; otherwise tell the
    /// server we could have (`y,,` over TLS) so that a stripped -PLUS is detected by the server (libpq's default
    /// with TLS support).
    #[default]
    Prefer,
    /// Require TLS, SCRAM-SHA-256-PLUS and a completed channel-bound exchange; never answer cleartext or MD5.
    Require,
}

impl ChannelBindingMode {
    /// Parse the libpq spelling (`disable`, `prefer`, `require`).
    pub fn parse(s: &str) -> Option<ChannelBindingMode> {
        Some(match s {
            "disable" => ChannelBindingMode::Disable,
            "prefer" => ChannelBindingMode::Prefer,
            "require" => ChannelBindingMode::Require,
            _ => return None,
        })
    }

    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelBindingMode::Disable => "disable",
            ChannelBindingMode::Prefer => "prefer",
            ChannelBindingMode::Require => "require",
        }
    }
}

impl fmt::Display for ChannelBindingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the authenticator needs to know about the connection's TLS session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsInfo {
    /// The `tls-server-end-point` channel-binding data (RFC 5929): the hash of the server certificate, with
    /// SHA-256 for MD5/SHA-1 signatures, otherwise the signature's own hash. `None` when no such hash exists
    /// (e.g. Ed25519 certificates); channel binding is then impossible.
    pub server_end_point_hash: Option<Vec<u8>>,
}

/// An authentication request from the server (`R` message), decoded by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    /// AuthenticationOk (0).
    Ok,
    /// AuthenticationCleartextPassword (3).
    CleartextPassword,
    /// AuthenticationMD5Password (5).
    Md5Password {
        /// The 4-byte salt.
        salt: [u8; 4],
    },
    /// AuthenticationSASL (10) with the server's mechanisms.
    Sasl {
        /// The mechanism names offered, in the server's order.
        mechanisms: &'a [&'a str],
    },
    /// AuthenticationSASLContinue (11) data.
    SaslContinue(&'a [u8]),
    /// AuthenticationSASLFinal (12) data.
    SaslFinal(&'a [u8]),
    /// Any other request code: KerberosV5 (2), SCMCredential (6), GSS (7), GSSContinue (8), SSPI (9), …
    Unsupported(u32),
}

impl AuthRequest<'_> {
    fn describe(&self) -> String {
        match self {
            AuthRequest::Ok => "AuthenticationOk".into(),
            AuthRequest::CleartextPassword => "cleartext password".into(),
            AuthRequest::Md5Password { .. } => "MD5 password".into(),
            AuthRequest::Sasl { .. } => "SASL".into(),
            AuthRequest::SaslContinue(_) => "SASL continue".into(),
            AuthRequest::SaslFinal(_) => "SASL final".into(),
            AuthRequest::Unsupported(code) => unsupported_name(*code),
        }
    }
}

fn unsupported_name(code: u32) -> String {
    match code {
        2 => "Kerberos V5".into(),
        4 => "crypt()".into(),
        6 => "SCM credential".into(),
        7 => "GSSAPI".into(),
        8 => "GSSAPI continue".into(),
        9 => "SSPI".into(),
        n => format!("unknown (request code {n})"),
    }
}

/// A reply to send to the server.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthReply {
    /// PasswordMessage: the cleartext password or the MD5 text, without the trailing NUL.
    Password(Vec<u8>),
    /// SASLInitialResponse.
    SaslInitial {
        /// The selected mechanism.
        mechanism: &'static str,
        /// The client-first-message.
        data: Vec<u8>,
    },
    /// SASLResponse: the client-final-message.
    SaslResponse(Vec<u8>),
}

impl fmt::Debug for AuthReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither the password, its MD5 form, nor the SCRAM proof (which allows offline guessing).
        match self {
            AuthReply::Password(p) => write!(f, "Password(<{} bytes redacted>)", p.len()),
            AuthReply::SaslInitial { mechanism, data } => f
                .debug_struct("SaslInitial")
                .field("mechanism", mechanism)
                .field("data", &String::from_utf8_lossy(data))
                .finish(),
            AuthReply::SaslResponse(d) => write!(f, "SaslResponse(<{} bytes redacted>)", d.len()),
        }
    }
}

enum Phase {
    /// Nothing received yet.
    Start,
    /// A cleartext or MD5 password was sent; only AuthenticationOk may follow.
    PasswordSent,
    /// A SCRAM exchange is running (or finished: see `ScramSha256::is_verified`).
    Sasl(Box<ScramSha256>),
    /// AuthenticationOk accepted.
    Done,
    /// An error happened; every further request is refused.
    Failed,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::PasswordSent => "password-sent",
            Phase::Sasl(_) => "sasl",
            Phase::Done => "done",
            Phase::Failed => "failed",
        }
    }
}

/// The client side of PostgreSQL authentication, sans-IO. See the [module documentation](self).
pub struct Authenticator {
    user: Vec<u8>,
    password: Option<Vec<u8>>,
    require: RequireAuth,
    channel_binding: ChannelBindingMode,
    tls: Option<TlsInfo>,
    nonce: [u8; scram::NONCE_LEN],
    iteration_cap: u32,
    cancel: Option<scram::CancelFlag>,
    phase: Phase,
    method: Option<AuthMethod>,
    bound: bool,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("require", &self.require)
            .field("channel_binding", &self.channel_binding)
            .field("tls", &self.tls.is_some())
            .field("phase", &self.phase.name())
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl Drop for Authenticator {
    fn drop(&mut self) {
        if let Some(p) = &mut self.password {
            p.fill(0);
            std::hint::black_box(p);
        }
    }
}

impl Authenticator {
    /// A new authenticator.
    ///
    /// `tls` is `Some` when the connection is TLS-encrypted; `nonce` must come from a CSPRNG
    /// ([`random_nonce`]) and is used for SCRAM. `channel_binding` defaults to
    /// [`ChannelBindingMode::Prefer`] (see [`Authenticator::with_channel_binding`]).
    pub fn new(
        user: &[u8],
        password: Option<&[u8]>,
        require: RequireAuth,
        tls: Option<TlsInfo>,
        nonce: [u8; 18],
    ) -> Self {
        Authenticator {
            user: user.to_vec(),
            password: password.map(<[u8]>::to_vec),
            require,
            channel_binding: ChannelBindingMode::default(),
            tls,
            nonce,
            iteration_cap: scram::DEFAULT_ITERATION_CAP,
            cancel: None,
            phase: Phase::Start,
            method: None,
            bound: false,
        }
    }

    /// Set the `channel_binding` mode.
    pub fn with_channel_binding(mut self, mode: ChannelBindingMode) -> Self {
        self.channel_binding = mode;
        self
    }

    /// Set the largest SCRAM iteration count accepted (default 10,000,000).
    pub fn with_iteration_cap(mut self, cap: u32) -> Self {
        self.iteration_cap = cap;
        self
    }

    /// A flag that, once set, abandons a running SCRAM key derivation (see [`scram::ScramSha256::with_cancel`]).
    pub fn with_cancel(mut self, flag: scram::CancelFlag) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Handle one authentication request. Returns the reply to send, or `Ok(None)` when there is nothing to
    /// send (AuthenticationOk accepted, or SASLFinal verified). Any error ends authentication: every later
    /// request fails too.
    pub fn handle(&mut self, req: AuthRequest<'_>) -> Result<Option<AuthReply>> {
        let phase = std::mem::replace(&mut self.phase, Phase::Failed);
        let (next, reply) = self.step(phase, req)?;
        self.phase = next;
        Ok(reply)
    }

    /// The method the server used, once it asked for one (`AuthMethod::None` for AuthenticationOk
    /// straight away).
    pub fn method_used(&self) -> Option<AuthMethod> {
        self.method
    }

    /// Whether AuthenticationOk was accepted.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Whether the SCRAM exchange uses channel binding (SCRAM-SHA-256-PLUS).
    pub fn is_channel_bound(&self) -> bool {
        self.bound
    }

    fn step(&mut self, phase: Phase, req: AuthRequest<'_>) -> Result<(Phase, Option<AuthReply>)> {
        match (phase, req) {
            (Phase::Failed, _) => {
                Err(Error::protocol(format!("{} request after authentication failed", req.describe())))
            }
            (Phase::Done, _) => Err(Error::protocol(format!("{} request after AuthenticationOk", req.describe()))),
            (_, AuthRequest::Unsupported(code)) => Err(Error::auth(format!(
                "server requested {} authentication, which is not supported",
                unsupported_name(code)
            ))),

            (Phase::Start, AuthRequest::Ok) => {
                if !self.require.allows(AuthMethod::None) {
                    return Err(Error::auth(format!(
                        "server did not complete authentication: it accepted the connection without \
                         a password exchange, which require_auth does not allow ({})",
                        self.allowed_list()
                    )));
                }
                if self.channel_binding == ChannelBindingMode::Require {
                    return Err(Error::auth(
                        "channel binding required, but the server authenticated the client without \
                         channel binding",
                    ));
                }
                self.method = Some(AuthMethod::None);
                Ok((Phase::Done, None))
            }
            (Phase::PasswordSent, AuthRequest::Ok) => Ok((Phase::Done, None)),
            (Phase::Sasl(scram), AuthRequest::Ok) => {
                if !scram.is_verified() {
                    return Err(Error::auth(
                        "server sent AuthenticationOk before the SCRAM exchange completed: the server \
                         did not prove it knows the password",
                    ));
                }
                if self.channel_binding == ChannelBindingMode::Require && !scram.is_channel_bound() {
                    return Err(Error::auth("channel binding required, but the SCRAM exchange was not channel-bound"));
                }
                Ok((Phase::Done, None))
            }

            (Phase::Start, AuthRequest::CleartextPassword) => {
                let pw = self.password_for(AuthMethod::Password, "cleartext password")?;
                let reply = AuthReply::Password(pw.to_vec());
                self.method = Some(AuthMethod::Password);
                Ok((Phase::PasswordSent, Some(reply)))
            }
            (Phase::Start, AuthRequest::Md5Password { salt }) => {
                let pw = self.password_for(AuthMethod::Md5, "MD5 password")?;
                let reply = AuthReply::Password(md5_password(&self.user, pw, salt));
                self.method = Some(AuthMethod::Md5);
                Ok((Phase::PasswordSent, Some(reply)))
            }
            (Phase::Start, AuthRequest::Sasl { mechanisms }) => {
                let scram = self.start_sasl(mechanisms)?;
                let reply = AuthReply::SaslInitial { mechanism: scram.mechanism(), data: scram.client_first() };
                self.method = Some(AuthMethod::ScramSha256);
                self.bound = scram.is_channel_bound();
                Ok((Phase::Sasl(Box::new(scram)), Some(reply)))
            }

            (Phase::Sasl(mut scram), AuthRequest::SaslContinue(data)) => {
                let reply = scram.handle_server_first(data)?;
                Ok((Phase::Sasl(scram), Some(AuthReply::SaslResponse(reply))))
            }
            (Phase::Sasl(mut scram), AuthRequest::SaslFinal(data)) => {
                scram.handle_server_final(data)?;
                Ok((Phase::Sasl(scram), None))
            }
            (Phase::Sasl(_), AuthRequest::Sasl { .. }) => {
                Err(Error::protocol("server requested SASL authentication twice"))
            }
            (Phase::Start | Phase::PasswordSent, AuthRequest::SaslContinue(_) | AuthRequest::SaslFinal(_)) => {
                Err(Error::protocol(format!("server sent {} without a SASL exchange in progress", req.describe())))
            }
            (Phase::Sasl(_), _) => Err(Error::protocol(format!(
                "server requested {} authentication during a SASL exchange",
                req.describe()
            ))),
            (Phase::PasswordSent, _) => Err(Error::protocol(format!(
                "server requested {} authentication after a password was sent",
                req.describe()
            ))),
        }
    }

    /// `allowed: a,b,c` for error messages.
    fn allowed_list(&self) -> String {
        let allowed: Vec<&str> = [AuthMethod::None, AuthMethod::Password, AuthMethod::Md5, AuthMethod::ScramSha256]
            .into_iter()
            .filter(|m| self.require.allows(*m))
            .map(AuthMethod::name)
            .collect();
        format!("allowed: {}", allowed.join(","))
    }

    fn check_allowed(&self, method: AuthMethod) -> Result<()> {
        if self.require.allows(method) {
            Ok(())
        } else {
            Err(Error::auth(format!(
                "server requested {} authentication, which require_auth does not allow ({})",
                method.name(),
                self.allowed_list()
            )))
        }
    }

    /// The password for a cleartext/MD5 request, after the `require_auth` and `channel_binding` checks.
    fn password_for(&self, method: AuthMethod, what: &str) -> Result<&[u8]> {
        self.check_allowed(method)?;
        if self.channel_binding == ChannelBindingMode::Require {
            return Err(Error::auth(format!(
                "channel binding required, but the server requested {what} authentication"
            )));
        }
        self.password.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::PasswordRequired,
                format!("password required, none supplied (server requested {what} authentication)"),
            )
        })
    }

    fn start_sasl(&self, mechanisms: &[&str]) -> Result<ScramSha256> {
        self.check_allowed(AuthMethod::ScramSha256)?;
        let plus_offered = mechanisms.contains(&SCRAM_SHA_256_PLUS);
        let plain_offered = mechanisms.contains(&SCRAM_SHA_256);
        let offered = || format!("{mechanisms:?}");

        if plus_offered && self.tls.is_none() {
            // Not sane: perhaps TLS was stripped by a proxy. The server would refuse a non-bound exchange anyway.
            return Err(Error::auth("server offered SCRAM-SHA-256-PLUS authentication over a non-TLS connection"));
        }
        let binding = match (&self.tls, self.channel_binding) {
            (None, ChannelBindingMode::Require) => {
                return Err(Error::auth("channel binding required, but TLS is not in use"))
            }
            (None, _) | (Some(_), ChannelBindingMode::Disable) => ChannelBinding::Unsupported,
            (Some(tls), _) if plus_offered => match &tls.server_end_point_hash {
                Some(hash) if !hash.is_empty() => ChannelBinding::TlsServerEndPoint(hash.clone()),
                _ => {
                    return Err(Error::auth(
                        "server offered SCRAM-SHA-256-PLUS, but no tls-server-end-point hash is \
                         available for its certificate (e.g. an Ed25519 signature), so channel binding \
                         is impossible; use channel_binding=disable to authenticate without it",
                    ))
                }
            },
            (Some(_), ChannelBindingMode::Require) => {
                return Err(Error::auth(format!(
                    "channel binding required, but the server did not offer SCRAM-SHA-256-PLUS \
                     (offered: {})",
                    offered()
                )))
            }
            (Some(_), ChannelBindingMode::Prefer) => ChannelBinding::Unrequested,
        };
        if !matches!(binding, ChannelBinding::TlsServerEndPoint(_)) && !plain_offered {
            return Err(Error::auth(format!(
                "none of the server's SASL authentication mechanisms are supported (offered: {})",
                offered()
            )));
        }
        let password = self.password.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::PasswordRequired,
                "password required, none supplied (server requested SCRAM-SHA-256 authentication)",
            )
        })?;
        let scram = ScramSha256::new(password, binding, self.nonce).with_iteration_cap(self.iteration_cap);
        Ok(match &self.cancel {
            Some(c) => scram.with_cancel(c.clone()),
            None => scram,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::scram::sim::Server;
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    const PW: &[u8] = b"s3cr3t-pass";
    const HASH: [u8; 32] = [0xab; 32];
    const PLAIN: &[&str] = &["SCRAM-SHA-256"];
    const BOTH: &[&str] = &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"];
    const ONLY_PLUS: &[&str] = &["SCRAM-SHA-256-PLUS"];

    fn tls() -> Option<TlsInfo> {
        Some(TlsInfo { server_end_point_hash: Some(HASH.to_vec()) })
    }

    fn auth(require: &str) -> Authenticator {
        Authenticator::new(b"alice", Some(PW), RequireAuth::parse(require).unwrap(), None, [5; 18])
    }

    fn auth_tls(mode: ChannelBindingMode, tls: Option<TlsInfo>) -> Authenticator {
        Authenticator::new(b"alice", Some(PW), RequireAuth::default(), tls, [5; 18]).with_channel_binding(mode)
    }

    /// Assert `r` is an error of `kind` whose message contains every needle, and that the authenticator is
    /// dead afterwards.
    fn expect_err(a: &mut Authenticator, r: Result<Option<AuthReply>>, kind: ErrorKind, needles: &[&str]) -> Error {
        let e = r.expect_err("expected an error");
        assert_eq!(e.kind(), kind, "{e}");
        for n in needles {
            assert!(e.message().contains(n), "{n:?} not in {e}");
        }
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(a.handle(AuthRequest::Ok).is_err());
        assert!(!a.is_done());
        e
    }

    /// Run a full SCRAM exchange against the simulated server; returns the mechanism and GS2 header used.
    fn run_scram(a: &mut Authenticator, mechanisms: &[&str]) -> (&'static str, Vec<u8>) {
        let Some(AuthReply::SaslInitial { mechanism, data }) = a.handle(AuthRequest::Sasl { mechanisms }).unwrap()
        else {
            panic!("expected SaslInitial")
        };
        let header_end = data.windows(2).position(|w| w == b",,").unwrap() + 2;
        let mut cbind = data[..header_end].to_vec();
        if mechanism == SCRAM_SHA_256_PLUS {
            cbind.extend_from_slice(&HASH);
        }
        let mut s = Server::new(PW, &cbind);
        let sf = s.first(&data);
        let Some(AuthReply::SaslResponse(cf)) = a.handle(AuthRequest::SaslContinue(&sf)).unwrap() else {
            panic!("expected SaslResponse")
        };
        let v = s.finish(&cf).unwrap();
        // not yet: AuthenticationOk is refused until SASLFinal verified (checked in other tests)
        assert_eq!(a.handle(AuthRequest::SaslFinal(&v)).unwrap(), None);
        assert_eq!(a.handle(AuthRequest::Ok).unwrap(), None);
        assert!(a.is_done());
        assert_eq!(a.method_used(), Some(AuthMethod::ScramSha256));
        (mechanism, data[..header_end].to_vec())
    }

    // ---- successful paths ----

    #[test]
    fn cleartext_path() {
        let mut a = auth("");
        assert_eq!(a.method_used(), None);
        let r = a.handle(AuthRequest::CleartextPassword).unwrap();
        assert_eq!(r, Some(AuthReply::Password(PW.to_vec())));
        assert_eq!(a.handle(AuthRequest::Ok).unwrap(), None);
        assert!(a.is_done());
        assert_eq!(a.method_used(), Some(AuthMethod::Password));
    }

    #[test]
    fn md5_path() {
        let mut a = auth("md5");
        let r = a.handle(AuthRequest::Md5Password { salt: [1, 2, 3, 4] }).unwrap();
        assert_eq!(r, Some(AuthReply::Password(md5_password(b"alice", PW, [1, 2, 3, 4]))));
        assert_eq!(a.handle(AuthRequest::Ok).unwrap(), None);
        assert_eq!(a.method_used(), Some(AuthMethod::Md5));
    }

    #[test]
    fn trust_path() {
        let mut a = auth("");
        assert_eq!(a.handle(AuthRequest::Ok).unwrap(), None);
        assert_eq!(a.method_used(), Some(AuthMethod::None));
        assert!(a.is_done());
        // nothing after AuthenticationOk
        assert!(a.handle(AuthRequest::Ok).is_err());
        let mut a = auth("none");
        assert_eq!(a.handle(AuthRequest::Ok).unwrap(), None);
        // no password needed at all
        let mut a = Authenticator::new(b"u", None, RequireAuth::default(), None, [0; 18]);
        assert_eq!(a.handle(AuthRequest::Ok).unwrap(), None);
    }

    #[test]
    fn scram_without_tls() {
        let mut a = auth("scram-sha-256");
        let (mech, gs2) = run_scram(&mut a, PLAIN);
        assert_eq!((mech, &gs2[..]), (SCRAM_SHA_256, &b"n,,"[..]));
        assert!(!a.is_channel_bound());
        // mechanism order does not matter; unknown ones are ignored
        let mut a = auth("");
        let (mech, _) = run_scram(&mut a, &["FOO", "SCRAM-SHA-256", "BAR"]);
        assert_eq!(mech, SCRAM_SHA_256);
    }

    #[test]
    fn scram_plus_with_tls_prefer_and_require() {
        for mode in [ChannelBindingMode::Prefer, ChannelBindingMode::Require] {
            for mechs in [BOTH, ONLY_PLUS] {
                let mut a = auth_tls(mode, tls());
                let (mech, gs2) = run_scram(&mut a, mechs);
                assert_eq!(mech, SCRAM_SHA_256_PLUS);
                assert_eq!(gs2, b"p=tls-server-end-point,,");
                assert!(a.is_channel_bound());
            }
        }
    }

    #[test]
    fn tls_prefer_without_plus_sends_y() {
        let mut a = auth_tls(ChannelBindingMode::Prefer, tls());
        let (mech, gs2) = run_scram(&mut a, PLAIN);
        assert_eq!((mech, &gs2[..]), (SCRAM_SHA_256, &b"y,,"[..]));
        assert!(!a.is_channel_bound());
        // also when the certificate hash is unknown: binding was not offered anyway
        let mut a = auth_tls(ChannelBindingMode::Prefer, Some(TlsInfo { server_end_point_hash: None }));
        let (_, gs2) = run_scram(&mut a, PLAIN);
        assert_eq!(gs2, b"y,,");
    }

    #[test]
    fn tls_disable_sends_n_even_when_plus_offered() {
        let mut a = auth_tls(ChannelBindingMode::Disable, tls());
        let (mech, gs2) = run_scram(&mut a, BOTH);
        assert_eq!((mech, &gs2[..]), (SCRAM_SHA_256, &b"n,,"[..]));
    }

    #[test]
    fn iteration_cap_applies() {
        let mut a = auth("").with_iteration_cap(3);
        a.handle(AuthRequest::Sasl { mechanisms: PLAIN }).unwrap();
        let sf = b"r=BQUFBQUFBQUFBQUFBQUFBQUFx,s=c2FsdA==,i=4";
        let r = a.handle(AuthRequest::SaslContinue(sf));
        expect_err(&mut a, r, ErrorKind::Auth, &["exceeds"]);
    }

    #[test]
    fn channel_binding_mode_parse() {
        for m in [ChannelBindingMode::Require, ChannelBindingMode::Prefer, ChannelBindingMode::Disable] {
            assert_eq!(ChannelBindingMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(ChannelBindingMode::parse("PLUS"), None);
        assert_eq!(ChannelBindingMode::default(), ChannelBindingMode::Prefer);
        assert_eq!(ChannelBindingMode::parse("Require"), None);
        assert_eq!(ChannelBindingMode::Require.to_string(), "require");
    }

    // ---- require_auth (13) ----

    #[test]
    fn require_auth_refuses_before_reply() {
        let cases: [(&str, AuthRequest<'_>, &str); 6] = [
            ("scram-sha-256", AuthRequest::CleartextPassword, "password"),
            ("scram-sha-256", AuthRequest::Md5Password { salt: [0; 4] }, "md5"),
            ("md5", AuthRequest::Sasl { mechanisms: PLAIN }, "scram-sha-256"),
            ("!password", AuthRequest::CleartextPassword, "password"),
            ("!md5", AuthRequest::Md5Password { salt: [0; 4] }, "md5"),
            ("!scram-sha-256", AuthRequest::Sasl { mechanisms: PLAIN }, "scram-sha-256"),
        ];
        for (require, req, method) in cases {
            let mut a = auth(require);
            let r = a.handle(req);
            let e = expect_err(&mut a, r, ErrorKind::Auth, &[method, "require_auth", "allowed: "]);
            assert_eq!(a.method_used(), None, "{require}: {e}");
        }
        // the allowed list is spelled out
        let mut a = auth("!password,!md5");
        let r = a.handle(AuthRequest::CleartextPassword);
        expect_err(&mut a, r, ErrorKind::Auth, &["allowed: none,scram-sha-256"]);
    }

    #[test]
    fn require_auth_allows_listed() {
        let mut a = auth("password,md5");
        assert!(a.handle(AuthRequest::CleartextPassword).unwrap().is_some());
        let mut a = auth("!scram-sha-256");
        assert!(a.handle(AuthRequest::Md5Password { salt: [0; 4] }).unwrap().is_some());
    }

    #[test]
    fn ok_without_exchange_when_none_not_allowed() {
        for require in ["scram-sha-256", "password", "md5,scram-sha-256", "!none"] {
            let mut a = auth(require);
            let r = a.handle(AuthRequest::Ok);
            expect_err(&mut a, r, ErrorKind::Auth, &["did not complete authentication", "require_auth"]);
        }
    }

    // ---- order (10) ----

    fn sasl_started(a: &mut Authenticator) -> Vec<u8> {
        let Some(AuthReply::SaslInitial { data, .. }) = a.handle(AuthRequest::Sasl { mechanisms: PLAIN }).unwrap()
        else {
            panic!()
        };
        data
    }

    #[test]
    fn ok_after_sasl_before_continue_refused() {
        let mut a = auth("");
        sasl_started(&mut a);
        let r = a.handle(AuthRequest::Ok);
        expect_err(&mut a, r, ErrorKind::Auth, &["before the SCRAM exchange completed"]);
    }

    #[test]
    fn ok_after_continue_before_final_refused() {
        let mut a = auth("");
        let cf = sasl_started(&mut a);
        let mut s = Server::new(PW, b"n,,");
        a.handle(AuthRequest::SaslContinue(&s.first(&cf))).unwrap();
        let r = a.handle(AuthRequest::Ok);
        expect_err(&mut a, r, ErrorKind::Auth, &["did not prove"]);
    }

    #[test]
    fn ok_after_bad_final_refused() {
        let mut a = auth("");
        let cf = sasl_started(&mut a);
        let mut s = Server::new(PW, b"n,,");
        a.handle(AuthRequest::SaslContinue(&s.first(&cf))).unwrap();
        let r = a.handle(AuthRequest::SaslFinal(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
        expect_err(&mut a, r, ErrorKind::Auth, &["signature"]);
        // still refused (the authenticator is dead)
        assert!(a.handle(AuthRequest::Ok).is_err());
    }

    #[test]
    fn sasl_continue_or_final_without_sasl_refused() {
        for req in [AuthRequest::SaslContinue(b"r=x,s=AA==,i=1"), AuthRequest::SaslFinal(b"v=AAAA")] {
            let mut a = auth("");
            let r = a.handle(req);
            expect_err(&mut a, r, ErrorKind::Protocol, &["without a SASL exchange"]);
            // also after a password was sent
            let mut a = auth("");
            a.handle(AuthRequest::CleartextPassword).unwrap();
            let r = a.handle(req);
            expect_err(&mut a, r, ErrorKind::Protocol, &["without a SASL exchange"]);
        }
    }

    #[test]
    fn sasl_final_before_continue_refused() {
        let mut a = auth("");
        sasl_started(&mut a);
        let r = a.handle(AuthRequest::SaslFinal(b"v=AAAA"));
        expect_err(&mut a, r, ErrorKind::Protocol, &["before server-first"]);
    }

    #[test]
    fn sasl_continue_twice_refused() {
        let mut a = auth("");
        let cf = sasl_started(&mut a);
        let mut s = Server::new(PW, b"n,,");
        let sf = s.first(&cf);
        a.handle(AuthRequest::SaslContinue(&sf)).unwrap();
        let r = a.handle(AuthRequest::SaslContinue(&sf));
        expect_err(&mut a, r, ErrorKind::Protocol, &["already received"]);
    }

    #[test]
    fn second_sasl_refused() {
        let mut a = auth("");
        sasl_started(&mut a);
        let r = a.handle(AuthRequest::Sasl { mechanisms: PLAIN });
        expect_err(&mut a, r, ErrorKind::Protocol, &["twice"]);
        // even after a completed exchange, before Ok
        let mut a = auth("");
        let cf = sasl_started(&mut a);
        let mut s = Server::new(PW, b"n,,");
        let Some(AuthReply::SaslResponse(fin)) = a.handle(AuthRequest::SaslContinue(&s.first(&cf))).unwrap() else {
            panic!()
        };
        a.handle(AuthRequest::SaslFinal(&s.finish(&fin).unwrap())).unwrap();
        let r = a.handle(AuthRequest::Sasl { mechanisms: PLAIN });
        expect_err(&mut a, r, ErrorKind::Protocol, &["twice"]);
    }

    #[test]
    fn password_requests_out_of_order_refused() {
        let mut a = auth("");
        sasl_started(&mut a);
        let r = a.handle(AuthRequest::CleartextPassword);
        expect_err(&mut a, r, ErrorKind::Protocol, &["during a SASL exchange"]);

        let mut a = auth("");
        a.handle(AuthRequest::CleartextPassword).unwrap();
        let r = a.handle(AuthRequest::Md5Password { salt: [0; 4] });
        expect_err(&mut a, r, ErrorKind::Protocol, &["after a password was sent"]);

        let mut a = auth("");
        a.handle(AuthRequest::Md5Password { salt: [0; 4] }).unwrap();
        let r = a.handle(AuthRequest::Sasl { mechanisms: PLAIN });
        expect_err(&mut a, r, ErrorKind::Protocol, &["after a password was sent"]);
    }

    #[test]
    fn nothing_after_ok() {
        let mut a = auth("");
        a.handle(AuthRequest::CleartextPassword).unwrap();
        a.handle(AuthRequest::Ok).unwrap();
        for req in [AuthRequest::CleartextPassword, AuthRequest::Sasl { mechanisms: PLAIN }, AuthRequest::Ok] {
            let mut b = auth("");
            b.handle(AuthRequest::Ok).unwrap();
            let e = b.handle(req).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol);
            assert!(e.message().contains("after AuthenticationOk"), "{e}");
        }
    }

    // ---- password missing ----

    #[test]
    fn password_required_none_supplied() {
        for (req, name) in [
            (AuthRequest::CleartextPassword, "cleartext"),
            (AuthRequest::Md5Password { salt: [0; 4] }, "MD5"),
            (AuthRequest::Sasl { mechanisms: PLAIN }, "SCRAM-SHA-256"),
        ] {
            let mut a = Authenticator::new(b"u", None, RequireAuth::default(), None, [0; 18]);
            let r = a.handle(req);
            expect_err(&mut a, r, ErrorKind::PasswordRequired, &["password required", name]);
        }
    }

    // ---- SASL mechanisms and channel binding (14) ----

    #[test]
    fn no_supported_mechanism() {
        for mechs in [&[][..], &["SCRAM-SHA-1", "GS2-KRB5"][..]] {
            let mut a = auth("");
            let r = a.handle(AuthRequest::Sasl { mechanisms: mechs });
            let e = expect_err(&mut a, r, ErrorKind::Auth, &["none of the server's SASL"]);
            for m in mechs {
                assert!(e.message().contains(m), "{e}");
            }
        }
        // only -PLUS offered, TLS but binding disabled
        let mut a = auth_tls(ChannelBindingMode::Disable, tls());
        let r = a.handle(AuthRequest::Sasl { mechanisms: ONLY_PLUS });
        expect_err(&mut a, r, ErrorKind::Auth, &["SCRAM-SHA-256-PLUS", "none of"]);
    }

    #[test]
    fn plus_offered_without_tls_refused() {
        for mode in [ChannelBindingMode::Disable, ChannelBindingMode::Prefer, ChannelBindingMode::Require] {
            for mechs in [BOTH, ONLY_PLUS] {
                let mut a = auth_tls(mode, None);
                let r = a.handle(AuthRequest::Sasl { mechanisms: mechs });
                expect_err(&mut a, r, ErrorKind::Auth, &["non-TLS"]);
            }
        }
    }

    #[test]
    fn channel_binding_require_without_tls() {
        let mut a = auth_tls(ChannelBindingMode::Require, None);
        let r = a.handle(AuthRequest::Sasl { mechanisms: PLAIN });
        expect_err(&mut a, r, ErrorKind::Auth, &["TLS is not in use"]);
    }

    #[test]
    fn channel_binding_require_without_plus() {
        let mut a = auth_tls(ChannelBindingMode::Require, tls());
        let r = a.handle(AuthRequest::Sasl { mechanisms: PLAIN });
        expect_err(&mut a, r, ErrorKind::Auth, &["did not offer SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
    }

    #[test]
    fn channel_binding_require_refuses_password_and_trust() {
        for req in [AuthRequest::CleartextPassword, AuthRequest::Md5Password { salt: [0; 4] }] {
            let mut a = auth_tls(ChannelBindingMode::Require, tls());
            let r = a.handle(req);
            expect_err(&mut a, r, ErrorKind::Auth, &["channel binding required"]);
        }
        let mut a = auth_tls(ChannelBindingMode::Require, tls());
        let r = a.handle(AuthRequest::Ok);
        expect_err(&mut a, r, ErrorKind::Auth, &["channel binding required"]);
    }

    #[test]
    fn plus_without_certificate_hash_refused() {
        for (mode, hash) in [
            (ChannelBindingMode::Prefer, None),
            (ChannelBindingMode::Require, None),
            (ChannelBindingMode::Require, Some(Vec::new())),
        ] {
            let mut a = auth_tls(mode, Some(TlsInfo { server_end_point_hash: hash }));
            let r = a.handle(AuthRequest::Sasl { mechanisms: BOTH });
            expect_err(&mut a, r, ErrorKind::Auth, &["channel binding"]);
        }
    }

    // ---- unsupported methods ----

    #[test]
    fn unsupported_methods_named() {
        for (code, name) in
            [(2, "Kerberos V5"), (6, "SCM credential"), (7, "GSSAPI"), (8, "GSSAPI"), (9, "SSPI"), (99, "99")]
        {
            let mut a = auth("");
            let r = a.handle(AuthRequest::Unsupported(code));
            expect_err(&mut a, r, ErrorKind::Auth, &[name, "not supported"]);
        }
        // also mid-exchange
        let mut a = auth("");
        sasl_started(&mut a);
        let r = a.handle(AuthRequest::Unsupported(7));
        expect_err(&mut a, r, ErrorKind::Auth, &["GSSAPI"]);
    }

    // ---- secrets (15) ----

    #[test]
    fn password_never_in_debug() {
        let mut a = auth("");
        assert!(!format!("{a:?}").contains("s3cr3t"));
        let r = a.handle(AuthRequest::CleartextPassword).unwrap().unwrap();
        let d = format!("{r:?}");
        assert!(!d.contains("s3cr3t"), "{d}");
        let mut a = auth("");
        let r = a.handle(AuthRequest::Md5Password { salt: [0; 4] }).unwrap().unwrap();
        assert!(format!("{r:?}").contains("redacted"));
        let mut a = auth("");
        let cf = sasl_started(&mut a);
        let mut s = Server::new(PW, b"n,,");
        let r = a.handle(AuthRequest::SaslContinue(&s.first(&cf))).unwrap().unwrap();
        assert!(!format!("{r:?}").contains("p="));
        assert!(!format!("{a:?}").contains("s3cr3t"));
    }

    // ---- property: no AuthenticationOk after SASL unless verified ----

    #[derive(Debug, Clone)]
    enum Step {
        Ok,
        Clear,
        Md5([u8; 4]),
        Sasl(Vec<&'static str>),
        ContinueValid,
        ContinueJunk(Vec<u8>),
        FinalValid,
        FinalJunk(Vec<u8>),
        Unsupported(u32),
    }

    fn step() -> impl Strategy<Value = Step> {
        let mech = prop_oneof![Just("SCRAM-SHA-256"), Just("SCRAM-SHA-256-PLUS"), Just("SCRAM-SHA-1"),];
        prop_oneof![
            3 => Just(Step::Ok),
            1 => Just(Step::Clear),
            1 => any::<[u8; 4]>().prop_map(Step::Md5),
            2 => proptest::collection::vec(mech, 0..3).prop_map(Step::Sasl),
            3 => Just(Step::ContinueValid),
            1 => proptest::collection::vec(any::<u8>(), 0..60).prop_map(Step::ContinueJunk),
            3 => Just(Step::FinalValid),
            1 => proptest::collection::vec(any::<u8>(), 0..60).prop_map(Step::FinalJunk),
            1 => (0u32..20).prop_map(Step::Unsupported),
        ]
    }

    /// Mostly-right SCRAM scripts with steps dropped or random steps inserted, or fully random sequences.
    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let script = (
            prop_oneof![
                Just(vec!["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]),
                Just(vec!["SCRAM-SHA-256"]),
                Just(vec!["SCRAM-SHA-256-PLUS"]),
            ],
            proptest::collection::vec(proptest::bool::weighted(0.85), 4),
            proptest::collection::vec(proptest::option::weighted(0.15, step()), 5),
        )
            .prop_map(|(mechs, keep, extra)| {
                let script = [Step::Sasl(mechs), Step::ContinueValid, Step::FinalValid, Step::Ok];
                let mut out = Vec::new();
                for (i, s) in script.into_iter().enumerate() {
                    if let Some(Some(x)) = extra.get(i) {
                        out.push(x.clone());
                    }
                    if keep[i] {
                        out.push(s);
                    }
                }
                if let Some(Some(x)) = extra.get(4) {
                    out.push(x.clone());
                }
                out
            });
        prop_oneof![
            3 => script,
            1 => proptest::collection::vec(step(), 0..8),
        ]
    }

    fn config() -> impl Strategy<Value = (Option<TlsInfo>, ChannelBindingMode, &'static str, bool)> {
        (
            prop_oneof![Just(None), Just(tls()), Just(Some(TlsInfo { server_end_point_hash: None }))],
            prop_oneof![
                Just(ChannelBindingMode::Disable),
                Just(ChannelBindingMode::Prefer),
                Just(ChannelBindingMode::Require)
            ],
            prop_oneof![
                3 => Just(""),
                2 => Just("scram-sha-256"),
                1 => Just("!none"),
                1 => Just("md5,password"),
                1 => Just("none")
            ],
            proptest::bool::weighted(0.75),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn ok_after_sasl_only_when_verified(
            (tls, mode, require, right_password) in config(),
            steps in steps(),
        ) {
            let require_auth = RequireAuth::parse(require).unwrap();
            let mut a = Authenticator::new(b"u", Some(PW), require_auth.clone(), tls, [3; 18])
                .with_channel_binding(mode);
            let server_pw: &[u8] = if right_password { PW } else { b"other" };
            let mut server: Option<Server> = None;
            let mut client_first: Option<Vec<u8>> = None;
            let mut client_final: Option<Vec<u8>> = None;
            let mut sasl_started = false;
            let mut verified = false;
            let mut failed = false;
            for s in steps {
                let owned: Vec<u8>;
                let mechs: Vec<&str>;
                let req = match &s {
                    Step::Ok => AuthRequest::Ok,
                    Step::Clear => AuthRequest::CleartextPassword,
                    Step::Md5(salt) => AuthRequest::Md5Password { salt: *salt },
                    Step::Sasl(m) => {
                        mechs = m.clone();
                        AuthRequest::Sasl { mechanisms: &mechs }
                    }
                    Step::ContinueValid => {
                        owned = match (&mut server, &client_first) {
                            (Some(srv), Some(cf)) => srv.first(cf),
                            _ => b"r=x,s=AA==,i=1".to_vec(),
                        };
                        AuthRequest::SaslContinue(&owned)
                    }
                    Step::ContinueJunk(j) => AuthRequest::SaslContinue(j),
                    Step::FinalValid => {
                        owned = match (&mut server, &client_final) {
                            (Some(srv), Some(cf)) => srv.finish(cf).unwrap_or_else(|e| format!("e={e}").into_bytes()),
                            _ => b"v=AAAA".to_vec(),
                        };
                        AuthRequest::SaslFinal(&owned)
                    }
                    Step::FinalJunk(j) => AuthRequest::SaslFinal(j),
                    Step::Unsupported(n) => AuthRequest::Unsupported(*n),
                };
                let r = a.handle(req);
                if failed {
                    prop_assert!(r.is_err(), "accepted {s:?} after a failure");
                    continue;
                }
                match (&s, r) {
                    (_, Err(_)) => failed = true,
                    (Step::Ok, Ok(reply)) => {
                        prop_assert!(reply.is_none());
                        prop_assert!(!sasl_started || verified, "AuthenticationOk accepted after unverified SASL");
                        if mode == ChannelBindingMode::Require {
                            prop_assert!(sasl_started && verified && a.is_channel_bound());
                        }
                        prop_assert!(a.is_done());
                    }
                    (Step::Clear, Ok(reply)) => {
                        prop_assert!(require_auth.allows(AuthMethod::Password));
                        prop_assert_eq!(reply, Some(AuthReply::Password(PW.to_vec())));
                    }
                    (Step::Md5(_), Ok(_)) => prop_assert!(require_auth.allows(AuthMethod::Md5)),
                    (Step::Sasl(_), Ok(Some(AuthReply::SaslInitial { mechanism, data }))) => {
                        prop_assert!(require_auth.allows(AuthMethod::ScramSha256));
                        sasl_started = true;
                        let end = data.windows(2).position(|w| w == b",,").unwrap() + 2;
                        let mut cbind = data[..end].to_vec();
                        if mechanism == SCRAM_SHA_256_PLUS {
                            cbind.extend_from_slice(&HASH);
                        }
                        server = Some(Server::new(server_pw, &cbind));
                        client_first = Some(data);
                    }
                    (Step::ContinueValid | Step::ContinueJunk(_), Ok(Some(AuthReply::SaslResponse(cf)))) => {
                        client_final = Some(cf);
                    }
                    (Step::FinalValid | Step::FinalJunk(_), Ok(None)) => {
                        verified = true;
                        prop_assert!(right_password, "verified a server without the password");
                    }
                    (s, Ok(r)) => prop_assert!(false, "unexpected reply {r:?} to {s:?}"),
                }
            }
        }
    }
}
