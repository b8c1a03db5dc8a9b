//! The password file (`~/.pgpass`, `PGPASSFILE`, `passfile`), read as libpq reads it.

use std::fmt;
use std::path::Path;

use super::default_socket_dir;
use super::types::is_unixsock_path;

/// The host name to look up in `.pgpass` for a `host` value, as libpq: `localhost` for an empty host or the
/// default socket directory, the value itself otherwise (another socket directory is matched by its path).
pub fn pgpass_host_for(host: &str) -> String {
    pgpass_hostname(host, &default_socket_dir())
}

pub(super) fn pgpass_hostname(host: &str, default_dir: &Path) -> String {
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

pub(super) fn lookup_pgpass_bytes(
    contents: &[u8],
    host: &[u8],
    port: &[u8],
    dbname: &[u8],
    user: &[u8],
) -> Option<Vec<u8>> {
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
pub(super) fn pgpass_field<'a>(line: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
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
pub(super) fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        *b = 0;
    }
    std::hint::black_box(buf);
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::DEBIAN_SOCKET_DIR;
    use std::path::PathBuf;

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

    pub(in crate::config) fn write_pgpass(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
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
}
