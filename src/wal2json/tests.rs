//! Unit tests: every action and option, every quirk, error offsets. (The recorded corpus, property tests and
//! allocation tests are in tests/wal2json_*.rs.)

use std::borrow::Cow;

use crate::error::ErrorKind;
use crate::lsn::Lsn;
use crate::wal2json::*;

fn all(p: &[u8]) -> Vec<Event<'static>> {
    let mut d = AnyDecoder::new();
    let it = d.events(p).unwrap_or_else(|e| panic!("{e}"));
    let mut v = Vec::new();
    for e in it {
        v.push(e.unwrap_or_else(|e| panic!("{e}")).into_owned());
    }
    v
}

fn v2(p: &str) -> Event<'static> {
    Decoder::new().decode(p.as_bytes()).unwrap_or_else(|e| panic!("{e}: {p}")).into_owned()
}

fn change<'x, 'a>(ev: &'x Event<'a>) -> &'x Change<'a> {
    ev.change().unwrap_or_else(|| panic!("not a change: {ev:?}"))
}

/// Decode error: its offset.
fn err_offset(e: &crate::Error) -> usize {
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    let m = e.message();
    let at = m.rfind("at byte ").unwrap_or_else(|| panic!("no offset in {m:?}"));
    m.get(at + 8..).unwrap().parse().unwrap()
}

fn v2_err(p: &str) -> usize {
    match Decoder::new().decode(p.as_bytes()) {
        Ok(ev) => panic!("decoded {ev:?} from {p}"),
        Err(e) => err_offset(&e),
    }
}

// ---------- format 2 ----------

#[test]
fn v2_begin_commit_every_option() {
    let b = v2(
        r#"{"action":"B","xid":724,"timestamp":"2024-01-02 03:04:05.123456+00","origin":7,"lsn":"0/1500D28","nextlsn":"16/B374D848"}"#,
    );
    assert_eq!(
        b,
        Event::Begin(Transaction {
            xid: Some(724),
            lsn: Some(Lsn(0x1500D28)),
            next_lsn: Some(Lsn(0x16_B374_D848)),
            timestamp: Some(Cow::Borrowed("2024-01-02 03:04:05.123456+00")),
            origin: Some(7),
        })
    );
    assert_eq!(v2(r#"{"action":"C"}"#), Event::Commit(Transaction::default()));
    assert_eq!(v2(r#"{"action":"B","xid":4294967295}"#).xid(), Some(4294967295));
}

#[test]
fn v2_insert_every_column_option() {
    let ev = v2(concat!(
        r#"{"action":"I","xid":1,"lsn":"0/10","schema":"public","table":"t","columns":["#,
        r#"{"name":"id","type":"integer","typeoid":23,"value":1,"optional":false,"position":1,"default":"nextval('t_id_seq'::regclass)"},"#,
        r#"{"name":"big","type":"numeric","typeoid":-294967296,"value":123456789012345678901234567890.123456789,"optional":true,"position":2,"default":null},"#,
        r#"{"name":"s","type":"text","typeoid":25,"value":"a\"b\\c\n\u0001é🎉","optional":true,"position":3,"default":"'a\"b'::text"},"#,
        r#"{"name":"b","type":"boolean","typeoid":16,"value":true,"optional":true,"position":4,"default":null},"#,
        r#"{"name":"n","type":"real","typeoid":700,"value":null,"optional":true,"position":5,"default":null}"#,
        r#"],"pk":[{"name":"id","type":"integer","typeoid":23}]}"#
    ));
    let Event::Insert(c) = &ev else { panic!() };
    assert_eq!(c.xid, Some(1));
    assert_eq!(c.lsn, Some(Lsn(0x10)));
    assert_eq!(c.schema.as_deref(), Some("public"));
    assert_eq!(c.table, "t");
    assert_eq!(c.columns.len(), 5);
    let id = &c.columns[0];
    assert_eq!(
        id,
        &Column {
            name: "id".into(),
            type_name: Some("integer".into()),
            type_oid: Some(23),
            value: Value::Number("1".into()),
            optional: Some(false),
            position: Some(1),
            default: Nullable::Value("nextval('t_id_seq'::regclass)".into()),
        }
    );
    assert_eq!(c.columns[1].value, Value::Number("123456789012345678901234567890.123456789".into()));
    assert_eq!(c.columns[1].type_oid, Some(-294967296));
    assert_eq!(c.columns[1].type_oid_u32(), Some(4000000000));
    assert_eq!(c.columns[1].default, Nullable::Null, "\"default\":null is kept apart from absent");
    assert_eq!(c.columns[2].value, Value::String("a\"b\\c\n\u{1}é🎉".into()));
    assert_eq!(c.columns[2].default.as_deref(), Nullable::Value("'a\"b'::text"));
    assert_eq!(c.columns[3].value, Value::Bool(true));
    assert_eq!(c.columns[4].value, Value::Null);
    assert_eq!(c.pk, Some(vec![PkColumn { name: "id".into(), type_name: Some("integer".into()), type_oid: Some(23) }]));
    assert!(c.identity.is_empty());
}

#[test]
fn v2_minimal_and_borrowing() {
    let p = br#"{"action":"I","table":"t","columns":[{"name":"a","value":"x"},{"name":"b","value":"y\"z"}]}"#;
    let mut d = Decoder::new();
    let ev = d.decode(p).unwrap();
    let c = ev.change().unwrap();
    assert!(matches!(c.table, Cow::Borrowed(_)));
    assert!(matches!(&c.columns[0].value, Value::String(Cow::Borrowed(_))));
    assert!(matches!(&c.columns[1].value, Value::String(Cow::Owned(_))));
    assert_eq!(c.schema, None);
    assert_eq!(c.pk, None);
    assert_eq!(c.columns[0].type_name, None);
}

#[test]
fn v2_update_delete_truncate() {
    let u = v2(
        r#"{"action":"U","table":"t","columns":[{"name":"id","value":2}],"identity":[{"name":"id","type":"integer","value":1}],"pk":[]}"#,
    );
    let c = change(&u);
    assert_eq!(u.kind(), EventKind::Update);
    assert_eq!(c.identity_column("id").unwrap().value.as_i64(), Some(1));
    assert_eq!(c.column("id").unwrap().value.as_i64(), Some(2));
    assert_eq!(c.pk, Some(vec![]));
    let d =
        v2(r#"{"action":"D","schema":"s","table":"t","identity":[{"name":"id","value":1},{"name":"k","value":null}]}"#);
    assert_eq!(d.kind(), EventKind::Delete);
    assert!(change(&d).columns.is_empty());
    assert_eq!(change(&d).identity[1].value, Value::Null);
    let t = v2(r#"{"action":"T","xid":9,"schema":"s","table":"t"}"#);
    assert_eq!(
        t,
        Event::Truncate(Truncate { xid: Some(9), schema: Some("s".into()), table: "t".into(), ..Truncate::default() })
    );
}

#[test]
fn v2_toast_unchanged_column_is_absent() {
    let u = v2(r#"{"action":"U","table":"toasty","columns":[{"name":"id","value":1},{"name":"small","value":null}]}"#);
    let c = change(&u);
    assert!(c.column("big").is_none(), "unchanged TOAST: absent");
    assert!(c.column("small").unwrap().value.is_null(), "NULL: present");
}

#[test]
fn v2_messages() {
    let m = v2(r#"{"action":"M","xid":5,"transactional":true,"prefix":"p","content":"a\"b\u0001"}"#);
    let Event::Message(m) = m else { panic!() };
    assert!(m.transactional);
    assert_eq!(m.xid, Nullable::Value(5));
    assert_eq!(m.timestamp, Nullable::Absent);
    assert_eq!(&*m.content, b"a\"b\x01");
    assert_eq!(m.content_str(), Some("a\"b\u{1}"));
    // non-transactional: "xid":null etc. are kept apart from absent
    let m = v2(
        r#"{"action":"M","xid":null,"timestamp":null,"origin":null,"lsn":"0/156BAF8","transactional":false,"prefix":"nontx","content":"plain"}"#,
    );
    assert_eq!(
        m,
        Event::Message(Message {
            xid: Nullable::Null,
            lsn: Some(Lsn(0x156BAF8)),
            timestamp: Nullable::Null,
            origin: Nullable::Null,
            transactional: false,
            prefix: "nontx".into(),
            content: Cow::Borrowed(b"plain"),
        })
    );
    // content copied byte for byte, not UTF-8
    let mut p = br#"{"action":"M","transactional":false,"prefix":"bin","content":""#.to_vec();
    p.extend_from_slice(b"\xc3\x28\xe2\x82\xa8\xff\x41\\n\"}");
    let Event::Message(m) = Decoder::new().decode(&p).unwrap() else { panic!() };
    assert_eq!(&*m.content, b"\xc3\x28\xe2\x82\xa8\xff\x41\n");
    assert_eq!(m.content_str(), None);
    // pgrepl's writer's content_hex
    let Event::Message(m) = v2(r#"{"action":"M","transactional":false,"prefix":"","content_hex":"ff00C3"}"#) else {
        panic!()
    };
    assert_eq!(&*m.content, b"\xff\x00\xc3");
}

#[test]
fn v2_non_utf8_outside_content_is_an_error() {
    let mut p = br#"{"action":"I","table":""#.to_vec();
    p.extend_from_slice(b"\xff\"}");
    let e = Decoder::new().decode(&p).unwrap_err();
    assert_eq!(err_offset(&e), 23);
}

#[test]
fn v2_raw_quoted_type_names() {
    let ev = v2(concat!(
        r#"{"action":"I","table":"t","columns":["#,
        r#"{"name":"mood","type":"MySchema".mood,"typeoid":16386,"value":"happy"},"#,
        r#"{"name":"w","type":"we""ird","value":"x"},"#,
        r#"{"name":"q","type":"A"."b, c"(10),"value":1},"#,
        r#"{"name":"arr","type":"\"MySchema\".mood[]","value":"{happy}"},"#,
        r#"{"name":"lone","type":"My Type","value":null}"#,
        r#"],"pk":[{"name":"mood","type":"MySchema".mood}]}"#
    ));
    let c = change(&ev);
    let t = |n: &str| c.column(n).unwrap().type_name.as_deref().unwrap().to_string();
    assert_eq!(t("mood"), r#""MySchema".mood"#);
    assert_eq!(c.column("mood").unwrap().type_oid, Some(16386));
    assert_eq!(t("w"), r#""we""ird""#);
    assert_eq!(t("q"), r#""A"."b, c"(10)"#);
    assert_eq!(t("arr"), r#""MySchema".mood[]"#);
    assert_eq!(t("lone"), "My Type");
    assert_eq!(c.pk.as_ref().unwrap()[0].type_name.as_deref(), Some(r#""MySchema".mood"#));
}

#[test]
fn v2_raw_defaults() {
    let ev = v2(concat!(
        r#"{"action":"I","table":"d","columns":["#,
        r#"{"name":"q","value":"v","default":"'a"b\c'::text"},"#,
        r#"{"name":"x","value":"v","default":"'x","y'::text"},"#,
        "{\"name\":\"s\",\"value\":\"v\",\"default\":\"'tab\there'::text\"},",
        r#"{"name":"i","value":"v","default":"nextval('"MySchema"."My Table_id_seq"'::regclass)"},"#,
        r#"{"name":"e","value":"v","default":"''::text"},"#,
        r#"{"name":"n","value":1,"default":"42"}"#,
        r#"],"pk":[]}"#
    ));
    let c = change(&ev);
    let d = |n: &str| c.column(n).unwrap().default.as_deref().value().unwrap().to_string();
    assert_eq!(d("q"), r#"'a"b\c'::text"#);
    assert_eq!(d("x"), r#"'x","y'::text"#);
    assert_eq!(d("s"), "'tab\there'::text");
    assert_eq!(d("i"), r#"nextval('"MySchema"."My Table_id_seq"'::regclass)"#);
    assert_eq!(d("e"), "''::text");
    assert_eq!(d("n"), "42");
    assert_eq!(c.columns.len(), 6);
}

#[test]
fn v2_unknown_keys_whitespace_and_key_order() {
    let ev = v2(concat!(
        " {\n \"future\" : {\"a\":[1,{\"b\":null}],\"c\":\"]}\"} , \"table\" : \"t\" ,\"action\":\"I\",",
        "\"columns\" : [ { \"value\" : 1 , \"extra\":[] , \"name\" : \"a\" } ] }\n"
    ));
    let c = change(&ev);
    assert_eq!(c.table, "t");
    assert_eq!(c.columns[0].name, "a");
    assert_eq!(c.columns[0].value.as_u64(), Some(1));
}

#[test]
fn v2_numbers_are_exact_text() {
    for n in [
        "0.0000000001",
        "123456789012345678901234567890.123456789",
        "-0",
        "3.4028235e+38",
        "-9223372036854775808",
        "4000000000",
        "1e-300",
        "0.00",
    ] {
        let ev = v2(&format!(r#"{{"action":"I","table":"t","columns":[{{"name":"n","value":{n}}}]}}"#));
        assert_eq!(change(&ev).columns[0].value, Value::Number(Cow::Owned(n.to_string())));
    }
    let v = Value::Number("-9223372036854775808".into());
    assert_eq!(v.as_i64(), Some(i64::MIN));
    assert_eq!(v.as_u64(), None);
    assert_eq!(Value::Number("18446744073709551615".into()).as_u64(), Some(u64::MAX));
    assert_eq!(Value::Number("18446744073709551616".into()).as_u64(), None);
    assert_eq!(Value::Number("1.5".into()).as_i64(), None);
    assert_eq!(Value::Number("1.5".into()).as_f64(), Some(1.5));
    assert_eq!(Value::String("1".into()).as_i64(), None);
    assert_eq!(Value::Bool(true).as_bool(), Some(true));
    assert_eq!(Value::Null.as_str(), None);
}

#[test]
fn v2_error_offsets() {
    // position of a marker in the payload
    let at = |p: &str, m: &str| p.find(m).unwrap();
    let p = r#"{"action":"I","table":}"#;
    assert_eq!(v2_err(p), at(p, "}"));
    let p = r#"{"action":"X","table":"t"}"#;
    assert_eq!(v2_err(p), at(p, "X"));
    let p = r#"{"action":"I","table":"t","columns":[{"name":"a","value":01}]}"#;
    assert_eq!(v2_err(p), at(p, "01") + 1);
    let p = r#"{"action":"I","table":"t","columns":[{"name":"a","value":"bad \x escape"}]}"#;
    assert_eq!(v2_err(p), at(p, r"\x"));
    let p = r#"{"action":"I","table":"unterminated}"#;
    assert_eq!(v2_err(p), at(p, r#""unterminated"#));
    let p = r#"{"action":"I","table":"t"} trailing"#;
    assert_eq!(v2_err(p), at(p, "trailing"));
    let p = r#"{"action":"I","columns":[]}"#;
    assert_eq!(v2_err(p), 0, "missing table");
    // a repeated action must agree with the first (which the boundary classifiers read)
    let p = r#"{"action":"M","transactional":true,"prefix":"","content":"","action":"D","table":"t"}"#;
    assert_eq!(v2_err(p), at(p, "D\""));
    let p = r#"{"action":"I","table":"t","action":"I"}"#;
    assert!(Decoder::new().decode(p.as_bytes()).is_ok(), "the same action twice is fine");
    let p = r#"{"table":"t"}"#;
    assert_eq!(v2_err(p), 0, "missing action");
    let p = r#"{"action":"I","table":"t","columns":[{"value":1}]}"#;
    assert_eq!(v2_err(p), at(p, r#"{"value""#), "column without name");
    let p = r#"{"action":"M","transactional":false,"prefix":"p"}"#;
    assert_eq!(v2_err(p), 0, "message without content");
    let p = r#"{"action":"B","lsn":"0/XYZ"}"#;
    assert_eq!(v2_err(p), at(p, "0/XYZ"));
    let p = r#"{"action":"B","xid":-1}"#;
    assert_eq!(v2_err(p), at(p, "-1"));
    let p = r#"{"action":"I","table":"t","columns":[{"name":"a","value":"\ud800"}]}"#;
    assert_eq!(v2_err(p), at(p, r"\ud800"));
    let p = r#"{"action":"I","table":"t","columns":[{"name":"a","value":[1]}]}"#;
    assert_eq!(v2_err(p), at(p, "[1]"));
    assert_eq!(v2_err(""), 0);
    assert_eq!(v2_err("{"), 1);
    let deep = format!(r#"{{"action":"C","x":{}{}}}"#, "[".repeat(100), "]".repeat(100));
    assert!(v2_err(&deep) > 0);
}

// ---------- format 1 ----------

#[test]
fn v1_document_every_key() {
    let p = concat!(
        r#"{"xid":724,"nextlsn":"0/1500D80","timestamp":"2024-01-02 03:04:05+00","origin":3,"change":["#,
        r#"{"kind":"insert","schema":"public","table":"t","columnnames":["id","s"],"columntypes":["integer","text"],"#,
        r#""columntypeoids":[23,4000000000],"columnpositions":[1,2],"columnoptionals":[false,true],"#,
        r#""columndefaults":["nextval('t_id_seq'::regclass)",null],"columnvalues":[1,"a\"b"],"#,
        r#""pk":{"pknames":["id"],"pktypes":["integer"]}},"#,
        r#"{"kind":"update","schema":"public","table":"t","columnnames":["id"],"columntypes":["integer"],"columnvalues":[2],"#,
        r#""oldkeys":{"keynames":["id"],"keytypes":["integer"],"keytypeoids":[23],"keyvalues":[1]}},"#,
        r#"{"kind":"delete","schema":"public","table":"t","oldkeys":{"keynames":["id"],"keytypes":["integer"],"keyvalues":[2]}},"#,
        r#"{"kind":"message","transactional":true,"prefix":"p","content":"c"}"#,
        r#"]}"#
    );
    let ev = all(p.as_bytes());
    assert_eq!(ev.len(), 6);
    let tx = Transaction {
        xid: Some(724),
        lsn: None,
        next_lsn: Some(Lsn(0x1500D80)),
        timestamp: Some("2024-01-02 03:04:05+00".into()),
        origin: Some(3),
    };
    assert_eq!(ev[0], Event::Begin(tx.clone()));
    assert_eq!(ev[5], Event::Commit(tx));
    let i = change(&ev[1]);
    assert_eq!(i.xid, None, "format 1 changes carry no xid of their own");
    assert_eq!(
        i.columns[1],
        Column {
            name: "s".into(),
            type_name: Some("text".into()),
            type_oid: Some(4000000000),
            value: Value::String("a\"b".into()),
            optional: Some(true),
            position: Some(2),
            default: Nullable::Null,
        }
    );
    assert_eq!(i.columns[0].default.as_deref(), Nullable::Value("nextval('t_id_seq'::regclass)"));
    assert_eq!(i.pk.as_ref().unwrap()[0].name, "id");
    let u = change(&ev[2]);
    assert_eq!(ev[2].kind(), EventKind::Update);
    assert_eq!(u.identity[0].type_oid, Some(23));
    assert_eq!(u.identity[0].value.as_i64(), Some(1));
    let d = change(&ev[3]);
    assert!(d.columns.is_empty());
    assert_eq!(d.identity[0].value.as_i64(), Some(2));
    assert!(matches!(&ev[4], Event::Message(m) if m.transactional && &*m.content == b"c"));
}

#[test]
fn v1_empty_transaction_yields_begin_and_commit() {
    assert_eq!(
        all(br#"{"change":[]}"#),
        vec![Event::Begin(Transaction::default()), Event::Commit(Transaction::default())]
    );
    let ev = all(b"{\n\t\"xid\": 724,\n\t\"change\": [\n\t]\n}");
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].xid(), Some(724));
}

#[test]
fn v1_non_transactional_message_document_and_leading_comma() {
    for p in [
        &br#"{"change":[{"kind":"message","transactional":false,"prefix":"p","content":"x"}]}"#[..],
        br#"{"change":[,{"kind":"message","transactional":false,"prefix":"p","content":"x"}]}"#,
        b"{\n\t\"change\": [\n\t\t,{\n\t\t\t\"kind\": \"message\",\n\t\t\t\"transactional\": false,\n\t\t\t\"prefix\": \"p\",\n\t\t\t\"content\": \"x\"\n\t\t}\n\t]\n}",
    ] {
        let ev = all(p);
        assert_eq!(ev.len(), 1, "{}", String::from_utf8_lossy(p));
        assert!(matches!(&ev[0], Event::Message(m) if !m.transactional && &*m.content == b"x"));
        assert_eq!(boundary_after(p).unwrap(), Boundary::Whole);
    }
    // the leading comma in a transaction document
    let ev = all(br#"{"xid":1,"change":[,{"kind":"insert","table":"t","columnnames":["a"],"columnvalues":[1]}]}"#);
    assert_eq!(ev.len(), 3);
    // only before the first element
    let mut d = AnyDecoder::new();
    let r: Result<Vec<_>, _> =
        d.events(br#"{"change":[{"kind":"insert","table":"t"},,{"kind":"insert","table":"t"}]}"#).unwrap().collect();
    assert!(r.is_err());
}

#[test]
fn v1_raw_types_and_defaults_in_arrays() {
    let p = concat!(
        r#"{"change":[{"kind":"insert","table":"d","columnnames":["id","q","x","s","w","n"],"#,
        r#""columntypes":["integer","MySchema".mood,"we""ird","text","A"."b,c","integer"],"#,
        "\"columndefaults\":[null,\"'a\"b\\c'::text\",\"'x\",\"y'::text\",\"'tab\there'::text\",\"now()\",\"42\"],",
        r#""columnvalues":[1,"a","b","c","d",42],"oldkeys":{"keynames":["q"],"keytypes":["MySchema".mood],"keyvalues":["a"]}}]}"#
    );
    let ev = all(p.as_bytes());
    let c = change(&ev[1]);
    let ty: Vec<_> = c.columns.iter().map(|c| c.type_name.as_deref().unwrap().to_string()).collect();
    assert_eq!(ty, ["integer", r#""MySchema".mood"#, r#""we""ird""#, "text", r#""A"."b,c""#, "integer"]);
    let d: Vec<_> = c.columns.iter().map(|c| c.default.as_deref().map(str::to_string)).collect();
    assert_eq!(
        d,
        [
            Nullable::Null,
            Nullable::Value(r#"'a"b\c'::text"#.to_string()),
            Nullable::Value(r#"'x","y'::text"#.to_string()),
            Nullable::Value("'tab\there'::text".to_string()),
            Nullable::Value("now()".to_string()),
            Nullable::Value("42".to_string()),
        ]
    );
    assert_eq!(c.identity[0].type_name.as_deref(), Some(r#""MySchema".mood"#));
    // pretty-printed arrays (", " separators)
    let p = concat!(
        "{\n\t\"change\": [\n\t\t{\n\t\t\t\"kind\": \"insert\",\n\t\t\t\"table\": \"d\",\n",
        "\t\t\t\"columnnames\": [\"a\", \"b\"],\n\t\t\t\"columntypes\": [\"MySchema\".mood, \"text\"],\n",
        "\t\t\t\"columndefaults\": [\"'x\", \"y'::text\", null],\n",
        "\t\t\t\"columnvalues\": [\"happy\", null]\n\t\t}\n\t]\n}"
    );
    let ev = all(p.as_bytes());
    let c = change(&ev[1]);
    assert_eq!(c.columns[0].type_name.as_deref(), Some(r#""MySchema".mood"#));
    assert_eq!(c.columns[0].default.as_deref(), Nullable::Value(r#"'x", "y'::text"#));
    assert_eq!(c.columns[1].default, Nullable::Null);
}

#[test]
fn v1_error_offsets() {
    let err = |p: &str| -> usize {
        let mut d = AnyDecoder::new();
        match d.events(p.as_bytes()) {
            Err(e) => err_offset(&e),
            Ok(it) => match it.collect::<Result<Vec<_>, _>>() {
                Err(e) => err_offset(&e),
                Ok(v) => panic!("decoded {v:?} from {p}"),
            },
        }
    };
    let p = r#"{"change":[{"kind":"insert","table":"t","columnnames":["a","b"],"columnvalues":[1]}]}"#;
    assert_eq!(err(p), p.find("[1]").unwrap(), "arrays of different lengths");
    let p = r#"{"change":[{"kind":"upsert","table":"t"}]}"#;
    assert_eq!(err(p), p.find("upsert").unwrap());
    let p = r#"{"xid":1,"change":[{"kind":"insert","table":"t"}]"#;
    assert_eq!(err(p), p.len(), "unterminated document");
    let p = r#"{"xid":1}"#;
    assert_eq!(err(p), p.find('}').unwrap(), "no change array");
    let p = r#"{"change":[{"kind":"insert"}]}"#;
    assert_eq!(err(p), p.find("{\"kind").unwrap(), "missing table");
    let p = r#"{"change":[{"kind":"insert","table":"t","pk":{"pknames":["a"],"pktypes":[]}}]}"#;
    assert!(err(p) > 0);
}

// ---------- write-in-chunks ----------

#[test]
fn chunks_stream_and_track_transactions() {
    let mut d = ChunkedDecoder::new();
    let feed = |d: &mut ChunkedDecoder, p: &[u8]| -> Vec<Event<'static>> {
        d.events(p).unwrap().map(|e| e.unwrap().into_owned()).collect()
    };
    assert!(!d.in_transaction());
    let b = feed(&mut d, br#"{"xid":724,"timestamp":"2024-01-02 03:04:05+00","change":["#);
    assert!(d.in_transaction());
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].xid(), Some(724));
    let c1 = feed(&mut d, br#"{"kind":"insert","table":"t","columnnames":["a"],"columnvalues":[1]}"#);
    let c2 = feed(&mut d, b"\t\t,{\n\t\t\t\"kind\": \"delete\",\n\t\t\t\"table\": \"t\",\n\t\t\t\"oldkeys\": {\"keynames\": [\"a\"], \"keyvalues\": [1]}\n\t\t}");
    assert_eq!(c1[0].kind(), EventKind::Insert);
    assert_eq!(c2[0].kind(), EventKind::Delete);
    assert!(d.in_transaction());
    let e = feed(&mut d, b"\t]\n}");
    assert!(!d.in_transaction());
    assert_eq!(
        e,
        vec![Event::Commit(Transaction {
            xid: Some(724),
            timestamp: Some("2024-01-02 03:04:05+00".into()),
            ..Transaction::default()
        })]
    );
    // outside a transaction: errors, state unchanged
    assert!(d.events(br#",{"kind":"insert","table":"t"}"#).is_err());
    assert!(d.events(b"]}").is_err());
    assert!(!d.in_transaction());
    // whole documents in between (non-transactional messages in write-in-chunks mode)
    let m = feed(&mut d, br#"{"change":[,{"kind":"message","transactional":false,"prefix":"p","content":"c"}]}"#);
    assert_eq!(m.len(), 1);
    // format 2 is refused by the format 1 decoder
    assert!(d.events(br#"{"action":"B"}"#).is_err());
    // a header while a transaction is open replaces it
    feed(&mut d, br#"{"xid":1,"change":["#);
    feed(&mut d, br#"{"xid":2,"change":["#);
    assert_eq!(feed(&mut d, b"]}")[0].xid(), Some(2));
    // trailing garbage in a chunk
    feed(&mut d, br#"{"change":["#);
    let r: Result<Vec<_>, _> = d.events(br#"{"kind":"insert","table":"t"} x"#).unwrap().collect();
    assert!(r.is_err());
    d.reset();
    assert!(!d.in_transaction());
}

// ---------- detection, boundaries, AnyDecoder state ----------

#[test]
fn format_detection() {
    use Format::*;
    let cases: &[(&[u8], Format)] = &[
        (br#"{"action":"I","table":"t"}"#, V2),
        (b"  {\"action\":\"B\"}\n", V2),
        (br#"{"xid":1,"change":[]}"#, V1Document),
        (br#"{"change":[]}"#, V1Document),
        (br#"{"nextlsn":"0/1","change":[]}"#, V1Document),
        (br#"{"timestamp":"x","change":[]}"#, V1Document),
        (br#"{"origin":0,"change":[]}"#, V1Document),
        (b"{\n\t\"xid\": 1,\n\t\"change\": [\n\t]\n}\n", V1Document),
        (br#"{"xid":1,"change":["#, V1Chunk(ChunkKind::Header)),
        (b"{\n\t\"xid\": 1,\n\t\"change\": [\n", V1Chunk(ChunkKind::Header)),
        (br#"{"kind":"insert"}"#, V1Chunk(ChunkKind::Change)),
        (br#",{"kind":"insert"}"#, V1Chunk(ChunkKind::Change)),
        (b"\t\t,{\n", V1Chunk(ChunkKind::Change)),
        (b"]}", V1Chunk(ChunkKind::End)),
        (b"\t]\n}", V1Chunk(ChunkKind::End)),
        // keys in another order than wal2json's: the first of action/kind/change decides (FUZZING.md finding 3)
        (br#"{"x":1,"action":"B"}"#, V2),
        (br#"{"xid":5,"action":"C"}"#, V2),
        (br#"{"xid":5, "columns":[{"name":"a","value":{"n":[1,"]"]}}], "table":"t", "action":"I"}"#, V2),
        (br#"{"xid":1,"timestamp":"t","nextlsn":"0/1","change":[]}"#, V1Document),
        (br#"{"table":"t","kind":"insert"}"#, V1Chunk(ChunkKind::Change)),
    ];
    for (p, f) in cases {
        assert_eq!(Format::detect(p).unwrap(), *f, "{}", String::from_utf8_lossy(p));
    }
    for bad in [
        &b""[..],
        b"   ",
        b"[1]",
        b"{}",
        b"{\"other\":1}",
        b"null",
        b"{\"unterminated",
        b"{\"xid\":1}",
        b"{\"xid\":1,\"table\":\"t\"}",
        b"{\"xid\":[1,\"action\":\"B\"}",
    ] {
        let e = Format::detect(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
    }
}

#[test]
fn boundaries_and_in_transaction() {
    let cases: &[(&[u8], Boundary)] = &[
        (br#"{"action":"B","xid":1}"#, Boundary::Begin),
        (br#"{"action":"I","table":"t"}"#, Boundary::Inside),
        (br#"{"action":"T","table":"t"}"#, Boundary::Inside),
        (br#"{"action":"M","xid":1,"transactional":true,"prefix":"","content":""}"#, Boundary::Inside),
        (br#"{"action":"M","xid":null,"transactional":false,"prefix":"","content":""}"#, Boundary::Whole),
        (br#"{"action":"C","xid":1}"#, Boundary::End),
        (br#"{"xid":1,"change":[]}"#, Boundary::End),
        (br#"{"xid":1,"change":["#, Boundary::Begin),
        (br#",{"kind":"insert"}"#, Boundary::Inside),
        (b"]}", Boundary::End),
        (br#"{"xid":1,"action":"B"}"#, Boundary::Begin),
        (br#"{"table":"t","action":"D"}"#, Boundary::Inside),
        (br#"{"xid":1,"lsn":"0/1","action":"C"}"#, Boundary::End),
        (br#"{"transactional":false,"prefix":"","content":"","action":"M"}"#, Boundary::Whole),
    ];
    for (p, b) in cases {
        assert_eq!(boundary_after(p).unwrap(), *b, "{}", String::from_utf8_lossy(p));
    }
    // whatever the key order, AnyDecoder gives what Decoder gives and tracks the transaction
    let mut any = AnyDecoder::new();
    let mut dec = Decoder::new();
    for p in [
        &br#"{"xid":9,"timestamp":"2024-01-01 00:00:00+00","action":"B"}"#[..],
        br#"{"columns":[{"name":"a","type":"int","value":1}],"schema":"s","table":"t","action":"I"}"#,
        br#"{"xid":9,"action":"C"}"#,
    ] {
        let expected = dec.decode(p).unwrap().into_owned();
        let got: Vec<Event<'static>> = {
            let mut v = Vec::new();
            any.decode_each(p, |e| v.push(e.clone().into_owned())).unwrap();
            v
        };
        assert_eq!(got, vec![expected], "{}", String::from_utf8_lossy(p));
        let open = !p.ends_with(br#""action":"C"}"#);
        assert_eq!(any.in_transaction(), open, "{}", String::from_utf8_lossy(p));
    }
    // AnyDecoder tracks transactions across formats, by decoding or by observing
    let mut d = AnyDecoder::new();
    let mut o = AnyDecoder::new();
    let seq: &[(&[u8], bool)] = &[
        (br#"{"action":"B","xid":1}"#, true),
        (br#"{"action":"I","table":"t","columns":[]}"#, true),
        (br#"{"action":"C","xid":1}"#, false),
        (br#"{"action":"I","table":"t","columns":[]}"#, false),
        (br#"{"xid":2,"change":["#, true),
        (br#"{"kind":"insert","table":"t","columnnames":[],"columnvalues":[]}"#, true),
        (b"]}", false),
        (br#"{"xid":3,"change":[]}"#, false),
    ];
    for (p, open) in seq {
        for ev in d.events(p).unwrap() {
            ev.unwrap();
        }
        assert_eq!(d.in_transaction(), *open, "{}", String::from_utf8_lossy(p));
        o.classify(p).unwrap();
        assert_eq!(o.in_transaction(), *open, "observe {}", String::from_utf8_lossy(p));
    }
    d.events(br#"{"action":"B"}"#).unwrap();
    d.reset();
    assert!(!d.in_transaction());
}

#[test]
fn decode_each_and_recycling() {
    let mut d = AnyDecoder::new();
    let mut kinds = Vec::new();
    let n = d
        .decode_each(
            br#"{"xid":1,"change":[{"kind":"insert","table":"t","columnnames":["a"],"columnvalues":[1]}]}"#,
            |ev| kinds.push(ev.kind()),
        )
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(kinds, [EventKind::Begin, EventKind::Insert, EventKind::Commit]);
    // the Decoder keeps the column storage of recycled events
    let mut dec = Decoder::new();
    let p = br#"{"action":"I","table":"t","columns":[{"name":"a","value":1},{"name":"b","value":2}]}"#;
    let ev = dec.decode(p).unwrap();
    let cap = ev.change().unwrap().columns.capacity();
    dec.recycle(ev);
    let ev = dec.decode(p).unwrap();
    assert_eq!(ev.change().unwrap().columns.capacity(), cap);
    let mut r = None;
    dec.decode_each(p, |ev| r = ev.change().map(|c| c.columns.len())).unwrap();
    assert_eq!(r, Some(2));
}

// ---------- writer ----------

fn written(ev: &Event<'_>) -> String {
    let mut out = Vec::new();
    write_event(&mut out, ev);
    String::from_utf8(out).unwrap()
}

#[test]
fn writer_shapes() {
    assert_eq!(
        written(&Event::Begin(Transaction {
            xid: Some(7),
            lsn: Some(Lsn(0x10)),
            next_lsn: Some(Lsn(0x1_0000_0020)),
            timestamp: Some("2024-01-02".into()),
            origin: Some(0),
        })),
        r#"{"action":"B","xid":7,"timestamp":"2024-01-02","origin":0,"lsn":"0/10","nextlsn":"1/20"}"#
    );
    let mut c = Change { table: "t\"1".into(), schema: Some("s".into()), ..Change::default() };
    c.columns.push(Column {
        name: "a".into(),
        type_name: Some(r#""MySchema".mood"#.into()),
        type_oid: Some(-1),
        value: Value::String("x\n\u{1}\"\\é".into()),
        optional: Some(true),
        position: Some(1),
        default: Nullable::Value(r#"'a"b\c'::text"#.into()),
    });
    c.identity.push(Column::new("a", Value::Number("-0".into())));
    c.pk = Some(vec![PkColumn { name: "a".into(), type_name: None, type_oid: None }]);
    assert_eq!(
        written(&Event::Update(c.clone())),
        concat!(
            r#"{"action":"U","schema":"s","table":"t\"1","columns":[{"name":"a","type":"\"MySchema\".mood","typeoid":-1,"#,
            r#""value":"x\n\u0001\"\\é","optional":true,"position":1,"default":"'a\"b\\c'::text"}],"#,
            r#""identity":[{"name":"a","value":-0}],"pk":[{"name":"a"}]}"#
        )
    );
    let d = Change { table: "t".into(), ..Change::default() };
    assert_eq!(written(&Event::Delete(d.clone())), r#"{"action":"D","table":"t","identity":[]}"#);
    assert_eq!(written(&Event::Insert(d)), r#"{"action":"I","table":"t","columns":[]}"#);
    assert_eq!(
        written(&Event::Message(Message {
            prefix: "p".into(),
            content: Cow::Borrowed(b"\xff\x00a"),
            transactional: false,
            ..Message::default()
        })),
        r#"{"action":"M","transactional":false,"prefix":"p","content_hex":"ff0061"}"#
    );
    assert_eq!(
        written(&Event::Message(Message { prefix: "p".into(), content: Cow::Borrowed(b"ok"), ..Message::default() })),
        r#"{"action":"M","transactional":false,"prefix":"p","content":"ok"}"#
    );
    // present-and-null is written as null, absent is left out
    let m = Message {
        xid: Nullable::Null,
        timestamp: Nullable::Null,
        origin: Nullable::Null,
        lsn: Some(Lsn(0x10)),
        prefix: "p".into(),
        content: Cow::Borrowed(b"ok"),
        ..Message::default()
    };
    assert_eq!(
        written(&Event::Message(m.clone())),
        r#"{"action":"M","xid":null,"timestamp":null,"origin":null,"lsn":"0/10","transactional":false,"prefix":"p","content":"ok"}"#
    );
    let m = Message { xid: Nullable::Value(5), timestamp: Nullable::Absent, origin: Nullable::Value(0), ..m };
    assert_eq!(
        written(&Event::Message(m)),
        r#"{"action":"M","xid":5,"origin":0,"lsn":"0/10","transactional":false,"prefix":"p","content":"ok"}"#
    );
    let mut c = Change { table: "t".into(), ..Change::default() };
    let mut col = Column::new("a", Value::Null);
    col.default = Nullable::Null;
    c.columns.push(col);
    c.columns.push(Column::new("b", Value::Null));
    assert_eq!(
        written(&Event::Update(c)),
        r#"{"action":"U","table":"t","columns":[{"name":"a","value":null,"default":null},{"name":"b","value":null}],"identity":[]}"#
    );
    // a number that is not a JSON number (hand-built) is written as a string
    let mut c = Change { table: "t".into(), ..Change::default() };
    c.columns.push(Column::new("n", Value::Number("NaN".into())));
    assert!(written(&Event::Insert(c)).contains(r#""value":"NaN""#));
}

#[test]
fn into_owned_keeps_everything() {
    let p = br#"{"action":"I","xid":1,"schema":"s","table":"t","columns":[{"name":"a","type":"text","value":"v","default":"x"}],"pk":[{"name":"a"}]}"#;
    let ev = Decoder::new().decode(p).unwrap();
    let owned: Event<'static> = ev.clone().into_owned();
    assert_eq!(owned, ev);
    assert_eq!(owned.lsn(), None);
}

/// The fastest of five runs of `f` (load and preemption only ever make a run slower).
fn fastest(f: impl Fn()) -> std::time::Duration {
    (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn decode_all(p: &[u8]) {
    let mut d = AnyDecoder::new();
    if let Ok(it) = d.events(p) {
        for ev in it {
            let _ = ev;
        }
    }
    let _ = Decoder::new().decode(p);
}

/// Decoding `quirky` costs at most `max_ratio` times decoding a valid format 2 payload of the same length (many
/// small columns), both timed here, on this machine, under whatever load it has: no wall-clock bound that a slow
/// or busy machine crosses. The quirk budget bounds the ratio (at most `WORK_BASE` + `WORK_PER_BYTE` re-read
/// bytes per payload byte); a recovery path that escaped it (quadratic) is thousands of times slower.
fn assert_linear(what: &str, quirky: &[u8], max_ratio: u32) {
    let mut valid = br#"{"action":"I","table":"t","columns":["#.to_vec();
    while valid.len() < quirky.len() {
        valid.extend_from_slice(br#"{"name":"a","type":"text","value":"x"},"#);
    }
    valid.extend_from_slice(br#"{"name":"z","type":"text","value":"x"}]}"#);
    let base = fastest(|| decode_all(&valid));
    let t = fastest(|| decode_all(quirky));
    eprintln!("{what}: {t:?} against {base:?} for a valid payload of the same length");
    assert!(t <= base * max_ratio, "{what}: {t:?}, more than {max_ratio}x the {base:?} of a valid payload");
}

#[test]
fn adversarial_quirk_inputs_take_linear_time() {
    // format 2: a raw default with many candidate ends
    let mut p = br#"{"action":"I","table":"t","columns":[{"name":"a","value":1,"default":"'"#.to_vec();
    for _ in 0..50_000 {
        p.extend_from_slice(br#""},{"x"#);
    }
    assert_linear("a raw default with many candidate ends", &p, 30);
    // format 1: defaults that cannot be split, with many candidate ends for many columns
    let n = 200;
    let mut p = br#"{"change":[{"kind":"insert","table":"t","columnnames":["#.to_vec();
    for i in 0..n {
        if i > 0 {
            p.push(b',');
        }
        p.extend_from_slice(format!("\"c{i}\"").as_bytes());
    }
    p.extend_from_slice(br#"],"columndefaults":["'"#);
    for _ in 0..20_000 {
        p.extend_from_slice(br#"x","y"#);
    }
    p.extend_from_slice(br#""],"columnvalues":[]}]}"#);
    assert_linear("format 1 defaults that cannot be split", &p, 30);
}

#[test]
fn v1_repeated_column_arrays() {
    // the same columnnames/columntypes arrays in consecutive changes are read from the first one's spans
    let one = r#"{"kind":"insert","table":"t","columnnames":["a","b\"q"],"columntypes":["integer","MySchema".mood],"columnvalues":[1,"x"]}"#;
    let two = r#"{"kind":"insert","table":"t","columnnames":["a","c"],"columntypes":["integer","text"],"columnvalues":[2,"y"]}"#;
    let three = r#"{"kind":"insert","table":"t","columnnames":["a","c"],"columntypes":["integer","text"],"columnvalues":[3,"z"]}"#;
    let short =
        r#"{"kind":"insert","table":"t","columnnames":["a"],"columntypes":["integer","text"],"columnvalues":[4]}"#;
    let p = format!(r#"{{"change":[{one},{one},{two},{three},{two}]}}"#);
    let ev = all(p.as_bytes());
    assert_eq!(ev.len(), 7);
    let names: Vec<Vec<String>> =
        ev[1..6].iter().map(|e| change(e).columns.iter().map(|c| c.name.to_string()).collect()).collect();
    assert_eq!(names, [vec!["a", "b\"q"], vec!["a", "b\"q"], vec!["a", "c"], vec!["a", "c"], vec!["a", "c"]]);
    let types: Vec<String> =
        ev[1..6].iter().map(|e| change(e).columns[1].type_name.as_deref().unwrap().to_string()).collect();
    assert_eq!(types, [r#""MySchema".mood"#, r#""MySchema".mood"#, "text", "text", "text"]);
    assert_eq!(change(&ev[4]).columns[1].value, Value::String("z".into()));
    // a cached types array must still match the number of columns
    let p = format!(r#"{{"change":[{two},{short}]}}"#);
    let mut d = AnyDecoder::new();
    let r: Result<Vec<_>, _> = d.events(p.as_bytes()).unwrap().collect();
    assert!(r.is_err());
}

/// Quirk recovery re-reads bytes from a per-payload budget: many hard quirks in one payload stay linear.
#[test]
fn quirk_budget_is_per_payload() {
    // format 1: many changes, each with a columndefaults array that cannot be split
    let mut p = br#"{"xid":1,"change":["#.to_vec();
    for i in 0..300 {
        if i > 0 {
            p.push(b',');
        }
        p.extend_from_slice(
            br#"{"kind":"insert","table":"t","columnnames":["a","b","c","d","e","f"],"columndefaults":["'"#,
        );
        for _ in 0..30 {
            p.extend_from_slice(br#"x","y"#);
        }
        p.extend_from_slice(br#""],"columnvalues":[1,2,3,4,5,6]}"#);
    }
    p.extend_from_slice(b"]}");
    assert_linear("many changes with unsplittable defaults", &p, 30);
    // format 2: many repeated raw "default" keys, each searching the rest of the payload
    let mut p = br#"{"action":"I","table":"t","columns":[{"name":"a","value":1"#.to_vec();
    for _ in 0..20_000 {
        p.extend_from_slice(br#","default":"x"y"#);
    }
    assert_linear("many repeated raw defaults", &p, 30);
    // type names with a long JSON reading wasted for each of many keys
    let mut p = br#"{"action":"I","table":"t","columns":[{"name":"a""#.to_vec();
    for _ in 0..20_000 {
        p.extend_from_slice(br#","type":"a,"#);
    }
    p.extend_from_slice(&[b'x'; 100_000]);
    assert_linear("type names with a long reading wasted for each of many keys", &p, 30);
}

#[test]
fn push_in_place_is_push() {
    // owning elements (a drop per element), across several reallocations, with writes through the returned
    // reference, against plain push
    let mut v: Vec<String> = Vec::new();
    let mut reference: Vec<String> = Vec::new();
    for i in 0..1000 {
        let e = super::push_in_place(&mut v, || format!("e{i}"));
        e.push('!');
        reference.push(format!("e{i}!"));
        assert_eq!(v.len(), i + 1);
        assert_eq!(v.last(), reference.last());
    }
    assert_eq!(v, reference);
    v.truncate(10);
    assert_eq!(v, reference[..10]);
    // into spare room left by a reservation: no reallocation, the element lands after the existing ones
    let mut w: Vec<String> = Vec::with_capacity(4);
    w.push("a".into());
    let before = w.as_ptr();
    super::push_in_place(&mut w, || "b".into()).push('c');
    assert_eq!(w, ["a", "bc"]);
    assert_eq!(w.as_ptr(), before);
}

/// Format 2 keys are matched by a predicted order with a general fallback: any order, unknown keys anywhere and
/// keys the prediction already passed decode to the same event as wal2json's own order.
#[test]
fn format2_keys_in_any_order_decode_alike() {
    let in_order = r#"{"action":"U","xid":7,"timestamp":"2024-01-01 00:00:00+00","origin":3,"lsn":"0/10","nextlsn":"0/20","schema":"s","table":"t","columns":[{"name":"a","type":"int","value":1}],"identity":[{"name":"a","type":"int","value":0}],"pk":[{"name":"a","type":"int"}]}"#;
    let expected = v2(in_order);
    for p in [
        r#"{"pk":[{"name":"a","type":"int"}],"table":"t","zzz":[1,{"x":null}],"identity":[{"name":"a","type":"int","value":0}],"lsn":"0/10","action":"U","columns":[{"name":"a","type":"int","value":1}],"origin":3,"nextlsn":"0/20","schema":"s","timestamp":"2024-01-01 00:00:00+00","xid":7}"#,
        r#"{"xid":7,"action":"U","origin":3,"timestamp":"2024-01-01 00:00:00+00","schema":"s","lsn":"0/10","nextlsn":"0/20","table":"t","identity":[{"name":"a","type":"int","value":0}],"columns":[{"name":"a","type":"int","value":1}],"pk":[{"name":"a","type":"int"}],"content_hexx":1}"#,
        r#"{ "action" : "U" , "xid" : 7 , "timestamp" : "2024-01-01 00:00:00+00" , "origin" : 3 , "lsn" : "0/10" , "nextlsn" : "0/20" , "schema" : "s" , "table" : "t" , "columns" : [{"name":"a","type":"int","value":1}] , "identity" : [{"name":"a","type":"int","value":0}] , "pk" : [{"name":"a","type":"int"}] }"#,
    ] {
        assert_eq!(v2(p), expected, "{p}");
    }
    // a message with its keys reversed, and pgrepl's content_hex before the prefix
    let m = v2(r#"{"content":"hi","prefix":"p","transactional":true,"action":"M","xid":5}"#);
    assert_eq!(m, v2(r#"{"action":"M","xid":5,"transactional":true,"prefix":"p","content":"hi"}"#));
    let m = v2(r#"{"action":"M","content_hex":"6869","transactional":true,"prefix":"p","xid":5}"#);
    assert_eq!(m, v2(r#"{"action":"M","xid":5,"transactional":true,"prefix":"p","content":"hi"}"#));
}

/// "Present and null" costs nothing in the hot path's column layout: `Nullable<Cow<str>>` fits where
/// `Option<Cow<str>>` did.
#[test]
fn nullable_is_as_small_as_option() {
    use std::mem::size_of;
    assert_eq!(size_of::<Nullable<Cow<'_, str>>>(), size_of::<Option<Cow<'_, str>>>());
    assert_eq!(size_of::<Nullable<u64>>(), size_of::<Option<u64>>());
    assert_eq!(Nullable::from(Some(3)), Nullable::Value(3));
    assert_eq!(Nullable::<u8>::from(None), Nullable::Absent);
    assert_eq!(Nullable::Value(Cow::Borrowed("x")).as_deref(), Nullable::Value("x"));
    assert!(Nullable::<u8>::Null.is_null() && Nullable::<u8>::Absent.is_absent());
    assert_eq!(Nullable::<u8>::Null.value(), None);
}
