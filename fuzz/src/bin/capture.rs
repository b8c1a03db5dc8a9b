//! Records real server bytes for the seed corpora, and writes the seeds.
//!
//! `cargo run --release --features capture --bin capture -- <corpus dir>` (from fuzz/): starts a throwaway
//! PostgreSQL (pgrepl's `TempCluster`), puts a recording TCP proxy in front of it and runs the server's own
//! `pg_recvlogical` through the proxy with each login role (trust, cleartext, MD5, SCRAM) and wal2json formats
//! 1 and 2. Every byte the server sends is kept; from those transcripts it writes seeds for backend_framing,
//! copydata, replication_stream and startup_auth. The wal2json targets are seeded from tests/data/wal2json.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pgrepl_testkit::{ClusterOptions, TempCluster};

/// Forward one connection to `port`, recording what the server sends.
fn proxy(listener: TcpListener, port: u16) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let Ok((client, _)) = listener.accept() else { return Vec::new() };
        let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else { return Vec::new() };
        let (mut c_r, mut s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let up = thread::spawn(move || {
            let mut b = [0u8; 8192];
            while let Ok(n) = c_r.read(&mut b) {
                if n == 0 || s_w.write_all(&b[..n]).is_err() {
                    break;
                }
            }
            let _ = s_w.shutdown(Shutdown::Write);
        });
        let rec = Arc::new(Mutex::new(Vec::new()));
        let (mut s_r, mut c_w) = (server, client);
        let mut b = [0u8; 8192];
        while let Ok(n) = s_r.read(&mut b) {
            if n == 0 || c_w.write_all(&b[..n]).is_err() {
                break;
            }
            rec.lock().unwrap().extend_from_slice(&b[..n]);
        }
        let _ = c_w.shutdown(Shutdown::Write);
        let _ = up.join();
        let v = rec.lock().unwrap().clone();
        v
    })
}

fn capture(cluster: &TempCluster, user: &str, password: &str, slot: &str, opts: &[&str], endpos: &str) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let pport = listener.local_addr().unwrap().port();
    let rec = proxy(listener, cluster.port());
    let mut cmd = Command::new(cluster.bin_dir().join("pg_recvlogical"));
    cmd.args(["-h", "127.0.0.1", "-p", &pport.to_string(), "-U", user, "-d", "postgres", "-S", slot])
        .args(["--start", "-f", "-", "-s", "1", "-E", endpos, "--no-loop"])
        .env_clear()
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for o in opts {
        cmd.args(["-o", o]);
    }
    let mut child = cmd.spawn().expect("pg_recvlogical");
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    rec.join().unwrap()
}

/// Split a backend byte stream into frames (tag, whole frame bytes).
fn frames(b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 5 <= b.len() {
        let len = u32::from_be_bytes(b[i + 1..i + 5].try_into().unwrap()) as usize;
        if i + 1 + len > b.len() {
            break;
        }
        out.push((b[i], &b[i..i + 1 + len]));
        i += 1 + len;
    }
    out
}

fn write(dir: &Path, target: &str, name: &str, data: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), data).unwrap();
}

fn main() {
    let out: PathBuf = std::env::args().nth(1).unwrap_or_else(|| "corpus".into()).into();
    let raw_dir = std::env::args().nth(2).map(PathBuf::from);
    let cluster = TempCluster::start(ClusterOptions::default()).expect("cluster");
    cluster
        .psql(
            "postgres",
            "CREATE TABLE t (id int PRIMARY KEY, v text, n numeric, b bool, j jsonb);
             GRANT ALL ON t TO PUBLIC;
             SELECT pg_create_logical_replication_slot('cap' || g, 'wal2json') FROM generate_series(0, 3) g;",
        )
        .unwrap();
    cluster
        .psql(
            "postgres",
            "INSERT INTO t VALUES (1, 'one', 1.5, true, '{\"a\":1}'), (2, 'two \"q\" \\ é', -2e10, false, null);
             BEGIN; UPDATE t SET v = 'uno' WHERE id = 1; DELETE FROM t WHERE id = 2; COMMIT;
             SELECT pg_logical_emit_message(true, 'pfx', 'hello');
             SELECT pg_logical_emit_message(false, 'pfx', 'non-transactional');
             TRUNCATE t;
             INSERT INTO t SELECT g, repeat('x', g * 10), g, g % 2 = 0, null FROM generate_series(1, 40) g;",
        )
        .unwrap();
    let endpos = cluster.psql("postgres", "SELECT pg_current_wal_lsn()").unwrap();
    let sessions: &[(&str, &str, &str, &[&str])] = &[
        ("scram-v2", "u_scram", "pw_scram", &["format-version=2", "include-xids=1", "include-lsn=1"]),
        ("md5-v1", "u_md5", "pw_md5", &["format-version=1", "include-xids=1"]),
        ("password-v1chunks", "u_password", "pw_cleartext", &["format-version=1", "write-in-chunks=1"]),
        ("trust-v2", "u_trust", "", &["format-version=2", "include-types=0"]),
    ];
    for (i, (name, user, pw, opts)) in sessions.iter().enumerate() {
        let bytes = capture(&cluster, user, pw, &format!("cap{i}"), opts, &endpos);
        eprintln!("{name}: {} bytes from the server", bytes.len());
        if let Some(raw) = &raw_dir {
            std::fs::create_dir_all(raw).unwrap();
            std::fs::write(raw.join(format!("{name}.bin")), &bytes).unwrap();
        }
        let fr = frames(&bytes);
        // backend_framing: flags 0x03 (three chunk sizes), sizes, then the transcript (capped)
        let capped = &bytes[..bytes.len().min(48 * 1024)];
        write(&out, "backend_framing", &format!("{name}-whole"), &[&[0x00][..], capped].concat());
        write(&out, "backend_framing", &format!("{name}-split"), &[&[0x03, 0, 6, 200][..], capped].concat());
        // copydata: each distinct payload kind, a few of each
        let mut n = 0;
        for (tag, f) in &fr {
            if *tag == b'd' && n < 12 {
                write(&out, "copydata", &format!("{name}-{n}"), &f[5..f.len().min(2048)]);
                n += 1;
            }
        }
        // replication_stream: flags (idle advance, wal2json classifier), start 0, end = far, control, stream
        let mut rs = vec![0x09];
        rs.extend_from_slice(&0u64.to_be_bytes());
        rs.extend_from_slice(&u64::MAX.to_be_bytes());
        let control = [0x0d, 0x6a, 0x0c, 0x9b, 0xc3, 0xa8, 0x7d, 0xe0];
        rs.push(control.len() as u8);
        rs.extend_from_slice(&control);
        rs.extend_from_slice(capped);
        write(&out, "replication_stream", name, &rs);
        // startup_auth: raw server chunks up to the first ReadyForQuery (op 0 = raw bytes)
        let mut sa = vec![0x00];
        for (tag, f) in &fr {
            for c in f.chunks(255) {
                sa.push(0);
                sa.push(c.len() as u8);
                sa.extend_from_slice(c);
            }
            if *tag == b'Z' {
                break;
            }
        }
        write(&out, "startup_auth", name, &sa);
    }
}
