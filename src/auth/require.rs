//! `require_auth` (libpq 16): which authentication methods the client accepts from the server.

use crate::error::{Error, Result};

/// An authentication method the server can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// No password exchange at all (trust, peer, …): AuthenticationOk straight away.
    None,
    /// Cleartext password.
    Password,
    /// MD5 password hash.
    Md5,
    /// SCRAM-SHA-256 (with or without channel binding).
    ScramSha256,
}

impl AuthMethod {
    fn parse(s: &str) -> Option<AuthMethod> {
        Some(match s {
            "none" => AuthMethod::None,
            "password" => AuthMethod::Password,
            "md5" => AuthMethod::Md5,
            "scram-sha-256" => AuthMethod::ScramSha256,
            _ => return None,
        })
    }
    /// The name used in `require_auth`.
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Password => "password",
            AuthMethod::Md5 => "md5",
            AuthMethod::ScramSha256 => "scram-sha-256",
        }
    }
}

/// The parsed `require_auth` setting: an allow-list (`md5,scram-sha-256`) or a deny-list (`!password,!md5`).
/// The default allows everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequireAuth {
    deny: bool,
    methods: Vec<AuthMethod>,
}

impl RequireAuth {
    /// Parse a `require_auth` value. Methods are comma-separated; either all carry `!` (deny-list) or none does.
    pub fn parse(s: &str) -> Result<RequireAuth> {
        if s.is_empty() {
            return Ok(RequireAuth::default());
        }
        let mut deny = None;
        let mut methods = Vec::new();
        for part in s.split(',') {
            let (neg, name) = match part.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, part),
            };
            if *deny.get_or_insert(neg) != neg {
                return Err(Error::config("require_auth", "negative and positive methods cannot be mixed"));
            }
            let m = AuthMethod::parse(name)
                .ok_or_else(|| Error::config("require_auth", format!("unknown authentication method {name:?}")))?;
            if methods.contains(&m) {
                return Err(Error::config("require_auth", format!("method {name:?} listed more than once")));
            }
            methods.push(m);
        }
        let deny = deny.unwrap_or(false);
        if deny && methods.len() == 4 {
            return Err(Error::config("require_auth", "every method is denied"));
        }
        Ok(RequireAuth { deny, methods })
    }

    /// Whether the server may use `m`.
    pub fn allows(&self, m: AuthMethod) -> bool {
        if self.methods.is_empty() {
            return true;
        }
        self.methods.contains(&m) != self.deny
    }

    /// Whether this is the default (everything allowed).
    pub fn is_default(&self) -> bool {
        self.methods.is_empty()
    }
}

impl std::fmt::Display for RequireAuth {
    /// The setting as written: `md5,scram-sha-256` or `!password,!md5` (empty for the default).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, m) in self.methods.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if self.deny {
                f.write_str("!")?;
            }
            f.write_str(m.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_and_deny_lists() {
        let r = RequireAuth::parse("scram-sha-256").unwrap();
        assert!(r.allows(AuthMethod::ScramSha256));
        assert!(!r.allows(AuthMethod::Md5));
        assert!(!r.allows(AuthMethod::Password));
        assert!(!r.allows(AuthMethod::None));
        let r = RequireAuth::parse("!password,!none").unwrap();
        assert!(r.allows(AuthMethod::Md5));
        assert!(!r.allows(AuthMethod::Password));
        assert!(!r.allows(AuthMethod::None));
        assert!(RequireAuth::parse("").unwrap().allows(AuthMethod::Password));
    }

    #[test]
    fn displays_as_written() {
        for s in ["", "md5", "md5,scram-sha-256", "!password,!none"] {
            assert_eq!(RequireAuth::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_values() {
        for s in ["md5,!password", "kerberos", "md5,md5", "!none,!password,!md5,!scram-sha-256", ","] {
            assert!(RequireAuth::parse(s).is_err(), "{s}");
        }
    }
}
