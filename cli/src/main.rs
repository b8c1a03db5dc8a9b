//! The `pgrepl` command-line tool.

mod args;
mod decode;
mod demo;
mod jsonout;
mod output;
mod prompt;
mod recv;
mod signals;
mod sink;
mod state;

const HELP: &str = "\
pgrepl: a PostgreSQL logical-replication client

Usage:
  pgrepl recv [OPTION]...       stream a logical slot (a drop-in for pg_recvlogical; see pgrepl recv --help)
  pgrepl decode [FILE|-] [--output json|none]
                                decode a file of wal2json payloads (one per line) to format-2 JSON objects
  pgrepl demo [--rows N]        start a throwaway PostgreSQL, write a live workload, stream it to stdout
  pgrepl --help | --version
";

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let rest = argv.get(1..).unwrap_or_default();
    let code = match argv.first().map(String::as_str) {
        Some("recv") => with_runtime(Flavor::CurrentThread, |sig| recv::run(rest, sig)),
        Some("demo") => with_runtime(Flavor::MultiThread, |sig| demo::run(rest, sig)),
        Some("decode") => decode::run(rest),
        Some("--version") | Some("-V") => {
            println!("pgrepl {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("--help") | Some("-?") | Some("help") | None => {
            print!("{HELP}");
            0
        }
        Some(other) => {
            eprintln!("pgrepl: unknown command \"{other}\"\n{HELP}");
            1
        }
    };
    std::process::exit(code);
}

enum Flavor {
    CurrentThread,
    MultiThread,
}

fn with_runtime<F, Fut>(flavor: Flavor, f: F) -> i32
where
    F: FnOnce(signals::Signals) -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    let built = match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build(),
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgrepl: cannot start the runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async {
        let sig = match signals::Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("pgrepl: cannot install signal handlers: {e}");
                return 1;
            }
        };
        f(sig).await
    })
}
