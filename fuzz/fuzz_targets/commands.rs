//! Replication commands built from untrusted names (`quote_ident`, `quote_literal`, `start_logical`,
//! `drop_slot`): the injection class of bug that pglogrepl had (unquoted slot names, raw plugin arguments).
//!
//! Input: 0xFF-separated UTF-8 fields: slot name, then option name / value pairs (a value starting with 0xFE
//! means a flag without a value); the first 8 bytes of the input also give the start LSN.
//!
//! Invariants beyond "no panic":
//! - a slot name outside `[a-z0-9_]{1,63}` gets an error of kind Config from both builders, and no command
//!   (the option fields are then checked with a fixed valid slot name, so they keep being fuzzed);
//! - lexing the generated command the way the server's replication grammar does (repl_scanner.l: `"…"`
//!   identifiers and `'…'` literals with doubled quotes, no backslash escapes) gives back exactly the slot name,
//!   the LSN, and every option name and value, in order: no input can end a quoted token early or add tokens;
//! - `quote_sql_literal` output, read as an SQL literal (E'' with backslash escapes, else standard), gives the
//!   value back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgrepl::proto::commands::{drop_slot, quote_sql_literal, start_logical, MAX_SLOT_NAME_LEN};
use pgrepl::{ErrorKind, Lsn};

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Ident(String),
    Literal(String),
    Punct(char),
}

fn lex(s: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            ' ' => {}
            '(' | ')' | ',' => out.push(Tok::Punct(c)),
            '"' | '\'' => {
                let mut v = String::new();
                loop {
                    match it.next()? {
                        q if q == c => {
                            if it.peek() == Some(&c) {
                                it.next();
                                v.push(c);
                            } else {
                                break;
                            }
                        }
                        o => v.push(o),
                    }
                }
                out.push(if c == '"' { Tok::Ident(v) } else { Tok::Literal(v) });
            }
            _ => {
                let mut w = c.to_string();
                while let Some(&n) = it.peek() {
                    if n == ' ' || n == '(' || n == ')' || n == ',' || n == '"' || n == '\'' {
                        break;
                    }
                    w.push(n);
                    it.next();
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Some(out)
}

fn sql_literal_value(q: &str) -> Option<String> {
    if let Some(body) = q.strip_prefix("E'").and_then(|b| b.strip_suffix('\'')) {
        let mut v = String::new();
        let mut it = body.chars();
        while let Some(c) = it.next() {
            match c {
                '\\' => v.push(it.next()?),
                '\'' => {
                    if it.next()? != '\'' {
                        return None;
                    }
                    v.push('\'');
                }
                o => v.push(o),
            }
        }
        return Some(v);
    }
    match lex(q)?.as_slice() {
        [Tok::Literal(v)] if !v.contains('\\') => Some(v.clone()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let lsn = Lsn(data.get(..8).map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap_or_default())));
    let mut fields = data.split(|&b| b == 0xff);
    let Some(Ok(slot)) = fields.next().map(std::str::from_utf8) else { return };
    let mut options: Vec<(String, Option<String>)> = Vec::new();
    while let Some(name) = fields.next() {
        let Ok(name) = std::str::from_utf8(name) else { return };
        let value = match fields.next() {
            Some([0xfe, ..]) | None => None,
            Some(v) => match std::str::from_utf8(v) {
                Ok(v) => Some(v.to_owned()),
                Err(_) => return,
            },
        };
        options.push((name.to_owned(), value));
    }

    let valid = (1..=MAX_SLOT_NAME_LEN).contains(&slot.len())
        && slot.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    let slot = if valid {
        slot
    } else {
        for r in [start_logical(slot, lsn, &options), drop_slot(slot, true)] {
            let e = r.expect_err("an invalid slot name gave a command");
            assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        }
        "fuzz_slot"
    };
    let cmd = start_logical(slot, lsn, &options).expect("a valid slot name");
    let toks = lex(&cmd).unwrap_or_else(|| panic!("unterminated quote in {cmd:?}"));
    let mut want = vec![
        Tok::Word("START_REPLICATION".into()),
        Tok::Word("SLOT".into()),
        Tok::Ident(slot.into()),
        Tok::Word("LOGICAL".into()),
        Tok::Word(lsn.to_string()),
    ];
    if !options.is_empty() {
        want.push(Tok::Punct('('));
        for (i, (k, v)) in options.iter().enumerate() {
            if i > 0 {
                want.push(Tok::Punct(','));
            }
            want.push(Tok::Ident(k.clone()));
            if let Some(v) = v {
                want.push(Tok::Literal(v.clone()));
            }
        }
        want.push(Tok::Punct(')'));
    }
    assert_eq!(toks, want, "{cmd:?}");

    let d = drop_slot(slot, true).expect("a valid slot name");
    assert_eq!(
        lex(&d),
        Some(vec![Tok::Word("DROP_REPLICATION_SLOT".into()), Tok::Ident(slot.into()), Tok::Word("WAIT".into())])
    );

    for (_, v) in &options {
        if let Some(v) = v {
            let q = quote_sql_literal(v);
            assert_eq!(sql_literal_value(&q).as_deref(), Some(v.as_str()), "{q:?}");
        }
    }
});
