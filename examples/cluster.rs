//! A throwaway PostgreSQL 15 cluster (with wal2json) for shell scripts: `scripts/bench-e2e.sh` uses it.
//!
//! ```text
//! cargo run --release --example cluster [-- -c 'name = value' ...]
//! ```
//!
//! Starts a [`TempCluster`], prints one line `port=N superuser=U socket_dir=D data_dir=P bin_dir=B`, then waits
//! for end of file on standard input and stops the cluster (removing its directory). Extra `postgresql.conf`
//! lines come from `-c` arguments. A `postgres` login role (superuser, replication) exists whatever user runs
//! this, so that scripts can always connect with `-U postgres` over 127.0.0.1.

use std::io::{Read, Write};
use std::time::Duration;

use pgrepl_testkit::{ClusterOptions, TempCluster};

fn main() {
    let mut opts = ClusterOptions { wal_sender_timeout: Duration::from_secs(60), ..Default::default() };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("-c", Some(line)) => opts.extra_conf.push(line),
            _ => {
                eprintln!("usage: cluster [-c 'name = value']...");
                std::process::exit(2);
            }
        }
    }
    let cluster = match TempCluster::start(opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cluster: cannot start: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = ensure_postgres_role(&cluster) {
        eprintln!("cluster: cannot set up the postgres role: {e}");
        std::process::exit(1);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "port={} superuser={} socket_dir={} data_dir={} bin_dir={}",
        cluster.port(),
        cluster.superuser(),
        cluster.socket_dir().display(),
        cluster.data_dir().display(),
        cluster.bin_dir().display()
    );
    let _ = out.flush();
    drop(out);
    // Until the script closes our standard input (or exits).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(cluster);
}

/// As root the superuser already is `postgres`; otherwise create that role and let it in over TCP.
fn ensure_postgres_role(cluster: &TempCluster) -> std::io::Result<()> {
    if cluster.superuser() == "postgres" {
        return Ok(());
    }
    cluster.psql("postgres", "CREATE ROLE postgres SUPERUSER LOGIN REPLICATION")?;
    let hba = cluster.data_dir().join("pg_hba.conf");
    let mut text = std::fs::read_to_string(&hba)?;
    text.insert_str(
        0,
        "host all postgres 127.0.0.1/32 trust\nhost replication postgres 127.0.0.1/32 trust\n\
         local all postgres trust\nlocal replication postgres trust\n",
    );
    std::fs::write(&hba, text)?;
    cluster.psql("postgres", "SELECT pg_reload_conf()")?;
    Ok(())
}
