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
//! Unknown options are an error, as in libpq. Every option that is accepted is honoured as libpq honours it
//! (connecting: [`crate::connect`]). libpq options that pgrepl does not implement are refused (`service`,
//! `sslcrl`, `requirepeer`, `gssencmode=require`, …), except values that ask for what pgrepl does anyway:
//! `gssencmode=disable`/`prefer` and `krbsrvname`, `gsslib`, `gssdelegation` (pgrepl has no GSSAPI, like a libpq
//! built without it), `sslcompression` (ignored by libpq 14+ too), `load_balance_hosts=disable` (hosts in order),
//! `ssl_min_protocol_version` up to TLSv1.2 and `ssl_max_protocol_version=TLSv1.3` (pgrepl speaks TLS 1.2 and
//! 1.3).
//!
//! Every malformed input is an [`Error`] of kind [`ErrorKind::Config`](crate::error::ErrorKind::Config) naming the offending option (or `URI`);
//! no message ever contains a password. Nothing here panics on any input.
//!
//! `hostaddr` entries become [`Host::Addr`]: the address is connected to, and the `host` beside it is kept for
//! TLS (certificate name and SNI) and `.pgpass`, as libpq does.
//!
//! Differences from libpq, on purpose:
//! - `dbname` is expanded when it holds a connection string (contains `=`, or starts with `postgres://` /
//!   `postgresql://`) in a `key=value` string and in a URI's `?dbname=` — libpq does this only for
//!   `PQconnectdbParams(expand_dbname)` (that is, psql's `-d`). Only the first `dbname` is expanded; its settings
//!   override those before it, and later ones override it. [`Config::render`] wraps a literal database name that
//!   would be mistaken for a connection string so that it parses back unchanged.
//! - A password from `.pgpass` is looked up per host, like libpq; [`Config::password`] is set only when every
//!   host got the same one, so a password meant for one server is never sent to another. Use
//!   [`Config::password_for`] to get the password for a given host.
//! - The default user is `$USER`/`$LOGNAME` before the uid's name (libpq uses the effective uid only).
//! - `PGSERVICE`, `PGCLIENTENCODING` and the environment variables of unsupported options are not read.
//!
//! The code is split by concern: [`types`] (the public option enums and [`Host`]), `options` (the table of
//! libpq option names), `parse` (conninfo and URI syntax), `resolve` (environment, defaults, `/etc/passwd`),
//! [`passfile`] (`.pgpass`) and `render` (back to a connection string).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::RequireAuth;
use crate::error::{Error, Result};

mod options;
mod parse;
pub mod passfile;
mod render;
mod resolve;
pub mod types;

pub use passfile::{load_pgpass, lookup_pgpass, pgpass_host_for, read_pgpass, read_pgpass_detailed, PgpassLookup};
pub use types::{ChannelBinding, Host, SslCertMode, SslMode, SslNegotiation, TargetSessionAttrs};

use resolve::{build, passwd_entry_for_euid, Sys};

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

/// Resolved connection settings.
///
/// Built by parsing ([`Config::parse`], [`Config::from_env_and_str`]); its fields are public to read and adjust,
/// and it is `#[non_exhaustive]` so that new options do not break code outside this crate.
///
/// `Debug` never shows a password. [`Config::render`] does include it (so that the string connects the same way):
/// do not log a rendered string.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
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
}

#[cfg(test)]
mod tests;
