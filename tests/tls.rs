//! TLS against real PostgreSQL servers (any major 12-18 with `PG_BIN_DIR`) with `ssl=on` and certificates made at test time (the `openssl`
//! command-line tool, which PostgreSQL's Debian packages pull in), and against scripted hostile servers.
//!
//! Covered: every `sslmode` against a TLS and a non-TLS server with libpq's outcome (including `allow`'s TLS
//! retry and `prefer`'s plaintext retry), `verify-full` host names (DNS and IP SANs), unknown CAs, client
//! certificates (`cert` in pg_hba), SCRAM-SHA-256-PLUS with `channel_binding=require` and its refusals, the
//! `tls-server-end-point` hash for SHA-384, RSA-PSS/SHA-512 and Ed25519 certificates, `require_auth` over TLS
//! (PostgreSQL's authentication/t/001_password.pl and ssl/t/002_scram.pl), SSLRequest hardening, direct TLS
//! negotiation, and a replication stream over TLS.

#![cfg(feature = "__tls")]
// Test code: a failed unwrap, expect, index or panic is a failed test; the library's no-panic policy
// (Cargo.toml [workspace.lints.clippy]) is lifted for the whole test crate, its helpers included.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::indexing_slicing,
    clippy::string_slice
)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use pgrepl::client::Client;
use pgrepl::config::Config;
use pgrepl::proto::commands::{CreateSlot, SnapshotAction};
use pgrepl::stream::StreamConfig;
use pgrepl::{ErrorKind, Lsn};
use pgrepl_testkit::{ClusterOptions, TempCluster, USERS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "common/plugins.rs"]
mod plugins;
use plugins::Plugin;

// ---------------------------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------------------------

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the `openssl` command-line tool is needed (Debian: apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// What [`Pki::leaf`] makes; the default is a server certificate for localhost from CA `ca`, EC P-256.
struct Leaf<'a> {
    name: &'a str,
    /// `ec`, `rsa` or `ed25519`.
    key: &'a str,
    /// The signing CA's name; empty: self-signed.
    ca: &'a str,
    /// Signing options (`-sha384`, `-sigopt …`).
    sign: &'a [&'a str],
    cn: &'a str,
    san: &'a str,
    eku: &'a str,
}

impl Default for Leaf<'_> {
    fn default() -> Self {
        Leaf {
            name: "server",
            key: "ec",
            ca: "ca",
            sign: &["-sha256"],
            cn: "localhost",
            san: "DNS:localhost,IP:127.0.0.1,IP:::1",
            eku: "serverAuth",
        }
    }
}

/// A throwaway PKI in a temporary directory: a CA, certificates it signs, and an unrelated CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// CA `ca`, server certificate `server` (CN localhost; SANs localhost, 127.0.0.1, ::1), client certificate
    /// `client` (CN u_cert), and another CA `other_ca`. EC P-256 keys: fast to make.
    fn new() -> Pki {
        let pki = Pki { dir: tempfile::tempdir().unwrap() };
        pki.ca("ca", "ec");
        pki.ca("other_ca", "ec");
        pki.leaf(Leaf { name: "server", ..Leaf::default() });
        pki.leaf(Leaf { name: "client", cn: "u_cert", san: "DNS:u_cert", eku: "clientAuth", ..Leaf::default() });
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Path as a conninfo value.
    fn p(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }

    fn newkey(kind: &str) -> Vec<&'static str> {
        match kind {
            "ec" => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "rsa" => vec!["-newkey", "rsa:2048"],
            "ed25519" => vec!["-newkey", "ed25519"],
            other => panic!("key kind {other}"),
        }
    }

    fn ca(&self, name: &str, kind: &str) {
        let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-keyout", &key, "-out", &crt];
        args.extend(Self::newkey(kind));
        let subj = format!("/CN=pgrepl test {name}");
        args.extend(["-subj", &subj, "-addext", "basicConstraints=critical,CA:TRUE"]);
        args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(self.dir.path(), &args);
    }

    /// Make the certificate `l.name` (and its key): signed by CA `l.ca`, or self-signed when that is empty.
    fn leaf(&self, l: Leaf<'_>) {
        let name = l.name;
        let (key, csr, crt, ext) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
        let ext_text =
            format!("subjectAltName={}\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage={}\n", l.san, l.eku);
        fs::write(self.path(&ext), ext_text).unwrap();
        let subj = format!("/CN={}", l.cn);
        let mut args = vec!["req", "-new", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj];
        args.extend(Self::newkey(l.key));
        openssl(self.dir.path(), &args);
        let (ca_crt, ca_key) = (format!("{}.crt", l.ca), format!("{}.key", l.ca));
        let mut args = vec!["x509", "-req", "-in", &csr, "-out", &crt, "-days", "2", "-extfile", &ext];
        if l.ca.is_empty() {
            args.extend(["-key", &key]);
        } else {
            args.extend(["-CA", &ca_crt, "-CAkey", &ca_key, "-CAcreateserial"]);
        }
        args.extend(l.sign);
        openssl(self.dir.path(), &args);
        fs::set_permissions(self.path(&key), fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn signature_algorithm(&self, crt: &str) -> String {
        let out =
            Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(self.path(crt)).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().find_map(|l| l.trim().strip_prefix("Signature Algorithm: ")).unwrap_or("?").to_owned()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------------------------

/// Extra roles of the TLS cluster: `(user, password, pg_hba line type, method)`.
const TLS_USERS: &[(&str, &str, &str, &str)] = &[
    ("u_cert", "", "hostssl", "cert"),
    ("u_sslonly", "pw_sslonly", "hostssl", "scram-sha-256"),
    ("u_nossl", "pw_nossl", "hostnossl", "scram-sha-256"),
];

/// A cluster serving TLS with `pki`'s `server` certificate and trusting `ca` for client certificates.
///
/// The certificate files go into the data directory (owned by the cluster's OS user, key mode 0600, as the
/// server demands), `ssl=on` into postgresql.conf and the [`TLS_USERS`] lines before the harness's own in
/// pg_hba.conf; then a restart applies it all.
fn tls_cluster(pki: &Pki) -> TempCluster {
    let cluster = start_cluster();
    let data = cluster.data_dir().to_path_buf();
    install_cert(&cluster, pki, "server");
    fs::copy(pki.path("ca.crt"), data.join("root.crt")).unwrap();
    chown_like_data_dir(&data, &data.join("root.crt"));
    let mut conf = fs::read_to_string(data.join("postgresql.conf")).unwrap();
    conf.push_str(
        "\n# tests/tls.rs\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n",
    );
    fs::write(data.join("postgresql.conf"), conf).unwrap();
    let old = fs::read_to_string(data.join("pg_hba.conf")).unwrap();
    let mut hba = String::from("# tests/tls.rs\n");
    for &(user, _, kind, method) in TLS_USERS {
        for addr in ["127.0.0.1/32", "::1/128"] {
            hba.push_str(&format!("{kind} all {user} {addr} {method}\n"));
        }
    }
    fs::write(data.join("pg_hba.conf"), hba + &old).unwrap();
    let mut sql = String::new();
    for &(user, password, _, _) in TLS_USERS {
        sql.push_str(&format!("CREATE ROLE {user} LOGIN REPLICATION"));
        if !password.is_empty() {
            sql.push_str(&format!(" PASSWORD '{password}'"));
        }
        sql.push_str(";\n");
    }
    cluster.psql("postgres", &sql).unwrap();
    restart(&cluster);
    assert_eq!(cluster.psql("postgres", "SHOW ssl").unwrap(), "on");
    cluster
}

fn start_cluster() -> TempCluster {
    let opts = ClusterOptions { extra_conf: vec!["log_connections = on".into()], ..Default::default() };
    TempCluster::start(opts).unwrap_or_else(|e| panic!("cluster start failed: {e}"))
}

fn restart(cluster: &TempCluster) {
    cluster.stop().unwrap();
    cluster.start_again().unwrap();
}

/// Copy `pki`'s `<name>.crt`/`<name>.key` to the data directory's server.crt/server.key.
fn install_cert(cluster: &TempCluster, pki: &Pki, name: &str) {
    let data = cluster.data_dir();
    for (from, to) in [(format!("{name}.crt"), "server.crt"), (format!("{name}.key"), "server.key")] {
        let dest = data.join(to);
        fs::copy(pki.path(&from), &dest).unwrap();
        chown_like_data_dir(data, &dest);
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// As root the server runs as the data directory's owner (`postgres`): it must own its key file.
fn chown_like_data_dir(data: &Path, file: &Path) {
    let meta = fs::metadata(data).unwrap();
    if fs::metadata(file).unwrap().uid() != meta.uid() {
        std::os::unix::fs::chown(file, Some(meta.uid()), Some(meta.gid())).unwrap();
    }
}

fn password_of(user: &str) -> &'static str {
    USERS
        .iter()
        .map(|&(u, p, _)| (u, p))
        .chain(TLS_USERS.iter().map(|&(u, p, _, _)| (u, p)))
        .find(|&(u, _)| u == user)
        .map(|(_, p)| p)
        .unwrap_or("")
}

/// `host=127.0.0.1 port=N user=U dbname=postgres password=… <extra>`; no root or client certificate from
/// `~/.postgresql` unless `extra` names one (`sslrootcert=invalid` is PostgreSQL's own tests' idiom).
fn conninfo(cluster: &TempCluster, user: &str, extra: &str) -> String {
    let mut s = cluster.conninfo(user, "postgres");
    let pw = password_of(user);
    if !pw.is_empty() {
        s.push_str(&format!(" password={pw}"));
    }
    format!("{s} sslrootcert=invalid sslcert=invalid {extra}")
}

async fn connect(conninfo: &str) -> pgrepl::Result<Client> {
    let cfg = Config::parse(conninfo)?;
    let quiet: pgrepl::client::NoticeHandler = Arc::new(|_| {});
    Client::connect_with_notices(&cfg, quiet).await
}

/// Connect and report whether the session uses TLS (`pg_stat_ssl`).
async fn ssl_in_use(conninfo: &str) -> pgrepl::Result<bool> {
    let mut c = connect(conninfo).await?;
    let r = c.simple_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").await?;
    let ssl = r[0].rows[0][0].as_deref() == Some("t");
    c.close().await?;
    Ok(ssl)
}

#[track_caller]
fn assert_fails(r: pgrepl::Result<bool>, kind: ErrorKind, needle: &str, what: &str) {
    match r {
        Ok(ssl) => panic!("{what}: connected (ssl={ssl}), expected a {kind:?} error containing {needle:?}"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: {e}");
            assert!(e.to_string().contains(needle), "{what}: {e:?} should mention {needle:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// sslmode
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_sslmode_against_a_tls_server() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki);
    let ca = format!("sslrootcert={}", pki.p("ca.crt"));
    let other = format!("sslrootcert={}", pki.p("other_ca.crt"));
    let ci = |extra: &str| conninfo(&cluster, "u_scram", extra);
    // (settings, TLS expected)
    let ok: Vec<(String, bool)> = vec![
        ("sslmode=disable".into(), false),
        ("sslmode=allow".into(), false), // plaintext first, and the server takes it
        ("sslmode=prefer".into(), true),
        (String::new(), true), // prefer is the default
        ("sslmode=require".into(), true),
        (format!("sslmode=require {ca}"), true), // require + root certificate = verify-ca
        (format!("sslmode=verify-ca {ca}"), true),
        (format!("sslmode=verify-full {ca}"), true), // host=127.0.0.1: IP SAN
        (format!("sslmode=verify-full {ca} host=localhost"), true), // DNS SAN
        (format!("sslmode=verify-full {ca} host=localhost sslsni=0"), true),
    ];
    for (extra, tls) in ok {
        let r = ssl_in_use(&ci(&extra)).await;
        assert_eq!(r.as_ref().ok(), Some(&tls), "{extra}: {r:?}");
    }
    // Verification needs a root certificate: none (sslrootcert names no file) is a configuration error.
    for mode in ["verify-ca", "verify-full"] {
        assert_fails(ssl_in_use(&ci(&format!("sslmode={mode}"))).await, ErrorKind::Config, "does not exist", mode);
    }
    // An unknown CA fails wherever a root certificate is given (require included, as libpq).
    for mode in ["require", "verify-ca", "verify-full"] {
        assert_fails(
            ssl_in_use(&ci(&format!("sslmode={mode} {other}"))).await,
            ErrorKind::Tls,
            "invalid peer certificate",
            &format!("{mode} with an unknown CA"),
        );
    }
    // A Unix socket never uses TLS, whatever sslmode says (libpq skips SSLRequest there).
    let sock = format!("{} password=pw_scram sslmode=require", cluster.socket_conninfo("u_scram", "postgres"));
    assert!(!ssl_in_use(&sock).await.unwrap());
}

/// `sslrootcert=system`: the platform's trust store, and verify-full by default. The store is pointed at the
/// test CA through `SSL_CERT_FILE` (honoured as OpenSSL does) in a child process, so that no other test sees
/// the variable.
#[tokio::test]
async fn sslrootcert_system_uses_the_platform_store() {
    const CHILD: &str = "PGREPL_TLS_SYSTEM_CONNINFO";
    if let Ok(ci) = std::env::var(CHILD) {
        let cfg = Config::parse(&ci).unwrap();
        assert_eq!(cfg.sslmode, pgrepl::config::SslMode::VerifyFull);
        assert!(ssl_in_use(&ci).await.unwrap());
        assert!(ssl_in_use(&format!("{ci} host=127.0.0.1")).await.unwrap());
        let e = Config::parse(&format!("{ci} sslmode=require")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        return;
    }
    let pki = Pki::new();
    let cluster = tls_cluster(&pki);
    let ci = format!("{} host=localhost sslrootcert=system", conninfo(&cluster, "u_scram", ""));
    let name = "sslrootcert_system_uses_the_platform_store";
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, &ci)
        .env("SSL_CERT_FILE", pki.path("ca.crt"))
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the test CA in the store, verification fails.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1"])
        .env(CHILD, &ci)
        .env("SSL_CERT_FILE", pki.path("other_ca.crt"))
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success(), "an untrusted CA must fail");
    assert!(String::from_utf8_lossy(&out.stdout).contains("UnknownIssuer"), "{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test]
async fn every_sslmode_against_a_plaintext_server() {
    let cluster = start_cluster();
    let ci = |extra: &str| conninfo(&cluster, "u_scram", extra);
    for mode in ["disable", "allow", "prefer"] {
        assert!(!ssl_in_use(&ci(&format!("sslmode={mode}"))).await.unwrap(), "{mode}");
    }
    let pki = Pki::new();
    let ca = format!("sslrootcert={}", pki.p("ca.crt"));
    for mode in ["require", "verify-ca", "verify-full"] {
        assert_fails(
            ssl_in_use(&ci(&format!("sslmode={mode} {ca}"))).await,
            ErrorKind::Tls,
            "does not support SSL",
            mode,
        );
    }
    // channel_binding=require needs TLS: refused with prefer against a server without it.
    assert_fails(ssl_in_use(&ci("channel_binding=require")).await, ErrorKind::Auth, "TLS is not in use", "cb");
}

#[tokio::test]
async fn allow_and_prefer_retry_the_other_way_as_libpq() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki);
    // hostssl-only user: allow's plaintext attempt is rejected, the TLS retry logs in.
    assert!(ssl_in_use(&conninfo(&cluster, "u_sslonly", "sslmode=allow")).await.unwrap());
    assert_fails(
        ssl_in_use(&conninfo(&cluster, "u_sslonly", "sslmode=disable")).await,
        ErrorKind::AuthFailed,
        "no pg_hba.conf entry",
        "disable, hostssl user",
    );
    // hostnossl-only user: prefer's TLS attempt is rejected, the plaintext retry logs in.
    assert!(!ssl_in_use(&conninfo(&cluster, "u_nossl", "sslmode=prefer")).await.unwrap());
    for mode in ["require", "verify-full"] {
        let extra = format!("sslmode={mode} sslrootcert={}", pki.p("ca.crt"));
        assert_fails(
            ssl_in_use(&conninfo(&cluster, "u_nossl", &extra)).await,
            ErrorKind::AuthFailed,
            "no pg_hba.conf entry",
            &format!("{mode}, hostnossl user"),
        );
    }
    // prefer never retries in plaintext when channel binding is required: it could not succeed.
    assert_fails(
        ssl_in_use(&conninfo(&cluster, "u_nossl", "sslmode=prefer channel_binding=require")).await,
        ErrorKind::AuthFailed,
        "no pg_hba.conf entry",
        "prefer + channel_binding=require, hostnossl user",
    );
    // A wrong password is rejected over TLS, then again in plaintext: still an error, the server's.
    let r = ssl_in_use(&format!("{} password=wrong", conninfo(&cluster, "u_scram", "sslmode=prefer"))).await;
    assert_fails(r, ErrorKind::AuthFailed, "password authentication failed", "prefer, wrong password");
}

#[tokio::test]
async fn server_certificate_names_and_authorities() {
    let pki = Pki::new();
    // A certificate from the right CA for another name.
    pki.leaf(Leaf { name: "elsewhere", cn: "db.example.com", san: "DNS:db.example.com", ..Leaf::default() });
    // The right name, from a CA the client does not trust.
    pki.leaf(Leaf { name: "rogue", ca: "other_ca", ..Leaf::default() });
    let cluster = tls_cluster(&pki);
    let ca = format!("sslrootcert={}", pki.p("ca.crt"));
    let ci = |extra: &str| conninfo(&cluster, "u_scram", extra);

    install_cert(&cluster, &pki, "elsewhere");
    restart(&cluster);
    for host in ["127.0.0.1", "localhost"] {
        assert_fails(
            ssl_in_use(&ci(&format!("sslmode=verify-full {ca} host={host}"))).await,
            ErrorKind::Tls,
            "certificate not valid for name",
            &format!("verify-full, wrong name, host={host}"),
        );
    }
    // verify-ca checks the chain only; require without a root certificate checks nothing.
    assert!(ssl_in_use(&ci(&format!("sslmode=verify-ca {ca}"))).await.unwrap());
    assert!(ssl_in_use(&ci("sslmode=require")).await.unwrap());

    install_cert(&cluster, &pki, "rogue");
    restart(&cluster);
    for mode in ["verify-ca", "verify-full", "require"] {
        assert_fails(
            ssl_in_use(&ci(&format!("sslmode={mode} {ca}"))).await,
            ErrorKind::Tls,
            "UnknownIssuer",
            &format!("{mode}, unknown CA"),
        );
    }
    assert!(ssl_in_use(&ci("sslmode=require")).await.unwrap());
    // prefer falls back to plaintext after a failed handshake, as libpq does.
    assert!(!ssl_in_use(&ci(&format!("sslmode=prefer {ca}"))).await.unwrap());
}

/// `hostaddr` with TLS, as libpq: the address is connected to, the certificate is checked against `host`.
#[tokio::test]
async fn hostaddr_checks_the_certificate_against_host_not_the_address() {
    let pki = Pki::new();
    pki.leaf(Leaf { name: "dns_only", san: "DNS:localhost", ..Leaf::default() });
    let cluster = tls_cluster(&pki);
    let ca = format!("sslrootcert={}", pki.p("ca.crt"));
    let ci = |extra: &str| conninfo(&cluster, "u_scram", &format!("sslmode=verify-full {ca} {extra}"));

    // The certificate names localhost and 127.0.0.1: the address matches, the host name does not (psql:
    // "does not match host name wrong.example").
    assert_fails(
        ssl_in_use(&ci("host=wrong.example hostaddr=127.0.0.1")).await,
        ErrorKind::Tls,
        "certificate not valid for name",
        "verify-full, host=wrong.example hostaddr=127.0.0.1",
    );
    assert!(ssl_in_use(&ci("host=localhost hostaddr=127.0.0.1")).await.unwrap());
    // No host name beside the address: nothing to verify, refused as libpq refuses it.
    assert_fails(
        ssl_in_use(&ci("host='' hostaddr=127.0.0.1")).await,
        ErrorKind::Config,
        "host name must be specified for a verified SSL connection",
        "verify-full, hostaddr only",
    );
    // verify-ca checks no name: the wrong host name does not matter there.
    let verify_ca =
        conninfo(&cluster, "u_scram", &format!("sslmode=verify-ca {ca} host=wrong.example hostaddr=127.0.0.1"));
    assert!(ssl_in_use(&verify_ca).await.unwrap());

    // The reverse: a certificate with only the DNS name verifies through hostaddr when host names it, and not
    // when the host is the bare address.
    install_cert(&cluster, &pki, "dns_only");
    restart(&cluster);
    assert!(ssl_in_use(&ci("host=localhost hostaddr=127.0.0.1")).await.unwrap());
    assert_fails(
        ssl_in_use(&ci("host=127.0.0.1")).await,
        ErrorKind::Tls,
        "certificate not valid for name",
        "verify-full, DNS-only certificate, host=127.0.0.1",
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Client certificates, channel binding, require_auth
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_certificate_logs_in_where_pg_hba_says_cert() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki);
    let certs = format!("sslcert={} sslkey={}", pki.p("client.crt"), pki.p("client.key"));
    let ca = format!("sslrootcert={}", pki.p("ca.crt"));
    let ci = |extra: &str| conninfo(&cluster, "u_cert", extra);

    assert!(ssl_in_use(&ci(&format!("sslmode=verify-full {ca} {certs}"))).await.unwrap());
    assert!(ssl_in_use(&ci(&format!("sslmode=require {certs} require_auth=none"))).await.unwrap());
    let mut c = connect(&ci(&format!("sslmode=require {certs}"))).await.unwrap();
    let r = c.simple_query("SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()").await.unwrap();
    assert_eq!(r[0].rows[0][0].as_deref(), Some("/CN=u_cert"));
    c.close().await.unwrap();

    // No certificate: the server refuses.
    assert_fails(
        ssl_in_use(&ci("sslmode=require")).await,
        ErrorKind::AuthFailed,
        "certificate",
        "no client certificate",
    );
    // sslcertmode=disable: the configured certificate is not sent, so the server refuses too.
    assert_fails(
        ssl_in_use(&ci(&format!("sslmode=require {certs} sslcertmode=disable"))).await,
        ErrorKind::AuthFailed,
        "certificate",
        "sslcertmode=disable",
    );
    assert!(ssl_in_use(&ci(&format!("sslmode=require {certs} sslcertmode=allow"))).await.unwrap());
    // The server authenticates by certificate alone: channel_binding=require must refuse (002_scram.pl).
    assert_fails(
        ssl_in_use(&ci(&format!("sslmode=require {certs} channel_binding=require"))).await,
        ErrorKind::Auth,
        "",
        "cert + channel_binding=require",
    );
    // A key readable by others is refused before connecting, as libpq.
    let loose = pki.path("loose.key");
    fs::copy(pki.path("client.key"), &loose).unwrap();
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o644)).unwrap();
    let extra = format!("sslmode=require sslcert={} sslkey={}", pki.p("client.crt"), loose.display());
    assert_fails(ssl_in_use(&ci(&extra)).await, ErrorKind::Config, "group or world access", "0644 key");
    // A certificate without its key.
    let extra = format!("sslmode=require sslcert={} sslkey={}", pki.p("client.crt"), pki.p("nope.key"));
    assert_fails(ssl_in_use(&ci(&extra)).await, ErrorKind::Config, "not private key", "missing key");
}

#[tokio::test]
async fn scram_sha_256_plus_with_channel_binding() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki);
    let ca = format!("sslrootcert={}", pki.p("ca.crt"));
    let ci = |user: &str, extra: &str| conninfo(&cluster, user, extra);

    // SCRAM-SHA-256-PLUS: channel_binding=require only succeeds after a channel-bound exchange whose binding
    // data the server checked (a wrong tls-server-end-point hash fails on the server side).
    for extra in ["sslmode=require", &format!("sslmode=verify-full {ca}"), "sslmode=prefer"] {
        let r = ssl_in_use(&ci("u_scram", &format!("{extra} channel_binding=require"))).await;
        assert!(r.as_ref().is_ok_and(|&tls| tls), "{extra}: {r:?}");
    }
    for cb in ["disable", "prefer"] {
        assert!(ssl_in_use(&ci("u_scram", &format!("sslmode=require channel_binding={cb}"))).await.unwrap());
    }
    // require refuses: an MD5 user, a trust user, a plaintext connection.
    assert_fails(
        ssl_in_use(&ci("u_md5", "sslmode=require channel_binding=require")).await,
        ErrorKind::Auth,
        "channel binding required",
        "md5 user",
    );
    assert_fails(
        ssl_in_use(&ci("u_password", "sslmode=require channel_binding=require")).await,
        ErrorKind::Auth,
        "channel binding required",
        "password user",
    );
    assert_fails(
        ssl_in_use(&ci("u_trust", "sslmode=require channel_binding=require")).await,
        ErrorKind::Auth,
        "",
        "trust user",
    );
    for mode in ["disable", "allow"] {
        assert_fails(
            ssl_in_use(&ci("u_scram", &format!("sslmode={mode} channel_binding=require"))).await,
            ErrorKind::Auth,
            "TLS is not in use",
            &format!("sslmode={mode}"),
        );
    }
}

#[tokio::test]
async fn end_point_hash_follows_the_certificate_signature() {
    let pki = Pki::new();
    pki.ca("rsa_ca", "rsa");
    pki.leaf(Leaf { name: "sha384", ca: "rsa_ca", sign: &["-sha384"], ..Leaf::default() });
    let pss = ["-sha512", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:64"];
    pki.leaf(Leaf { name: "pss512", key: "rsa", ca: "rsa_ca", sign: &pss, ..Leaf::default() });
    pki.leaf(Leaf { name: "ed25519", key: "ed25519", ca: "", sign: &[], ..Leaf::default() });
    let cluster = tls_cluster(&pki);
    let ci = |extra: &str| conninfo(&cluster, "u_scram", extra);

    for (name, sigalg) in [("sha384", "sha384WithRSAEncryption"), ("pss512", "rsassaPss")] {
        assert_eq!(pki.signature_algorithm(&format!("{name}.crt")), sigalg);
        install_cert(&cluster, &pki, name);
        restart(&cluster);
        // The server hashes its certificate with the signature's hash; a mismatch would fail the exchange.
        let r = ssl_in_use(&ci("sslmode=require channel_binding=require")).await;
        assert!(r.as_ref().is_ok_and(|&tls| tls), "{name}: {r:?}");
    }
    assert_eq!(pki.signature_algorithm("ed25519.crt"), "ED25519");
    install_cert(&cluster, &pki, "ed25519");
    restart(&cluster);
    // No hash exists for Ed25519: the server offers -PLUS anyway, binding is impossible, so both require and
    // prefer fail (as libpq), and disable authenticates without binding.
    for cb in ["require", "prefer"] {
        assert_fails(
            ssl_in_use(&ci(&format!("sslmode=require channel_binding={cb}"))).await,
            ErrorKind::Auth,
            "no tls-server-end-point hash",
            &format!("Ed25519, channel_binding={cb}"),
        );
    }
    assert!(ssl_in_use(&ci("sslmode=require channel_binding=disable")).await.unwrap());
}

/// `require_auth` over TLS: the cases of PostgreSQL's authentication/t/001_password.pl for each of the
/// harness's pg_hba methods, and ssl/t/002_scram.pl's combinations with channel_binding.
#[tokio::test]
async fn require_auth_over_tls() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki);
    // (user, require_auth, succeeds)
    let cases: &[(&str, &str, bool)] = &[
        ("u_trust", "", true),
        ("u_trust", "password", false),
        ("u_trust", "md5", false),
        ("u_trust", "scram-sha-256", false),
        ("u_trust", "password,scram-sha-256", false),
        ("u_trust", "!password", true),
        ("u_trust", "!md5", true),
        ("u_trust", "!scram-sha-256", true),
        ("u_trust", "!password,!scram-sha-256", true),
        ("u_trust", "none", true),
        ("u_trust", "!none", false),
        ("u_password", "password", true),
        ("u_password", "!none", true),
        ("u_password", "scram-sha-256,password,md5", true),
        ("u_password", "md5", false),
        ("u_password", "scram-sha-256", false),
        ("u_password", "none", false),
        ("u_password", "!password", false),
        ("u_password", "!password,!md5,!scram-sha-256", false),
        ("u_scram", "scram-sha-256", true),
        ("u_scram", "!none", true),
        ("u_scram", "password,scram-sha-256,md5", true),
        ("u_scram", "password", false),
        ("u_scram", "md5", false),
        ("u_scram", "none", false),
        ("u_scram", "!scram-sha-256", false),
        ("u_scram", "!password,!md5,!scram-sha-256", false),
        ("u_md5", "md5", true),
        ("u_md5", "!none", true),
        ("u_md5", "md5,scram-sha-256,password", true),
        ("u_md5", "password", false),
        ("u_md5", "scram-sha-256", false),
        ("u_md5", "none", false),
        ("u_md5", "!md5", false),
    ];
    for &(user, require, ok) in cases {
        let r = ssl_in_use(&conninfo(&cluster, user, &format!("sslmode=require require_auth={require}"))).await;
        match r {
            Ok(tls) => assert!(ok && tls, "{user} require_auth={require}: connected"),
            Err(e) => {
                assert!(!ok, "{user} require_auth={require}: {e}");
                assert_eq!(e.kind(), ErrorKind::Auth, "{user} require_auth={require}: {e}");
            }
        }
    }
    // 002_scram.pl: channel_binding works independently of require_auth.
    let cb = |user: &str, extra: &str| conninfo(&cluster, user, &format!("sslmode=require {extra}"));
    assert!(ssl_in_use(&cb("u_scram", "channel_binding=disable require_auth=scram-sha-256")).await.unwrap());
    assert!(ssl_in_use(&cb("u_scram", "channel_binding=require require_auth=scram-sha-256")).await.unwrap());
    assert_fails(
        ssl_in_use(&cb("u_md5", "channel_binding=require require_auth=md5")).await,
        ErrorKind::Auth,
        "channel binding required",
        "md5 user, require_auth=md5, channel_binding=require",
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Hostile servers
// ---------------------------------------------------------------------------------------------------------------

const SSL_REQUEST: &[u8] = &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A one-connection scripted server: `script` gets the accepted socket; the test gets its result.
async fn scripted<F, Fut, T>(script: F) -> (u16, tokio::task::JoinHandle<T>)
where
    F: FnOnce(TcpStream, TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        script(sock, listener).await
    });
    (port, handle)
}

fn hostile_conninfo(port: u16, extra: &str) -> String {
    format!("host=127.0.0.1 port={port} user=u_scram dbname=postgres password=pw sslrootcert=invalid sslcert=invalid {extra}")
}

/// Everything the client sends until it closes, and the listener, to ask [`connected_again`] once the client
/// has returned.
async fn rest_of_conversation(mut sock: TcpStream, listener: TcpListener) -> (Vec<u8>, TcpListener) {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut got)).await;
    (got, listener)
}

/// Whether the client, which has returned, connected again. Any second attempt was made before it returned, so
/// its connection already waits in the listener's backlog (the kernel completed the handshake): a short poll
/// sees it however slow the machine is. (Polling right after the first connection closed, as before, missed a
/// retry that came later than the poll on a slow or loaded machine.)
async fn connected_again(listener: &TcpListener) -> bool {
    tokio::time::timeout(Duration::from_millis(100), listener.accept()).await.is_ok()
}

#[tokio::test]
async fn hostile_bytes_injected_after_s_fail_before_the_handshake() {
    for mode in ["prefer", "require", "verify-full"] {
        let (port, server) = scripted(|mut sock, listener| async move {
            let mut req = [0u8; 8];
            sock.read_exact(&mut req).await.unwrap();
            assert_eq!(req, SSL_REQUEST);
            // S, then a forged AuthenticationOk + ReadyForQuery in plaintext, in one segment.
            sock.write_all(b"SR\0\0\0\x08\0\0\0\0Z\0\0\0\x05I").await.unwrap();
            rest_of_conversation(sock, listener).await
        })
        .await;
        let r = ssl_in_use(&hostile_conninfo(port, &format!("sslmode={mode}"))).await;
        assert_fails(r, ErrorKind::Tls, "unencrypted data after SSL response", mode);
        let (sent, listener) = server.await.unwrap();
        assert!(sent.is_empty(), "{mode}: no ClientHello may follow: {sent:02x?}");
        assert!(!connected_again(&listener).await, "{mode}: no second attempt");
    }
}

#[tokio::test]
async fn hostile_error_in_reply_to_ssl_request_never_falls_back_to_plaintext() {
    for mode in ["require", "verify-ca", "prefer"] {
        let (port, server) = scripted(|mut sock, listener| async move {
            let mut req = [0u8; 8];
            sock.read_exact(&mut req).await.unwrap();
            assert_eq!(req, SSL_REQUEST);
            let mut e = b"E\0\0\0\0SFATAL\0C28000\0Mplease reconnect without SSL at evil.example\0\0".to_vec();
            let len = (e.len() - 1) as u32;
            e[1..5].copy_from_slice(&len.to_be_bytes());
            sock.write_all(&e).await.unwrap();
            rest_of_conversation(sock, listener).await
        })
        .await;
        let r = ssl_in_use(&hostile_conninfo(port, &format!("sslmode={mode} sslrootcert=invalid"))).await;
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Tls, "{mode}: {e}");
        assert!(!e.to_string().contains("evil.example"), "{mode}: the forged text is not shown: {e}");
        let (sent, listener) = server.await.unwrap();
        assert!(sent.is_empty(), "{mode}: nothing more sent (no StartupMessage in plaintext): {sent:02x?}");
        assert!(!connected_again(&listener).await, "{mode}: no plaintext retry");
    }
}

/// Read one untyped StartupMessage.
async fn read_startup(sock: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut len = [0u8; 4];
    sock.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
    sock.read_exact(&mut body).await.unwrap();
    body
}

#[tokio::test]
async fn hostile_scram_plus_offered_without_tls_fails() {
    for mode in ["disable", "prefer"] {
        let (port, server) = scripted(move |mut sock, listener| async move {
            let mut first = [0u8; 8];
            sock.peek(&mut first).await.unwrap();
            if first == SSL_REQUEST {
                sock.read_exact(&mut first).await.unwrap();
                sock.write_all(b"N").await.unwrap();
            }
            let startup = read_startup(&mut sock).await;
            assert!(startup.windows(7).any(|w| w == b"u_scram"));
            let mechs = b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0";
            let mut msg = vec![b'R'];
            msg.extend(((8 + mechs.len()) as u32).to_be_bytes());
            msg.extend(10u32.to_be_bytes());
            msg.extend(mechs);
            sock.write_all(&msg).await.unwrap();
            rest_of_conversation(sock, listener).await
        })
        .await;
        let r = ssl_in_use(&hostile_conninfo(port, &format!("sslmode={mode}"))).await;
        assert_fails(r, ErrorKind::Auth, "SCRAM-SHA-256-PLUS", mode);
        let (sent, _) = server.await.unwrap();
        assert!(sent.is_empty(), "{mode}: no SASLInitialResponse: {sent:02x?}");
    }
}

/// A fake PostgreSQL 17 accepting direct TLS: checks ALPN and SNI, then answers the startup with
/// AuthenticationOk and ReadyForQuery.
#[tokio::test]
async fn direct_tls_negotiation() {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{self, ServerConfig};

    let pki = Pki::new();
    let chain = vec![CertificateDer::from_pem_file(pki.path("server.crt")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
    // The test server has every group of the provider pgrepl was built with, in the reverse of rustls's order,
    // so that it would rather have another one: the client's preference decides, and the server sees the group
    // pgrepl promises first (src/tls/provider.rs).
    #[cfg(feature = "tls-aws-lc")]
    let (provider, promised) = (rustls::crypto::aws_lc_rs::default_provider(), rustls::NamedGroup::X25519MLKEM768);
    // rustls's whole ring provider, deprecated for lacking post-quantum key exchange: fine for a test server.
    #[cfg(not(feature = "tls-aws-lc"))]
    #[allow(deprecated)]
    let (provider, promised) = (rustls::crypto::ring::default_provider(), rustls::NamedGroup::X25519);
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        kx_groups: provider.kx_groups.iter().rev().copied().collect(),
        ..provider
    });
    let server_config = |alpn: bool| {
        let mut c = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .unwrap();
        if alpn {
            c.alpn_protocols = vec![b"postgresql".to_vec()];
        }
        Arc::new(c)
    };
    let ca = format!("sslrootcert={}", pki.p("ca.crt"));

    for (alpn, host, sni, extra) in [
        (true, "localhost", Some("localhost"), "sslmode=verify-full"),
        (true, "localhost", None, "sslmode=verify-full sslsni=0"),
        (true, "127.0.0.1", None, "sslmode=require"),
        (false, "localhost", Some("localhost"), "sslmode=verify-full"),
    ] {
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(alpn));
        let (port, server) = scripted(move |sock, _| async move {
            let mut first = [0u8; 8];
            sock.peek(&mut first).await.unwrap();
            assert_ne!(first, SSL_REQUEST, "direct: no SSLRequest");
            assert_eq!(first[0], 0x16, "a TLS handshake record comes first");
            let mut tls = acceptor.accept(sock).await.unwrap();
            let (_, conn) = tls.get_ref();
            let seen = (conn.alpn_protocol().map(<[u8]>::to_vec), conn.server_name().map(str::to_owned));
            let group = conn.negotiated_key_exchange_group().map(|g| g.name());
            assert_eq!(group, Some(promised), "the key exchange group pgrepl prefers");
            let mut buf = Vec::new();
            if alpn {
                let startup = read_startup(&mut tls).await;
                assert!(startup.windows(7).any(|w| w == b"u_scram"));
                tls.write_all(b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I").await.unwrap();
                tls.flush().await.unwrap();
                let _ = tls.read_to_end(&mut buf).await;
            }
            (seen, buf)
        })
        .await;
        let ci = format!(
            "host={host} port={port} user=u_scram dbname=postgres sslnegotiation=direct {ca} sslcert=invalid {extra}"
        );
        let r = connect(&ci).await;
        if alpn {
            r.unwrap_or_else(|e| panic!("{extra} host={host}: {e}")).close().await.unwrap();
        } else {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
            assert!(e.to_string().contains("ALPN"), "{e}");
        }
        let ((alpn_seen, sni_seen), rest) = server.await.unwrap();
        assert_eq!(alpn_seen.as_deref(), alpn.then_some(&b"postgresql"[..]), "{extra}");
        assert_eq!(sni_seen.as_deref(), sni, "{extra} host={host}");
        if alpn {
            assert_eq!(rest, b"X\0\0\0\x04", "Terminate over TLS");
        }
    }
    // sslnegotiation=direct needs sslmode require or stronger (libpq 17).
    let e = Config::parse("host=localhost sslnegotiation=direct sslmode=prefer").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
}

/// `sslnegotiation=direct` against the real server: TLS from the first byte, no SSLRequest. PostgreSQL 17 and
/// later accept it (plain, SCRAM with channel binding, a replication connection and a client certificate; the
/// server answers SSLRequest too); an older server reads the ClientHello as a startup packet and closes the
/// connection, and pgrepl fails with a TLS error that says so — never retrying with SSLRequest or without TLS,
/// as libpq 17.
#[tokio::test]
async fn direct_tls_against_the_server() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki);
    let ca = format!("sslrootcert={}", pki.p("ca.crt"));
    let certs = format!("sslcert={} sslkey={}", pki.p("client.crt"), pki.p("client.key"));
    let direct = [
        ("u_scram", "sslnegotiation=direct sslmode=require".to_string()),
        ("u_scram", format!("sslnegotiation=direct sslmode=verify-full {ca} channel_binding=require")),
        ("u_scram", format!("sslnegotiation=direct sslmode=verify-full {ca} replication=database")),
        ("u_md5", format!("sslnegotiation=direct sslmode=verify-ca {ca}")),
        ("u_cert", format!("sslnegotiation=direct sslmode=verify-full {ca} {certs}")),
    ];
    for (user, extra) in &direct {
        let ci = conninfo(&cluster, user, extra);
        let r = ssl_in_use(&ci).await;
        if cluster.major() >= 17 {
            assert!(r.unwrap_or_else(|e| panic!("PostgreSQL {}, {user} {extra}: {e}", cluster.version())), "{extra}");
        } else {
            let e = r.expect_err("direct TLS to a server before 17");
            eprintln!("PostgreSQL {}, {user} {extra}: {e}", cluster.version());
            assert_eq!(e.kind(), ErrorKind::Tls, "PostgreSQL {}, {extra}: {e:?}", cluster.version());
            let msg = e.to_string();
            assert!(msg.contains("sslnegotiation=direct"), "the error names the setting: {msg}");
            assert!(msg.contains("PostgreSQL 17"), "the error says which servers accept it: {msg}");
        }
    }
    // the same server over SSLRequest, whatever its release
    assert!(ssl_in_use(&conninfo(&cluster, "u_scram", "sslnegotiation=postgres sslmode=require")).await.unwrap());
    if cluster.major() < 17 {
        // the failed attempts reached the server as startup packets it could not read; nothing else connected
        let log = fs::read_to_string(cluster.log_path()).unwrap();
        let authorized = log.lines().filter(|l| l.contains("connection authorized") && l.contains("u_")).count();
        assert_eq!(authorized, 1, "only the SSLRequest connection logged in:\n{log}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Replication over TLS
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn replication_stream_over_tls() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki);
    cluster.psql("postgres", "CREATE TABLE t (id int primary key, v text); GRANT ALL ON t TO u_scram;").unwrap();
    let ci = format!(
        "{} replication=database",
        conninfo(
            &cluster,
            "u_scram",
            &format!("sslmode=verify-full sslrootcert={} channel_binding=require", pki.p("ca.crt"))
        )
    );
    let mut client = connect(&ci).await.unwrap();
    let r = client.simple_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").await.unwrap();
    assert_eq!(r[0].rows[0][0].as_deref(), Some("t"));
    let p = Plugin::of(&cluster);
    let slot = CreateSlot {
        slot: "tls_slot".into(),
        plugin: p.name().into(),
        temporary: false,
        snapshot: SnapshotAction::NoExport,
        two_phase: false,
    };
    let info = client.create_replication_slot(&slot).await.unwrap();
    for i in 1..=3 {
        cluster.psql("postgres", &format!("INSERT INTO t VALUES ({i}, 'row {i}')")).unwrap();
    }
    let cfg = StreamConfig { status_interval: Duration::from_millis(200), ..Default::default() };
    let mut stream =
        client.start_replication("tls_slot", p.rules(), info.consistent_point, &p.options(), cfg).await.unwrap();
    let (mut inserts, mut commits, mut last_commit) = (0, 0, Lsn::INVALID);
    while commits < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(20), stream.next()).await.unwrap().unwrap().unwrap();
        let text = String::from_utf8_lossy(&msg.data).into_owned();
        if p.action(&msg.data) == b'I' {
            let value = match p {
                Plugin::Wal2json => format!(r#""value":"row {}""#, inserts + 1),
                Plugin::TestDecoding => format!("v[text]:'row {}'", inserts + 1),
            };
            assert!(text.contains(&value), "{text}");
            inserts += 1;
        }
        if p.action(&msg.data) == b'C' {
            commits += 1;
            last_commit = msg.wal_start;
            stream.ack(msg.wal_start);
        }
    }
    assert_eq!(inserts, 3);
    // The acknowledgement reaches the server over TLS.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let flushed = cluster
            .psql("postgres", "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'tls_slot'")
            .unwrap();
        if Lsn::parse(&flushed).unwrap() >= last_commit {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "confirmed_flush_lsn {flushed} < {last_commit}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = stream.stop().await.unwrap();
    client.drop_replication_slot("tls_slot", false).await.unwrap();
    client.close().await.unwrap();
}

/// A bulk transaction and then a lone small one over TLS with read coalescing (the socket options go to the TCP
/// connection underneath, src/tls.rs tests that): everything arrives, the small transaction too, although
/// rustls may hold a partial record while the reader waits for the low-water mark (the linger ends the wait).
#[tokio::test]
async fn a_small_transaction_after_a_bulk_one_arrives_over_tls() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki);
    cluster.psql("postgres", "CREATE TABLE t (id int primary key, v text); GRANT ALL ON t TO u_scram;").unwrap();
    let ci = format!("{} replication=database", conninfo(&cluster, "u_scram", "sslmode=require"));
    let mut client = connect(&ci).await.unwrap();
    let p = Plugin::of(&cluster);
    let slot = CreateSlot {
        slot: "bulk".into(),
        plugin: p.name().into(),
        temporary: false,
        snapshot: SnapshotAction::NoExport,
        two_phase: false,
    };
    let start = client.create_replication_slot(&slot).await.unwrap().consistent_point;
    const ROWS: usize = 20_000;
    cluster
        .psql("postgres", &format!("INSERT INTO t SELECT g, repeat('x', 50) FROM generate_series(1, {ROWS}) g"))
        .unwrap();
    let cfg = StreamConfig { coalesce_reads: true, ..Default::default() };
    let mut stream = client.start_replication("bulk", p.rules(), start, &p.options(), cfg).await.unwrap();
    let mut next =
        async || tokio::time::timeout(Duration::from_secs(30), stream.next()).await.unwrap().unwrap().unwrap();
    let mut inserts = 0;
    loop {
        match p.action(&next().await.data) {
            b'I' => inserts += 1,
            b'C' => break,
            _ => {}
        }
    }
    assert_eq!(inserts, ROWS);
    // read; now a single row, well under any low-water mark
    cluster.psql("postgres", "INSERT INTO t VALUES (0, 'last')").unwrap();
    let mut actions = vec![];
    while actions.last() != Some(&b'C') {
        actions.push(p.action(&next().await.data));
    }
    assert_eq!(actions, b"BIC");
    stream.stop().await.unwrap().close().await.unwrap();
}
