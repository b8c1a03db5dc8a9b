//! Resolution: raw values, the environment and the defaults into a [`Config`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::options::Opt;
use super::parse::{is_c_space, parse_raw, Raw, QUIET};
use super::passfile::{load_pgpass, lookup_pgpass_bytes, pgpass_hostname, wipe};
use super::{
    default_socket_dir_with, ChannelBinding, Config, Host, SslCertMode, SslMode, SslNegotiation, TargetSessionAttrs,
    DEFAULT_PORT,
};
use crate::auth::RequireAuth;
use crate::error::{Error, Result};

/// The outside world, injectable for tests.
pub(super) struct Sys<'a> {
    /// `PG*` variables.
    pub(super) pg_env: &'a dyn Fn(&str) -> Option<String>,
    /// `USER`, `LOGNAME`, `HOME`.
    pub(super) os_env: &'a dyn Fn(&str) -> Option<String>,
    /// The effective uid's user name and home directory.
    pub(super) passwd: &'a dyn Fn() -> Option<(String, PathBuf)>,
    pub(super) is_dir: &'a dyn Fn(&Path) -> bool,
    pub(super) use_passfile: bool,
}

/// A value and, when it came from the environment, the variable's name.
pub(super) struct Got {
    pub(super) val: String,
    pub(super) env: Option<&'static str>,
    pub(super) quiet: bool,
}

impl Got {
    /// " (from PGSSLMODE)" when the value came from the environment.
    pub(super) fn origin(&self) -> String {
        self.env.map(|e| format!(" (from {e})")).unwrap_or_default()
    }

    /// The value quoted for an error message, with its origin; or a note when it must not be shown.
    pub(super) fn show(&self) -> String {
        if self.quiet {
            format!("(not shown: {QUIET})")
        } else {
            format!("{:?}{}", self.val, self.origin())
        }
    }
}

pub(super) struct Lookup<'a> {
    pub(super) raw: &'a Raw,
    pub(super) sys: &'a Sys<'a>,
}

impl Lookup<'_> {
    pub(super) fn bytes(&self, key: Opt) -> Result<Option<(Vec<u8>, Option<&'static str>)>> {
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

    pub(super) fn get(&self, key: Opt) -> Result<Option<Got>> {
        match self.bytes(key)? {
            None => Ok(None),
            Some((val, env)) => match String::from_utf8(val) {
                Ok(val) => Ok(Some(Got { val, env, quiet: env.is_none() && self.raw.quiet })),
                Err(_) => Err(Error::config(key.name(), "value is not valid UTF-8")),
            },
        }
    }

    /// The value, treating an empty one as unset (as libpq does for most options).
    pub(super) fn non_empty(&self, key: Opt) -> Result<Option<Got>> {
        Ok(self.get(key)?.filter(|g| !g.val.is_empty()))
    }
}

pub(super) fn build(s: &str, sys: &Sys<'_>) -> Result<(Config, Vec<String>)> {
    let raw = parse_raw(s, true)?;
    resolve(&raw, sys)
}

/// libpq's `pqParseIntParam`: an `int`, surrounding whitespace allowed.
pub(super) fn parse_int_param(s: &str) -> Option<i32> {
    s.trim_matches(|c: char| u8::try_from(c).is_ok_and(is_c_space)).parse::<i32>().ok()
}

pub(super) fn int_option(look: &Lookup<'_>, key: Opt) -> Result<Option<i32>> {
    match look.get(key)? {
        None => Ok(None),
        Some(g) => match parse_int_param(&g.val) {
            Some(v) => Ok(Some(v)),
            None => Err(Error::config(key.name(), format!("invalid integer value {}", g.show()))),
        },
    }
}

/// A non-negative integer option (keepalives_*, tcp_user_timeout): negative values mean 0, as in libpq.
pub(super) fn count_option(look: &Lookup<'_>, key: Opt) -> Result<Option<u32>> {
    Ok(int_option(look, key)?.map(|v| u32::try_from(v).unwrap_or(0)))
}

/// The server's `parse_bool`: case-insensitive prefixes of true/false/yes/no, `on`, `of[f]`, `1`, `0`.
pub(super) fn parse_pg_bool(s: &str) -> Option<bool> {
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

pub(super) fn enum_option<T>(
    look: &Lookup<'_>,
    key: Opt,
    parse: fn(&str) -> Option<T>,
    expected: &str,
) -> Result<Option<T>> {
    match look.get(key)? {
        None => Ok(None),
        Some(g) => match parse(&g.val) {
            Some(v) => Ok(Some(v)),
            None => Err(Error::config(key.name(), format!("invalid value {}; expected {expected}", g.show()))),
        },
    }
}

pub(super) fn validate_hostaddr(a: &str, from: &Got) -> Result<()> {
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

pub(super) fn resolve(raw: &Raw, sys: &Sys<'_>) -> Result<(Config, Vec<String>)> {
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
            Host::Addr { addr: a.clone(), name: name.cloned() }
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
pub(super) fn os_user_name(sys: &Sys<'_>) -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| (sys.os_env)(k).filter(|v| !v.is_empty()))
        .or_else(|| (sys.passwd)().map(|(name, _)| name))
        .filter(|v| !v.is_empty())
}

/// `$HOME`, else the effective uid's home directory (libpq's `pqGetHomeDirectory`).
pub(super) fn home_dir(sys: &Sys<'_>) -> Option<PathBuf> {
    (sys.os_env)("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| (sys.passwd)().map(|(_, home)| home))
        .filter(|h| !h.as_os_str().is_empty())
}

/// The effective uid (from `/proc/self/status`) looked up in `/etc/passwd`: there is no libc binding here.
pub(super) fn passwd_entry_for_euid() -> Option<(String, PathBuf)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().nth(1)?.to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd_lookup(&passwd, &euid)
}

/// Find `uid` in `/etc/passwd` contents: `name:password:uid:gid:gecos:home:shell`.
pub(super) fn passwd_lookup(contents: &str, uid: &str) -> Option<(String, PathBuf)> {
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
