//! Peak memory of a `ChangeStream<Pgoutput>` consumer while one very large transaction is streamed (pgoutput
//! `streaming on`): the server sends it in segments before it commits, the stream holds them (in memory up to
//! `hold_memory`, then in a temporary file) and delivers the transaction whole at its commit.
//!
//! ```sh
//! cargo run --release --example streamed_rss -- [ROWS] [HOLD_MEMORY_MIB]   # default 1000000 rows, 64 MiB
//! ```
//!
//! Starts a throwaway cluster (testkit; `PG_BIN_DIR` for another server build, 14 or later), inserts ROWS rows
//! of ~100 bytes in one transaction with `logical_decoding_work_mem = 64kB`, consumes it, and prints the
//! transaction's payload bytes, what was spilled, wall time and the process's peak RSS (`VmHWM`), once with
//! the given budget and then for comparison with everything held in memory (budget = unlimited), each in a
//! fresh child process so the peaks do not mix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use pgrepl::changes::{ChangeStream, ChangeStreamConfig};
use pgrepl::event::Event;
use pgrepl::plugin::Pgoutput;
use pgrepl_testkit::{ClusterOptions, TempCluster};

fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let budget_mib: Option<usize> = args.get(2).map(|s| s.parse().expect("HOLD_MEMORY_MIB"));
    if std::env::var_os("STREAMED_RSS_CHILD").is_none() {
        // the parent: one child per budget
        let exe = std::env::current_exe().unwrap();
        for b in [budget_mib.unwrap_or(64).to_string(), "0".to_string()] {
            let st = std::process::Command::new(&exe)
                .args([rows.to_string(), b])
                .env("STREAMED_RSS_CHILD", "1")
                .status()
                .unwrap();
            assert!(st.success());
        }
        return;
    }
    let budget = match budget_mib {
        Some(0) | None => usize::MAX,
        Some(m) => m << 20,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(run(rows, budget));
}

async fn run(rows: u64, budget: usize) {
    let cluster = TempCluster::start(ClusterOptions {
        extra_conf: vec!["logical_decoding_work_mem = '64kB'".into()],
        wal_sender_timeout: Duration::from_secs(60),
        ..ClusterOptions::default()
    })
    .unwrap();
    cluster.psql("postgres", "CREATE TABLE t(id int PRIMARY KEY, v text); CREATE PUBLICATION p FOR TABLE t;").unwrap();
    let conninfo = format!("{} replication=database", cluster.conninfo(cluster.superuser(), "postgres"));
    let plugin = Pgoutput::new(["p"]).proto_version(2).streaming("on");
    let mut cfg = ChangeStreamConfig::with_plugin(&conninfo, "s", plugin).unwrap().create_slot(true);
    cfg.hold_memory = budget;
    let mut cs = ChangeStream::connect(cfg).await.unwrap();
    let base = vm_hwm_kib();
    cluster
        .psql("postgres", &format!("INSERT INTO t SELECT g, repeat('x', 96) FROM generate_series(1, {rows}) g"))
        .unwrap();
    let t0 = Instant::now();
    let (mut inserts, mut bytes) = (0u64, 0u64);
    loop {
        let mut p = cs.next().await.unwrap().expect("stream ended");
        bytes += p.bytes().len() as u64;
        let mut commit = false;
        p.decode_each(|ev| match ev {
            Event::Insert(_) => inserts += 1,
            Event::Commit(_) => commit = true,
            _ => {}
        })
        .unwrap();
        p.ack();
        if commit && inserts == rows {
            break;
        }
    }
    let wall = t0.elapsed();
    let (_, _, (files, spill_bytes)) = cs.held();
    cs.stop().await.unwrap();
    let budget_s = if budget == usize::MAX { "unlimited".to_string() } else { format!("{} MiB", budget >> 20) };
    println!(
        "rows {rows}, payload {:.1} MB, hold_memory {budget_s}: spill files {files}, spilled {:.1} MB, \
         delivery {:.2} s after the INSERT returned, peak RSS {:.1} MiB (before the transaction {:.1} MiB)",
        bytes as f64 / 1e6,
        spill_bytes as f64 / 1e6,
        wall.as_secs_f64(),
        vm_hwm_kib() as f64 / 1024.0,
        base as f64 / 1024.0,
    );
}
