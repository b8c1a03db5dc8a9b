//! [`Config::render`]: a `Config` back into a connection string that parses to it.

use super::parse::{is_c_space, recognized_connection_string};
use super::{ChannelBinding, Config, Host, SslCertMode, SslNegotiation, TargetSessionAttrs};
use crate::auth::RequireAuth;

impl Config {
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
            if self.hosts.iter().any(|(h, _)| matches!(h, Host::Addr { .. })) {
                let addrs: Vec<&str> = self.hosts.iter().map(|(h, _)| h.hostaddr_conninfo()).collect();
                kv("hostaddr", &addrs.join(","));
            }
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

pub(super) fn render_require_auth(r: &RequireAuth) -> Option<String> {
    if r.is_default() {
        return None;
    }
    Some(r.to_string())
}

/// Quote a value for a `key=value` string when it needs it (empty, whitespace, `'` or `\`).
pub(super) fn quote_value(s: &str) -> String {
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
pub(super) fn percent_encode(bytes: &[u8]) -> String {
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
