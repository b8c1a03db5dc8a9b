//! React to each insert with its table and row: `cargo run --example inserts -- "dbname=app" my_slot`
use pgrepl::{changes::*, wal2json::Event};

#[tokio::main(flavor = "current_thread")]
async fn main() -> pgrepl::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut changes = ChangeStream::connect(ChangeStreamConfig::new(&args[1], &args[2])?.create_slot(true)).await?;
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
