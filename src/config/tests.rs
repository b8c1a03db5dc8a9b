//! Unit tests of parsing, resolution and rendering.
use super::passfile::tests::write_pgpass;
use super::passfile::*;
use super::render::*;
use super::resolve::*;
use super::types::*;
use super::*;
use crate::auth::AuthMethod;
use crate::error::ErrorKind;
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
fn resolve_with(s: &str, env: &[(&str, &str)], debian_dir: bool, use_passfile: bool) -> Result<(Config, Vec<String>)> {
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

fn addr(a: &str, name: Option<&str>, port: u16) -> (Host, u16) {
    (Host::Addr { addr: a.to_owned(), name: name.map(str::to_owned) }, port)
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
    assert_eq!(c.hosts, vec![addr("127.0.0.1", None, 5433)]);
    assert_eq!(c.hosts[0].0.tls_name(), None);
    // The host name stays beside its address: TLS verifies it and .pgpass looks it up.
    let c = p("host=db1,db2 hostaddr=10.0.0.1,::1").unwrap();
    assert_eq!(c.hosts, vec![addr("10.0.0.1", Some("db1"), 5432), addr("::1", Some("db2"), 5432)]);
    assert_eq!(c.hosts[1].0.tls_name(), Some("db2"));
    assert_eq!(c.hosts[1].0.to_string(), "::1 (db2)");
    // An empty hostaddr element falls back to the host; an empty host element leaves the address nameless.
    let c = p("host=db1,db2 hostaddr=10.0.0.1,").unwrap();
    assert_eq!(c.hosts, vec![addr("10.0.0.1", Some("db1"), 5432), tcp("db2", 5432)]);
    let c = p("host=,db2 hostaddr=10.0.0.1,10.0.0.2").unwrap();
    assert_eq!(c.hosts, vec![addr("10.0.0.1", None, 5432), addr("10.0.0.2", Some("db2"), 5432)]);
    assert_eq!(p("hostaddr=fe80::1%eth0").unwrap().hosts, vec![addr("fe80::1%eth0", None, 5432)]);
    for s in ["host=,db2 hostaddr=10.0.0.1,10.0.0.2 port=1,2", "host=a,/tmp hostaddr=,1.2.3.4", "hostaddr=::1"] {
        let c = p(s).unwrap();
        assert_eq!(p(&c.render()).unwrap(), c, "{s} -> {}", c.render());
    }
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
    let c =
        p("keepalives=0 keepalives_idle=30 keepalives_interval=-3 keepalives_count=5 tcp_user_timeout=1000").unwrap();
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
        assert!(e.contains("\"URI\"") && e.contains("invalid percent-encoded token") && e.contains(tok), "{bad}: {e}");
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
        (
            prop_oneof![Just("10.0.0.1"), Just("::1"), Just("fe80::1%eth0")],
            proptest::option::of("[a-z0-9][a-z0-9.-]{0,20}|/[a-z]{1,8}")
        )
            .prop_map(|(a, name)| Host::Addr { addr: a.to_owned(), name }),
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
