#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! Connection settings, read the way libpq reads them.
//!
//! A [`Config`] comes from a connection string in either of libpq's two syntaxes:
//!
//! - `key=value` pairs separated by whitespace (`host=db1 port=5433 dbname='my db'`): values may be single-quoted,
//!   with `\'` and `\\` escapes inside quotes and backslash escapes outside them;
//! - a URI, `postgres://` or `postgresql://`:
//!   `postgresql://[user[:password]@][host][:port][,host2[:port2]…][/dbname][?key=value&…]`, percent-decoded
//!   everywhere, IPv6 hosts in brackets (`[::1]:5432`), any `key=value` option as a query parameter
//!   (`postgres:///db?host=/var/run/postgresql` for a socket directory).
//!
//! [`Config::parse`] reads the string alone. [`Config::from_env_and_str`] is what libpq does for `psql`: values in
//! the string win over the `PG*` environment variables, which win over the built-in defaults; then, when no password
//! was given, the password comes from the password file (`~/.pgpass` or `PGPASSFILE`/`passfile`).
//!
//! Defaults (as libpq): the host is the default Unix socket directory — Debian's and Ubuntu's libpq use
//! [`DEBIAN_SOCKET_DIR`] (`/var/run/postgresql`), upstream PostgreSQL uses `/tmp`; pgrepl uses the former when that
//! directory exists, else `/tmp` ([`default_socket_dir`]); the port is 5432; the user is the operating-system user
//! (`$USER`, `$LOGNAME`, else the effective uid's name in `/etc/passwd`); the database is named after the user.
//! A host that starts with `/` (or `@`, Linux's abstract socket namespace) is a Unix socket *directory*.
//!
//! Unknown options are an error, as in libpq. libpq options that pgrepl does not implement are refused when
//! ignoring them could weaken security or change where pgrepl connects (`service`, `sslcrl`, `requirepeer`,
//! `gssencmode=require`, …) and accepted and ignored when they are no-ops for pgrepl (`gssencmode=disable`,
//! `krbsrvname`, `sslcompression`, `load_balance_hosts=disable`, …).
//!
//! Every malformed input is an [`Error`] of kind [`ErrorKind::Config`] naming the offending option (or `URI`);
//! no message ever contains a password. Nothing here panics on any input.
//!
//! Differences from libpq, on purpose:
//! - `dbname` is expanded when it holds a connection string (contains `=`, or starts with `postgres://` /
//!   `postgresql://`) in a `key=value` string and in a URI's `?dbname=` — libpq does this only for
//!   `PQconnectdbParams(expand_dbname)` (that is, psql's `-d`). Only the first `dbname` is expanded; its settings
//!   override those before it, and later ones override it. [`Config::render`] wraps a literal database name that
//!   would be mistaken for a connection string so that it parses back unchanged.
//! - `hostaddr` is used as the address to connect to, replacing `host` (whose only remaining use is to find the
//!   `.pgpass` entry). libpq also keeps `host` for TLS host-name verification.
//! - A password from `.pgpass` is looked up per host, like libpq; [`Config::password`] is set only when every
//!   host got the same one, so a password meant for one server is never sent to another. Use
//!   [`Config::password_for`] to get the password for a given host.
//! - The default user is `$USER`/`$LOGNAME` before the uid's name (libpq uses the effective uid only).
//! - `PGSERVICE`, `PGCLIENTENCODING` and the environment variables of unsupported options are not read.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::RequireAuth;
use crate::error::{Error, ErrorKind, Result};

/// The PostgreSQL default port.
pub const DEFAULT_PORT: u16 = 5432;

/// The default Unix socket directory of Debian's and Ubuntu's libpq (`DEFAULT_PGSOCKET_DIR` there), used when it
/// exists.
pub const DEBIAN_SOCKET_DIR: &str = "/var/run/postgresql";

/// Upstream PostgreSQL's default Unix socket directory, used when [`DEBIAN_SOCKET_DIR`] does not exist.
pub const UPSTREAM_SOCKET_DIR: &str = "/tmp";

/// The default Unix socket directory: [`DEBIAN_SOCKET_DIR`] if it is a directory, else [`UPSTREAM_SOCKET_DIR`].
pub fn default_socket_dir() -> PathBuf {
    default_socket_dir_with(&|p: &Path| p.is_dir())
}

fn default_socket_dir_with(is_dir: &dyn Fn(&Path) -> bool) -> PathBuf {
    let debian = Path::new(DEBIAN_SOCKET_DIR);
    if is_dir(debian) {
        debian.to_path_buf()
    } else {
        PathBuf::from(UPSTREAM_SOCKET_DIR)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------------------------

/// Where to connect.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Host {
    /// A host name or IP address (IPv6 without brackets).
    Tcp(String),
    /// A Unix socket *directory*; the socket is `<dir>/.s.PGSQL.<port>`. A path starting with `@` names
    /// Linux's abstract namespace (libpq 14+).
    Unix(PathBuf),
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

    /// The value as written in a connection string.
    fn as_conninfo(&self) -> String {
        match self {
            Host::Tcp(h) => h.clone(),
            Host::Unix(p) => p.to_string_lossy().into_owned(),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_conninfo())
    }
}

fn is_unixsock_path(s: &str) -> bool {
    s.starts_with('/') || s.starts_with('@')
}

/// `sslmode`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
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

/// `channel_binding`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub enum ChannelBinding {
    /// Never use channel binding.
    Disable,
    /// Use SCRAM-SHA-256-PLUS when TLS and the server offer it (libpq's default with TLS support).
    #[default]
    Prefer,
    /// Require a channel-bound SCRAM exchange (and therefore TLS).
    Require,
}

impl ChannelBinding {
    /// Parse the libpq spelling (`disable`, `prefer`, `require`).
    pub fn parse(s: &str) -> Option<ChannelBinding> {
        Some(match s {
            "disable" => ChannelBinding::Disable,
            "prefer" => ChannelBinding::Prefer,
            "require" => ChannelBinding::Require,
            _ => return None,
        })
    }
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelBinding::Disable => "disable",
            ChannelBinding::Prefer => "prefer",
            ChannelBinding::Require => "require",
        }
    }
}

impl fmt::Display for ChannelBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `target_session_attrs`: which kind of server is acceptable when several hosts are listed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
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

/// Resolved connection settings.
///
/// `Debug` never shows a password. [`Config::render`] does include it (so that the string connects the same way):
/// do not log a rendered string.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// The endpoints to try, in order; never empty when built by this module.
    pub hosts: Vec<(Host, u16)>,
    /// The database user name.
    pub user: String,
    /// The password given in the string (`password=`, `user:password@` in a URI) or in `PGPASSWORD`, as raw bytes
    /// (a URI may percent-encode non-UTF-8 bytes); or, from [`Config::from_env_and_str`], the `.pgpass` password
    /// when every host got the same one. An empty password counts as none, as in libpq.
    pub password: Option<Vec<u8>>,
    /// The database name (for a replication connection, the database the logical slot belongs to).
    pub dbname: String,
    /// `application_name`, or else `fallback_application_name`; `None` when both are unset or empty.
    pub application_name: Option<String>,
    /// `connect_timeout` per host; `None` means wait indefinitely. As libpq: whole seconds, at least 2.
    pub connect_timeout: Option<Duration>,
    /// `replication`, normalized to `"true"`, `"false"` or `"database"` (the server's boolean spellings are
    /// accepted on input); `None` when unset or empty.
    pub replication: Option<String>,
    /// `require_auth` (libpq 16).
    pub require_auth: RequireAuth,
    /// `sslmode`.
    pub sslmode: SslMode,
    /// `channel_binding`.
    pub channel_binding: ChannelBinding,
    /// `options`: command-line options for the server, e.g. `-c statement_timeout=0`; `None` when empty.
    pub options: Option<String>,
    /// `passfile` as given (string or `PGPASSFILE`); `None` means `~/.pgpass`.
    pub passfile: Option<PathBuf>,
    /// Further startup parameters to send. Never filled by parsing (there is no conninfo key for arbitrary
    /// parameters; use `options` with `-c name=value`), and not rendered by [`Config::render`].
    pub extra: Vec<(String, String)>,
    /// `target_session_attrs`.
    pub target_session_attrs: TargetSessionAttrs,
    /// `sslrootcert` (`system` means the system's trust store, and makes `verify-full` the default `sslmode`).
    pub sslrootcert: Option<PathBuf>,
    /// `sslcert`: client certificate.
    pub sslcert: Option<PathBuf>,
    /// `sslkey`: client private key.
    pub sslkey: Option<PathBuf>,
    /// `sslcertmode` (libpq 16): `disable` never sends a client certificate.
    pub sslcertmode: SslCertMode,
    /// `sslnegotiation` (libpq 17).
    pub sslnegotiation: SslNegotiation,
    /// `sslsni`: send the host name as TLS SNI (default true; never sent for an IP address).
    pub sslsni: bool,
    /// `keepalives`: whether TCP keepalives are on (default true).
    pub keepalives: bool,
    /// `keepalives_idle`, seconds (negative values become 0, as libpq).
    pub keepalives_idle: Option<u32>,
    /// `keepalives_interval`, seconds.
    pub keepalives_interval: Option<u32>,
    /// `keepalives_count`.
    pub keepalives_count: Option<u32>,
    /// `tcp_user_timeout`, milliseconds.
    pub tcp_user_timeout: Option<u32>,
    /// Passwords found in the password file, one per entry of `hosts` (empty when no lookup was done, e.g. a
    /// password was given or [`Config::parse`] was used). See [`Config::password_for`].
    pub host_passwords: Vec<Option<Vec<u8>>>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const REDACTED: &str = "<redacted>";
        let host_passwords: Vec<Option<&str>> =
            self.host_passwords.iter().map(|p| p.as_ref().map(|_| REDACTED)).collect();
        f.debug_struct("Config")
            .field("hosts", &self.hosts)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("replication", &self.replication)
            .field("require_auth", &self.require_auth)
            .field("sslmode", &self.sslmode)
            .field("channel_binding", &self.channel_binding)
            .field("options", &self.options)
            .field("passfile", &self.passfile)
            .field("extra", &self.extra)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
            .field("sslcertmode", &self.sslcertmode)
            .field("sslnegotiation", &self.sslnegotiation)
            .field("sslsni", &self.sslsni)
            .field("keepalives", &self.keepalives)
            .field("keepalives_idle", &self.keepalives_idle)
            .field("keepalives_interval", &self.keepalives_interval)
            .field("keepalives_count", &self.keepalives_count)
            .field("tcp_user_timeout", &self.tcp_user_timeout)
            .field("host_passwords", &host_passwords)
            .finish()
    }
}

impl std::str::FromStr for Config {
    type Err = Error;
    fn from_str(s: &str) -> Result<Config> {
        Config::parse(s)
    }
}

impl Config {
    /// Parse a `key=value` connection string or a `postgres://` / `postgresql://` URI. No `PG*` environment
    /// variable is read and no password file; unset options get the built-in defaults (see the module docs; the
    /// default user is the operating-system user).
    pub fn parse(s: &str) -> Result<Config> {
        let no_env = |_: &str| None;
        let os_env = |k: &str| std::env::var(k).ok();
        let sys = Sys {
            pg_env: &no_env,
            os_env: &os_env,
            passwd: &passwd_entry_for_euid,
            is_dir: &|p: &Path| p.is_dir(),
            use_passfile: false,
        };
        build(s, &sys).map(|(c, _)| c)
    }

    /// What libpq does: values in `s` override the `PG*` environment variables (read through `env`), which override
    /// the defaults; then, when no password was given, passwords come from the password file. `env` is also asked
    /// for `USER`, `LOGNAME` and `HOME` (default user name and `~/.pgpass`); when those are unset, the effective
    /// uid's entry in `/etc/passwd` is used.
    ///
    /// Environment variables read: `PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`,
    /// `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGPASSFILE`, `PGREQUIREAUTH`, `PGSSLMODE` (and the deprecated
    /// `PGREQUIRESSL`), `PGCHANNELBINDING`, `PGOPTIONS`, `PGTARGETSESSIONATTRS`, `PGSSLROOTCERT`, `PGSSLCERT`,
    /// `PGSSLKEY`, `PGSSLCERTMODE`, `PGSSLNEGOTIATION`, `PGSSLSNI`.
    ///
    /// A password file with group or world permissions, or that is not a regular file, is ignored with a warning
    /// on standard error, as libpq does; [`Config::from_env_and_str_with_warnings`] returns the warnings instead.
    pub fn from_env_and_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let (config, warnings) = Self::from_env_and_str_with_warnings(s, env)?;
        for w in warnings {
            eprintln!("WARNING: {w}");
        }
        Ok(config)
    }

    /// [`Config::from_env_and_str`], returning the warnings (about an ignored password file) rather than printing
    /// them.
    pub fn from_env_and_str_with_warnings(
        s: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Config, Vec<String>)> {
        let sys = Sys {
            pg_env: env,
            os_env: env,
            passwd: &passwd_entry_for_euid,
            is_dir: &|p: &Path| p.is_dir(),
            use_passfile: true,
        };
        build(s, &sys)
    }

    /// [`Config::from_env_and_str`] with the process environment.
    pub fn from_str_with_std_env(s: &str) -> Result<Config> {
        Self::from_env_and_str(s, &|k: &str| std::env::var(k).ok())
    }

    /// The password to use for `hosts[host_index]`: the one given, else the one the password file has for that
    /// host.
    pub fn password_for(&self, host_index: usize) -> Option<&[u8]> {
        if let Some(p) = &self.password {
            return Some(p);
        }
        self.host_passwords.get(host_index)?.as_deref()
    }

    /// A `key=value` connection string that [`Config::parse`] turns back into this `Config` (quoted with `'…'` and
    /// backslash escapes, as libpq). It contains the password when there is one.
    ///
    /// Not representable, and so not rendered: `extra`, `host_passwords`, and host names or socket paths that
    /// contain a comma. A password that is not UTF-8 is rendered inside a
    /// percent-encoded URI in `dbname` (expanded on parsing).
    pub fn render(&self) -> String {
        let mut out: Vec<String> = Vec::new();
        let mut kv = |k: &str, v: &str| out.push(format!("{k}={}", quote_value(v)));
        if !self.hosts.is_empty() {
            let hosts: Vec<String> = self.hosts.iter().map(|(h, _)| h.as_conninfo()).collect();
            let ports: Vec<String> = self.hosts.iter().map(|(_, p)| p.to_string()).collect();
            kv("host", &hosts.join(","));
            kv("port", &ports.join(","));
        }
        kv("user", &self.user);
        let binary_password = match &self.password {
            Some(p) if !p.is_empty() => match std::str::from_utf8(p) {
                Ok(s) => {
                    kv("password", s);
                    None
                }
                Err(_) => Some(p.as_slice()),
            },
            _ => None,
        };
        match binary_password {
            Some(pw) => {
                // Only a URI can carry arbitrary bytes: put the password (and the database name, since this
                // `dbname` is consumed by the expansion) in one.
                let uri =
                    format!("postgresql:///{}?password={}", percent_encode(self.dbname.as_bytes()), percent_encode(pw));
                kv("dbname", &uri);
            }
            None if recognized_connection_string(self.dbname.as_bytes()) => {
                // A literal name that looks like a connection string: wrap it in one, so the expansion of the
                // first `dbname` yields it verbatim (the inner string is not expanded again).
                kv("dbname", &format!("dbname={}", quote_value(&self.dbname)));
            }
            None => kv("dbname", &self.dbname),
        }
        if let Some(a) = &self.application_name {
            kv("application_name", a);
        }
        if let Some(t) = self.connect_timeout {
            kv("connect_timeout", &t.as_secs().to_string());
        }
        if let Some(r) = &self.replication {
            kv("replication", r);
        }
        if let Some(r) = render_require_auth(&self.require_auth) {
            kv("require_auth", &r);
        }
        kv("sslmode", self.sslmode.as_str());
        if self.channel_binding != ChannelBinding::default() {
            kv("channel_binding", self.channel_binding.as_str());
        }
        if let Some(o) = &self.options {
            kv("options", o);
        }
        if let Some(p) = &self.passfile {
            kv("passfile", &p.to_string_lossy());
        }
        if self.target_session_attrs != TargetSessionAttrs::default() {
            kv("target_session_attrs", self.target_session_attrs.as_str());
        }
        if let Some(p) = &self.sslrootcert {
            kv("sslrootcert", &p.to_string_lossy());
        }
        if let Some(p) = &self.sslcert {
            kv("sslcert", &p.to_string_lossy());
        }
        if let Some(p) = &self.sslkey {
            kv("sslkey", &p.to_string_lossy());
        }
        if self.sslcertmode != SslCertMode::default() {
            kv("sslcertmode", self.sslcertmode.as_str());
        }
        if self.sslnegotiation != SslNegotiation::default() {
            kv("sslnegotiation", self.sslnegotiation.as_str());
        }
        if !self.sslsni {
            kv("sslsni", "0");
        }
        if !self.keepalives {
            kv("keepalives", "0");
        }
        if let Some(v) = self.keepalives_idle {
            kv("keepalives_idle", &v.to_string());
        }
        if let Some(v) = self.keepalives_interval {
            kv("keepalives_interval", &v.to_string());
        }
        if let Some(v) = self.keepalives_count {
            kv("keepalives_count", &v.to_string());
        }
        if let Some(v) = self.tcp_user_timeout {
            kv("tcp_user_timeout", &v.to_string());
        }
        out.join(" ")
    }
}

fn render_require_auth(r: &RequireAuth) -> Option<String> {
    if r.is_default() {
        return None;
    }
    Some(r.to_string())
}

/// C's `isspace` in the C locale, which libpq uses to split a connection string.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Quote a value for a `key=value` string when it needs it (empty, whitespace, `'` or `\`).
fn quote_value(s: &str) -> String {
    if !s.is_empty() && !s.bytes().any(|b| is_c_space(b) || b == b'\'' || b == b'\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        if ch == '\'' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('\'');
    out
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// Options known to pgrepl and libpq
// ---------------------------------------------------------------------------------------------------------------

/// The options pgrepl implements.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Opt {
    Host,
    HostAddr,
    Port,
    User,
    Password,
    Dbname,
    ApplicationName,
    FallbackApplicationName,
    ConnectTimeout,
    Replication,
    RequireAuth,
    SslMode,
    ChannelBinding,
    Options,
    Passfile,
    TargetSessionAttrs,
    SslRootCert,
    SslCert,
    SslKey,
    SslNegotiation,
    SslCertMode,
    SslSni,
    Keepalives,
    KeepalivesIdle,
    KeepalivesInterval,
    KeepalivesCount,
    TcpUserTimeout,
}

impl Opt {
    fn name(self) -> &'static str {
        match self {
            Opt::Host => "host",
            Opt::HostAddr => "hostaddr",
            Opt::Port => "port",
            Opt::User => "user",
            Opt::Password => "password",
            Opt::Dbname => "dbname",
            Opt::ApplicationName => "application_name",
            Opt::FallbackApplicationName => "fallback_application_name",
            Opt::ConnectTimeout => "connect_timeout",
            Opt::Replication => "replication",
            Opt::RequireAuth => "require_auth",
            Opt::SslMode => "sslmode",
            Opt::ChannelBinding => "channel_binding",
            Opt::Options => "options",
            Opt::Passfile => "passfile",
            Opt::TargetSessionAttrs => "target_session_attrs",
            Opt::SslRootCert => "sslrootcert",
            Opt::SslCert => "sslcert",
            Opt::SslKey => "sslkey",
            Opt::SslNegotiation => "sslnegotiation",
            Opt::SslCertMode => "sslcertmode",
            Opt::SslSni => "sslsni",
            Opt::Keepalives => "keepalives",
            Opt::KeepalivesIdle => "keepalives_idle",
            Opt::KeepalivesInterval => "keepalives_interval",
            Opt::KeepalivesCount => "keepalives_count",
            Opt::TcpUserTimeout => "tcp_user_timeout",
        }
    }

    /// The environment variable libpq falls back to.
    fn env_var(self) -> Option<&'static str> {
        Some(match self {
            Opt::Host => "PGHOST",
            Opt::HostAddr => "PGHOSTADDR",
            Opt::Port => "PGPORT",
            Opt::User => "PGUSER",
            Opt::Password => "PGPASSWORD",
            Opt::Dbname => "PGDATABASE",
            Opt::ApplicationName => "PGAPPNAME",
            Opt::ConnectTimeout => "PGCONNECT_TIMEOUT",
            Opt::RequireAuth => "PGREQUIREAUTH",
            Opt::SslMode => "PGSSLMODE",
            Opt::ChannelBinding => "PGCHANNELBINDING",
            Opt::Options => "PGOPTIONS",
            Opt::Passfile => "PGPASSFILE",
            Opt::TargetSessionAttrs => "PGTARGETSESSIONATTRS",
            Opt::SslRootCert => "PGSSLROOTCERT",
            Opt::SslCert => "PGSSLCERT",
            Opt::SslKey => "PGSSLKEY",
            Opt::SslNegotiation => "PGSSLNEGOTIATION",
            Opt::SslCertMode => "PGSSLCERTMODE",
            Opt::SslSni => "PGSSLSNI",
            Opt::FallbackApplicationName
            | Opt::Replication
            | Opt::Keepalives
            | Opt::KeepalivesIdle
            | Opt::KeepalivesInterval
            | Opt::KeepalivesCount
            | Opt::TcpUserTimeout => return None,
        })
    }
}

/// What pgrepl does with a libpq option name.
enum Known {
    /// Implemented.
    Implemented(Opt),
    /// Accepted and ignored when the value passes the check (a no-op for pgrepl); refused otherwise, with the
    /// reason given.
    Ignored(fn(&str) -> bool, &'static str),
    /// Refused: ignoring it could weaken security or change where pgrepl connects.
    Unsupported(&'static str),
}

fn known(name: &str) -> Option<Known> {
    let key = match name {
        "host" => Opt::Host,
        "hostaddr" => Opt::HostAddr,
        "port" => Opt::Port,
        "user" => Opt::User,
        "password" => Opt::Password,
        "dbname" => Opt::Dbname,
        "application_name" => Opt::ApplicationName,
        "fallback_application_name" => Opt::FallbackApplicationName,
        "connect_timeout" => Opt::ConnectTimeout,
        "replication" => Opt::Replication,
        "require_auth" => Opt::RequireAuth,
        "sslmode" => Opt::SslMode,
        "channel_binding" => Opt::ChannelBinding,
        "options" => Opt::Options,
        "passfile" => Opt::Passfile,
        "target_session_attrs" => Opt::TargetSessionAttrs,
        "sslrootcert" => Opt::SslRootCert,
        "sslcert" => Opt::SslCert,
        "sslkey" => Opt::SslKey,
        "sslnegotiation" => Opt::SslNegotiation,
        "sslcertmode" => Opt::SslCertMode,
        "sslsni" => Opt::SslSni,
        "keepalives" => Opt::Keepalives,
        "keepalives_idle" => Opt::KeepalivesIdle,
        "keepalives_interval" => Opt::KeepalivesInterval,
        "keepalives_count" => Opt::KeepalivesCount,
        "tcp_user_timeout" => Opt::TcpUserTimeout,
        // GSSAPI settings only matter to GSSAPI authentication and encryption, which pgrepl does not do.
        "krbsrvname" | "gsslib" | "gssdelegation" => {
            return Some(Known::Ignored(|_| true, ""));
        }
        "gssencmode" => {
            return Some(Known::Ignored(
                |v| v == "disable" || v == "prefer",
                "pgrepl has no GSSAPI encryption; only \"disable\" and \"prefer\" are accepted",
            ))
        }
        // Obsolete (TLS compression is gone) or cosmetic.
        "sslcompression" => return Some(Known::Ignored(|_| true, "")),
        "load_balance_hosts" => {
            return Some(Known::Ignored(
                |v| v == "disable",
                "pgrepl tries hosts in order; only \"disable\" is accepted",
            ))
        }
        // pgrepl's TLS speaks TLS 1.2 and 1.3 only: these bounds are no-ops.
        "ssl_min_protocol_version" => {
            return Some(Known::Ignored(
                |v| ["", "TLSv1", "TLSv1.1", "TLSv1.2"].iter().any(|x| x.eq_ignore_ascii_case(v)),
                "pgrepl cannot raise the minimum TLS version above TLSv1.2",
            ))
        }
        "ssl_max_protocol_version" => {
            return Some(Known::Ignored(
                |v| v.is_empty() || v.eq_ignore_ascii_case("TLSv1.3"),
                "pgrepl cannot lower the maximum TLS version below TLSv1.3",
            ))
        }
        "service" => return Some(Known::Unsupported("pg_service.conf is not read")),
        "client_encoding" => return Some(Known::Unsupported("pgrepl always uses UTF8")),
        "sslpassword" => return Some(Known::Unsupported("encrypted client keys are not supported")),
        "sslcrl" | "sslcrldir" => return Some(Known::Unsupported("certificate revocation lists are not supported")),
        "sslkeylogfile" => return Some(Known::Unsupported("TLS key logging is not supported")),
        "requirepeer" => return Some(Known::Unsupported("checking the server process's user is not supported")),
        "min_protocol_version" | "max_protocol_version" => {
            return Some(Known::Unsupported("pgrepl speaks protocol 3.0 only"))
        }
        "oauth_issuer" | "oauth_client_id" | "oauth_client_secret" | "oauth_scope" => {
            return Some(Known::Unsupported("OAuth authentication is not supported"))
        }
        "scram_client_key" | "scram_server_key" => {
            return Some(Known::Unsupported("SCRAM pass-through keys are not supported"))
        }
        _ => return None,
    };
    Some(Known::Implemented(key))
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing: strings into raw option values
// ---------------------------------------------------------------------------------------------------------------

/// Where a value came from, for error messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Conninfo,
    UriQuery,
}

/// Option values as given (unquoted / percent-decoded), not yet validated. Values are bytes because a URI can
/// percent-encode anything; only `password` may stay non-UTF-8. No `Debug`: it holds the password.
#[derive(Default)]
struct Raw {
    vals: Vec<(Opt, Vec<u8>)>,
    /// Whether the first `dbname` is expanded when it holds a connection string.
    expand_dbname: bool,
    dbname_seen: bool,
    /// Errors must not quote input: a URI with an `@` that did not end the user info (a password holding an
    /// unencoded `/` or `@`) leaves pieces of the password in the host, port, path or query.
    quiet: bool,
}

impl Raw {
    fn set(&mut self, key: Opt, value: Vec<u8>) {
        match self.vals.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.vals.push((key, value)),
        }
    }

    fn get(&self, key: Opt) -> Option<&[u8]> {
        self.vals.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_slice())
    }

    /// Store `name=value` as libpq's `conninfo_storeval` does.
    fn store(&mut self, name: &str, value: Vec<u8>, origin: Origin) -> Result<()> {
        // For backwards compatibility libpq maps `requiressl=1` to `sslmode=require`, anything else to `prefer`.
        let (name, value) = if name == "requiressl" {
            let mode: &[u8] = if value.first() == Some(&b'1') { b"require" } else { b"prefer" };
            ("sslmode", mode.to_vec())
        } else {
            (name, value)
        };
        match known(name) {
            None => Err(match origin {
                Origin::UriQuery if self.quiet => {
                    Error::new(ErrorKind::Config, format!("invalid URI query parameter (name not shown: {QUIET})"))
                }
                Origin::UriQuery => Error::new(ErrorKind::Config, format!("invalid URI query parameter: {name:?}")),
                Origin::Conninfo => Error::new(ErrorKind::Config, format!("invalid connection option {name:?}")),
            }),
            Some(Known::Unsupported(why)) => {
                Err(Error::config(name, format!("connection option {name:?} is not supported by pgrepl: {why}")))
            }
            Some(Known::Ignored(acceptable, why)) => match std::str::from_utf8(&value) {
                Ok(v) if acceptable(v) => Ok(()),
                Ok(_) if self.quiet => {
                    Err(Error::config(name, format!("unsupported value (not shown: {QUIET}): {why}")))
                }
                Ok(v) => Err(Error::config(name, format!("unsupported value {v:?}: {why}"))),
                Err(_) => Err(Error::config(name, "value is not valid UTF-8")),
            },
            Some(Known::Implemented(key)) => {
                if value.contains(&0) {
                    return Err(Error::config(name, "value contains a NUL byte"));
                }
                if key == Opt::Dbname {
                    let first = !self.dbname_seen;
                    self.dbname_seen = true;
                    if first && self.expand_dbname && recognized_connection_string(&value) {
                        let text = std::str::from_utf8(&value)
                            .map_err(|_| Error::config("dbname", "connection string is not valid UTF-8"))?;
                        let inner = parse_raw(text, false)?;
                        self.quiet |= inner.quiet;
                        for (k, v) in inner.vals {
                            self.set(k, v);
                        }
                        return Ok(());
                    }
                }
                self.set(key, value);
                Ok(())
            }
        }
    }
}

fn uri_prefix_len(s: &[u8]) -> usize {
    if s.starts_with(b"postgresql://") {
        "postgresql://".len()
    } else if s.starts_with(b"postgres://") {
        "postgres://".len()
    } else {
        0
    }
}

/// libpq's `recognized_connection_string`: a URI, or anything with an `=`.
fn recognized_connection_string(s: &[u8]) -> bool {
    uri_prefix_len(s) != 0 || s.contains(&b'=')
}

fn parse_raw(s: &str, expand_dbname: bool) -> Result<Raw> {
    let mut raw = Raw { expand_dbname, ..Raw::default() };
    let prefix = uri_prefix_len(s.as_bytes());
    if prefix != 0 {
        parse_uri(s.as_bytes().get(prefix..).unwrap_or_default(), &mut raw)?;
    } else {
        parse_conninfo(s, &mut raw)?;
    }
    Ok(raw)
}

/// libpq's `conninfo_parse`: `key = value` pairs separated by whitespace.
fn parse_conninfo(s: &str, raw: &mut Raw) -> Result<()> {
    let b = s.as_bytes();
    let mut i = 0;
    // Whether the previous option was the password: then a stray word is likely the rest of an unquoted
    // password containing a space, and must not be echoed in the error.
    let mut after_password = false;
    while let Some(&c) = b.get(i) {
        if is_c_space(c) {
            i += 1;
            continue;
        }
        let start = i;
        while let Some(&c) = b.get(i) {
            if c == b'=' || is_c_space(c) {
                break;
            }
            i += 1;
        }
        // Delimiters are ASCII, so these are char boundaries.
        let name = s.get(start..i).unwrap_or_default();
        while matches!(b.get(i), Some(&c) if is_c_space(c)) {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            return Err(if after_password {
                Error::new(
                    ErrorKind::Config,
                    "missing \"=\" after a word that follows the password in connection info string \
                     (word not shown; quote a password that contains spaces)",
                )
            } else {
                Error::new(ErrorKind::Config, format!("missing \"=\" after {name:?} in connection info string"))
            });
        }
        i += 1;
        while matches!(b.get(i), Some(&c) if is_c_space(c)) {
            i += 1;
        }
        let mut value = Vec::new();
        if b.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(Error::config(name, "unterminated quoted string in connection info string")),
                    Some(b'\\') => {
                        i += 1;
                        if let Some(&n) = b.get(i) {
                            value.push(n);
                            i += 1;
                        }
                    }
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(&c) = b.get(i) {
                if is_c_space(c) {
                    i += 1;
                    break;
                }
                if c == b'\\' {
                    i += 1;
                    if let Some(&n) = b.get(i) {
                        value.push(n);
                        i += 1;
                    }
                } else {
                    value.push(c);
                    i += 1;
                }
            }
        }
        if after_password && known(name).is_none() {
            return Err(Error::new(
                ErrorKind::Config,
                "invalid connection option after the password (name not shown; quote a password that \
                 contains spaces)",
            ));
        }
        raw.store(name, value, Origin::Conninfo)?;
        after_password = name == "password";
    }
    Ok(())
}

/// Percent-decode one URI component. `what` names it in errors; a `secret` component is never echoed.
fn percent_decode(s: &[u8], what: &str, secret: bool) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if c == 0 {
            return Err(Error::config("URI", format!("the {what} contains a NUL byte")));
        }
        if c != b'%' {
            out.push(c);
            i += 1;
            continue;
        }
        let hi = s.get(i + 1).and_then(|&d| char::from(d).to_digit(16));
        let lo = s.get(i + 2).and_then(|&d| char::from(d).to_digit(16));
        let (Some(hi), Some(lo)) = (hi, lo) else {
            let msg = if secret {
                format!("invalid percent-encoded token in the {what} (not shown)")
            } else {
                let tok = String::from_utf8_lossy(s.get(i..(i + 3).min(s.len())).unwrap_or_default());
                format!("invalid percent-encoded token {tok:?} in the {what}")
            };
            return Err(Error::config("URI", msg));
        };
        // Both digits are below 16, so this fits a byte.
        let byte = u8::try_from(hi * 16 + lo).unwrap_or(0);
        if byte == 0 {
            return Err(Error::config("URI", format!("forbidden value %00 in the percent-encoded {what}")));
        }
        out.push(byte);
        i += 3;
    }
    Ok(out)
}

/// libpq's `conninfo_uri_parse_options`, on what follows `postgres://` or `postgresql://`. Errors never quote the
/// URI: it may hold a password.
fn parse_uri(rest: &[u8], raw: &mut Raw) -> Result<()> {
    let slice = |a: usize, b: usize| rest.get(a..b).unwrap_or_default();
    let mut p = 0;

    // Credentials: `user[:password]@`, recognized by an `@` before any `/`.
    let at = rest.iter().position(|&c| c == b'@' || c == b'/');
    let ats = rest.iter().filter(|&&c| c == b'@').count();
    let has_credentials = at.is_some_and(|k| rest.get(k) == Some(&b'@'));
    raw.quiet |= ats > 1 || (ats == 1 && !has_credentials);
    let quiet = raw.quiet;
    if let Some(at) = at.filter(|&k| rest.get(k) == Some(&b'@')) {
        let cred = slice(0, at);
        let (user, password) = match cred.iter().position(|&c| c == b':') {
            Some(k) => (slice(0, k), Some(slice(k + 1, at))),
            None => (cred, None),
        };
        if !user.is_empty() {
            raw.set(Opt::User, percent_decode(user, "user name", quiet)?);
        }
        if let Some(pw) = password.filter(|pw| !pw.is_empty()) {
            raw.set(Opt::Password, percent_decode(pw, "password", true)?);
        }
        p = at + 1;
    }

    // Hosts: `netloc[:port]` separated by commas; an IPv6 netloc is in brackets.
    let mut hostbuf: Vec<u8> = Vec::new();
    let mut portbuf: Vec<u8> = Vec::new();
    let mut prevchar;
    loop {
        if rest.get(p) == Some(&b'[') {
            p += 1;
            let start = p;
            while matches!(rest.get(p), Some(&c) if c != b']') {
                p += 1;
            }
            if rest.get(p).is_none() {
                return Err(Error::config(
                    "URI",
                    "end of string reached when looking for matching \"]\" in IPv6 host address",
                ));
            }
            if p == start {
                return Err(Error::config("URI", "IPv6 host address may not be empty"));
            }
            hostbuf.extend_from_slice(slice(start, p));
            p += 1;
            match rest.get(p) {
                None | Some(b':' | b'/' | b'?' | b',') => {}
                Some(&c) => {
                    return Err(Error::config(
                        "URI",
                        format!(
                            "unexpected character {:?} after IPv6 host address (expected \":\" or \"/\")",
                            char::from(c)
                        ),
                    ))
                }
            }
        } else {
            let start = p;
            while matches!(rest.get(p), Some(&c) if !matches!(c, b':' | b'/' | b'?' | b',')) {
                p += 1;
            }
            hostbuf.extend_from_slice(slice(start, p));
        }
        prevchar = rest.get(p).copied();
        if prevchar == Some(b':') {
            p += 1;
            let start = p;
            while matches!(rest.get(p), Some(&c) if !matches!(c, b'/' | b'?' | b',')) {
                p += 1;
            }
            portbuf.extend_from_slice(slice(start, p));
            prevchar = rest.get(p).copied();
        }
        if prevchar != Some(b',') {
            break;
        }
        p += 1;
        hostbuf.push(b',');
        portbuf.push(b',');
    }
    if !hostbuf.is_empty() {
        raw.set(Opt::Host, percent_decode(&hostbuf, "host", quiet)?);
    }
    if !portbuf.is_empty() {
        raw.set(Opt::Port, percent_decode(&portbuf, "port", quiet)?);
    }

    // `/dbname`; an empty one is not stored, so that PGDATABASE still applies.
    if prevchar.is_some_and(|c| c != b'?') {
        p += 1;
        let start = p;
        while matches!(rest.get(p), Some(&c) if c != b'?') {
            p += 1;
        }
        let dbname = slice(start, p);
        if !dbname.is_empty() {
            // The path is never expanded, but it is the first `dbname`: a later `?dbname=` is not expanded either.
            raw.dbname_seen = true;
            raw.set(Opt::Dbname, percent_decode(dbname, "database name", quiet)?);
        }
        prevchar = rest.get(p).copied();
    }

    // `?key=value&…`
    if prevchar.is_some() {
        parse_uri_params(rest.get(p + 1..).unwrap_or_default(), raw)?;
    }
    Ok(())
}

/// Why errors do not quote a URI's pieces in quiet mode (see `Raw::quiet`).
const QUIET: &str = "the URI has an \"@\" that is not the user-info separator, so it may hold an unencoded password";

/// `bytes` quoted for an error message, or a note saying why not.
fn quoted_unless(quiet: bool, bytes: &[u8]) -> String {
    if quiet {
        format!("(not shown: {QUIET})")
    } else {
        format!("{:?}", String::from_utf8_lossy(bytes))
    }
}

/// libpq's `conninfo_uri_parse_params`.
fn parse_uri_params(params: &[u8], raw: &mut Raw) -> Result<()> {
    let mut p = 0;
    while p < params.len() {
        let start = p;
        let mut eq: Option<usize> = None;
        loop {
            match params.get(p) {
                Some(b'=') => {
                    if eq.is_some() {
                        let kw = quoted_unless(raw.quiet, params.get(start..p).unwrap_or_default());
                        return Err(Error::config(
                            "URI",
                            format!("extra key/value separator \"=\" in URI query parameter {kw}"),
                        ));
                    }
                    eq = Some(p);
                    p += 1;
                }
                Some(b'&') | None => break,
                Some(_) => p += 1,
            }
        }
        let end = p;
        p += 1; // past '&' (or the end)
        let Some(eq) = eq else {
            let kw = quoted_unless(raw.quiet, params.get(start..end).unwrap_or_default());
            return Err(Error::config("URI", format!("missing key/value separator \"=\" in URI query parameter {kw}")));
        };
        let keyword = percent_decode(params.get(start..eq).unwrap_or_default(), "query parameter name", raw.quiet)?;
        let keyword =
            String::from_utf8(keyword).map_err(|_| Error::config("URI", "query parameter name is not valid UTF-8"))?;
        let secret = raw.quiet || keyword == "password";
        let value = percent_decode(
            params.get(eq + 1..end).unwrap_or_default(),
            &format!("value of query parameter {keyword:?}"),
            secret,
        )?;
        // JDBC compatibility, as libpq.
        if keyword == "ssl" && value == b"true" {
            raw.store("sslmode", b"require".to_vec(), Origin::UriQuery)?;
        } else {
            raw.store(&keyword, value, Origin::UriQuery)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Resolution: raw values + environment + defaults into a Config
// ---------------------------------------------------------------------------------------------------------------

/// The outside world, injectable for tests.
struct Sys<'a> {
    /// `PG*` variables.
    pg_env: &'a dyn Fn(&str) -> Option<String>,
    /// `USER`, `LOGNAME`, `HOME`.
    os_env: &'a dyn Fn(&str) -> Option<String>,
    /// The effective uid's user name and home directory.
    passwd: &'a dyn Fn() -> Option<(String, PathBuf)>,
    is_dir: &'a dyn Fn(&Path) -> bool,
    use_passfile: bool,
}

/// A value and, when it came from the environment, the variable's name.
struct Got {
    val: String,
    env: Option<&'static str>,
    quiet: bool,
}

impl Got {
    /// " (from PGSSLMODE)" when the value came from the environment.
    fn origin(&self) -> String {
        self.env.map(|e| format!(" (from {e})")).unwrap_or_default()
    }

    /// The value quoted for an error message, with its origin; or a note when it must not be shown.
    fn show(&self) -> String {
        if self.quiet {
            format!("(not shown: {QUIET})")
        } else {
            format!("{:?}{}", self.val, self.origin())
        }
    }
}

struct Lookup<'a> {
    raw: &'a Raw,
    sys: &'a Sys<'a>,
}

impl Lookup<'_> {
    fn bytes(&self, key: Opt) -> Result<Option<(Vec<u8>, Option<&'static str>)>> {
        if let Some(v) = self.raw.get(key) {
            return Ok(Some((v.to_vec(), None)));
        }
        let Some(var) = key.env_var() else {
            return Ok(None);
        };
        match (self.sys.pg_env)(var) {
            None => Ok(None),
            Some(v) if v.contains('\0') => {
                Err(Error::config(key.name(), format!("value contains a NUL byte (from {var})")))
            }
            Some(v) => Ok(Some((v.into_bytes(), Some(var)))),
        }
    }

    fn get(&self, key: Opt) -> Result<Option<Got>> {
        match self.bytes(key)? {
            None => Ok(None),
            Some((val, env)) => match String::from_utf8(val) {
                Ok(val) => Ok(Some(Got { val, env, quiet: env.is_none() && self.raw.quiet })),
                Err(_) => Err(Error::config(key.name(), "value is not valid UTF-8")),
            },
        }
    }

    /// The value, treating an empty one as unset (as libpq does for most options).
    fn non_empty(&self, key: Opt) -> Result<Option<Got>> {
        Ok(self.get(key)?.filter(|g| !g.val.is_empty()))
    }
}

fn build(s: &str, sys: &Sys<'_>) -> Result<(Config, Vec<String>)> {
    let raw = parse_raw(s, true)?;
    resolve(&raw, sys)
}

/// libpq's `pqParseIntParam`: an `int`, surrounding whitespace allowed.
fn parse_int_param(s: &str) -> Option<i32> {
    s.trim_matches(|c: char| u8::try_from(c).is_ok_and(is_c_space)).parse::<i32>().ok()
}

fn int_option(look: &Lookup<'_>, key: Opt) -> Result<Option<i32>> {
    match look.get(key)? {
        None => Ok(None),
        Some(g) => match parse_int_param(&g.val) {
            Some(v) => Ok(Some(v)),
            None => Err(Error::config(key.name(), format!("invalid integer value {}", g.show()))),
        },
    }
}

/// A non-negative integer option (keepalives_*, tcp_user_timeout): negative values mean 0, as in libpq.
fn count_option(look: &Lookup<'_>, key: Opt) -> Result<Option<u32>> {
    Ok(int_option(look, key)?.map(|v| u32::try_from(v).unwrap_or(0)))
}

/// The server's `parse_bool`: case-insensitive prefixes of true/false/yes/no, `on`, `of[f]`, `1`, `0`.
fn parse_pg_bool(s: &str) -> Option<bool> {
    let l = s.to_ascii_lowercase();
    let n = l.len();
    match l.as_bytes().first()? {
        b't' => "true".starts_with(&l).then_some(true),
        b'f' => "false".starts_with(&l).then_some(false),
        b'y' => "yes".starts_with(&l).then_some(true),
        b'n' => "no".starts_with(&l).then_some(false),
        b'o' if n >= 2 && "on".starts_with(&l) => Some(true),
        b'o' if n >= 2 && "off".starts_with(&l) => Some(false),
        b'1' if n == 1 => Some(true),
        b'0' if n == 1 => Some(false),
        _ => None,
    }
}

fn enum_option<T>(look: &Lookup<'_>, key: Opt, parse: fn(&str) -> Option<T>, expected: &str) -> Result<Option<T>> {
    match look.get(key)? {
        None => Ok(None),
        Some(g) => match parse(&g.val) {
            Some(v) => Ok(Some(v)),
            None => Err(Error::config(key.name(), format!("invalid value {}; expected {expected}", g.show()))),
        },
    }
}

fn validate_hostaddr(a: &str, from: &Got) -> Result<()> {
    // getaddrinfo(AI_NUMERICHOST) accepts an IPv6 zone ("fe80::1%eth0").
    let ok = a.parse::<std::net::IpAddr>().is_ok()
        || a.split_once('%').is_some_and(|(ip, zone)| !zone.is_empty() && ip.parse::<std::net::Ipv6Addr>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            "hostaddr",
            if from.quiet {
                format!("could not parse a network address (not shown: {QUIET}): hostaddr takes IP addresses only")
            } else {
                format!("could not parse network address {a:?}{}: hostaddr takes IP addresses only", from.origin())
            },
        ))
    }
}

fn resolve(raw: &Raw, sys: &Sys<'_>) -> Result<(Config, Vec<String>)> {
    let look = Lookup { raw, sys };
    let mut warnings = Vec::new();

    // user, then dbname (which defaults to it)
    let user = match look.non_empty(Opt::User)? {
        Some(g) => g.val,
        None => os_user_name(sys).ok_or_else(|| {
            Error::config("user", "no user name given and the operating-system user name could not be determined")
        })?,
    };
    let dbname = match look.non_empty(Opt::Dbname)? {
        Some(g) => g.val,
        None => user.clone(),
    };

    // hosts and ports
    let default_dir = default_socket_dir_with(sys.is_dir);
    // The addresses, and how an error shows one: `{:?}` plus the origin, or a note when it must not be shown.
    let hostaddrs: Option<(Vec<String>, Got)> =
        look.non_empty(Opt::HostAddr)?.map(|g| (g.val.split(',').map(str::to_owned).collect(), g));
    let hostnames: Option<Vec<String>> =
        look.non_empty(Opt::Host)?.map(|g| g.val.split(',').map(str::to_owned).collect());
    let n = match (&hostaddrs, &hostnames) {
        (Some((a, _)), Some(h)) if a.len() != h.len() => {
            return Err(Error::config(
                "host",
                format!("could not match {} host names to {} hostaddr values", h.len(), a.len()),
            ))
        }
        (Some((a, _)), _) => a.len(),
        (None, Some(h)) => h.len(),
        (None, None) => 1,
    };
    let ports: Vec<String> = match look.non_empty(Opt::Port)? {
        None => vec![String::new(); n],
        Some(g) => {
            let list: Vec<String> = g.val.split(',').map(str::to_owned).collect();
            if list.len() == 1 {
                vec![g.val.clone(); n]
            } else if list.len() == n {
                list
            } else {
                return Err(Error::config(
                    "port",
                    format!("could not match {} port numbers to {} hosts{}", list.len(), n, g.origin()),
                ));
            }
        }
    };
    let mut hosts = Vec::with_capacity(n);
    // The host name to look up in the password file, and the port as written.
    let mut pgpass_keys: Vec<(String, String)> = Vec::with_capacity(n);
    for (i, port_text) in ports.iter().enumerate() {
        let addr = hostaddrs.as_ref().and_then(|(a, _)| a.get(i)).filter(|a| !a.is_empty());
        let name = hostnames.as_ref().and_then(|h| h.get(i)).filter(|h| !h.is_empty());
        let host = if let Some(a) = addr {
            if let Some((_, g)) = &hostaddrs {
                validate_hostaddr(a, g)?;
            }
            Host::Tcp(a.clone())
        } else if let Some(h) = name {
            Host::from_conninfo(h)
        } else {
            Host::Unix(default_dir.clone())
        };
        let port = if port_text.is_empty() {
            DEFAULT_PORT
        } else {
            match parse_int_param(port_text).and_then(|p| u16::try_from(p).ok()) {
                Some(p) if p >= 1 => p,
                _ => {
                    // The value is not echoed: in a URI whose password holds a '/', the password lands here.
                    return Err(Error::config(
                        "port",
                        format!(
                            "invalid port number in element {} of {}: expected an integer from 1 to 65535",
                            i + 1,
                            n
                        ),
                    ));
                }
            }
        };
        let pw_host = name.or(addr).cloned().unwrap_or_else(|| default_dir.to_string_lossy().into_owned());
        let pw_port = if port_text.is_empty() { DEFAULT_PORT.to_string() } else { port_text.clone() };
        pgpass_keys.push((pgpass_hostname(&pw_host, &default_dir), pw_port));
        hosts.push((host, port));
    }

    let password = look.bytes(Opt::Password)?.map(|(v, _)| v).filter(|v| !v.is_empty());

    let application_name = match look.non_empty(Opt::ApplicationName)? {
        Some(g) => Some(g.val),
        None => look.non_empty(Opt::FallbackApplicationName)?.map(|g| g.val),
    };

    let connect_timeout = match int_option(&look, Opt::ConnectTimeout)? {
        Some(t) if t > 0 => Some(Duration::from_secs(u64::from(t.max(2).unsigned_abs()))),
        _ => None,
    };

    let replication = match look.non_empty(Opt::Replication)? {
        None => None,
        Some(g) if g.val == "database" => Some("database".to_owned()),
        Some(g) => match parse_pg_bool(&g.val) {
            Some(true) => Some("true".to_owned()),
            Some(false) => Some("false".to_owned()),
            None => {
                return Err(Error::config(
                    "replication",
                    format!(
                        "invalid value {}; expected \"database\" or a boolean (true/false, on/off, yes/no, 1/0)",
                        g.show()
                    ),
                ))
            }
        },
    };

    let require_auth = match look.get(Opt::RequireAuth)? {
        None => RequireAuth::default(),
        Some(g) if g.quiet => RequireAuth::parse(&g.val)
            .map_err(|_| Error::config("require_auth", format!("invalid value (not shown: {QUIET})")))?,
        Some(g) => RequireAuth::parse(&g.val)?,
    };

    let path_option = |key: Opt| -> Result<Option<PathBuf>> { Ok(look.non_empty(key)?.map(|g| PathBuf::from(g.val))) };
    let sslrootcert = path_option(Opt::SslRootCert)?;
    let sslcert = path_option(Opt::SslCert)?;
    let sslkey = path_option(Opt::SslKey)?;
    let rootcert_system = sslrootcert.as_deref() == Some(Path::new("system"));

    let sslmode_expected = "disable, allow, prefer, require, verify-ca or verify-full";
    let sslmode = match enum_option(&look, Opt::SslMode, SslMode::parse, sslmode_expected)? {
        Some(m) => {
            if rootcert_system && m != SslMode::VerifyFull {
                return Err(Error::config(
                    "sslmode",
                    format!(
                        "weak sslmode {:?} may not be used with sslrootcert=system (use \"verify-full\")",
                        m.as_str()
                    ),
                ));
            }
            m
        }
        None if (sys.pg_env)("PGREQUIRESSL").is_some_and(|v| v.starts_with('1')) => SslMode::Require,
        None if rootcert_system => SslMode::VerifyFull,
        None => SslMode::default(),
    };
    let channel_binding = enum_option(&look, Opt::ChannelBinding, ChannelBinding::parse, "disable, prefer or require")?
        .unwrap_or_default();
    let sslnegotiation =
        enum_option(&look, Opt::SslNegotiation, SslNegotiation::parse, "postgres or direct")?.unwrap_or_default();
    // libpq reads any value not starting with '1' as off; only 0 and 1 are accepted here.
    let sni = |v: &str| match v {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    };
    let sslsni = enum_option(&look, Opt::SslSni, sni, "0 or 1")?.unwrap_or(true);
    let sslcertmode = enum_option(
        &look,
        Opt::SslCertMode,
        SslCertMode::parse,
        "disable or allow (pgrepl cannot require that the server asks for a client certificate)",
    )?
    .unwrap_or_default();
    if sslnegotiation == SslNegotiation::Direct && !sslmode.requires_tls() {
        return Err(Error::config(
            "sslnegotiation",
            format!(
                "weak sslmode {:?} may not be used with sslnegotiation=direct (use \"require\", \"verify-ca\", or \"verify-full\")",
                sslmode.as_str()
            ),
        ));
    }
    let target_session_attrs = enum_option(
        &look,
        Opt::TargetSessionAttrs,
        TargetSessionAttrs::parse,
        "any, read-write, read-only, primary, standby or prefer-standby",
    )?
    .unwrap_or_default();

    let options = look.non_empty(Opt::Options)?.map(|g| g.val);
    let passfile = path_option(Opt::Passfile)?;

    let keepalives = int_option(&look, Opt::Keepalives)?.is_none_or(|v| v != 0);
    let keepalives_idle = count_option(&look, Opt::KeepalivesIdle)?;
    let keepalives_interval = count_option(&look, Opt::KeepalivesInterval)?;
    let keepalives_count = count_option(&look, Opt::KeepalivesCount)?;
    let tcp_user_timeout = count_option(&look, Opt::TcpUserTimeout)?;

    let mut config = Config {
        hosts,
        user,
        password,
        dbname,
        application_name,
        connect_timeout,
        replication,
        require_auth,
        sslmode,
        channel_binding,
        options,
        passfile,
        extra: Vec::new(),
        target_session_attrs,
        sslrootcert,
        sslcert,
        sslkey,
        sslcertmode,
        sslnegotiation,
        sslsni,
        keepalives,
        keepalives_idle,
        keepalives_interval,
        keepalives_count,
        tcp_user_timeout,
        host_passwords: Vec::new(),
    };

    // The password file, when no password was given.
    if sys.use_passfile && config.password.is_none() {
        let path = match &config.passfile {
            Some(p) => Some(p.clone()),
            None => home_dir(sys).map(|h| h.join(".pgpass")),
        };
        if let Some(path) = path {
            match load_pgpass(&path) {
                Ok(Some(mut contents)) => {
                    config.host_passwords = pgpass_keys
                        .iter()
                        .map(|(h, p)| {
                            lookup_pgpass_bytes(
                                &contents,
                                h.as_bytes(),
                                p.as_bytes(),
                                config.dbname.as_bytes(),
                                config.user.as_bytes(),
                            )
                        })
                        .collect();
                    wipe(&mut contents);
                    // One password for all hosts only when they all agree: never send a password meant for one
                    // server to another.
                    if let Some((first, rest)) = config.host_passwords.split_first() {
                        if first.is_some() && rest.iter().all(|p| p == first) {
                            config.password = first.clone();
                        }
                    }
                }
                Ok(None) => {}
                Err(w) => warnings.push(w),
            }
        }
    }
    Ok((config, warnings))
}

/// The operating-system user: `$USER`, `$LOGNAME`, else the effective uid's name.
fn os_user_name(sys: &Sys<'_>) -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| (sys.os_env)(k).filter(|v| !v.is_empty()))
        .or_else(|| (sys.passwd)().map(|(name, _)| name))
        .filter(|v| !v.is_empty())
}

/// `$HOME`, else the effective uid's home directory (libpq's `pqGetHomeDirectory`).
fn home_dir(sys: &Sys<'_>) -> Option<PathBuf> {
    (sys.os_env)("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| (sys.passwd)().map(|(_, home)| home))
        .filter(|h| !h.as_os_str().is_empty())
}

/// The effective uid (from `/proc/self/status`) looked up in `/etc/passwd`: there is no libc binding here.
fn passwd_entry_for_euid() -> Option<(String, PathBuf)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().nth(1)?.to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd_lookup(&passwd, &euid)
}

/// Find `uid` in `/etc/passwd` contents: `name:password:uid:gid:gecos:home:shell`.
fn passwd_lookup(contents: &str, uid: &str) -> Option<(String, PathBuf)> {
    contents.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        match f.as_slice() {
            [name, _, u, _, _, home, ..] if *u == uid && !name.is_empty() => {
                Some(((*name).to_owned(), PathBuf::from(home)))
            }
            _ => None,
        }
    })
}

// ---------------------------------------------------------------------------------------------------------------
// The password file
// ---------------------------------------------------------------------------------------------------------------

/// The host name to look up in `.pgpass` for a `host` value, as libpq: `localhost` for an empty host or the
/// default socket directory, the value itself otherwise (another socket directory is matched by its path).
pub fn pgpass_host_for(host: &str) -> String {
    pgpass_hostname(host, &default_socket_dir())
}

fn pgpass_hostname(host: &str, default_dir: &Path) -> String {
    if host.is_empty() || (is_unixsock_path(host) && Path::new(host) == default_dir) {
        "localhost".to_owned()
    } else {
        host.to_owned()
    }
}

/// Find the password for `host:port:dbname:user` in `.pgpass` contents, as libpq's `passwordFromFile`.
///
/// Lines are `hostname:port:database:username:password`; a field that is exactly `*` matches anything; `\:` and
/// `\\` escape a colon and a backslash; lines starting with `#` and lines with fewer than five fields are
/// ignored; the first matching line wins. The password is the fifth field with escapes removed — like libpq, it
/// ends at the next unescaped colon. `host` is matched literally: for a Unix socket pass
/// [`pgpass_host_for`]`(dir)`. An empty `dbname` or `user` finds nothing (libpq).
pub fn lookup_pgpass(contents: &str, host: &str, port: u16, dbname: &str, user: &str) -> Option<String> {
    let pw = lookup_pgpass_bytes(
        contents.as_bytes(),
        host.as_bytes(),
        port.to_string().as_bytes(),
        dbname.as_bytes(),
        user.as_bytes(),
    )?;
    String::from_utf8(pw).ok()
}

fn lookup_pgpass_bytes(contents: &[u8], host: &[u8], port: &[u8], dbname: &[u8], user: &[u8]) -> Option<Vec<u8>> {
    if dbname.is_empty() || user.is_empty() {
        return None;
    }
    for line in contents.split(|&b| b == b'\n') {
        if line.first() == Some(&b'#') {
            continue;
        }
        let mut line = line;
        while let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        if line.is_empty() {
            continue;
        }
        let rest = pgpass_field(line, host)
            .and_then(|t| pgpass_field(t, port))
            .and_then(|t| pgpass_field(t, dbname))
            .and_then(|t| pgpass_field(t, user));
        if let Some(rest) = rest {
            let mut pw = Vec::with_capacity(rest.len());
            let mut i = 0;
            while let Some(&c) = rest.get(i) {
                if c == b':' {
                    break;
                }
                match (c, rest.get(i + 1)) {
                    (b'\\', Some(&n)) => {
                        pw.push(n);
                        i += 2;
                    }
                    _ => {
                        pw.push(c);
                        i += 1;
                    }
                }
            }
            return Some(pw);
        }
    }
    None
}

/// libpq's `pwdfMatchesString`: if the first field of `line` matches `token`, the rest of the line after its
/// colon.
fn pgpass_field<'a>(line: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    if line.starts_with(b"*:") {
        return line.get(2..);
    }
    let (mut i, mut t) = (0, 0);
    loop {
        let mut c = *line.get(i)?;
        let mut escaped = false;
        if c == b'\\' {
            i += 1;
            c = *line.get(i)?;
            escaped = true;
        }
        if c == b':' && !escaped && t == token.len() {
            return line.get(i + 1..);
        }
        if token.get(t) != Some(&c) {
            return None;
        }
        i += 1;
        t += 1;
    }
}

/// Read a password file: `Ok(None)` when it does not exist or cannot be read (silently, as libpq), `Err(warning)`
/// when it is not a regular file or is group- or world-accessible (`mode & 0o077 != 0`), in which case it must be
/// ignored.
pub fn load_pgpass(path: &Path) -> std::result::Result<Option<Vec<u8>>, String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Err(format!("password file {:?} is not a plain file", path.display().to_string()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "password file {:?} has group or world access; permissions should be u=rw (0600) or less",
                path.display().to_string()
            ));
        }
    }
    Ok(std::fs::read(path).ok())
}

/// The outcome of [`read_pgpass_detailed`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PgpassLookup {
    /// The password found, as raw bytes.
    pub password: Option<Vec<u8>>,
    /// Why the file was ignored, when it was (not a regular file, or group/world accessible).
    pub warning: Option<String>,
}

impl fmt::Debug for PgpassLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgpassLookup")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("warning", &self.warning)
            .finish()
    }
}

/// Look up a password in the password file at `path` (see [`lookup_pgpass`] and [`load_pgpass`]), reporting
/// why the file was ignored, if it was.
pub fn read_pgpass_detailed(path: &Path, host: &str, port: u16, dbname: &str, user: &str) -> PgpassLookup {
    match load_pgpass(path) {
        Ok(Some(mut contents)) => {
            let password = lookup_pgpass_bytes(
                &contents,
                host.as_bytes(),
                port.to_string().as_bytes(),
                dbname.as_bytes(),
                user.as_bytes(),
            );
            wipe(&mut contents);
            PgpassLookup { password, warning: None }
        }
        Ok(None) => PgpassLookup::default(),
        Err(w) => PgpassLookup { password: None, warning: Some(w) },
    }
}

/// Look up a password in the password file at `path`. `None` when there is no match, when the file is missing, or
/// when it is ignored for being group/world accessible or not a regular file (use [`read_pgpass_detailed`] to get
/// the warning). A password that is not UTF-8 is not returned here either.
pub fn read_pgpass(path: &Path, host: &str, port: u16, dbname: &str, user: &str) -> Option<String> {
    let found = read_pgpass_detailed(path, host, port, dbname, user).password?;
    String::from_utf8(found).ok()
}

/// Overwrite a buffer that held the password file (best effort; libpq does `explicit_bzero`).
fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        *b = 0;
    }
    std::hint::black_box(buf);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::auth::AuthMethod;
    use proptest::prelude::*;
    use std::collections::HashMap;

    // ---- helpers ----------------------------------------------------------------------------------------------

    fn fake_passwd() -> Option<(String, PathBuf)> {
        Some(("osuser".to_owned(), PathBuf::from("/home/osuser")))
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k: &str| m.get(k).cloned()
    }

    /// Resolve hermetically: `env` serves PG* and USER/LOGNAME/HOME; the uid's passwd entry is `osuser`;
    /// `/var/run/postgresql` exists iff `debian_dir`.
    fn resolve_with(
        s: &str,
        env: &[(&str, &str)],
        debian_dir: bool,
        use_passfile: bool,
    ) -> Result<(Config, Vec<String>)> {
        let env = env_of(env);
        let is_dir = move |_: &Path| debian_dir;
        let sys = Sys { pg_env: &env, os_env: &env, passwd: &fake_passwd, is_dir: &is_dir, use_passfile };
        build(s, &sys)
    }

    /// `Config::parse`, hermetic.
    fn p(s: &str) -> Result<Config> {
        resolve_with(s, &[], true, false).map(|(c, _)| c)
    }

    fn pe(s: &str, env: &[(&str, &str)]) -> Result<Config> {
        resolve_with(s, env, true, false).map(|(c, _)| c)
    }

    fn err(s: &str) -> String {
        match p(s) {
            Ok(c) => panic!("{s:?} parsed: {c:?}"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Config, "{e}");
                e.to_string()
            }
        }
    }

    fn tcp(h: &str, port: u16) -> (Host, u16) {
        (Host::Tcp(h.to_owned()), port)
    }

    fn unix(d: &str, port: u16) -> (Host, u16) {
        (Host::Unix(PathBuf::from(d)), port)
    }

    // ---- conninfo syntax --------------------------------------------------------------------------------------

    #[test]
    fn empty_string_is_all_defaults() {
        let c = p("").unwrap();
        assert_eq!(c.hosts, vec![unix(DEBIAN_SOCKET_DIR, 5432)]);
        assert_eq!(c.user, "osuser");
        assert_eq!(c.dbname, "osuser");
        assert_eq!(c.password, None);
        assert_eq!(c.sslmode, SslMode::Prefer);
        assert_eq!(c.channel_binding, ChannelBinding::Prefer);
        assert_eq!(c.target_session_attrs, TargetSessionAttrs::Any);
        assert!(c.require_auth.is_default());
        assert!(c.keepalives);
        assert_eq!(c.connect_timeout, None);
        assert_eq!(c.replication, None);
        assert_eq!(p("   \t\n ").unwrap().hosts, c.hosts);
    }

    #[test]
    fn basic_pairs_and_whitespace_around_equals() {
        let c = p("host=db.example.com port = 5433  user=alice\tdbname= shop application_name =x").unwrap();
        assert_eq!(c.hosts, vec![tcp("db.example.com", 5433)]);
        assert_eq!(c.user, "alice");
        assert_eq!(c.dbname, "shop");
        assert_eq!(c.application_name.as_deref(), Some("x"));
    }

    #[test]
    fn quoted_values_and_escapes() {
        let c = p(r"user='al ice' dbname='it\'s' password='a\\b\'c d' options='-c x=1'").unwrap();
        assert_eq!(c.user, "al ice");
        assert_eq!(c.dbname, "it's");
        assert_eq!(c.password.as_deref(), Some(&b"a\\b'c d"[..]));
        assert_eq!(c.options.as_deref(), Some("-c x=1"));
        // Unquoted values take backslash escapes too, and end at whitespace.
        let c = p(r"user=a\ b dbname=x\\y\'z").unwrap();
        assert_eq!(c.user, "a b");
        assert_eq!(c.dbname, r"x\y'z");
        // A quoted value needs no whitespace after it.
        let c = p("user='a'dbname='b'").unwrap();
        assert_eq!((c.user.as_str(), c.dbname.as_str()), ("a", "b"));
        // Unicode passes through, escaped or not.
        let c = p(r"user='ünï ☃' dbname=\é").unwrap();
        assert_eq!((c.user.as_str(), c.dbname.as_str()), ("ünï ☃", "é"));
        // A trailing lone backslash is dropped, as libpq does.
        assert_eq!(p(r"user=ab\").unwrap().user, "ab");
    }

    #[test]
    fn later_values_override_earlier() {
        assert_eq!(p("user=a user=b").unwrap().user, "b");
    }

    #[test]
    fn empty_values_mean_default() {
        let c = p("host='' port='' user='' dbname='' password='' application_name='' options=''").unwrap();
        assert_eq!(c.hosts, vec![unix(DEBIAN_SOCKET_DIR, 5432)]);
        assert_eq!(c.user, "osuser");
        assert_eq!(c.dbname, "osuser");
        assert_eq!(c.password, None);
        assert_eq!(c.application_name, None);
        assert_eq!(c.options, None);
        // libpq skips blanks after '=': `user= dbname=x` sets user to "dbname=x".
        assert_eq!(p("user= dbname=x").unwrap().user, "dbname=x");
        assert_eq!(p("dbname=x user=").unwrap().user, "osuser");
    }

    #[test]
    fn syntax_errors() {
        let e = err("host");
        assert!(e.contains("missing \"=\" after \"host\""), "{e}");
        let e = err("host=a junk");
        assert!(e.contains("\"junk\""), "{e}");
        let e = err("user='abc");
        assert!(e.contains("\"user\"") && e.contains("unterminated quoted string"), "{e}");
        let e = err("=x");
        assert!(e.contains("invalid connection option \"\""), "{e}");
        let e = err("foo=bar");
        assert!(e.contains("invalid connection option \"foo\""), "{e}");
        let e = err("user=a\0b");
        assert!(e.contains("\"user\"") && e.contains("NUL"), "{e}");
    }

    #[test]
    fn errors_never_show_the_password() {
        for s in [
            "password=hunter2 secretpart",
            "password=hunter2 secretpart=1",
            "password='hunter2",
            "password=hun\0ter2",
            "postgres://u:hunter2%zz@h/db",
            "postgres://u:hunter2%00@h/db",
            "postgres://u:hunter2@h/db?password=hunter2%G1",
            "postgres://u:hun/ter2@h/db",
            "postgres://u:hunter2@[h/db",
            "postgres://u:secretpart@h:xyz/db",
        ] {
            let e = err(s);
            assert!(!e.contains("hunter2") && !e.contains("secretpart") && !e.contains("ter2"), "{s:?}: {e}");
        }
    }

    #[test]
    fn uri_with_an_unencoded_slash_in_the_password_is_quiet() {
        // No '@' before the first '/': libpq sees no credentials, so the password is spread over port, path and
        // query. Errors must not quote any of it.
        for (s, secret) in [
            ("postgres://u:pa/ss%zz@h/db", "ss"),
            ("postgres://u:1/x?sslmode=se@cret", "cret"),
            ("postgres://u:1/x?se@cret=1", "cret"),
            ("postgres://u:1/x?se@cret", "cret"),
            ("postgres://u:1/x?a=b=se@cret", "cret"),
            ("postgres://u:1/x?replication=se@cret", "cret"),
            ("postgres://u:1/x?connect_timeout=se@cret", "cret"),
            ("postgres://u:1/x?hostaddr=se@cret", "cret"),
            ("postgres://u:1/x?require_auth=se@cret", "cret"),
            ("postgres://u:1/x?gssencmode=se@cret", "cret"),
            ("postgres://u:1/x?user=%FFse@cret", "cret"),
            ("postgres://u:p@ss@h/db%zz", "zz"),
        ] {
            let e = err(s);
            assert!(!e.contains(secret), "{s}: {e}");
            // Where a value would be quoted, the message says it is withheld.
            assert!(e.contains("not shown") || e.contains("not valid UTF-8"), "{s}: {e}");
        }
        // An '@' in a query value is legitimate and still works.
        let c = p("postgres://h/db?user=me@corp.example").unwrap();
        assert_eq!(c.user, "me@corp.example");
        // With proper credentials, errors quote as usual.
        let e = err("postgres://u:pw@h/db?sslmode=bogus");
        assert!(e.contains("\"bogus\""), "{e}");
    }

    // ---- hosts and ports --------------------------------------------------------------------------------------

    #[test]
    fn socket_directories() {
        assert_eq!(p("host=/tmp").unwrap().hosts, vec![unix("/tmp", 5432)]);
        assert_eq!(p("host=@abstract port=6000").unwrap().hosts, vec![unix("@abstract", 6000)]);
        assert!(p("host=/tmp").unwrap().hosts[0].0.is_unix());
    }

    #[test]
    fn default_socket_dir_follows_the_filesystem() {
        let (c, _) = resolve_with("", &[], true, false).unwrap();
        assert_eq!(c.hosts, vec![unix("/var/run/postgresql", 5432)]);
        let (c, _) = resolve_with("", &[], false, false).unwrap();
        assert_eq!(c.hosts, vec![unix("/tmp", 5432)]);
        assert_eq!(default_socket_dir_with(&|_| false), PathBuf::from("/tmp"));
        let real = default_socket_dir();
        assert!(real == Path::new(DEBIAN_SOCKET_DIR) || real == Path::new(UPSTREAM_SOCKET_DIR));
    }

    #[test]
    fn multiple_hosts_and_ports() {
        let c = p("host=a,b,/tmp port=1,2,3").unwrap();
        assert_eq!(c.hosts, vec![tcp("a", 1), tcp("b", 2), unix("/tmp", 3)]);
        // One port applies to every host.
        let c = p("host=a,b port=7").unwrap();
        assert_eq!(c.hosts, vec![tcp("a", 7), tcp("b", 7)]);
        // No port: the default for all.
        let c = p("host=a,b").unwrap();
        assert_eq!(c.hosts, vec![tcp("a", 5432), tcp("b", 5432)]);
        // Empty elements are defaults.
        let c = p("host=a,,c port=1,,3").unwrap();
        assert_eq!(c.hosts, vec![tcp("a", 1), unix(DEBIAN_SOCKET_DIR, 5432), tcp("c", 3)]);
        // Ports without hosts.
        let c = p("port=1,2").unwrap_err().to_string();
        assert!(c.contains("\"port\"") && c.contains("could not match 2 port numbers to 1 hosts"), "{c}");
        let e = err("host=a,b,c port=1,2");
        assert!(e.contains("\"port\"") && e.contains("could not match 2 port numbers to 3 hosts"), "{e}");
        // Whitespace around a port number is allowed, as in libpq.
        assert_eq!(p("port=' 6543 '").unwrap().hosts, vec![unix(DEBIAN_SOCKET_DIR, 6543)]);
    }

    #[test]
    fn bad_ports() {
        for s in ["port=0", "port=65536", "port=-1", "port=x", "port=5432x", "host=a,b port=1,y", "port=99999999999"] {
            let e = err(s);
            assert!(e.contains("\"port\"") && e.contains("invalid port number"), "{s}: {e}");
        }
    }

    #[test]
    fn hostaddr() {
        let c = p("hostaddr=127.0.0.1 port=5433").unwrap();
        assert_eq!(c.hosts, vec![tcp("127.0.0.1", 5433)]);
        let c = p("host=db1,db2 hostaddr=10.0.0.1,::1").unwrap();
        assert_eq!(c.hosts, vec![tcp("10.0.0.1", 5432), tcp("::1", 5432)]);
        // An empty hostaddr element falls back to the host.
        let c = p("host=db1,db2 hostaddr=10.0.0.1,").unwrap();
        assert_eq!(c.hosts, vec![tcp("10.0.0.1", 5432), tcp("db2", 5432)]);
        assert_eq!(p("hostaddr=fe80::1%eth0").unwrap().hosts, vec![tcp("fe80::1%eth0", 5432)]);
        let e = err("hostaddr=db.example.com");
        assert!(e.contains("\"hostaddr\"") && e.contains("db.example.com"), "{e}");
        let e = err("host=a,b,c hostaddr=1.2.3.4,5.6.7.8");
        assert!(e.contains("could not match 3 host names to 2 hostaddr values"), "{e}");
    }

    // ---- individual options -----------------------------------------------------------------------------------

    #[test]
    fn connect_timeout() {
        let t = |s: &str| p(&format!("connect_timeout={s}")).unwrap().connect_timeout;
        assert_eq!(t("10"), Some(Duration::from_secs(10)));
        assert_eq!(t("1"), Some(Duration::from_secs(2)));
        assert_eq!(t("2"), Some(Duration::from_secs(2)));
        assert_eq!(t("0"), None);
        assert_eq!(t("-5"), None);
        assert_eq!(t("' 7 '"), Some(Duration::from_secs(7)));
        assert_eq!(t("+3"), Some(Duration::from_secs(3)));
        for bad in ["abc", "''", "1.5", "10s", "99999999999"] {
            let e = err(&format!("connect_timeout={bad}"));
            assert!(e.contains("\"connect_timeout\"") && e.contains("invalid integer value"), "{bad}: {e}");
        }
        let e = pe("", &[("PGCONNECT_TIMEOUT", "soon")]).unwrap_err().to_string();
        assert!(e.contains("connect_timeout") && e.contains("PGCONNECT_TIMEOUT"), "{e}");
    }

    #[test]
    fn replication_values() {
        let r = |s: &str| p(&format!("replication={s}")).unwrap().replication;
        for t in ["true", "on", "yes", "1", "TRUE", "On", "t", "y", "ye", "tru"] {
            assert_eq!(r(t).as_deref(), Some("true"), "{t}");
        }
        for f in ["false", "off", "no", "0", "OFF", "f", "n", "of"] {
            assert_eq!(r(f).as_deref(), Some("false"), "{f}");
        }
        assert_eq!(r("database").as_deref(), Some("database"));
        assert_eq!(r("''"), None);
        for bad in ["Database", "o", "2", "maybe", "10", "truee"] {
            let e = err(&format!("replication={bad}"));
            assert!(e.contains("\"replication\"") && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn ssl_options() {
        for (s, m) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Allow),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            assert_eq!(p(&format!("sslmode={s}")).unwrap().sslmode, m);
            assert_eq!(m.as_str(), s);
        }
        let e = err("sslmode=required");
        assert!(e.contains("\"sslmode\"") && e.contains("required"), "{e}");
        let e = err("sslmode=''");
        assert!(e.contains("\"sslmode\""), "{e}");
        assert_eq!(p("requiressl=1").unwrap().sslmode, SslMode::Require);
        assert_eq!(p("requiressl=0").unwrap().sslmode, SslMode::Prefer);

        assert_eq!(p("channel_binding=require").unwrap().channel_binding, ChannelBinding::Require);
        assert_eq!(p("channel_binding=disable").unwrap().channel_binding, ChannelBinding::Disable);
        let e = err("channel_binding=yes");
        assert!(e.contains("\"channel_binding\""), "{e}");

        let c = p("sslrootcert=/etc/ca.pem sslcert=/c.pem sslkey=/k.pem").unwrap();
        assert_eq!(c.sslrootcert.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(c.sslcert.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(c.sslkey.as_deref(), Some(Path::new("/k.pem")));
        assert_eq!(c.sslmode, SslMode::Prefer);
        // sslrootcert=system makes verify-full the default, and refuses anything weaker.
        assert_eq!(p("sslrootcert=system").unwrap().sslmode, SslMode::VerifyFull);
        let e = err("sslrootcert=system sslmode=require");
        assert!(e.contains("\"sslmode\"") && e.contains("sslrootcert=system"), "{e}");

        assert_eq!(p("sslnegotiation=postgres").unwrap().sslnegotiation, SslNegotiation::Postgres);
        let c = p("sslnegotiation=direct sslmode=require").unwrap();
        assert_eq!(c.sslnegotiation, SslNegotiation::Direct);
        let e = err("sslnegotiation=direct");
        assert!(e.contains("\"sslnegotiation\"") && e.contains("weak sslmode"), "{e}");
        let e = err("sslnegotiation=tls");
        assert!(e.contains("\"sslnegotiation\""), "{e}");

        assert_eq!(p("").unwrap().sslcertmode, SslCertMode::Allow);
        assert_eq!(p("sslcertmode=disable").unwrap().sslcertmode, SslCertMode::Disable);
        assert_eq!(p("sslcertmode=allow").unwrap().sslcertmode, SslCertMode::Allow);
        assert_eq!(pe("", &[("PGSSLCERTMODE", "disable")]).unwrap().sslcertmode, SslCertMode::Disable);
        assert_eq!(pe("sslcertmode=allow", &[("PGSSLCERTMODE", "disable")]).unwrap().sslcertmode, SslCertMode::Allow);
        let e = err("sslcertmode=require");
        assert!(e.contains("\"sslcertmode\"") && e.contains("disable or allow"), "{e}");
        assert!(p("host=h sslcertmode=disable").unwrap().render().contains("sslcertmode=disable"));
        assert!(!p("host=h sslcertmode=allow").unwrap().render().contains("sslcertmode"));

        assert!(p("").unwrap().sslsni);
        assert!(!p("sslsni=0").unwrap().sslsni);
        assert!(p("sslsni=1").unwrap().sslsni);
        let e = err("sslsni=true");
        assert!(e.contains("\"sslsni\"") && e.contains("0 or 1"), "{e}");
        assert!(!pe("", &[("PGSSLSNI", "0")]).unwrap().sslsni);
        assert!(pe("sslsni=1", &[("PGSSLSNI", "0")]).unwrap().sslsni);
        let c = p("host=h sslsni=0").unwrap();
        assert!(c.render().contains("sslsni=0"));
        assert_eq!(p(&c.render()).unwrap(), c);
        assert!(!p("host=h").unwrap().render().contains("sslsni"));
    }

    #[test]
    fn target_session_attrs() {
        for (s, t) in [
            ("any", TargetSessionAttrs::Any),
            ("read-write", TargetSessionAttrs::ReadWrite),
            ("read-only", TargetSessionAttrs::ReadOnly),
            ("primary", TargetSessionAttrs::Primary),
            ("standby", TargetSessionAttrs::Standby),
            ("prefer-standby", TargetSessionAttrs::PreferStandby),
        ] {
            assert_eq!(p(&format!("target_session_attrs={s}")).unwrap().target_session_attrs, t);
        }
        let e = err("target_session_attrs=writable");
        assert!(e.contains("\"target_session_attrs\""), "{e}");
    }

    #[test]
    fn require_auth() {
        let c = p("require_auth=scram-sha-256").unwrap();
        assert!(c.require_auth.allows(AuthMethod::ScramSha256));
        assert!(!c.require_auth.allows(AuthMethod::Password));
        let c = p("require_auth=!password,!md5").unwrap();
        assert!(!c.require_auth.allows(AuthMethod::Md5));
        assert!(c.require_auth.allows(AuthMethod::None));
        assert!(p("require_auth=''").unwrap().require_auth.is_default());
        let e = err("require_auth=kerberos");
        assert!(e.contains("require_auth"), "{e}");
        let e = err("require_auth=md5,!password");
        assert!(e.contains("require_auth"), "{e}");
    }

    #[test]
    fn keepalives_and_tcp_user_timeout() {
        let c = p("keepalives=0 keepalives_idle=30 keepalives_interval=-3 keepalives_count=5 tcp_user_timeout=1000")
            .unwrap();
        assert!(!c.keepalives);
        assert_eq!(c.keepalives_idle, Some(30));
        assert_eq!(c.keepalives_interval, Some(0));
        assert_eq!(c.keepalives_count, Some(5));
        assert_eq!(c.tcp_user_timeout, Some(1000));
        assert!(p("keepalives=7").unwrap().keepalives);
        let e = err("keepalives_idle=soon");
        assert!(e.contains("\"keepalives_idle\""), "{e}");
        let e = err("keepalives=on");
        assert!(e.contains("\"keepalives\""), "{e}");
    }

    #[test]
    fn application_name_and_fallback() {
        assert_eq!(p("fallback_application_name=fb").unwrap().application_name.as_deref(), Some("fb"));
        let c = p("fallback_application_name=fb application_name=app").unwrap();
        assert_eq!(c.application_name.as_deref(), Some("app"));
        // An empty application_name falls back.
        let c = p("application_name='' fallback_application_name=fb").unwrap();
        assert_eq!(c.application_name.as_deref(), Some("fb"));
        // PGAPPNAME beats the fallback, and the string beats PGAPPNAME.
        let env = [("PGAPPNAME", "envapp")];
        assert_eq!(pe("fallback_application_name=fb", &env).unwrap().application_name.as_deref(), Some("envapp"));
        assert_eq!(pe("application_name=s", &env).unwrap().application_name.as_deref(), Some("s"));
    }

    #[test]
    fn ignored_and_unsupported_options() {
        for ok in [
            "gssencmode=disable",
            "gssencmode=prefer",
            "krbsrvname=postgres",
            "gsslib=gssapi",
            "sslcompression=1",
            "sslsni=0",
            "load_balance_hosts=disable",
            "ssl_min_protocol_version=TLSv1.2",
            "ssl_max_protocol_version=tlsv1.3",
        ] {
            assert!(p(ok).is_ok(), "{ok}");
        }
        for (bad, key) in [
            ("gssencmode=require", "gssencmode"),
            ("load_balance_hosts=random", "load_balance_hosts"),
            ("ssl_min_protocol_version=TLSv1.3", "ssl_min_protocol_version"),
            ("service=mydb", "service"),
            ("sslcrl=/crl.pem", "sslcrl"),
            ("requirepeer=postgres", "requirepeer"),
            ("client_encoding=LATIN1", "client_encoding"),
            ("sslpassword=x", "sslpassword"),
        ] {
            let e = err(bad);
            assert!(e.contains(&format!("\"{key}\"")), "{bad}: {e}");
        }
    }

    #[test]
    fn non_utf8_values() {
        // Only a URI can produce them; only the password may keep them.
        let c = p("postgresql://u:%FF%FE@h/db").unwrap();
        assert_eq!(c.password.as_deref(), Some(&[0xFF, 0xFE][..]));
        let e = err("postgresql://%FF@h/db");
        assert!(e.contains("\"user\"") && e.contains("UTF-8"), "{e}");
        let e = err("postgresql://h/%C3");
        assert!(e.contains("\"dbname\"") && e.contains("UTF-8"), "{e}");
    }

    // ---- dbname expansion -------------------------------------------------------------------------------------

    #[test]
    fn dbname_holding_a_connection_string() {
        let c = p("dbname='host=h port=5 dbname=real' user=u").unwrap();
        assert_eq!(c.hosts, vec![tcp("h", 5)]);
        assert_eq!(c.dbname, "real");
        assert_eq!(c.user, "u");
        // Its values override earlier ones; later ones override it.
        assert_eq!(p("user=a dbname='user=b'").unwrap().user, "b");
        assert_eq!(p("dbname='user=b' user=c").unwrap().user, "c");
        // Without a dbname inside, dbname stays unset (the user's name).
        assert_eq!(p("dbname='user=b'").unwrap().dbname, "b");
        // A URI.
        let c = p("dbname=postgresql://x:7/d user=u").unwrap();
        assert_eq!((c.hosts.clone(), c.dbname.as_str()), (vec![tcp("x", 7)], "d"));
        // Only the first dbname is expanded; the inner string is not expanded again.
        assert_eq!(p("dbname=plain dbname='a=b'").unwrap().dbname, "a=b");
        assert_eq!(p(r"dbname='dbname=\'x=y\''").unwrap().dbname, "x=y");
        // In a URI query too, but not in the URI path.
        assert_eq!(p("postgres:///?dbname=user%3Dz").unwrap().user, "z");
        assert_eq!(p("postgres:///a%3Db").unwrap().dbname, "a=b");
        // Errors inside are reported.
        let e = err("dbname='nosuch=1'");
        assert!(e.contains("\"nosuch\""), "{e}");
    }

    // ---- URIs -------------------------------------------------------------------------------------------------

    #[test]
    fn uri_basics() {
        let c = p("postgresql://alice:s3cret@db.example.com:5433/shop?application_name=app&sslmode=require").unwrap();
        assert_eq!(c.hosts, vec![tcp("db.example.com", 5433)]);
        assert_eq!(c.user, "alice");
        assert_eq!(c.password.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(c.dbname, "shop");
        assert_eq!(c.application_name.as_deref(), Some("app"));
        assert_eq!(c.sslmode, SslMode::Require);
        let c = p("postgres://h").unwrap();
        assert_eq!((c.hosts.clone(), c.dbname.as_str()), (vec![tcp("h", 5432)], "osuser"));
        assert_eq!(p("postgres://").unwrap().hosts, vec![unix(DEBIAN_SOCKET_DIR, 5432)]);
        assert_eq!(p("postgresql://h/").unwrap().dbname, "osuser");
        assert_eq!(p("postgresql://h?").unwrap().hosts, vec![tcp("h", 5432)]);
        // The user alone, and an empty password.
        let c = p("postgresql://bob@h").unwrap();
        assert_eq!((c.user.as_str(), c.password.clone()), ("bob", None));
        assert_eq!(p("postgresql://bob:@h").unwrap().password, None);
        // A password with a colon.
        assert_eq!(p("postgresql://bob:a:b@h").unwrap().password.as_deref(), Some(&b"a:b"[..]));
    }

    #[test]
    fn uri_percent_decoding() {
        let c = p("postgresql://us%40er:p%40ss%2Fw%3Ard@h%2Dx/d%20b?application_name=a%26b%3Dc").unwrap();
        assert_eq!(c.user, "us@er");
        assert_eq!(c.password.as_deref(), Some(&b"p@ss/w:rd"[..]));
        assert_eq!(c.hosts, vec![tcp("h-x", 5432)]);
        assert_eq!(c.dbname, "d b");
        assert_eq!(c.application_name.as_deref(), Some("a&b=c"));
        // '+' is not a space.
        assert_eq!(p("postgres:///a+b").unwrap().dbname, "a+b");
        // Lower-case hex.
        assert_eq!(p("postgres:///%c3%a9").unwrap().dbname, "é");
        // Percent-encoded query keys.
        assert_eq!(p("postgres://h?%75ser=z").unwrap().user, "z");
        for (bad, tok) in [
            ("postgres:///db%zz", "%zz"),
            ("postgres:///db%4", "%4"),
            ("postgres:///db%", "%"),
            ("postgres://h?user=%G0", "%G0"),
        ] {
            let e = err(bad);
            assert!(
                e.contains("\"URI\"") && e.contains("invalid percent-encoded token") && e.contains(tok),
                "{bad}: {e}"
            );
        }
        for raw in ["postgresql://h/a\0b", "postgresql://u\0@h/d", "postgresql://u:p\0w@h/d", "postgresql://h\0x/d"] {
            let e = err(raw);
            assert!(e.contains("\"URI\"") && e.contains("NUL"), "{raw:?}: {e}");
        }
        let e = err("postgres:///db%00x");
        assert!(e.contains("\"URI\"") && e.contains("%00"), "{e}");
        let e = err("postgres://h?application_name=%00");
        assert!(e.contains("%00"), "{e}");
    }

    #[test]
    fn uri_ipv6() {
        assert_eq!(p("postgresql://[::1]:5433/db").unwrap().hosts, vec![tcp("::1", 5433)]);
        assert_eq!(p("postgresql://[::1]/db").unwrap().hosts, vec![tcp("::1", 5432)]);
        assert_eq!(p("postgresql://[2001:db8::7]").unwrap().hosts, vec![tcp("2001:db8::7", 5432)]);
        assert_eq!(p("postgresql://u@[fe80::1]?sslmode=disable").unwrap().hosts, vec![tcp("fe80::1", 5432)]);
        let c = p("postgresql://[::1]:1,[::2]:2,h:3").unwrap();
        assert_eq!(c.hosts, vec![tcp("::1", 1), tcp("::2", 2), tcp("h", 3)]);
        let e = err("postgresql://[::1");
        assert!(e.contains("\"URI\"") && e.contains("\"]\""), "{e}");
        let e = err("postgresql://[]:5432");
        assert!(e.contains("\"URI\"") && e.contains("may not be empty"), "{e}");
        let e = err("postgresql://[::1]x/db");
        assert!(e.contains("\"URI\"") && e.contains("'x'"), "{e}");
    }

    #[test]
    fn uri_multiple_hosts() {
        let c = p("postgresql://a:1,b:2,c/db").unwrap();
        assert_eq!(c.hosts, vec![tcp("a", 1), tcp("b", 2), tcp("c", 5432)]);
        let c = p("postgresql://a,b/db").unwrap();
        assert_eq!(c.hosts, vec![tcp("a", 5432), tcp("b", 5432)]);
        // An empty host is the default socket directory.
        let c = p("postgresql://,b:2/db").unwrap();
        assert_eq!(c.hosts, vec![unix(DEBIAN_SOCKET_DIR, 5432), tcp("b", 2)]);
        let c = p("postgresql://:6000/db").unwrap();
        assert_eq!(c.hosts, vec![unix(DEBIAN_SOCKET_DIR, 6000)]);
    }

    #[test]
    fn uri_socket_directories() {
        let c = p("postgres:///db?host=/tmp").unwrap();
        assert_eq!((c.hosts.clone(), c.dbname.as_str()), (vec![unix("/tmp", 5432)], "db"));
        let c = p("postgresql:///db?host=/var/lib/postgresql&port=5434").unwrap();
        assert_eq!(c.hosts, vec![unix("/var/lib/postgresql", 5434)]);
        let c = p("postgresql://%2Fvar%2Frun%2Fpostgresql/db").unwrap();
        assert_eq!(c.hosts, vec![unix("/var/run/postgresql", 5432)]);
        let c = p("postgresql://user@/db?host=%2Ftmp%2Fmy%20sockets").unwrap();
        assert_eq!(c.hosts, vec![unix("/tmp/my sockets", 5432)]);
    }

    #[test]
    fn uri_query_params() {
        let c = p("postgres://h/db?replication=database&connect_timeout=5&options=-c%20x%3D1&ssl=true").unwrap();
        assert_eq!(c.replication.as_deref(), Some("database"));
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(c.options.as_deref(), Some("-c x=1"));
        assert_eq!(c.sslmode, SslMode::Require);
        // Query parameters override the URI's parts.
        assert_eq!(p("postgres://a@h/db?user=b").unwrap().user, "b");
        assert_eq!(p("postgres://h:1/db?port=2").unwrap().hosts, vec![tcp("h", 2)]);
        // A trailing '&' is fine.
        assert_eq!(p("postgres://h/db?user=x&").unwrap().user, "x");
        let e = err("postgres://h/db?nosuch=1");
        assert!(e.contains("invalid URI query parameter: \"nosuch\""), "{e}");
        let e = err("postgres://h/db?ssl=false");
        assert!(e.contains("\"ssl\""), "{e}");
        let e = err("postgres://h/db?user");
        assert!(e.contains("missing key/value separator") && e.contains("\"user\""), "{e}");
        let e = err("postgres://h/db?user=a=b");
        assert!(e.contains("extra key/value separator"), "{e}");
        let e = err("postgres://h/db?&");
        assert!(e.contains("missing key/value separator"), "{e}");
        let e = err("postgres://h/db?sslmode=bogus");
        assert!(e.contains("\"sslmode\""), "{e}");
    }

    #[test]
    fn uri_bad_port() {
        let e = err("postgresql://h:port/db");
        assert!(e.contains("\"port\""), "{e}");
        let e = err("postgresql://h:1,k:70000/db");
        assert!(e.contains("\"port\"") && e.contains("element 2 of 2"), "{e}");
    }

    #[test]
    fn not_a_uri() {
        // Only the two designators start a URI; anything else is key=value syntax.
        let e = err("postgre://h/db");
        assert!(e.contains("missing \"=\""), "{e}");
        let e = err("mysql://h");
        assert!(e.contains("missing \"=\""), "{e}");
    }

    // ---- environment ------------------------------------------------------------------------------------------

    #[test]
    fn env_fills_in_what_the_string_lacks() {
        let env = [
            ("PGHOST", "envhost"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGDATABASE", "envdb"),
            ("PGAPPNAME", "envapp"),
            ("PGCONNECT_TIMEOUT", "9"),
            ("PGPASSFILE", "/nonexistent/pgpass"),
            ("PGREQUIREAUTH", "scram-sha-256"),
            ("PGSSLMODE", "verify-ca"),
            ("PGCHANNELBINDING", "require"),
            ("PGOPTIONS", "-c jit=off"),
            ("PGTARGETSESSIONATTRS", "primary"),
            ("PGSSLROOTCERT", "/ca.pem"),
        ];
        let c = pe("", &env).unwrap();
        assert_eq!(c.hosts, vec![tcp("envhost", 6000)]);
        assert_eq!(c.user, "envuser");
        assert_eq!(c.password.as_deref(), Some(&b"envpw"[..]));
        assert_eq!(c.dbname, "envdb");
        assert_eq!(c.application_name.as_deref(), Some("envapp"));
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(9)));
        assert_eq!(c.passfile.as_deref(), Some(Path::new("/nonexistent/pgpass")));
        assert!(!c.require_auth.allows(AuthMethod::Md5));
        assert_eq!(c.sslmode, SslMode::VerifyCa);
        assert_eq!(c.channel_binding, ChannelBinding::Require);
        assert_eq!(c.options.as_deref(), Some("-c jit=off"));
        assert_eq!(c.target_session_attrs, TargetSessionAttrs::Primary);
        assert_eq!(c.sslrootcert.as_deref(), Some(Path::new("/ca.pem")));

        // The string wins.
        let c = pe("host=h port=1 user=u password=p dbname=d sslmode=disable", &env).unwrap();
        assert_eq!(c.hosts, vec![tcp("h", 1)]);
        assert_eq!((c.user.as_str(), c.dbname.as_str()), ("u", "d"));
        assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
        assert_eq!(c.sslmode, SslMode::Disable);
        // So does a URI.
        let c = pe("postgresql://u@h:1/d", &env).unwrap();
        assert_eq!((c.hosts.clone(), c.user.as_str(), c.dbname.as_str()), (vec![tcp("h", 1)], "u", "d"));
        // A URI's empty parts are not values: the environment applies.
        let c = pe("postgresql:///", &env).unwrap();
        assert_eq!((c.hosts.clone(), c.dbname.as_str()), (vec![tcp("envhost", 6000)], "envdb"));
    }

    #[test]
    fn explicit_empty_value_blocks_the_env_var() {
        // libpq: an option given as '' is set, so PGHOST is not consulted, and '' then means the default.
        let env = [("PGHOST", "envhost"), ("PGUSER", "envuser")];
        let c = pe("host='' user=''", &env).unwrap();
        assert_eq!(c.hosts, vec![unix(DEBIAN_SOCKET_DIR, 5432)]);
        assert_eq!(c.user, "osuser");
    }

    #[test]
    fn env_user_defaults() {
        assert_eq!(pe("", &[("USER", "u1"), ("LOGNAME", "l1")]).unwrap().user, "u1");
        assert_eq!(pe("", &[("LOGNAME", "l1")]).unwrap().user, "l1");
        assert_eq!(pe("", &[("USER", "")]).unwrap().user, "osuser");
        let c = pe("", &[("USER", "u1"), ("PGUSER", "pg")]).unwrap();
        assert_eq!((c.user.as_str(), c.dbname.as_str()), ("pg", "pg"));
        // No user anywhere.
        let env = env_of(&[]);
        let none = || None;
        let sys = Sys { pg_env: &env, os_env: &env, passwd: &none, is_dir: &|_| true, use_passfile: false };
        let e = build("", &sys).unwrap_err().to_string();
        assert!(e.contains("\"user\""), "{e}");
        assert!(build("user=x", &sys).is_ok());
    }

    #[test]
    fn env_errors_name_the_variable() {
        let e = pe("", &[("PGSSLMODE", "bogus")]).unwrap_err().to_string();
        assert!(e.contains("\"sslmode\"") && e.contains("PGSSLMODE") && e.contains("bogus"), "{e}");
        let e = pe("", &[("PGPORT", "1,2")]).unwrap_err().to_string();
        assert!(e.contains("\"port\"") && e.contains("PGPORT"), "{e}");
        let e = pe("", &[("PGHOSTADDR", "nope")]).unwrap_err().to_string();
        assert!(e.contains("\"hostaddr\"") && e.contains("PGHOSTADDR"), "{e}");
        let e = pe("", &[("PGCHANNELBINDING", "x")]).unwrap_err().to_string();
        assert!(e.contains("\"channel_binding\"") && e.contains("PGCHANNELBINDING"), "{e}");
    }

    #[test]
    fn env_misc() {
        assert_eq!(pe("", &[("PGREQUIRESSL", "1")]).unwrap().sslmode, SslMode::Require);
        assert_eq!(pe("", &[("PGREQUIRESSL", "1"), ("PGSSLMODE", "allow")]).unwrap().sslmode, SslMode::Allow);
        assert_eq!(pe("sslmode=disable", &[("PGREQUIRESSL", "1")]).unwrap().sslmode, SslMode::Disable);
        // Options with no environment variable ignore look-alikes.
        assert_eq!(pe("", &[("PGREPLICATION", "database")]).unwrap().replication, None);
        // Several hosts from PGHOST, one port from PGPORT.
        let c = pe("", &[("PGHOST", "a,/s"), ("PGPORT", "7")]).unwrap();
        assert_eq!(c.hosts, vec![tcp("a", 7), unix("/s", 7)]);
        // The string's hosts with PGPORT's ports.
        let c = pe("host=x,y", &[("PGPORT", "1,2")]).unwrap();
        assert_eq!(c.hosts, vec![tcp("x", 1), tcp("y", 2)]);
        // Plain parse reads no PG* variable.
        assert!(p("").unwrap().password.is_none());
    }

    // ---- .pgpass ----------------------------------------------------------------------------------------------

    #[test]
    fn pgpass_matching() {
        let f = "\
# comment:*:*:*:nope
db.example.com:5432:shop:alice:first
*:*:*:alice:second
*:5433:*:bob:bobpw
";
        assert_eq!(lookup_pgpass(f, "db.example.com", 5432, "shop", "alice").as_deref(), Some("first"));
        assert_eq!(lookup_pgpass(f, "db.example.com", 5432, "other", "alice").as_deref(), Some("second"));
        assert_eq!(lookup_pgpass(f, "elsewhere", 1, "x", "alice").as_deref(), Some("second"));
        assert_eq!(lookup_pgpass(f, "h", 5433, "x", "bob").as_deref(), Some("bobpw"));
        assert_eq!(lookup_pgpass(f, "h", 5432, "x", "bob"), None);
        assert_eq!(lookup_pgpass(f, "h", 5432, "x", "carol"), None);
        // Empty user or database: nothing.
        assert_eq!(lookup_pgpass(f, "h", 1, "", "alice"), None);
        assert_eq!(lookup_pgpass(f, "h", 1, "x", ""), None);
    }

    #[test]
    fn pgpass_escapes_and_fields() {
        // Escaped colon and backslash in a field and in the password.
        let f = r"my\:host:5432:d\\b:u:p\:w\\d";
        assert_eq!(lookup_pgpass(f, "my:host", 5432, r"d\b", "u").as_deref(), Some(r"p:w\d"));
        // The password ends at the next unescaped colon (libpq).
        assert_eq!(lookup_pgpass("*:*:*:u:pw:extra", "h", 1, "d", "u").as_deref(), Some("pw"));
        // A trailing lone backslash stays.
        assert_eq!(lookup_pgpass(r"*:*:*:u:pw\", "h", 1, "d", "u").as_deref(), Some(r"pw\"));
        // An empty password field is a match with an empty password.
        assert_eq!(lookup_pgpass("*:*:*:u:", "h", 1, "d", "u").as_deref(), Some(""));
        // Too few fields: ignored, the next line wins.
        assert_eq!(lookup_pgpass("*:*:*:u\n*:*:*:*\n*:*:*:u:ok", "h", 1, "d", "u").as_deref(), Some("ok"));
        // '*' is a wildcard only as a whole field.
        assert_eq!(lookup_pgpass("h*:*:*:u:x\n*:*:*:u:y", "host", 1, "d", "u").as_deref(), Some("y"));
        assert_eq!(lookup_pgpass(r"\*:*:*:u:lit", "*", 1, "d", "u").as_deref(), Some("lit"));
        assert_eq!(lookup_pgpass(r"\*:*:*:u:lit", "h", 1, "d", "u"), None);
        // CRLF line ends, blank lines, and comments only at the very start of a line.
        let f = "\r\n\n #x:*:*:u:sp\r\n*:*:*:u:crlf\r\n";
        assert_eq!(lookup_pgpass(f, " #x", 1, "d", "u").as_deref(), Some("sp"));
        assert_eq!(lookup_pgpass(f, "h", 1, "d", "u").as_deref(), Some("crlf"));
        // Prefixes do not match.
        assert_eq!(lookup_pgpass("hos:*:*:u:x", "host", 1, "d", "u"), None);
        assert_eq!(lookup_pgpass("hostname:*:*:u:x", "host", 1, "d", "u"), None);
        // Unicode.
        assert_eq!(lookup_pgpass("*:*:*:ü:☃", "h", 1, "d", "ü").as_deref(), Some("☃"));
        // A host starting with '#' needs its '#' escaped, else the line is a comment.
        assert_eq!(lookup_pgpass("#h:*:*:u:x", "#h", 1, "d", "u"), None);
        assert_eq!(lookup_pgpass(r"\#h:*:*:u:x", "#h", 1, "d", "u").as_deref(), Some("x"));
    }

    #[test]
    fn pgpass_socket_host_is_localhost_only_for_the_default_dir() {
        let dflt = Path::new(DEBIAN_SOCKET_DIR);
        assert_eq!(pgpass_hostname(DEBIAN_SOCKET_DIR, dflt), "localhost");
        assert_eq!(pgpass_hostname("", dflt), "localhost");
        assert_eq!(pgpass_hostname("/tmp", dflt), "/tmp");
        assert_eq!(pgpass_hostname("/tmp", Path::new("/tmp")), "localhost");
        assert_eq!(pgpass_hostname("db", dflt), "db");
        let real = pgpass_host_for(&default_socket_dir().to_string_lossy());
        assert_eq!(real, "localhost");
    }

    fn write_pgpass(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn pgpass_file_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let good = write_pgpass(dir.path(), "good", "*:*:*:u:pw\n", 0o600);
        let bad = write_pgpass(dir.path(), "bad", "*:*:*:u:pw\n", 0o644);
        let group = write_pgpass(dir.path(), "group", "*:*:*:u:pw\n", 0o640);
        let ro = write_pgpass(dir.path(), "ro", "*:*:*:u:pw\n", 0o400);

        assert_eq!(read_pgpass(&good, "h", 1, "d", "u").as_deref(), Some("pw"));
        assert_eq!(read_pgpass(&ro, "h", 1, "d", "u").as_deref(), Some("pw"));
        let r = read_pgpass_detailed(&good, "h", 1, "d", "u");
        assert_eq!((r.password.as_deref(), r.warning), (Some(&b"pw"[..]), None));

        for insecure in [&bad, &group] {
            assert_eq!(read_pgpass(insecure, "h", 1, "d", "u"), None);
            let r = read_pgpass_detailed(insecure, "h", 1, "d", "u");
            assert_eq!(r.password, None);
            let w = r.warning.unwrap();
            assert!(w.contains("group or world access") && w.contains("0600"), "{w}");
        }

        // Missing: silently nothing.
        let missing = dir.path().join("missing");
        assert_eq!(read_pgpass_detailed(&missing, "h", 1, "d", "u"), PgpassLookup::default());
        // Not a plain file.
        let r = read_pgpass_detailed(dir.path(), "h", 1, "d", "u");
        assert!(r.warning.unwrap().contains("not a plain file"));
        // The Debug of a lookup hides the password.
        let dbg = format!("{:?}", read_pgpass_detailed(&good, "h", 1, "d", "u"));
        assert!(dbg.contains("<redacted>") && !dbg.contains("pw\""), "{dbg}");
    }

    #[test]
    fn password_from_passfile() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_pgpass(
            dir.path(),
            "pgpass",
            "db1:5432:shop:alice:one\ndb2:5432:shop:alice:two\nlocalhost:5432:*:alice:local\n/tmp:5432:*:alice:tmpdir\n",
            0o600,
        );
        let pf = file.to_str().unwrap();
        let r = |s: &str, env: &[(&str, &str)]| resolve_with(s, env, true, true).unwrap();

        // Via passfile=…
        let (c, w) = r(&format!("host=db1 user=alice dbname=shop passfile={pf}"), &[]);
        assert!(w.is_empty());
        assert_eq!(c.password.as_deref(), Some(&b"one"[..]));
        assert_eq!(c.password_for(0), Some(&b"one"[..]));
        // Via PGPASSFILE.
        let (c, _) = r("host=db2 user=alice dbname=shop", &[("PGPASSFILE", pf)]);
        assert_eq!(c.password.as_deref(), Some(&b"two"[..]));
        // Via $HOME/.pgpass.
        let home = tempfile::tempdir().unwrap();
        write_pgpass(home.path(), ".pgpass", "*:*:*:*:fromhome\n", 0o600);
        let (c, _) = r("host=x user=alice", &[("HOME", home.path().to_str().unwrap())]);
        assert_eq!(c.password.as_deref(), Some(&b"fromhome"[..]));
        // A given password wins, and no lookup is done.
        let (c, _) = r(&format!("host=db1 user=alice dbname=shop passfile={pf} password=given"), &[]);
        assert_eq!(c.password.as_deref(), Some(&b"given"[..]));
        assert!(c.host_passwords.is_empty());
        let (c, _) = r(&format!("host=db1 user=alice dbname=shop passfile={pf}"), &[("PGPASSWORD", "envpw")]);
        assert_eq!(c.password.as_deref(), Some(&b"envpw"[..]));
        // An empty password is none: the file is used.
        let (c, _) = r(&format!("host=db1 user=alice dbname=shop passfile={pf} password=''"), &[]);
        assert_eq!(c.password.as_deref(), Some(&b"one"[..]));
        // The default socket directory is "localhost"; another directory is matched by its path.
        let (c, _) = r(&format!("user=alice passfile={pf}"), &[]);
        assert_eq!(c.password.as_deref(), Some(&b"local"[..]));
        let (c, _) = r(&format!("host=/tmp user=alice passfile={pf}"), &[]);
        assert_eq!(c.password.as_deref(), Some(&b"tmpdir"[..]));
        let (c, _) = resolve_with(&format!("host=/tmp user=alice passfile={pf}"), &[], false, true).unwrap();
        assert_eq!(c.password.as_deref(), Some(&b"local"[..]));
        // hostaddr without host: the address is the key.
        let (c, _) = r(&format!("hostaddr=127.0.0.1 user=alice passfile={pf}"), &[]);
        assert_eq!(c.password, None);
        // host with hostaddr: the host name is the key.
        let (c, _) = r(&format!("host=db1 hostaddr=10.1.1.1 user=alice dbname=shop passfile={pf}"), &[]);
        assert_eq!(c.password.as_deref(), Some(&b"one"[..]));
        // No match.
        let (c, _) = r(&format!("host=db3 user=alice passfile={pf}"), &[]);
        assert_eq!((c.password.clone(), c.password_for(0)), (None, None));
        // parse() never reads it.
        let c = p(&format!("host=db1 user=alice dbname=shop passfile={pf}")).unwrap();
        assert_eq!(c.password, None);
    }

    #[test]
    fn passfile_per_host() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_pgpass(dir.path(), "pgpass", "db1:*:*:*:one\ndb2:*:*:*:two\ndb3:*:*:*:one\n", 0o600);
        let pf = file.to_str().unwrap();
        let (c, _) = resolve_with(&format!("host=db1,db2,db4 user=u passfile={pf}"), &[], true, true).unwrap();
        // Different passwords per host: none is promoted to `password`.
        assert_eq!(c.password, None);
        assert_eq!(c.password_for(0), Some(&b"one"[..]));
        assert_eq!(c.password_for(1), Some(&b"two"[..]));
        assert_eq!(c.password_for(2), None);
        assert_eq!(c.password_for(9), None);
        // All hosts agree: it is.
        let (c, _) = resolve_with(&format!("host=db1,db3 user=u passfile={pf}"), &[], true, true).unwrap();
        assert_eq!(c.password.as_deref(), Some(&b"one"[..]));
        // The port as written is matched.
        let file2 = write_pgpass(dir.path(), "p2", "h:6000:*:*:six\n", 0o600);
        let (c, _) =
            resolve_with(&format!("host=h port=6000 user=u passfile={}", file2.display()), &[], true, true).unwrap();
        assert_eq!(c.password.as_deref(), Some(&b"six"[..]));
    }

    #[test]
    fn insecure_passfile_is_ignored_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_pgpass(dir.path(), "pgpass", "*:*:*:*:pw\n", 0o644);
        let (c, w) = resolve_with(&format!("user=u passfile={}", file.display()), &[], true, true).unwrap();
        assert_eq!(c.password, None);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("group or world access"), "{w:?}");
        // The public entry point with an injected environment.
        let pf = file.to_str().unwrap().to_owned();
        let env = move |k: &str| match k {
            "PGPASSFILE" => Some(pf.clone()),
            "USER" => Some("u".to_owned()),
            _ => None,
        };
        let (c, w) = Config::from_env_and_str_with_warnings("host=h", &env).unwrap();
        assert_eq!((c.password, w.len()), (None, 1));
        // Missing file: no warning.
        let env = |k: &str| (k == "PGPASSFILE").then(|| "/nonexistent/x/.pgpass".to_owned());
        let (_, w) = Config::from_env_and_str_with_warnings("host=h user=u", &env).unwrap();
        assert!(w.is_empty());
    }

    #[test]
    fn passwd_parsing() {
        let f = "root:x:0:0:root:/root:/bin/bash\nbroken\n:x:5:5::/nohome:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/zsh\n";
        assert_eq!(passwd_lookup(f, "1000"), Some(("alice".to_owned(), PathBuf::from("/home/alice"))));
        assert_eq!(passwd_lookup(f, "0").map(|x| x.0), Some("root".to_owned()));
        assert_eq!(passwd_lookup(f, "5"), None);
        assert_eq!(passwd_lookup(f, "42"), None);
        // The real thing works on Linux test machines (the test runner has a passwd entry).
        if Path::new("/proc/self/status").exists() {
            assert!(passwd_entry_for_euid().is_some());
        }
    }

    // ---- public entry points ----------------------------------------------------------------------------------

    #[test]
    fn public_entry_points() {
        let c = Config::parse("host=h user=u dbname=d").unwrap();
        assert_eq!(c.hosts, vec![tcp("h", 5432)]);
        let c: Config = "postgresql://u@h/d".parse().unwrap();
        assert_eq!(c.dbname, "d");
        let env = |k: &str| match k {
            "PGHOST" => Some("envhost".to_owned()),
            "PGPASSFILE" => Some("/nonexistent/pgpass".to_owned()),
            _ => None,
        };
        let c = Config::from_env_and_str("user=u", &env).unwrap();
        assert_eq!(c.hosts, vec![tcp("envhost", 5432)]);
        // The real environment: must not fail on a sane test machine when the user is given.
        assert!(Config::from_str_with_std_env("user=u host=h passfile=/nonexistent/pgpass").is_ok());
        assert!(Config::parse("nosuch=1").is_err());
    }

    #[test]
    fn debug_redacts_passwords() {
        let mut c = p("host=h user=u password=sup3rs3cret").unwrap();
        c.host_passwords = vec![Some(b"h0stsecret".to_vec()), None];
        let d = format!("{c:?}");
        assert!(!d.contains("sup3rs3cret") && !d.contains("h0stsecret"), "{d}");
        assert!(d.contains("<redacted>"), "{d}");
        assert!(d.contains("\"u\"") && d.contains("Tcp(\"h\")"), "{d}");
        let d = format!("{:#?}", p("user=u").unwrap());
        assert!(d.contains("password: None"), "{d}");
    }

    // ---- render -----------------------------------------------------------------------------------------------

    #[test]
    fn render_examples() {
        let c = p("host=h,/tmp port=1,2 user='a b' password='it\\'s' dbname=db sslmode=require").unwrap();
        let s = c.render();
        assert_eq!(s, r"host=h,/tmp port=1,2 user='a b' password='it\'s' dbname=db sslmode=require");
        assert_eq!(p(&s).unwrap(), c);
        // Backslashes and empty-looking values.
        assert_eq!(quote_value(r"a\b"), r"'a\\b'");
        assert_eq!(quote_value(""), "''");
        assert_eq!(quote_value("x=y"), "x=y");
        assert_eq!(quote_value("tab\there"), "'tab\there'");
        assert_eq!(quote_value("v\u{b}t"), "'v\u{b}t'");
    }

    #[test]
    fn render_tricky_dbnames_and_passwords() {
        for db in ["a=b", "postgres://x", "postgresql://h/d", "='", "dbname=x"] {
            let c = p(&format!("user=u dbname={}", quote_value(&format!("dbname={}", quote_value(db))))).unwrap();
            assert_eq!(c.dbname, db);
            assert_eq!(p(&c.render()).unwrap(), c, "{}", c.render());
        }
        let c = p("postgresql://u:%FF%00x@h/d%3Dx").unwrap_err();
        assert!(c.to_string().contains("%00"));
        let c = p("postgresql://u:%FFx%27@h/d%3Dx").unwrap();
        assert_eq!(c.password.as_deref(), Some(&b"\xffx'"[..]));
        let s = c.render();
        assert!(s.contains("dbname=postgresql:///d%3Dx?password=%FFx%27"), "{s}");
        assert_eq!(p(&s).unwrap(), c);
    }

    #[test]
    fn render_require_auth_exactly() {
        let c = p("user=u require_auth=!password,!md5").unwrap();
        let s = c.render();
        assert!(s.contains("require_auth=!password,!md5"), "{s}");
        let back = p(&s).unwrap();
        assert_eq!(back, c);
        for m in [AuthMethod::None, AuthMethod::Password, AuthMethod::Md5, AuthMethod::ScramSha256] {
            assert_eq!(back.require_auth.allows(m), c.require_auth.allows(m));
        }
    }

    // ---- property tests ---------------------------------------------------------------------------------------

    fn text(max: usize) -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::collection::vec(any::<char>().prop_filter("no NUL", |c| *c != '\0'), 1..max)
                .prop_map(|v| v.into_iter().collect::<String>()),
            proptest::collection::vec(
                prop_oneof![
                    Just('\''),
                    Just('\\'),
                    Just(' '),
                    Just('='),
                    Just('\t'),
                    Just('\u{b}'),
                    Just(','),
                    Just('é'),
                    Just('☃'),
                    Just('%'),
                    Just('/'),
                    Just('@'),
                    Just('a'),
                    Just('z'),
                    Just('?'),
                ],
                1..max
            )
            .prop_map(|v| v.into_iter().collect::<String>()),
        ]
    }

    fn host_strategy() -> impl Strategy<Value = Host> {
        let no_comma = |s: &String| !s.contains(',');
        prop_oneof![
            "[a-z0-9][a-z0-9.-]{0,20}".prop_map(Host::Tcp),
            Just(Host::Tcp("::1".to_owned())),
            text(12).prop_filter("tcp", move |s| no_comma(s) && !is_unixsock_path(s)).prop_map(Host::Tcp),
            text(12).prop_filter("unix", move |s| no_comma(s)).prop_map(|s| Host::Unix(PathBuf::from(format!("/{s}")))),
            Just(Host::Unix(PathBuf::from("@abstract"))),
        ]
    }

    fn require_auth_strategy() -> impl Strategy<Value = RequireAuth> {
        proptest::sample::subsequence(vec!["none", "password", "md5", "scram-sha-256"], 0..=4)
            .prop_map(|v| RequireAuth::parse(&v.join(",")).unwrap())
    }

    #[derive(Debug, Clone)]
    struct TlsPart {
        sslmode: SslMode,
        channel_binding: ChannelBinding,
        sslrootcert: Option<String>,
        sslcert: Option<String>,
        sslkey: Option<String>,
        direct: bool,
        sslsni: bool,
        certmode_disable: bool,
    }

    prop_compose! {
        fn tls_strategy()(
            sslmode in prop_oneof![
                Just(SslMode::Disable), Just(SslMode::Allow), Just(SslMode::Prefer),
                Just(SslMode::Require), Just(SslMode::VerifyCa), Just(SslMode::VerifyFull),
            ],
            channel_binding in prop_oneof![
                Just(ChannelBinding::Disable), Just(ChannelBinding::Prefer), Just(ChannelBinding::Require),
            ],
            sslrootcert in proptest::option::of(prop_oneof![text(12), Just("system".to_owned())]),
            sslcert in proptest::option::of(text(12)),
            sslkey in proptest::option::of(text(12)),
            direct in any::<bool>(),
            sslsni in any::<bool>(),
            certmode_disable in any::<bool>(),
        ) -> TlsPart {
            TlsPart { sslmode, channel_binding, sslrootcert, sslcert, sslkey, direct, sslsni, certmode_disable }
        }
    }

    #[derive(Debug, Clone)]
    struct NetPart {
        keepalives: bool,
        keepalives_idle: Option<u32>,
        keepalives_interval: Option<u32>,
        keepalives_count: Option<u32>,
        tcp_user_timeout: Option<u32>,
        connect_timeout: Option<u64>,
        target_session_attrs: TargetSessionAttrs,
    }

    prop_compose! {
        fn net_strategy()(
            keepalives in any::<bool>(),
            keepalives_idle in proptest::option::of(0u32..=i32::MAX as u32),
            keepalives_interval in proptest::option::of(0u32..1000),
            keepalives_count in proptest::option::of(0u32..1000),
            tcp_user_timeout in proptest::option::of(0u32..=i32::MAX as u32),
            connect_timeout in proptest::option::of(2u64..100_000),
            target_session_attrs in prop_oneof![
                Just(TargetSessionAttrs::Any), Just(TargetSessionAttrs::ReadWrite),
                Just(TargetSessionAttrs::ReadOnly), Just(TargetSessionAttrs::Primary),
                Just(TargetSessionAttrs::Standby), Just(TargetSessionAttrs::PreferStandby),
            ],
        ) -> NetPart {
            NetPart {
                keepalives, keepalives_idle, keepalives_interval, keepalives_count, tcp_user_timeout,
                connect_timeout, target_session_attrs,
            }
        }
    }

    prop_compose! {
        fn config_strategy()(
            hosts in proptest::collection::vec((host_strategy(), 1u16..=65535), 1..4),
            user in text(16),
            password in proptest::option::of(prop_oneof![
                text(16).prop_map(String::into_bytes),
                proptest::collection::vec(1u8..=255, 1..16),
            ]),
            dbname in prop_oneof![text(16), Just("a=b".to_owned()), Just("postgres://x/y".to_owned())],
            application_name in proptest::option::of(text(16)),
            replication in proptest::option::of(prop_oneof![Just("true"), Just("false"), Just("database")]),
            require_auth in require_auth_strategy(),
            options in proptest::option::of(text(16)),
            passfile in proptest::option::of(text(16)),
            tls in tls_strategy(),
            net in net_strategy(),
        ) -> Config {
            // Keep the combinations parsing accepts.
            let sslmode = if tls.sslrootcert.as_deref() == Some("system") { SslMode::VerifyFull } else { tls.sslmode };
            let sslnegotiation =
                if tls.direct && sslmode.requires_tls() { SslNegotiation::Direct } else { SslNegotiation::Postgres };
            Config {
                hosts, user, password, dbname, application_name,
                connect_timeout: net.connect_timeout.map(Duration::from_secs),
                replication: replication.map(str::to_owned),
                require_auth, sslmode,
                channel_binding: tls.channel_binding,
                options,
                passfile: passfile.map(PathBuf::from),
                extra: Vec::new(),
                target_session_attrs: net.target_session_attrs,
                sslrootcert: tls.sslrootcert.map(PathBuf::from),
                sslcert: tls.sslcert.map(PathBuf::from),
                sslkey: tls.sslkey.map(PathBuf::from),
                sslcertmode: if tls.certmode_disable { SslCertMode::Disable } else { SslCertMode::Allow },
                sslnegotiation,
                sslsni: tls.sslsni,
                keepalives: net.keepalives,
                keepalives_idle: net.keepalives_idle,
                keepalives_interval: net.keepalives_interval,
                keepalives_count: net.keepalives_count,
                tcp_user_timeout: net.tcp_user_timeout,
                host_passwords: Vec::new(),
            }
        }
    }

    fn uri_ish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("%".to_owned()),
            Just("%2F".to_owned()),
            Just("%00".to_owned()),
            Just("%zz".to_owned()),
            Just("@".to_owned()),
            Just(":".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("/".to_owned()),
            Just("?".to_owned()),
            Just("&".to_owned()),
            Just("=".to_owned()),
            Just(",".to_owned()),
            Just("::1".to_owned()),
            Just("host".to_owned()),
            Just("port".to_owned()),
            Just("user".to_owned()),
            Just("dbname".to_owned()),
            Just("password".to_owned()),
            Just("ssl".to_owned()),
            Just("true".to_owned()),
            Just("5432".to_owned()),
            Just("'".to_owned()),
            Just("\\".to_owned()),
            Just(" ".to_owned()),
            Just("postgres://".to_owned()),
            Just("%FF".to_owned()),
            Just("é".to_owned()),
            "[a-z0-9]{1,5}",
        ];
        (prop_oneof![Just("postgres://"), Just("postgresql://"), Just("")], proptest::collection::vec(piece, 0..24))
            .prop_map(|(pre, v)| format!("{pre}{}", v.concat()))
    }

    proptest! {
        #[test]
        fn render_parse_round_trip(c in config_strategy()) {
            let s = c.render();
            let back = p(&s);
            prop_assert!(back.is_ok(), "{s:?}: {:?}", back.err());
            prop_assert_eq!(back.ok(), Some(c), "{}", s);
        }

        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = p(&s);
        }

        #[test]
        fn parse_never_panics_uri_ish(s in uri_ish()) {
            let _ = p(&s);
            let _ = p(&format!("dbname='{}'", s.replace('\\', "\\\\").replace('\'', "\\'")));
        }

        #[test]
        fn errors_never_contain_the_password(pw in "[A-Za-z]{12}", junk in uri_ish()) {
            for s in [
                format!("password={pw} {junk}"),
                format!("postgresql://u:{pw}{junk}"),
                format!("postgresql://u:{pw}@{junk}"),
                format!("postgresql://u:1/{pw}{junk}@h"),
                format!("postgresql://u:1/{pw}@{junk}"),
                format!("postgresql://u:1?a={pw}@{junk}"),
                format!("postgresql://u:{pw}@{pw}@{junk}"),
            ] {
                if let Err(e) = p(&s) {
                    let m = e.to_string();
                    prop_assert!(!m.contains(&pw), "{s:?}: {m}");
                }
            }
        }

        #[test]
        fn pgpass_lookup_never_panics(f in ".*", h in ".*", d in ".*", u in ".*", port in any::<u16>()) {
            let _ = lookup_pgpass(&f, &h, port, &d, &u);
        }

        #[test]
        fn pgpass_escaped_fields_round_trip(
            h in "[^\n\r]{1,10}", d in "[^\n\r]{1,10}", u in "[^\n\r]{1,10}", pw in "[^\n\r]{0,10}",
        ) {
            let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
            // A line starting with '#' is a comment: escape a leading '#'.
            let host = if h.starts_with('#') { format!("\\{}", esc(&h)) } else { esc(&h) };
            let line = format!("{}:5432:{}:{}:{}\n", host, esc(&d), esc(&u), esc(&pw));
            prop_assert_eq!(lookup_pgpass(&line, &h, 5432, &d, &u), Some(pw));
        }
    }
}
