//! The startup and authentication sequence, sans IO.
//!
//! Feed every backend message to [`Startup::handle`] until it returns [`StartupStatus::Ready`]; whatever it
//! writes into `out` goes to the server. Order is enforced: authentication requests only before
//! AuthenticationOk (and only in the order the [`Authenticator`] accepts), ParameterStatus/BackendKeyData only
//! after it, and ReadyForQuery ends the sequence. An ErrorResponse becomes an [`Error`] of kind `Db` carrying
//! every field; a NoticeResponse is handed back to the caller, never dropped.

use bytes::BytesMut;

use super::backend::{Authentication, BackendMessage};
use super::frontend;
use crate::auth::{AuthReply, AuthRequest, Authenticator};
use crate::error::{DbError, Error, Result};

/// Progress of the startup sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupStatus {
    /// Keep reading.
    Pending,
    /// A notice from the server: deliver it to the application, then keep reading.
    Notice(Box<DbError>),
    /// ReadyForQuery: the connection is usable.
    Ready,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Auth,
    Params,
    Ready,
}

/// What the server told us during startup.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    /// ParameterStatus values (server_version, server_encoding, …), in arrival order; later ones replace.
    pub parameters: Vec<(String, String)>,
    /// BackendKeyData process id.
    pub process_id: Option<i32>,
    /// BackendKeyData secret key.
    pub secret_key: Option<bytes::Bytes>,
}

impl SessionInfo {
    /// A parameter's value.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// `server_version_num`-style integer derived from `server_version` (e.g. "15.4 (Debian…)" → 150004).
    pub fn server_version_num(&self) -> Option<u32> {
        let v = self.parameter("server_version")?;
        let num: String = v.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        let mut it = num.split('.');
        let major: u32 = it.next()?.parse().ok()?;
        let minor: u32 = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        if major >= 10 {
            Some(major * 10000 + minor)
        } else {
            let patch: u32 = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
            Some(major * 10000 + minor * 100 + patch)
        }
    }
    /// An error of kind [`ErrorKind::ServerVersionUnsupported`](crate::ErrorKind::ServerVersionUnsupported) when
    /// the server is older than `min` (a `server_version_num`, e.g. 150000) and so cannot do `what`; `Ok` when it
    /// is recent enough or did not say.
    pub fn require_version(&self, min: u32, what: &str) -> Result<()> {
        match self.server_version_num() {
            Some(v) if v < min => Err(Error::new(
                crate::ErrorKind::ServerVersionUnsupported,
                format!(
                    "{what} needs PostgreSQL {} or later; the server is {}",
                    min / 10000,
                    self.parameter("server_version").unwrap_or_default()
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// The startup state machine.
pub struct Startup {
    auth: Authenticator,
    phase: Phase,
    info: SessionInfo,
}

impl Startup {
    /// Begin a startup with this authenticator; `params` are the StartupMessage parameters, written to `out`.
    pub fn new(auth: Authenticator, params: &[(&str, &str)], out: &mut BytesMut) -> Result<Startup> {
        frontend::startup(params, out)?;
        Ok(Startup { auth, phase: Phase::Auth, info: SessionInfo::default() })
    }

    /// Handle one backend message; replies are appended to `out`.
    pub fn handle(&mut self, msg: BackendMessage, out: &mut BytesMut) -> Result<StartupStatus> {
        match (self.phase, msg) {
            (_, BackendMessage::ErrorResponse(e)) => Err(Error::db(e)),
            (_, BackendMessage::NoticeResponse(n)) => Ok(StartupStatus::Notice(n)),
            (Phase::Auth, BackendMessage::Authentication(a)) => {
                let mechs: Vec<&str>;
                let req = match &a {
                    Authentication::Ok => AuthRequest::Ok,
                    Authentication::CleartextPassword => AuthRequest::CleartextPassword,
                    Authentication::Md5Password { salt } => AuthRequest::Md5Password { salt: *salt },
                    Authentication::Sasl(m) => {
                        mechs = m.iter().map(String::as_str).collect();
                        AuthRequest::Sasl { mechanisms: &mechs }
                    }
                    Authentication::SaslContinue(d) => AuthRequest::SaslContinue(d),
                    Authentication::SaslFinal(d) => AuthRequest::SaslFinal(d),
                    Authentication::Unsupported(n) => AuthRequest::Unsupported(*n as u32),
                };
                match self.auth.handle(req)? {
                    None => {
                        if matches!(a, Authentication::Ok) {
                            self.phase = Phase::Params;
                        }
                    }
                    Some(AuthReply::Password(p)) => frontend::password(&p, out)?,
                    Some(AuthReply::SaslInitial { mechanism, data }) => {
                        frontend::sasl_initial_response(mechanism, &data, out)?
                    }
                    Some(AuthReply::SaslResponse(d)) => frontend::sasl_response(&d, out)?,
                }
                Ok(StartupStatus::Pending)
            }
            (Phase::Auth, BackendMessage::NegotiateProtocolVersion { newest_minor, unrecognized }) => {
                // We ask for 3.0 with no protocol options, so any answer but "3.0, nothing unrecognized" is wrong.
                if newest_minor < 0 || !unrecognized.is_empty() {
                    return Err(Error::protocol(format!(
                        "server cannot speak protocol 3.0 as requested (newest minor {newest_minor}, unrecognized options {unrecognized:?})"
                    )));
                }
                Ok(StartupStatus::Pending)
            }
            (Phase::Params, BackendMessage::ParameterStatus { name, value }) => {
                self.info.parameters.push((name, value));
                Ok(StartupStatus::Pending)
            }
            (Phase::Params, BackendMessage::BackendKeyData { process_id, secret_key }) => {
                self.info.process_id = Some(process_id);
                self.info.secret_key = Some(secret_key);
                Ok(StartupStatus::Pending)
            }
            (Phase::Params, BackendMessage::ReadyForQuery(_)) => {
                self.phase = Phase::Ready;
                Ok(StartupStatus::Ready)
            }
            (phase, other) => Err(Error::protocol(format!(
                "unexpected {} during startup ({})",
                other.name(),
                match phase {
                    Phase::Auth => "before authentication completed",
                    Phase::Params => "after authentication",
                    Phase::Ready => "after ReadyForQuery",
                }
            ))),
        }
    }

    /// Whether ReadyForQuery has arrived.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// The session parameters gathered so far.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Take the session parameters.
    pub fn into_info(self) -> SessionInfo {
        self.info
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn server(version: &str) -> SessionInfo {
        SessionInfo { parameters: vec![("server_version".into(), version.into())], ..Default::default() }
    }

    #[test]
    fn require_version() {
        assert_eq!(server("15.4 (Debian 15.4-1)").server_version_num(), Some(150004));
        assert_eq!(server("9.6.24").server_version_num(), Some(90624));
        server("15.0").require_version(150000, "READ_REPLICATION_SLOT").unwrap();
        server("17.2").require_version(150000, "READ_REPLICATION_SLOT").unwrap();
        // a server that did not say is not refused: it answers for itself
        SessionInfo::default().require_version(150000, "READ_REPLICATION_SLOT").unwrap();
        let e = server("14.11").require_version(150000, "READ_REPLICATION_SLOT").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ServerVersionUnsupported);
        assert!(!e.is_retryable());
        assert_eq!(e.code(), None);
        assert_eq!(
            e.to_string(),
            "server version unsupported: READ_REPLICATION_SLOT needs PostgreSQL 15 or later; the server is 14.11"
        );
    }
}
