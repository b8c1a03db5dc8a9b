//! `pgrepl demo`: start a throwaway PostgreSQL (unless `-d` names a server), create a table and a temporary
//! wal2json slot, write a small live workload, stream the changes to stdout, and clean everything up.

use std::time::Duration;

use pgrepl::client::Client;
use pgrepl::config::Config;
use pgrepl::proto::commands::{CreateSlot, SnapshotAction};
use pgrepl::stream::StreamConfig;
use pgrepl::{Error, Lsn};
use pgrepl_testkit::{ClusterOptions, TempCluster};

use crate::args::{self, Opt};
use crate::output::{OutputFormat, Writer};
use crate::signals::{Signal, Signals};

const HELP: &str = "\
pgrepl demo: stream a live workload from a throwaway PostgreSQL cluster

Usage:
  pgrepl demo [--rows N] [--output raw|json] [-d CONNINFO]

  -d, --dbname=CONNINFO  use this server instead of starting a throwaway one (needs wal2json and
                         wal_level=logical; the demo creates and drops table pgrepl_demo)
      --rows=N           transactions in the workload (default 20)
      --output=FORMAT    raw wal2json format-2 payloads (default) or json (pgrepl's re-encoding)
";

const SPEC: &[Opt] = &[
    Opt { short: Some('d'), long: "dbname", value: true },
    Opt { short: None, long: "rows", value: true },
    Opt { short: None, long: "output", value: true },
    Opt { short: Some('?'), long: "help", value: false },
];

pub async fn run(argv: &[String], signals: Signals) -> i32 {
    let p = match args::parse(argv, SPEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pgrepl demo: {e}\n{HELP}");
            return 1;
        }
    };
    if p.has("help") {
        print!("{HELP}");
        return 0;
    }
    let rows: u32 = match p.value("rows").unwrap_or("20").parse() {
        Ok(n) => n,
        Err(_) => {
            eprintln!("pgrepl demo: invalid --rows");
            return 1;
        }
    };
    let format = match p.value("output").unwrap_or("raw") {
        "json" => OutputFormat::Json,
        _ => OutputFormat::Raw,
    };
    match demo(p.value("dbname").map(str::to_string), rows, format, signals).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("pgrepl demo: error: {e}");
            1
        }
    }
}

async fn demo(server: Option<String>, rows: u32, format: OutputFormat, mut signals: Signals) -> Result<(), Error> {
    let mut _cluster = None;
    let base = match server {
        Some(s) => s,
        None => {
            eprintln!("pgrepl demo: starting a throwaway PostgreSQL cluster…");
            let c = tokio::task::spawn_blocking(|| TempCluster::start(ClusterOptions::default()))
                .await
                .map_err(|e| Error::closed(e.to_string()))?
                .map_err(|e| Error::io("could not start a throwaway cluster (run scripts/install-deps.sh)", e))?;
            eprintln!("pgrepl demo: cluster at {} (port {})", c.data_dir().display(), c.port());
            let s = c.socket_conninfo(c.superuser(), "postgres");
            _cluster = Some(c);
            s
        }
    };
    let sql_cfg = Config::from_str_with_std_env(&base)?;
    let mut sql = Client::connect(&sql_cfg).await?;
    sql.simple_query(
        "DROP TABLE IF EXISTS pgrepl_demo; \
         CREATE TABLE pgrepl_demo(id serial PRIMARY KEY, item text NOT NULL, qty int, price numeric(10,2), tags text[])",
    )
    .await?;

    let repl_cfg = Config::from_str_with_std_env(&format!("{base} replication=database"))?;
    let mut repl = Client::connect(&repl_cfg).await?;
    let slot = format!("pgrepl_demo_{}", std::process::id());
    let info = repl
        .create_replication_slot(&CreateSlot {
            slot: slot.clone(),
            plugin: "wal2json".into(),
            temporary: true,
            snapshot: SnapshotAction::NoExport,
            two_phase: false,
        })
        .await?;
    eprintln!("pgrepl demo: temporary slot {slot} created at {}", info.consistent_point);
    let opts: Vec<(String, Option<String>)> =
        [("format-version", "2"), ("include-xids", "1"), ("include-timestamp", "1")]
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect();
    let mut stream =
        repl.start_replication(&slot, &pgrepl::plugin::Wal2json, Lsn::INVALID, &opts, StreamConfig::default()).await?;

    // The live workload, on its own connection: inserts, updates, deletes, then a marker message.
    let workload = tokio::spawn(async move {
        for i in 1..=rows {
            let q = format!(
                "BEGIN; INSERT INTO pgrepl_demo(item, qty, price, tags) VALUES ('item {i}', {i}, {i}.99, ARRAY['demo','n{i}']); \
                 UPDATE pgrepl_demo SET qty = qty + 1 WHERE id = {i}; {} COMMIT;",
                if i % 5 == 0 { format!("DELETE FROM pgrepl_demo WHERE id = {};", i - 1) } else { String::new() }
            );
            sql.simple_query(&q).await?;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        sql.simple_query("SELECT pg_logical_emit_message(true, 'pgrepl-demo', 'done')").await?;
        sql.simple_query("DROP TABLE pgrepl_demo").await?;
        sql.close().await
    });

    let mut writer = Writer::new(format);
    let mut buf = Vec::new();
    let mut seen_done = false;
    let mut count = 0u64;
    loop {
        let msg = tokio::select! {
            m = stream.next() => m?,
            s = signals.recv() => match s { Signal::Stop => break, Signal::Reopen => continue },
        };
        let Some(msg) = msg else { break };
        count += 1;
        buf.clear();
        writer.write(&msg.data, &mut buf)?;
        use std::io::Write;
        let _ = std::io::stdout().write_all(&buf);
        if msg.data.windows(11).any(|w| w == b"pgrepl-demo") {
            seen_done = true;
        }
        stream.ack(msg.wal_start);
        if seen_done && msg.data.starts_with(b"{\"action\":\"C\"") {
            break;
        }
    }
    let client = stream.stop().await?;
    client.close().await?;
    match workload.await {
        Ok(r) => r?,
        Err(e) => return Err(Error::closed(e.to_string())),
    }
    eprintln!("pgrepl demo: streamed {count} messages; cleaning up");
    Ok(())
}
