//! The public option types: where to connect ([`Host`]) and the enumerated options.

use std::fmt;
use std::path::PathBuf;

/// Where to connect: one entry of `host` / `hostaddr`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Host {
    /// A host name or IP address (IPv6 without brackets).
    Tcp(String),
    /// A Unix socket *directory*; the socket is `<dir>/.s.PGSQL.<port>`. A path starting with `@` names
    /// Linux's abstract namespace (libpq 14+).
    Unix(PathBuf),
    /// A numeric address from `hostaddr`, connected to over TCP without a name lookup, and the `host` given
    /// beside it (`None` when there is none). As in libpq the name, not the address, is what TLS checks the
    /// server certificate against (`sslmode=verify-full` without a name is refused) and sends as SNI, and what
    /// finds the `.pgpass` entry.
    Addr {
        /// The address to connect to (IPv4, or IPv6 without brackets, with an optional `%zone`).
        addr: String,
        /// The `host` value given for this entry.
        name: Option<String>,
    },
}

impl Host {
    /// Classify a non-empty `host` value as libpq does: a value starting with `/` or `@` is a socket directory,
    /// anything else a host name or address.
    pub fn from_conninfo(s: &str) -> Host {
        if is_unixsock_path(s) {
            Host::Unix(PathBuf::from(s))
        } else {
            Host::Tcp(s.to_owned())
        }
    }

    /// Whether this is a Unix socket directory.
    pub fn is_unix(&self) -> bool {
        matches!(self, Host::Unix(_))
    }

    /// The name a server certificate is checked against and sent as SNI: the host name (or address) for
    /// [`Host::Tcp`], the `host` given beside the address for [`Host::Addr`]; `None` for a socket directory
    /// and for an address given without a name.
    pub fn tls_name(&self) -> Option<&str> {
        match self {
            Host::Tcp(h) => Some(h),
            Host::Addr { name, .. } => name.as_deref(),
            Host::Unix(_) => None,
        }
    }

    /// The `host` value as written in a connection string (empty for an address given without a name).
    pub(super) fn as_conninfo(&self) -> String {
        match self {
            Host::Tcp(h) => h.clone(),
            Host::Unix(p) => p.to_string_lossy().into_owned(),
            Host::Addr { name, .. } => name.clone().unwrap_or_default(),
        }
    }

    /// The `hostaddr` value as written in a connection string (empty when there is none).
    pub(super) fn hostaddr_conninfo(&self) -> &str {
        match self {
            Host::Addr { addr, .. } => addr,
            _ => "",
        }
    }
}

/// The `host` value, or for [`Host::Addr`] the address followed by the name in parentheses.
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Addr { addr, name: Some(name) } => write!(f, "{addr} ({name})"),
            Host::Addr { addr, name: None } => f.write_str(addr),
            _ => f.write_str(&self.as_conninfo()),
        }
    }
}

pub(super) fn is_unixsock_path(s: &str) -> bool {
    s.starts_with('/') || s.starts_with('@')
}

/// `sslmode`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
#[non_exhaustive]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Plaintext first, TLS if the server insists.
    Allow,
    /// TLS if the server supports it, else plaintext (libpq's default).
    #[default]
    Prefer,
    /// TLS, without verifying the certificate (unless a root certificate is configured, as libpq).
    Require,
    /// TLS, certificate chain verified.
    VerifyCa,
    /// TLS, certificate chain and host name verified.
    VerifyFull,
}

impl SslMode {
    /// Parse the libpq spelling (`disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`).
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
    /// Whether a plaintext connection is refused (`require` and stronger).
    pub fn requires_tls(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `channel_binding`: the same type as [`crate::auth::ChannelBindingMode`], which the authenticator takes.
pub type ChannelBinding = crate::auth::ChannelBindingMode;

/// `target_session_attrs`: which kind of server is acceptable when several hosts are listed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
#[non_exhaustive]
pub enum TargetSessionAttrs {
    /// Any server (the default).
    #[default]
    Any,
    /// A server that accepts writes (`default_transaction_read_only` off and not in recovery).
    ReadWrite,
    /// A server that does not accept writes by default.
    ReadOnly,
    /// A server not in hot standby.
    Primary,
    /// A server in hot standby.
    Standby,
    /// A standby if any, else any server.
    PreferStandby,
}

impl TargetSessionAttrs {
    /// Parse the libpq spelling.
    pub fn parse(s: &str) -> Option<TargetSessionAttrs> {
        Some(match s {
            "any" => TargetSessionAttrs::Any,
            "read-write" => TargetSessionAttrs::ReadWrite,
            "read-only" => TargetSessionAttrs::ReadOnly,
            "primary" => TargetSessionAttrs::Primary,
            "standby" => TargetSessionAttrs::Standby,
            "prefer-standby" => TargetSessionAttrs::PreferStandby,
            _ => return None,
        })
    }
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
            TargetSessionAttrs::ReadOnly => "read-only",
            TargetSessionAttrs::Primary => "primary",
            TargetSessionAttrs::Standby => "standby",
            TargetSessionAttrs::PreferStandby => "prefer-standby",
        }
    }
}

/// `sslcertmode` (libpq 16): whether a client certificate may be sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
#[non_exhaustive]
pub enum SslCertMode {
    /// Never send a client certificate, even when `sslcert` (or `~/.postgresql/postgresql.crt`) exists.
    Disable,
    /// Send one when it is configured or present (the default).
    #[default]
    Allow,
}

impl SslCertMode {
    /// Parse the libpq spelling (`disable`, `allow`; `require` is not supported: rustls does not tell whether
    /// the server asked for a certificate).
    pub fn parse(s: &str) -> Option<SslCertMode> {
        Some(match s {
            "disable" => SslCertMode::Disable,
            "allow" => SslCertMode::Allow,
            _ => return None,
        })
    }
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslCertMode::Disable => "disable",
            SslCertMode::Allow => "allow",
        }
    }
}

/// `sslnegotiation` (libpq 17): how TLS is started.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
#[non_exhaustive]
pub enum SslNegotiation {
    /// SSLRequest first, then the TLS handshake (the default; works with every server).
    #[default]
    Postgres,
    /// The TLS handshake straight away, with ALPN `postgresql` (PostgreSQL 17+ servers). Requires `sslmode`
    /// `require` or stronger.
    Direct,
}

impl SslNegotiation {
    /// Parse the libpq spelling (`postgres`, `direct`).
    pub fn parse(s: &str) -> Option<SslNegotiation> {
        Some(match s {
            "postgres" => SslNegotiation::Postgres,
            "direct" => SslNegotiation::Direct,
            _ => return None,
        })
    }
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslNegotiation::Postgres => "postgres",
            SslNegotiation::Direct => "direct",
        }
    }
}
