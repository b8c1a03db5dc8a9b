#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
use super::*;

fn all(p: &[u8]) -> Vec<Event<'static>> {
    let mut d = AnyDecoder::new();
    let it = d.feed(p).unwrap();
    let mut v = Vec::new();
    for e in it {
        v.push(e.unwrap().into_owned());
    }
    v
}

#[test]
fn v1_raw_defaults() {
    let p = br#"{"change":[{"kind":"insert","table":"d","columnnames":["id","q","x"],"columndefaults":[null,"'a"b\c'::text","'x","y'::text"],"columnvalues":[1,"a","b"]}]}"#;
    let ev = all(p);
    let c = ev[1].change().unwrap();
    assert_eq!(c.columns[1].default.as_deref(), Some(r#"'a"b\c'::text"#));
    assert_eq!(c.columns[2].default.as_deref(), Some(r#"'x","y'::text"#));
}

#[test]
fn v1_raw_defaults_real() {
    let p = b"{\"xid\":746,\"change\":[{\"kind\":\"insert\",\"schema\":\"public\",\"table\":\"defaults\",\"columnnames\":[\"id\",\"q\",\"x\",\"s\",\"ts\",\"n\",\"plain\"],\"columndefaults\":[null,\"'a\"b\\c'::text\",\"'x\",\"y'::text\",\"'tab\there'::text\",\"now()\",\"42\",null],\"columnvalues\":[1,\"a\\\"b\\\\c\",\"x\\\",\\\"y\",\"tab\\there\",\"2026\",42,\"p\"]}]}";
    let ev = all(p);
    let c = ev[1].change().unwrap();
    assert_eq!(c.columns[2].default.as_deref(), Some(r#"'x","y'::text"#));
    assert_eq!(c.columns[6].default, None);
}
