//! Parsing: `key=value` strings and URIs into raw option values, not yet validated.

use super::options::{known, Known, Opt};
use crate::error::{Error, ErrorKind, Result};

/// C's `isspace` in the C locale, which libpq uses to split a connection string.
pub(super) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Where a value came from, for error messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    Conninfo,
    UriQuery,
}

/// Option values as given (unquoted / percent-decoded), not yet validated. Values are bytes because a URI can
/// percent-encode anything; only `password` may stay non-UTF-8. No `Debug`: it holds the password.
#[derive(Default)]
pub(super) struct Raw {
    pub(super) vals: Vec<(Opt, Vec<u8>)>,
    /// Whether the first `dbname` is expanded when it holds a connection string.
    pub(super) expand_dbname: bool,
    pub(super) dbname_seen: bool,
    /// Errors must not quote input: a URI with an `@` that did not end the user info (a password holding an
    /// unencoded `/` or `@`) leaves pieces of the password in the host, port, path or query.
    pub(super) quiet: bool,
}

impl Raw {
    pub(super) fn set(&mut self, key: Opt, value: Vec<u8>) {
        match self.vals.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.vals.push((key, value)),
        }
    }

    pub(super) fn get(&self, key: Opt) -> Option<&[u8]> {
        self.vals.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_slice())
    }

    /// Store `name=value` as libpq's `conninfo_storeval` does.
    pub(super) fn store(&mut self, name: &str, value: Vec<u8>, origin: Origin) -> Result<()> {
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

pub(super) fn uri_prefix_len(s: &[u8]) -> usize {
    if s.starts_with(b"postgresql://") {
        "postgresql://".len()
    } else if s.starts_with(b"postgres://") {
        "postgres://".len()
    } else {
        0
    }
}

/// libpq's `recognized_connection_string`: a URI, or anything with an `=`.
pub(super) fn recognized_connection_string(s: &[u8]) -> bool {
    uri_prefix_len(s) != 0 || s.contains(&b'=')
}

pub(super) fn parse_raw(s: &str, expand_dbname: bool) -> Result<Raw> {
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
pub(super) fn parse_conninfo(s: &str, raw: &mut Raw) -> Result<()> {
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
pub(super) fn percent_decode(s: &[u8], what: &str, secret: bool) -> Result<Vec<u8>> {
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
pub(super) fn parse_uri(rest: &[u8], raw: &mut Raw) -> Result<()> {
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
pub(super) const QUIET: &str =
    "the URI has an \"@\" that is not the user-info separator, so it may hold an unencoded password";

/// `bytes` quoted for an error message, or a note saying why not.
pub(super) fn quoted_unless(quiet: bool, bytes: &[u8]) -> String {
    if quiet {
        format!("(not shown: {QUIET})")
    } else {
        format!("{:?}", String::from_utf8_lossy(bytes))
    }
}

/// libpq's `conninfo_uri_parse_params`.
pub(super) fn parse_uri_params(params: &[u8], raw: &mut Raw) -> Result<()> {
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
