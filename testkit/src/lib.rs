//! pgrepl's test kit: a throwaway PostgreSQL cluster for the integration tests, benches, examples and
//! `pgrepl demo`. Not part of the library (it runs `initdb` and `pg_ctl`, through `runuser` as root, with fixed
//! test passwords).
//!
//! [`TempCluster::start`] makes a fresh data directory (`initdb`, or a copy of a cached one) in a new temporary
//! directory, writes its own `postgresql.conf` settings (`wal_level = logical`, 20 slots and WAL senders, a
//! short `wal_sender_timeout`, `fsync` and `full_page_writes` off; `synchronous_commit` stays on so commits
//! reach logical decoding at once) and an explicit `pg_hba.conf`, starts it with `pg_ctl` on a free port, and
//! creates one role per authentication method in [`USERS`] plus a database `other`. Dropping the
//! [`TempCluster`] stops the server with `pg_ctl stop -m immediate` and removes the directory.
//!
//! ```no_run
//! use pgrepl_testkit::{ClusterOptions, TempCluster};
//!
//! let cluster = TempCluster::start(ClusterOptions::default())?;
//! cluster.psql("postgres", "CREATE TABLE t (id int primary key)")?;
//! assert_eq!(cluster.psql("postgres", "SHOW wal_level")?, "logical");
//! let conninfo = cluster.conninfo("u_scram", "postgres"); // host=127.0.0.1 port=N user=u_scram dbname=postgres
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Things worth knowing:
//! - wal2json is allowed as an output plugin: on 15.19 and later, whose new `output_plugin_libraries` only
//!   lists pgoutput and test_decoding by default, the harness sets it to `'pgoutput, test_decoding, wal2json'`.
//! - Only `std` is used: every PostgreSQL program runs as a child process.
//! - The server binaries come from [`ClusterOptions::bin_dir`], else `$PG_BIN_DIR`, else
//!   `/usr/lib/postgresql/15/bin`, else `pg_config --bindir`. `scripts/install-deps.sh` installs PostgreSQL 15
//!   and wal2json when they are missing.
//! - As root (CI), PostgreSQL refuses to run, so `initdb`, `pg_ctl` and the server run as the `postgres` OS user
//!   through `runuser -u postgres --`, and the cluster directory is chowned to it; that user is then the
//!   cluster's superuser. Otherwise everything runs as the current user, who is the superuser.
//! - Where: `$PGREPL_CLUSTER_DIR` if set; else `/dev/shm` when `TMPDIR` is unset and that tmpfs has 1 GiB
//!   free (writing ~30 MB of data directory to a disk is what makes a start slow); else the system temp dir.
//! - `initdb` is slow (~0.8 s on tmpfs, ~1.5 s on disk), so its pristine output is kept once as a template
//!   (`<base>/pgrepl-template-<hash>`, keyed by server version, binaries and superuser; it stays there for later
//!   runs) and copied for each cluster: a start then takes ~0.25 s on tmpfs (~1.3 s on this VM's disk). Set
//!   `PGREPL_CLUSTER_NO_TEMPLATE=1` to always run `initdb`.
//! - Cluster directories of processes that died without dropping theirs (a killed test run) are stopped and
//!   removed by the next start. Set `PGREPL_KEEP_CLUSTER=1` to keep a cluster's directory after Drop (the
//!   server is still stopped) to read its log.
//! - [`TempCluster::psql`] runs `psql -X -q -At -w -v ON_ERROR_STOP=1` as the superuser over the Unix socket,
//!   with the SQL on standard input, so a multi-statement script runs statement by statement (`CREATE
//!   DATABASE` works); it returns standard output without the final newline.
//! - Child processes get no `PG*` variables from the environment (everything is passed explicitly) and run
//!   with `LC_ALL=C`, so messages are in English.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

/// The login roles every cluster has: `(user, password, pg_hba method)`.
///
/// `u_md5`'s password is stored as an MD5 hash, the others' as SCRAM-SHA-256 verifiers (the `password` method
/// checks a cleartext password against either). Each role has LOGIN, REPLICATION and CREATEDB, CREATE on
/// database `postgres` and on its schema `public`, and membership in `pg_monitor`.
pub const USERS: &[(&str, &str, &str)] = &[
    ("u_trust", "", "trust"),
    ("u_password", "pw_cleartext", "password"),
    ("u_md5", "pw_md5", "md5"),
    ("u_scram", "pw_scram", "scram-sha-256"),
];

/// The default server binaries (Debian's layout).
const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// Prefix of every cluster directory, followed by `<pid>-<counter>`.
const CLUSTER_PREFIX: &str = "pgrepl-cluster-";
/// Prefix of the initdb templates, followed by a hash of what they depend on.
const TEMPLATE_PREFIX: &str = "pgrepl-template-";
/// Bumped when what the template holds changes.
const TEMPLATE_FORMAT: &str = "1";
/// The arguments `initdb` gets besides `-D` and `-U` (and `--no-instructions`, which initdb knows from 14 on).
/// (1 MB WAL segments keep the data directory small: 28 MB instead of 39 MB to copy.)
const INITDB_ARGS: &[&str] = &["--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--wal-segsize=1"];
/// The oldest and newest server majors the harness knows how to set up.
pub const SUPPORTED_MAJORS: std::ops::RangeInclusive<u32> = 12..=18;
/// The one server major wal2json is packaged for here (Debian's `postgresql-15-wal2json`; `scripts/pg-build.sh`
/// copies its library into npm's 15 build). The wal2json suites run on it and never skip there.
pub const WAL2JSON_MAJOR: u32 = 15;
/// What a wal2json suite prints (on standard error, past libtest's capture) when the server has no wal2json.
pub const WAL2JSON_SKIP: &str = "skipped: wal2json is packaged for PostgreSQL 15 only";
/// How many ports are tried when the server cannot bind the one picked.
const PORT_ATTEMPTS: usize = 5;
/// `pg_ctl -t`: seconds to wait for a start or stop.
const PG_CTL_TIMEOUT_SECS: &str = "60";
/// `sun_path` is 108 bytes on Linux, including the NUL.
const MAX_SOCKET_PATH: usize = 100;

static COUNTER: AtomicU32 = AtomicU32::new(0);
static STALE_CLEANUP: Once = Once::new();
static TEMPLATE_LOCK: Mutex<()> = Mutex::new(());

/// How to set up a [`TempCluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `wal_sender_timeout`; the default (5 s) is short so that tests see timeouts quickly.
    pub wal_sender_timeout: Duration,
    /// Extra `postgresql.conf` lines, written after (and so overriding) the harness's own settings.
    pub extra_conf: Vec<String>,
    /// Where `initdb`, `pg_ctl`, `postgres` and `psql` are; `None`: `$PG_BIN_DIR`, else
    /// `/usr/lib/postgresql/15/bin`, else `pg_config --bindir`.
    pub bin_dir: Option<PathBuf>,
    /// Listen on 127.0.0.1 (and ::1 where the machine has it); when false, only on the Unix socket.
    pub tcp: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions { wal_sender_timeout: Duration::from_secs(5), extra_conf: Vec::new(), bin_dir: None, tcp: true }
    }
}

/// A running throwaway cluster; Drop stops it (`pg_ctl stop -m immediate`) and removes its directory.
#[derive(Debug)]
pub struct TempCluster {
    /// The cluster directory: holds `data/`, the log and the Unix socket.
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    superuser: String,
    /// Some(runuser path) when running as root: PostgreSQL programs run as `postgres` through it.
    runuser: Option<PathBuf>,
    ipv6: bool,
    /// The server has `output_plugin_libraries` (15.19 and later), which must list wal2json.
    plugin_allowlist: bool,
    /// The server's major version (12 … 18) and its full `postgres --version` number.
    major: u32,
    version: String,
}

impl TempCluster {
    /// Creates, configures and starts a new cluster, then creates the [`USERS`] roles and database `other`.
    ///
    /// The error of a failed start carries `pg_ctl`'s output and the last 30 lines of the server log.
    pub fn start(opts: ClusterOptions) -> io::Result<TempCluster> {
        let bin_dir = resolve_bin_dir(opts.bin_dir.as_deref())?;
        for program in ["initdb", "pg_ctl", "postgres"] {
            if !bin_dir.join(program).is_file() {
                return Err(other(format!(
                    "{} not found in {} (run scripts/install-deps.sh, or set PG_BIN_DIR)",
                    program,
                    bin_dir.display()
                )));
            }
        }
        let (major, version) = server_version(&bin_dir)?;
        if !SUPPORTED_MAJORS.contains(&major) {
            return Err(other(format!(
                "{}: PostgreSQL {} is not supported by the harness ({} to {})",
                bin_dir.display(),
                version,
                SUPPORTED_MAJORS.start(),
                SUPPORTED_MAJORS.end()
            )));
        }
        let as_root = effective_uid()? == 0;
        let (superuser, runuser, owner_uid) = if as_root {
            let uid = user_uid("postgres").ok_or_else(|| {
                other("running as root needs the `postgres` OS user to own the cluster (install postgresql-15)")
            })?;
            (String::from("postgres"), Some(find_runuser()?), uid)
        } else {
            (current_user_name()?, None, effective_uid()?)
        };
        let base = temp_base(as_root);
        STALE_CLEANUP.call_once(|| cleanup_stale(&base, &bin_dir, runuser.as_deref(), owner_uid));

        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let root = base.join(format!("{}{}-{}", CLUSTER_PREFIX, std::process::id(), n));
        if root.exists() {
            // Left over by an earlier process with our pid; nothing can be using it.
            let _ = fs::remove_dir_all(&root);
        }
        fs::create_dir(&root)?;
        let mut cluster = TempCluster {
            data: root.join("data"),
            log: root.join("postgres.log"),
            root,
            bin_dir,
            port: 0,
            superuser,
            runuser,
            ipv6: false,
            plugin_allowlist: false,
            major,
            version,
        };
        // From here on, an early return drops `cluster`, which stops the server and removes the directory.
        if cluster.runuser.is_some() {
            run_checked(Command::new("chown").arg("postgres").arg(&cluster.root), "chown")?;
        }
        cluster.create_data_dir()?;
        let initial_conf = fs::read_to_string(cluster.data.join("postgresql.conf"))?;
        cluster.plugin_allowlist = knows_setting(&cluster.bin_dir, "output_plugin_libraries");
        fs::write(cluster.data.join("pg_hba.conf"), cluster.hba_conf())?;

        // Another process may take the port between our probe and the server's bind. The server fails when it
        // can bind no address at all, and only logs it when it could bind one of 127.0.0.1 and ::1 but not the
        // other: either way, try another port.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (port, ipv6) = pick_port(opts.tcp)?;
            cluster.port = port;
            cluster.ipv6 = ipv6;
            let conf = format!("{}{}", initial_conf, cluster.our_conf(&opts));
            fs::write(cluster.data.join("postgresql.conf"), conf)?;
            let started = cluster.start_again();
            if !cluster.log_says_port_busy() {
                started?;
                break;
            }
            if started.is_ok() {
                stop_immediate(cluster.runuser.as_deref(), &cluster.bin_dir, &cluster.data, &cluster.root);
            }
            if attempt >= PORT_ATTEMPTS {
                return Err(other(format!(
                    "the server could not bind a port in {} attempts; last 30 lines of {}:\n{}",
                    attempt,
                    cluster.log.display(),
                    cluster.log_tail(30)
                )));
            }
            let _ = fs::remove_file(&cluster.log);
        }
        cluster.create_roles()?;
        Ok(cluster)
    }

    /// The server's major version (12 … 18).
    pub fn major(&self) -> u32 {
        self.major
    }

    /// The server's version as `postgres --version` prints it (`15.18`, `18.4`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether this server has wal2json: always on [`WAL2JSON_MAJOR`] (where a missing library is a failure of
    /// whatever uses it, never a reason to skip), elsewhere only when its library is installed beside the server's
    /// own modules ([`has_plugin_library`]).
    pub fn has_wal2json(&self) -> bool {
        self.major == WAL2JSON_MAJOR || has_plugin_library(&self.bin_dir, "wal2json")
    }

    /// The output plugin for tests whose subject is not the plugin (slot commands, authentication, streaming
    /// mechanics, faults): wal2json where the server has it ([`has_wal2json`](Self::has_wal2json): Debian's 15
    /// runs them as it always did), else test_decoding, which every server ships.
    pub fn test_plugin(&self) -> &'static str {
        if self.has_wal2json() {
            "wal2json"
        } else {
            "test_decoding"
        }
    }

    /// The TCP port (also the number in the Unix socket's name).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the Unix socket (the cluster directory).
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The directory the PostgreSQL programs come from.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The superuser: the OS user owning the cluster (`postgres` when run as root, else the current user).
    /// pg_hba trusts it for everything.
    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    /// Whether the server also listens on `::1` (and so `host=::1` works).
    pub fn has_ipv6(&self) -> bool {
        self.ipv6
    }

    /// `host=127.0.0.1 port=N user=U dbname=D`.
    pub fn conninfo(&self, user: &str, db: &str) -> String {
        format!("host=127.0.0.1 port={} user={} dbname={}", self.port, conninfo_value(user), conninfo_value(db))
    }

    /// Like [`conninfo`](Self::conninfo) with `host=<socket dir>`.
    pub fn socket_conninfo(&self, user: &str, db: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            conninfo_value(&self.root.to_string_lossy()),
            self.port,
            conninfo_value(user),
            conninfo_value(db)
        )
    }

    /// Runs `sql` (one statement or a script) with psql as the superuser over the Unix socket; returns its
    /// output (`-At`: unaligned, tuples only, no command tags) without the final newline, or an error
    /// carrying psql's standard error.
    pub fn psql(&self, db: &str, sql: &str) -> io::Result<String> {
        self.psql_with(&self.socket_conninfo(&self.superuser, db), None, sql)
    }

    /// Like [`psql`](Self::psql) but over any conninfo, with `PGPASSWORD` set when `password` is given (psql
    /// never prompts: `-w`).
    pub fn psql_with(&self, conninfo: &str, password: Option<&str>, sql: &str) -> io::Result<String> {
        let psql = self.bin_dir.join("psql");
        let mut cmd = if psql.is_file() { Command::new(psql) } else { Command::new("psql") };
        cmd.args(["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1", "-f", "-", "-d", conninfo]);
        clean_env(&mut cmd);
        if let Some(password) = password {
            cmd.env("PGPASSWORD", password);
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| with_context(e, "cannot run psql"))?;
        let mut stdin = child.stdin.take().ok_or_else(|| other("psql: no stdin"))?;
        let script = sql.to_owned();
        // Written from another thread so that a large script and a large output cannot block each other.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(script.as_bytes());
            let _ = stdin.write_all(b"\n");
        });
        let output = child.wait_with_output()?;
        let _ = writer.join();
        if output.status.success() {
            let mut out = String::from_utf8_lossy(&output.stdout).into_owned();
            if out.ends_with('\n') {
                out.pop();
            }
            Ok(out)
        } else {
            Err(other(format!(
                "psql ({}) failed ({}): {}",
                conninfo,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            )))
        }
    }

    /// `pg_ctl restart -m immediate`: a crash and recovery, on the same port.
    pub fn restart_immediate(&self) -> io::Result<()> {
        let out = self.pg_ctl(&["-m", "immediate", "restart"])?;
        self.check_pg_ctl(out, "restart")
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`); [`start_again`](Self::start_again) brings it back.
    pub fn stop(&self) -> io::Result<()> {
        let out = self.pg_ctl(&["-m", "fast", "stop"])?;
        self.check_pg_ctl(out, "stop")
    }

    /// Starts the server again after [`stop`](Self::stop), on the same port.
    pub fn start_again(&self) -> io::Result<()> {
        let out = self.pg_ctl(&["start"])?;
        self.check_pg_ctl(out, "start")
    }

    /// A hot standby of this cluster: stops this one (`-m fast`), copies its data directory into a new cluster
    /// with `standby.signal` on its own port, starts it, and starts this one again. The standby replays nothing
    /// (no `primary_conninfo`): it serves read-only sessions (`pg_is_in_recovery()` true, `in_hot_standby` on)
    /// with the data this cluster had when it stopped. Its Drop stops and removes it like any cluster's.
    pub fn start_standby(&self) -> io::Result<TempCluster> {
        self.stop()?;
        let standby = self.copy_as_standby();
        let again = self.start_again();
        let standby = standby?;
        again?;
        Ok(standby)
    }

    fn copy_as_standby(&self) -> io::Result<TempCluster> {
        let base = self.root.parent().ok_or_else(|| other("cluster directory has no parent"))?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let root = base.join(format!("{}{}-{}", CLUSTER_PREFIX, std::process::id(), n));
        if root.exists() {
            let _ = fs::remove_dir_all(&root);
        }
        fs::create_dir(&root)?;
        let mut standby = TempCluster {
            data: root.join("data"),
            log: root.join("postgres.log"),
            root,
            bin_dir: self.bin_dir.clone(),
            port: 0,
            superuser: self.superuser.clone(),
            runuser: self.runuser.clone(),
            ipv6: false,
            plugin_allowlist: self.plugin_allowlist,
            major: self.major,
            version: self.version.clone(),
        };
        run_checked(Command::new("cp").arg("-a").arg(&self.data).arg(&standby.data), "cp")?;
        fs::write(standby.data.join("standby.signal"), "")?;
        if standby.runuser.is_some() {
            run_checked(Command::new("chown").arg("-R").arg("postgres").arg(&standby.root), "chown")?;
        }
        let conf = fs::read_to_string(standby.data.join("postgresql.conf"))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (port, ipv6) = pick_port(true)?;
            standby.port = port;
            standby.ipv6 = ipv6;
            let listen = if ipv6 { "127.0.0.1,::1" } else { "127.0.0.1" };
            // Later lines win: the copy's own port, socket directory and listen addresses.
            let ours = format!(
                "{conf}\n# ---- pgrepl test standby ----\nlisten_addresses = {}\nport = {port}\n\
                 unix_socket_directories = {}\nhot_standby = on\n",
                conf_string(listen),
                conf_string(&standby.root.to_string_lossy())
            );
            fs::write(standby.data.join("postgresql.conf"), ours)?;
            let started = standby.start_again();
            if !standby.log_says_port_busy() {
                started?;
                return Ok(standby);
            }
            if started.is_ok() {
                stop_immediate(standby.runuser.as_deref(), &standby.bin_dir, &standby.data, &standby.root);
            }
            if attempt >= PORT_ATTEMPTS {
                return Err(other(format!("the standby could not bind a port in {attempt} attempts")));
            }
            let _ = fs::remove_file(&standby.log);
        }
    }

    /// The server log (`pg_ctl -l`).
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// A command running `program` as the cluster's owner, in the cluster directory, with a clean environment.
    fn owner_command(&self, program: &Path) -> Command {
        owner_command(self.runuser.as_deref(), program, &self.root)
    }

    fn pg_ctl(&self, action: &[&str]) -> io::Result<Output> {
        let mut cmd = self.owner_command(&self.bin_dir.join("pg_ctl"));
        cmd.arg("-D").arg(&self.data).arg("-l").arg(&self.log).args(["-w", "-t", PG_CTL_TIMEOUT_SECS]);
        cmd.args(action);
        cmd.stdin(Stdio::null()).output().map_err(|e| with_context(e, "cannot run pg_ctl"))
    }

    fn check_pg_ctl(&self, out: Output, what: &str) -> io::Result<()> {
        if out.status.success() {
            return Ok(());
        }
        let mut msg = format!(
            "pg_ctl {} failed ({}): {}{}",
            what,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = write!(msg, "\n--- last 30 lines of {} ---\n{}", self.log.display(), self.log_tail(30));
        Err(other(msg))
    }

    fn log_tail(&self, lines: usize) -> String {
        match fs::read(&self.log) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                all.get(all.len().saturating_sub(lines)..).unwrap_or_default().join("\n")
            }
            Err(e) => format!("(cannot read the log: {})", e),
        }
    }

    fn log_says_port_busy(&self) -> bool {
        let tail = self.log_tail(30);
        tail.contains("could not bind")
            || tail.contains("Address already in use")
            || tail.contains("could not create any")
    }

    /// Copies the initdb template into `data/`, or runs initdb there when that is not possible.
    fn create_data_dir(&self) -> io::Result<()> {
        if std::env::var_os("PGREPL_CLUSTER_NO_TEMPLATE").is_none() {
            if let Some(template) = self.template() {
                let copied = Command::new("cp").arg("-a").arg(&template).arg(&self.data).output();
                if matches!(&copied, Ok(out) if out.status.success()) {
                    if self.runuser.is_some() {
                        run_checked(Command::new("chown").arg("-R").arg("postgres").arg(&self.root), "chown")?;
                    }
                    return Ok(());
                }
                let _ = fs::remove_dir_all(&self.data);
            }
        }
        initdb(self.runuser.as_deref(), &self.bin_dir, self.major, &self.superuser, &self.data, &self.root)
    }

    /// The data directory of a pristine initdb for these binaries and this superuser, made once and shared by
    /// every cluster (and every later process). `None` if it cannot be made.
    fn template(&self) -> Option<PathBuf> {
        let _guard = TEMPLATE_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let base = self.root.parent()?;
        let version = Command::new(self.bin_dir.join("postgres")).arg("--version").output().ok()?;
        if !version.status.success() {
            return None;
        }
        let mut key = String::new();
        let _ = write!(
            key,
            "{}|{}|{}|{}|{}",
            TEMPLATE_FORMAT,
            self.bin_dir.display(),
            String::from_utf8_lossy(&version.stdout).trim(),
            self.superuser,
            INITDB_ARGS.join(" ")
        );
        let dir = base.join(format!("{}{:016x}", TEMPLATE_PREFIX, fnv1a(key.as_bytes())));
        let data = dir.join("data");
        if dir.join("complete").is_file() {
            return Some(data);
        }
        // Build it aside, then rename into place: other processes see a complete template or none.
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = base.join(format!("{}tmp-{}-{}", TEMPLATE_PREFIX, std::process::id(), n));
        let built = (|| -> io::Result<()> {
            fs::create_dir(&tmp)?;
            if self.runuser.is_some() {
                run_checked(Command::new("chown").arg("postgres").arg(&tmp), "chown")?;
            }
            initdb(self.runuser.as_deref(), &self.bin_dir, self.major, &self.superuser, &tmp.join("data"), &tmp)?;
            fs::write(tmp.join("complete"), key.as_bytes())?;
            fs::rename(&tmp, &dir)
        })();
        match built {
            Ok(()) => prune_templates(base, &dir, &key),
            Err(_) => {
                let _ = fs::remove_dir_all(&tmp);
            }
        }
        dir.join("complete").is_file().then_some(data)
    }

    fn our_conf(&self, opts: &ClusterOptions) -> String {
        let listen = match (opts.tcp, self.ipv6) {
            (false, _) => "",
            (true, false) => "127.0.0.1",
            (true, true) => "127.0.0.1,::1",
        };
        let mut conf = String::from("\n# ---- pgrepl test cluster ----\n");
        // synchronous_commit stays on: with fsync off a commit's flush costs nothing, and an asynchronous
        // commit would reach logical decoding (which reads only flushed WAL) up to ~0.6 s late.
        let settings: [(&str, String); 14] = [
            ("listen_addresses", conf_string(listen)),
            ("port", self.port.to_string()),
            ("unix_socket_directories", conf_string(&self.root.to_string_lossy())),
            ("wal_level", "logical".into()),
            ("max_replication_slots", "20".into()),
            ("max_wal_senders", "20".into()),
            ("wal_sender_timeout", format!("'{}ms'", opts.wal_sender_timeout.as_millis())),
            ("fsync", "off".into()),
            ("full_page_writes", "off".into()),
            ("shared_buffers", "'32MB'".into()),
            ("logging_collector", "off".into()),
            ("log_min_messages", "warning".into()),
            ("max_connections", "100".into()),
            ("password_encryption", "'scram-sha-256'".into()),
        ];
        for (name, value) in settings {
            let _ = writeln!(conf, "{} = {}", name, value);
        }
        if self.plugin_allowlist {
            // Since 15.19 only listed libraries may be output plugins (default: pgoutput, test_decoding).
            let _ = writeln!(conf, "output_plugin_libraries = 'pgoutput, test_decoding, wal2json'");
        }
        for line in &opts.extra_conf {
            let _ = writeln!(conf, "{}", line);
        }
        conf
    }

    fn hba_conf(&self) -> String {
        let mut hba = String::from("# pgrepl test cluster: written by pgrepl-testkit\n");
        let su = hba_name(&self.superuser);
        let mut lines = vec![(su.clone(), "trust")];
        lines.extend(USERS.iter().map(|&(user, _, method)| (hba_name(user), method)));
        for (user, method) in lines {
            for db in ["all", "replication"] {
                let _ = writeln!(hba, "local {:<12} {:<16} {:<16} {}", db, user, "", method);
                for addr in ["127.0.0.1/32", "::1/128"] {
                    let _ = writeln!(hba, "host  {:<12} {:<16} {:<16} {}", db, user, addr, method);
                }
            }
        }
        hba
    }

    fn create_roles(&self) -> io::Result<()> {
        let mut sql = String::new();
        for &(user, password, method) in USERS {
            let encryption = if method == "md5" { "md5" } else { "scram-sha-256" };
            let _ = writeln!(sql, "SET password_encryption = '{}';", encryption);
            let _ = write!(sql, "CREATE ROLE {} LOGIN REPLICATION CREATEDB", user);
            if !password.is_empty() {
                let _ = write!(sql, " PASSWORD '{}'", password.replace('\'', "''"));
            }
            sql.push_str(";\n");
            let _ = writeln!(sql, "GRANT CREATE ON DATABASE postgres TO {};", user);
            let _ = writeln!(sql, "GRANT CREATE ON SCHEMA public TO {};", user);
            let _ = writeln!(sql, "GRANT pg_monitor TO {};", user);
        }
        sql.push_str("RESET password_encryption;\nCREATE DATABASE other;\n");
        self.psql("postgres", &sql).map(drop)
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        stop_immediate(self.runuser.as_deref(), &self.bin_dir, &self.data, &self.root);
        if std::env::var_os("PGREPL_KEEP_CLUSTER").is_some() {
            eprintln!("pgrepl cluster kept: {} (log: {})", self.root.display(), self.log.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The server binaries the harness uses when [`ClusterOptions::bin_dir`] is not set: `$PG_BIN_DIR`, else
/// `/usr/lib/postgresql/15/bin`, else `pg_config --bindir`.
pub fn default_bin_dir() -> io::Result<PathBuf> {
    resolve_bin_dir(None)
}

/// The major version of the default server ([`default_bin_dir`]), to choose settings before a cluster starts
/// (a `postgresql.conf` line the server does not know stops it from starting).
pub fn default_major() -> io::Result<u32> {
    server_version(&default_bin_dir()?).map(|(major, _)| major)
}

/// Whether output plugin `name`'s shared library is installed beside the modules of the server in `bin_dir`:
/// `<bin_dir>/../lib/postgresql/<name>.so` (upstream's layout, npm's builds) or `<bin_dir>/../lib/<name>.so`
/// (Debian's).
pub fn has_plugin_library(bin_dir: &Path, name: &str) -> bool {
    let Some(prefix) = bin_dir.parent() else { return false };
    let file = format!("{name}.so");
    [prefix.join("lib").join("postgresql").join(&file), prefix.join("lib").join(&file)].iter().any(|p| p.is_file())
}

/// Whether a suite about wal2json runs against the default server ([`default_bin_dir`]): yes on
/// [`WAL2JSON_MAJOR`] (never skipped there: a missing wal2json fails the suite) and wherever the library is
/// installed; otherwise it prints one line, `<test>: skipped: wal2json is packaged for PostgreSQL 15 only
/// (server 12.22)`, and the caller returns. When the server cannot be found the answer is yes, so that the
/// suite fails on that.
///
/// ```no_run
/// if !pgrepl_testkit::wal2json_suite() {
///     return;
/// }
/// ```
pub fn wal2json_suite() -> bool {
    let Ok(bin_dir) = default_bin_dir() else { return true };
    match server_version(&bin_dir) {
        Ok((major, version)) if major != WAL2JSON_MAJOR && !has_plugin_library(&bin_dir, "wal2json") => {
            skip(&format!("{WAL2JSON_SKIP} (server {version})"));
            false
        }
        _ => true,
    }
}

/// Prints `<test name>: <reason>` on standard error, bypassing libtest's output capture (which only takes
/// `print!`/`eprint!`), so that every run shows which tests skipped (`scripts/matrix.sh` counts these lines).
pub fn skip(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    let _ = writeln!(io::stderr(), "{test}: {reason}");
}

/// The major version and version number of the server in `bin_dir` (`postgres --version`: "postgres (PostgreSQL)
/// 15.18 (Debian 15.18-0+deb12u1)" → 15, "15.18").
pub fn server_version(bin_dir: &Path) -> io::Result<(u32, String)> {
    let out = Command::new(bin_dir.join("postgres")).arg("--version").stdin(Stdio::null()).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    parse_version(&text)
        .ok_or_else(|| other(format!("{}/postgres --version: unexpected {:?}", bin_dir.display(), text)))
}

fn parse_version(text: &str) -> Option<(u32, String)> {
    let rest = text.split("(PostgreSQL)").nth(1)?.trim_start();
    let number: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let major = number.split('.').next()?.parse().ok()?;
    Some((major, number))
}

/// Whether the server knows the setting `name` (`postgres --describe-config`, which also works as root).
fn knows_setting(bin_dir: &Path, name: &str) -> bool {
    let Ok(out) = Command::new(bin_dir.join("postgres")).arg("--describe-config").stdin(Stdio::null()).output() else {
        return false;
    };
    out.status.success() && String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split('\t').next() == Some(name))
}

/// Removes the templates that `current` (just made) replaces: those of the same binaries and superuser but
/// another server version (a package upgrade) or template format.
fn prune_templates(base: &Path, current: &Path, key: &str) {
    let same_setup = |other: &str| {
        let (a, b): (Vec<&str>, Vec<&str>) = (key.split('|').collect(), other.split('|').collect());
        a.len() == b.len() && a.get(1) == b.get(1) && a.get(3) == b.get(3)
    };
    let Ok(entries) = fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path == current
            || !name.starts_with(TEMPLATE_PREFIX)
            || name.starts_with(&format!("{}tmp-", TEMPLATE_PREFIX))
        {
            continue;
        }
        match fs::read_to_string(path.join("complete")) {
            Ok(other) if other != key && same_setup(&other) => {
                let _ = fs::remove_dir_all(&path);
            }
            _ => {}
        }
    }
}

/// Stops the server of `data` if one runs (`pg_ctl stop -m immediate`, then `pg_ctl kill KILL` if that fails).
fn stop_immediate(runuser: Option<&Path>, bin_dir: &Path, data: &Path, cwd: &Path) {
    let pid_file = data.join("postmaster.pid");
    if !pid_file.exists() {
        return;
    }
    let mut cmd = owner_command(runuser, &bin_dir.join("pg_ctl"), cwd);
    cmd.arg("-D").arg(data).args(["-w", "-t", "30", "-m", "immediate", "stop"]);
    let stopped = cmd.stdin(Stdio::null()).output().map(|o| o.status.success()).unwrap_or(false);
    if !stopped {
        let pid = fs::read_to_string(&pid_file).ok().and_then(|s| s.lines().next().map(|l| l.trim().to_owned()));
        if let Some(pid) = pid.filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
            let mut kill = owner_command(runuser, &bin_dir.join("pg_ctl"), cwd);
            let _ = kill.args(["kill", "KILL", &pid]).stdin(Stdio::null()).output();
        }
    }
}

fn initdb(
    runuser: Option<&Path>,
    bin_dir: &Path,
    major: u32,
    superuser: &str,
    data: &Path,
    cwd: &Path,
) -> io::Result<()> {
    let mut cmd = owner_command(runuser, &bin_dir.join("initdb"), cwd);
    cmd.arg("-D").arg(data).arg("-U").arg(superuser).args(INITDB_ARGS);
    if major >= 14 {
        cmd.arg("--no-instructions");
    }
    run_checked(&mut cmd, "initdb")
}

/// `program` as the cluster's owner: through `runuser -u postgres --` when running as root.
fn owner_command(runuser: Option<&Path>, program: &Path, cwd: &Path) -> Command {
    let mut cmd = match runuser {
        Some(runuser) => {
            let mut cmd = Command::new(runuser);
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    };
    // A cwd the owner can enter (ours may be /root/...).
    cmd.current_dir(cwd);
    clean_env(&mut cmd);
    cmd
}

/// No `PG*` variable reaches a child (PGHOST, PGDATA, PGPASSWORD… would change what it does); C locale.
fn clean_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
    cmd.env("LC_ALL", "C");
}

fn run_checked(cmd: &mut Command, what: &str) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| with_context(e, &format!("cannot run {}", what)))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(other(format!(
            "{} failed ({}): {}{}",
            what,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn resolve_bin_dir(explicit: Option<&Path>) -> io::Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("PG_BIN_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let default = Path::new(DEFAULT_BIN_DIR);
    if default.join("initdb").is_file() {
        return Ok(default.to_path_buf());
    }
    match Command::new("pg_config").arg("--bindir").output() {
        Ok(out) if out.status.success() => Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_owned())),
        _ => Err(other(format!(
            "no PostgreSQL server binaries: {} is missing and pg_config --bindir failed \
             (run scripts/install-deps.sh, or set PG_BIN_DIR)",
            DEFAULT_BIN_DIR
        ))),
    }
}

/// The effective uid, from `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid() -> io::Result<u32> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
        .ok_or_else(|| other("no Uid line in /proc/self/status"))
}

/// A user's uid from `/etc/passwd`, else `id -u`.
fn user_uid(name: &str) -> Option<u32> {
    if let Ok(passwd) = fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let mut fields = line.split(':');
            if fields.next() == Some(name) {
                return fields.nth(1).and_then(|uid| uid.parse().ok());
            }
        }
    }
    let out = Command::new("id").args(["-u", name]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn current_user_name() -> io::Result<String> {
    if let Ok(out) = Command::new("id").arg("-un").output() {
        let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !name.is_empty() {
            return Ok(name);
        }
    }
    for var in ["USER", "LOGNAME"] {
        if let Some(name) = std::env::var(var).ok().filter(|n| !n.is_empty()) {
            return Ok(name);
        }
    }
    Err(other("cannot tell the current user's name (`id -un` failed, USER unset)"))
}

fn find_runuser() -> io::Result<PathBuf> {
    let candidates = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser", "/bin/runuser"];
    if let Some(found) = candidates.iter().map(Path::new).find(|p| p.is_file()) {
        return Ok(found.to_path_buf());
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(found) = std::env::split_paths(&path).map(|d| d.join("runuser")).find(|p| p.is_file()) {
            return Ok(found);
        }
    }
    Err(other("running as root needs `runuser` (util-linux) to run PostgreSQL as the postgres user"))
}

/// Where cluster directories go: `$PGREPL_CLUSTER_DIR` if set; else `/dev/shm` when `TMPDIR` is unset and
/// that tmpfs has at least 1 GiB free (a start there takes ~0.25 s instead of ~1.3 s on a disk); else the
/// system temp dir. Falls back to `/tmp` when the `postgres` user could not reach the chosen directory (as
/// root) or a socket path under it would be too long.
fn temp_base(as_root: bool) -> PathBuf {
    let base = if let Some(dir) = std::env::var_os("PGREPL_CLUSTER_DIR").filter(|d| !d.is_empty()) {
        PathBuf::from(dir)
    } else if std::env::var_os("TMPDIR").is_none() && shm_has_room() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    // "/pgrepl-cluster-<pid>-<n>/.s.PGSQL.<port>" is at most ~50 bytes.
    let short_enough = base.as_os_str().len() + 50 <= MAX_SOCKET_PATH;
    let reachable =
        !as_root || base.ancestors().all(|dir| fs::metadata(dir).map(|m| m.mode() & 0o001 != 0).unwrap_or(false));
    if short_enough && reachable && base.is_dir() {
        base
    } else {
        PathBuf::from("/tmp")
    }
}

/// Whether `/dev/shm` is a world-writable directory with at least 1 GiB free (`df -Pk`).
fn shm_has_room() -> bool {
    let shm = Path::new("/dev/shm");
    if !fs::metadata(shm).map(|m| m.is_dir() && m.mode() & 0o1777 == 0o1777).unwrap_or(false) {
        return false;
    }
    let Ok(out) = Command::new("df").arg("-Pk").arg(shm).output() else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let free_kib = text.lines().nth(1).and_then(|l| l.split_whitespace().nth(3)).and_then(|f| f.parse::<u64>().ok());
    out.status.success() && free_kib.is_some_and(|kib| kib >= 1 << 20)
}

/// Stops and removes the cluster directories (and half-built templates) of processes that are gone.
fn cleanup_stale(base: &Path, bin_dir: &Path, runuser: Option<&Path>, owner_uid: u32) {
    let Ok(entries) = fs::read_dir(base) else { return };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rest = name.strip_prefix(CLUSTER_PREFIX).or_else(|| name.strip_prefix(&format!("{}tmp-", TEMPLATE_PREFIX)));
        let Some(pid) = rest.and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let path = entry.path();
        // Only directories this process's kind of cluster owner made.
        if fs::symlink_metadata(&path).map(|m| !m.is_dir() || m.uid() != owner_uid).unwrap_or(true) {
            continue;
        }
        stop_immediate(runuser, bin_dir, &path.join("data"), &path);
        let _ = fs::remove_dir_all(&path);
    }
}

/// A TCP port that is free on 127.0.0.1 (and on ::1, where the machine has it), and whether ::1 is usable.
fn pick_port(tcp: bool) -> io::Result<(u16, bool)> {
    for _ in 0..20 {
        let v4 = TcpListener::bind("127.0.0.1:0")?;
        let port = v4.local_addr()?.port();
        if !tcp {
            return Ok((port, false));
        }
        match TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
            Ok(_) => return Ok((port, true)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            // No IPv6 loopback on this machine.
            Err(_) => return Ok((port, false)),
        }
    }
    Err(other("no free TCP port found"))
}

/// A `postgresql.conf` string literal.
fn conf_string(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A conninfo value, quoted when it has to be.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A user name as pg_hba.conf wants it (double-quoted unless plain).
fn hba_name(name: &str) -> String {
    if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty() {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// FNV-1a: a hash that stays the same across Rust releases (it names template directories).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {}", what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(conninfo_value("u_md5"), "u_md5");
        assert_eq!(conninfo_value("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(conninfo_value("it's"), "'it\\'s'");
        assert_eq!(conninfo_value(""), "''");
        assert_eq!(conf_string("/tmp/x'y"), "'/tmp/x''y'");
        assert_eq!(hba_name("postgres"), "postgres");
        assert_eq!(hba_name("a-b"), "\"a-b\"");
    }

    #[test]
    fn hba_covers_every_user_both_ways() {
        let cluster = TempCluster {
            root: PathBuf::from("/nonexistent"),
            data: PathBuf::from("/nonexistent/data"),
            log: PathBuf::from("/nonexistent/log"),
            bin_dir: PathBuf::from("/nonexistent/bin"),
            port: 5432,
            superuser: "postgres".into(),
            runuser: None,
            ipv6: false,
            plugin_allowlist: false,
            major: 15,
            version: "15.18".into(),
        };
        let hba = cluster.hba_conf();
        for &(user, _, method) in USERS.iter().chain(&[("postgres", "", "trust")]) {
            for db in ["all", "replication"] {
                let count = hba
                    .lines()
                    .filter(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        f.get(1) == Some(&db) && f.get(2) == Some(&user) && f.last() == Some(&method)
                    })
                    .count();
                assert_eq!(count, 3, "{} {} {}", user, db, method);
            }
        }
    }

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some((15, "15.18".to_string()))
        );
        assert_eq!(parse_version("postgres (PostgreSQL) 18.4\n"), Some((18, "18.4".to_string())));
        assert_eq!(parse_version("postgres (PostgreSQL) 12.22\n"), Some((12, "12.22".to_string())));
        assert_eq!(parse_version("nonsense"), None);
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
