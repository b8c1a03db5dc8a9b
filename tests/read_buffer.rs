//! The stream's read buffer is reused, not allocated afresh per read, when the consumer keeps up: on a
//! current-thread runtime a bulk stream of tens of megabytes needs a handful of buffer-sized allocations.
//! Counted with a global allocator that counts, on the test's own thread only, allocations of at least 64 KiB
//! (the read buffer grows by that much; nothing else on the path allocates that much at once).
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

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use pgrepl::client::Client;
use pgrepl::config::Config;
use pgrepl::proto::commands::{CreateSlot, SnapshotAction};
use pgrepl::stream::StreamConfig;
use pgrepl::Lsn;
use pgrepl_testkit::{ClusterOptions, TempCluster};

#[path = "common/plugins.rs"]
mod plugins;
use plugins::Plugin;

struct Counting;

const LARGE: usize = 64 * 1024;

thread_local! {
    static LARGE_ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    if size >= LARGE {
        let _ = LARGE_ALLOCS.try_with(|a| a.set(a.get() + 1));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn large_allocs() -> usize {
    LARGE_ALLOCS.with(Cell::get)
}

#[tokio::test(flavor = "current_thread")]
async fn a_bulk_stream_reuses_its_read_buffer() {
    let c = TempCluster::start(ClusterOptions::default()).expect("start cluster");
    let p = Plugin::of(&c);
    c.psql("postgres", "CREATE TABLE bulk(id int PRIMARY KEY, pad text)").unwrap();
    let cfg = Config::parse(&format!("{} replication=database", c.conninfo(c.superuser(), "postgres"))).unwrap();
    let mut client = Client::connect(&cfg).await.expect("connect");
    client
        .create_replication_slot(&CreateSlot {
            slot: "bulk".into(),
            plugin: p.name().into(),
            temporary: false,
            snapshot: SnapshotAction::NoExport,
            two_phase: false,
        })
        .await
        .expect("create slot");
    // 60,000 rows of ~500 bytes of JSON each, in 20 transactions: ~30 MB of payload
    for b in 0..20 {
        c.psql(
            "postgres",
            &format!(
                "INSERT INTO bulk SELECT g, repeat(md5(g::text), 14) FROM generate_series({}, {}) g",
                b * 3000 + 1,
                (b + 1) * 3000
            ),
        )
        .unwrap();
    }
    let mut stream =
        client.start_replication("bulk", p.rules(), Lsn::INVALID, &p.options(), StreamConfig::default()).await.unwrap();
    let before = large_allocs();
    let (mut inserts, mut commits, mut bytes) = (0usize, 0usize, 0usize);
    while commits < 20 {
        let m = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("timed out")
            .unwrap()
            .expect("stream ended");
        bytes += m.data.len();
        match p.action(&m.data) {
            b'I' => inserts += 1,
            b'C' => {
                commits += 1;
                stream.ack(m.wal_end);
            }
            _ => {}
        }
        // the payload is dropped here, as a consumer that keeps up drops it
    }
    let large = large_allocs() - before;
    eprintln!("{large} allocations of 64 KiB or more for {bytes} bytes streamed");
    stream.stop().await.unwrap().close().await.unwrap();
    assert_eq!(inserts, 60_000);
    assert!(bytes > 25_000_000, "{bytes} bytes streamed");
    // A fresh block per read would be one per 64 KiB or less: ~450 here.
    assert!(large <= 16, "{large} allocations of 64 KiB or more for {bytes} bytes streamed");
}
