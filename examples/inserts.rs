//! React to each insert with its table and row: `cargo run --example inserts -- "dbname=app" my_slot`
use pgrepl::{changes::*, wal2json::Event};

#[tokio::main(flavor = "current_thread")]
async fn main() -> pgrepl::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(conninfo), Some(slot)) = (args.next(), args.next()) else {
        eprintln!("usage: inserts CONNINFO SLOT");
        std::process::exit(2);
    };
    let mut changes = ChangeStream::connect(ChangeStreamConfig::new(&conninfo, &slot)?.create_slot(true)).await?;
    while let Some(mut payload) = changes.next().await? {
        for event in payload.events()? {
            if let Event::Insert(row) = event? {
                println!("{}: {:?}", row.table, row.columns.iter().map(|c| (&c.name, &c.value)).collect::<Vec<_>>());
            }
        }
        payload.ack();
    }
    Ok(())
}
