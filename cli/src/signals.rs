//! SIGINT/SIGTERM stop cleanly; SIGHUP reopens the output file.

use std::time::Duration;

use tokio::signal::unix::{signal, Signal as UnixSignal, SignalKind};

pub enum Signal {
    Stop,
    Reopen,
}

pub struct Signals {
    int: UnixSignal,
    term: UnixSignal,
    hup: UnixSignal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::Stop,
            _ = self.term.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reopen,
        }
    }

    /// Sleep for `d`; true if a stop signal came first.
    pub async fn sleep_or_stop(&mut self, d: Duration) -> bool {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return false,
                s = self.recv() => if let Signal::Stop = s { return true },
            }
        }
    }
}
