//! Property tests of the test_decoding decoder: rows rendered as test_decoding.c renders them (quote_identifier,
//! print_literal, unchanged-toast-datum, old-key/new-tuple) decode to the rows they were made from; arbitrary
//! bytes never panic and fail with an offset.
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

use std::borrow::Cow;

use pgrepl::event::{Column, Event, Value};
use pgrepl::plugin::TestDecodingDecoder;
use proptest::prelude::*;

/// quote_identifier: bare when lower-case letters, digits and `_` (not starting with a digit), else quoted.
fn quote_ident(s: &str) -> String {
    let bare = s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

#[derive(Debug, Clone)]
enum Gen {
    Int(i64),
    Numeric(String),
    Float(String),
    Bool(bool),
    Text(String),
    Bits(String),
    Null,
    Toast,
}

fn gen_value() -> impl Strategy<Value = (String, Gen)> {
    prop_oneof![
        any::<i64>().prop_map(|v| ("bigint".to_string(), Gen::Int(v))),
        "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,10})?".prop_map(|v| ("numeric".to_string(), Gen::Numeric(v))),
        prop_oneof![Just("NaN".to_string()), Just("-Infinity".to_string()), Just("1.5e+300".to_string())]
            .prop_map(|v| ("double precision".to_string(), Gen::Float(v))),
        any::<bool>().prop_map(|v| ("boolean".to_string(), Gen::Bool(v))),
        ".{0,30}".prop_map(|v| ("text".to_string(), Gen::Text(v))),
        "[ -~]{0,30}".prop_map(|v| ("character varying".to_string(), Gen::Text(v))),
        ".{0,10}".prop_map(|v| ("\"My]: Type\"[]".to_string(), Gen::Text(v))),
        "[01]{0,12}".prop_map(|v| ("bit varying".to_string(), Gen::Bits(v))),
        Just(("integer".to_string(), Gen::Null)),
        Just(("text".to_string(), Gen::Toast)),
    ]
}

fn render(g: &Gen) -> String {
    match g {
        Gen::Int(v) => v.to_string(),
        Gen::Numeric(v) | Gen::Float(v) => v.clone(),
        Gen::Bool(b) => b.to_string(),
        Gen::Text(s) => format!("'{}'", s.replace('\'', "''")),
        Gen::Bits(b) => format!("B'{b}'"),
        Gen::Null => "null".into(),
        Gen::Toast => "unchanged-toast-datum".into(),
    }
}

fn expected(g: &Gen) -> Option<Value<'static>> {
    Some(match g {
        Gen::Int(v) => Value::Number(Cow::Owned(v.to_string())),
        Gen::Numeric(v) => Value::Number(Cow::Owned(v.clone())),
        Gen::Float(v) if v.starts_with(|c: char| c.is_ascii_digit()) => Value::Number(Cow::Owned(v.clone())),
        Gen::Float(v) => Value::String(Cow::Owned(v.clone())),
        Gen::Bool(b) => Value::Bool(*b),
        Gen::Text(s) | Gen::Bits(s) => Value::String(Cow::Owned(s.clone())),
        Gen::Null => Value::Null,
        Gen::Toast => return None,
    })
}

fn gen_cols() -> impl Strategy<Value = Vec<(String, String, Gen)>> {
    prop::collection::vec(
        (prop_oneof!["[a-z_][a-z0-9_]{0,8}", "[^\u{0}]{1,8}"], gen_value()).prop_map(|(n, (t, g))| (n, t, g)),
        0..8,
    )
}

fn tuple(cols: &[(String, String, Gen)]) -> String {
    cols.iter().map(|(n, t, g)| format!(" {}[{t}]:{}", quote_ident(n), render(g))).collect()
}

fn expected_cols(cols: &[(String, String, Gen)]) -> Vec<Column<'static>> {
    cols.iter()
        .filter_map(|(n, t, g)| {
            expected(g).map(|v| Column { type_name: Some(Cow::Owned(t.clone())), ..Column::new(n.clone(), v) })
        })
        .collect()
}

proptest! {
    #[test]
    fn rendered_rows_decode_to_themselves(
        schema in "[^\u{0}]{1,6}",
        table in "[^\u{0}]{1,6}",
        old in prop::option::of(gen_cols()),
        new in gen_cols(),
        kind in 0..3u8,
    ) {
        let head = format!("table {}.{}: ", quote_ident(&schema), quote_ident(&table));
        let line = match kind {
            0 => format!("{head}INSERT:{}", tuple(&new)),
            1 => match &old {
                Some(o) => format!("{head}UPDATE: old-key:{} new-tuple:{}", tuple(o), tuple(&new)),
                None => format!("{head}UPDATE:{}", tuple(&new)),
            },
            _ => format!("{head}DELETE:{}", tuple(&new)),
        };
        let mut d = TestDecodingDecoder::new();
        let evs: Vec<Event<'static>> =
            d.events(line.as_bytes()).unwrap().map(|e| e.unwrap().into_owned()).collect();
        prop_assert_eq!(evs.len(), 1);
        let c = evs[0].change().unwrap();
        prop_assert_eq!(c.schema.as_deref(), Some(schema.as_str()));
        prop_assert_eq!(&*c.table, table.as_str());
        match kind {
            0 => prop_assert_eq!(&c.columns, &expected_cols(&new)),
            1 => {
                prop_assert_eq!(&c.columns, &expected_cols(&new));
                prop_assert_eq!(&c.identity, &old.as_deref().map(expected_cols).unwrap_or_default());
            }
            _ => prop_assert_eq!(&c.identity, &expected_cols(&new)),
        }
        // recycled storage changes nothing
        let again: Vec<Event<'static>> =
            d.events(line.as_bytes()).unwrap().map(|e| e.unwrap().into_owned()).collect();
        prop_assert_eq!(&again, &evs);
    }

    #[test]
    fn messages_decode_to_themselves(prefix in "[^\u{0}]{0,20}", content in prop::collection::vec(any::<u8>(), 0..40), tx in any::<bool>()) {
        let mut line = format!("message: transactional: {} prefix: {prefix}, sz: {} content:", u8::from(tx), content.len()).into_bytes();
        line.extend_from_slice(&content);
        let mut d = TestDecodingDecoder::new();
        let mut got = None;
        d.decode_each(&line, |e| got = Some(e.clone().into_owned())).unwrap();
        let Some(Event::Message(m)) = got else { panic!() };
        prop_assert_eq!(&*m.prefix, prefix.as_str());
        prop_assert_eq!(&*m.content, &content[..]);
        prop_assert_eq!(m.transactional, tx);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..200), pre in prop_oneof![
        Just(&b""[..]), Just(&b"table "[..]), Just(&b"table public.t: INSERT: "[..]), Just(&b"message: transactional: 1 prefix: "[..]),
        Just(&b"BEGIN "[..]), Just(&b"COMMIT "[..]), Just(&b"PREPARE TRANSACTION "[..]), Just(&b"table a.b: UPDATE: old-key:"[..]),
    ]) {
        let mut line = pre.to_vec();
        line.extend_from_slice(&data);
        let mut d = TestDecodingDecoder::new();
        if let Err(e) = d.decode_each(&line, |_| {}) {
            prop_assert!(e.to_string().contains(" at byte "), "{}", e);
        }
    }
}
