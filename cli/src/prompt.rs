//! Password prompt on the controlling terminal, echo off (via stty, to stay free of libc bindings).

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use pgrepl::Error;

pub fn is_tty() -> bool {
    OpenOptions::new().read(true).write(true).open("/dev/tty").is_ok()
}

pub fn password() -> Result<String, Error> {
    let mut tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| Error::io("cannot prompt for a password: no terminal", e))?;
    let stty = |arg: &str| {
        if let Ok(t) = OpenOptions::new().read(true).open("/dev/tty") {
            let _ = Command::new("stty").arg(arg).stdin(Stdio::from(t)).status();
        }
    };
    let _ = tty.write_all(b"Password: ");
    let _ = tty.flush();
    stty("-echo");
    let mut line = String::new();
    let r = BufReader::new(&mut tty).read_line(&mut line);
    stty("echo");
    let _ = tty.write_all(b"\n");
    r.map_err(|e| Error::io("reading password", e))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
