//! pgoutput's rules: options, where each message sits in a transaction, where acknowledging points.

use super::{Boundary, Decoding, OutputPlugin, Router, StreamedTxns, TxnClassifier};
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::pgoutput::message::{end_lsn, peek_message_flags};
use crate::pgoutput::PgoutputDecoder;

/// pgoutput, the output plugin every PostgreSQL since 10 ships (no extension to install).
///
/// # Options
/// pgoutput requires `proto_version` and `publication_names`. A `Pgoutput` holds both (and the optional
/// `binary`, `messages`, `streaming`, `two_phase`, `origin`) and gives them as its
/// [`default_options`](OutputPlugin::default_options); options a user passes by name (the CLI's `-o`) replace
/// the ones of the same name ([`Pgoutput::options`], which also checks them). [`by_name`](super::by_name) gives
/// [`Pgoutput::default`] for `"pgoutput"`: no protocol version (then the highest the server speaks,
/// [`Pgoutput::proto_version_for`] its version, filled in by [`start_options`](OutputPlugin::start_options) when
/// streaming starts, for `ChangeStream` and `pgrepl recv` alike) and **no publication**: there is no sensible
/// default name, so the publication must be given (`Pgoutput::new(["my_pub"])`, or `-o publication_names=my_pub`),
/// and [`Pgoutput::options`] / `start_options` say so in plain words before anything is sent (the server's own
/// error is cryptic).
///
/// # Transaction boundaries and acknowledgement
/// The tracker classifies each payload by its type byte (and a Message by its transactional flag):
///
/// | payload | boundary | acknowledging it points at |
/// |---|---|---|
/// | Begin `B`, Begin Prepare `b` | [`Boundary::Begin`] | — |
/// | Relation, Type, Origin, Insert, Update, Delete, Truncate, transactional Message | [`Boundary::Inside`] | — |
/// | Commit `C`, Stream Commit `c` | [`Boundary::End`] | its end LSN |
/// | Prepare `P`, Stream Prepare `p` | [`Boundary::End`] | the prepare's end LSN |
/// | Commit Prepared `K`, Rollback Prepared `r` | [`Boundary::Whole`] | its end LSN (the payload's position) |
/// | non-transactional Message | [`Boundary::Whole`] | its own LSN (the payload's position) |
/// | Stream Start `S`, Stream Stop `E`, Stream Abort `A`, and everything inside a streamed block | [`Boundary::Inside`] | — (never an acknowledgement point) |
///
/// The server sends a commit (and a prepare, commit prepared, rollback prepared) with its XLogData position
/// (`dataStart`) at the *end* of the commit record (`txn->end_lsn`, logical.c), which is also the message's end
/// LSN field: [`commit_lsn`](OutputPlugin::commit_lsn) reads that field (and falls back to the position).
/// Acknowledging it confirms the transaction: a restart begins after it, so it is not sent again (the server
/// skips a transaction whose commit record starts before the confirmed position).
///
/// **Streamed transactions.** With `streaming` (protocol 2+), a transaction larger than
/// `logical_decoding_work_mem` arrives in segments before it commits, interleaved with other transactions. Its
/// segment messages are never a boundary: nothing in them is committed, so nothing in them is a point to
/// confirm. Confirming a position *past* them (the end of another transaction that committed between two
/// segments, or an idle keepalive's) does not lose the streamed transaction: its commit record lies beyond any
/// position received so far, the slot's `restart_lsn` stays before its first change until it ends, and after a
/// reconnect the server decodes it again from there and, once past the confirmed position, streams it again
/// *from its first segment* (Stream Start with `first_segment`; the apply worker, worker.c, likewise discards a
/// streamed transaction's spooled changes when its connection ends). So the rule is: acknowledge only the end
/// LSNs of commits and prepares (and the positions of standalone messages) you have stored, in the order they
/// arrive; on a reconnect drop every streamed transaction not yet committed, and expect it again whole — which
/// the [`router`](OutputPlugin::router), [`StreamedTxns`], provides for: it holds each streamed transaction's
/// payloads until its Stream Commit or Stream Prepare releases them (and drops them at its Stream Abort), and is
/// reset per connection. A Stream Commit or Stream Prepare ends its transaction exactly like a Commit or Prepare
/// (End, its end LSN); a Stream Abort ends one that will never commit and confirms nothing (Inside). Two-phase: a
/// Prepare is the end of the prepared transaction's changes (acknowledged there, the server does not send them
/// again); its Commit Prepared or Rollback Prepared comes later as a unit of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pgoutput {
    /// `None`: the highest the server speaks ([`Pgoutput::proto_version_for`]).
    proto_version: Option<u32>,
    publications: Vec<String>,
    binary: Option<bool>,
    messages: Option<bool>,
    streaming: Option<String>,
    two_phase: Option<bool>,
    origin: Option<String>,
}

impl Default for Pgoutput {
    /// The server's highest protocol, no publication (one must be given, see the type's docs).
    fn default() -> Self {
        Pgoutput {
            proto_version: None,
            publications: Vec::new(),
            binary: None,
            messages: None,
            streaming: None,
            two_phase: None,
            origin: None,
        }
    }
}

impl Pgoutput {
    /// pgoutput with these publications (protocol 1).
    pub fn new<S: Into<String>>(publications: impl IntoIterator<Item = S>) -> Self {
        Pgoutput { publications: publications.into_iter().map(Into::into).collect(), ..Pgoutput::default() }
    }
    /// The protocol version (`proto_version`): 1 (10+), 2 (14+, streaming), 3 (15+, two-phase), 4 (16+, parallel
    /// streaming).
    pub fn proto_version(mut self, v: u32) -> Self {
        self.proto_version = Some(v);
        self
    }
    /// The highest protocol version a server of `server_version_num` (e.g. 150004) speaks: 1 before 14, 2 on 14,
    /// 3 on 15, 4 on 16 and later.
    pub fn proto_version_for(server_version_num: u32) -> u32 {
        match server_version_num {
            0..=139_999 => 1,
            140_000..=149_999 => 2,
            150_000..=159_999 => 3,
            _ => 4,
        }
    }
    /// `binary`: values in their types' send format (14+; see [`crate::pgoutput`] for what the decoder makes of
    /// them).
    pub fn binary(mut self, on: bool) -> Self {
        self.binary = Some(on);
        self
    }
    /// `messages`: send `pg_logical_emit_message` messages (14+).
    pub fn messages(mut self, on: bool) -> Self {
        self.messages = Some(on);
        self
    }
    /// `streaming`: `on`, `off`, or `parallel` (16+, protocol 4) — in-progress transactions in segments.
    pub fn streaming(mut self, mode: impl Into<String>) -> Self {
        self.streaming = Some(mode.into());
        self
    }
    /// `two_phase`: prepared transactions at their PREPARE (15+, protocol 3, a slot created with two-phase).
    pub fn two_phase(mut self, on: bool) -> Self {
        self.two_phase = Some(on);
        self
    }
    /// `origin`: `any` or `none` (16+).
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }
    /// The publications.
    pub fn publications(&self) -> &[String] {
        &self.publications
    }

    /// The options to start streaming with: [`default_options`](OutputPlugin::default_options) with `user`'s
    /// (e.g. the CLI's `-o`) replacing those of the same name and added after them, checked: a
    /// `publication_names` must be there and not empty, `proto_version` a positive integer. Errors are
    /// [`ErrorKind::Config`](crate::ErrorKind::Config).
    pub fn options(&self, user: &[(String, Option<String>)]) -> Result<Vec<(String, Option<String>)>> {
        let mut out = self.default_options();
        for (k, v) in user {
            match out.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = v.clone(),
                None => out.push((k.clone(), v.clone())),
            }
        }
        let get = |name: &str| out.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_deref());
        match get("publication_names") {
            Some(Some(v)) if !v.trim().is_empty() => {}
            _ => {
                return Err(Error::config(
                    "publication_names",
                    "pgoutput streams the tables of one or more publications and needs their names: \
                     give -o publication_names=NAME[,NAME…] (CREATE PUBLICATION NAME FOR ALL TABLES makes one)",
                ))
            }
        }
        match get("proto_version") {
            // absent: the server's highest, filled in by start_options
            None => {}
            Some(Some(v)) if v.trim().parse::<u32>().is_ok_and(|n| n >= 1) => {}
            _ => return Err(Error::config("proto_version", "pgoutput needs proto_version=1, 2, 3 or 4")),
        }
        Ok(out)
    }
}

/// `publication_names`' value: each name double-quoted (the server splits the list as identifiers, folding
/// unquoted ones to lower case), `"` doubled.
fn publication_list(names: &[String]) -> String {
    let mut s = String::new();
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        s.push_str(&n.replace('"', "\"\""));
        s.push('"');
    }
    s
}

fn flag(on: bool) -> Option<String> {
    Some(if on { "true" } else { "false" }.to_string())
}

impl OutputPlugin for Pgoutput {
    fn name(&self) -> &str {
        "pgoutput"
    }
    /// `proto_version`, `publication_names` (when publications were given) and each optional setting made.
    fn default_options(&self) -> Vec<(String, Option<String>)> {
        let mut o = vec![];
        if let Some(v) = self.proto_version {
            o.push(("proto_version".to_string(), Some(v.to_string())));
        }
        if !self.publications.is_empty() {
            o.push(("publication_names".into(), Some(publication_list(&self.publications))));
        }
        if let Some(b) = self.binary {
            o.push(("binary".into(), flag(b)));
        }
        if let Some(m) = self.messages {
            o.push(("messages".into(), flag(m)));
        }
        if let Some(s) = &self.streaming {
            o.push(("streaming".into(), Some(s.clone())));
        }
        if let Some(t) = self.two_phase {
            o.push(("two_phase".into(), flag(t)));
        }
        if let Some(or) = &self.origin {
            o.push(("origin".into(), Some(or.clone())));
        }
        o
    }
    fn tracker(&self) -> Box<dyn TxnClassifier> {
        Box::new(PgoutputTracker::default())
    }
    /// `options` with `proto_version`, when absent, the highest the server speaks (1 before 14, 2 on 14, 3 on 15,
    /// 4 from 16), then checked as [`Pgoutput::options`] checks them: a missing `publication_names` is a clear
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) error before anything is sent.
    fn start_options(
        &self,
        server_version_num: Option<u32>,
        options: &[(String, Option<String>)],
    ) -> Result<Vec<(String, Option<String>)>> {
        let mut o = options.to_vec();
        if !o.iter().any(|(k, _)| k == "proto_version") {
            let v = Pgoutput::proto_version_for(server_version_num.unwrap_or(100_000));
            o.insert(0, ("proto_version".to_string(), Some(v.to_string())));
        }
        Pgoutput::default().options(&o)
    }
    /// The end LSN the payload carries (Commit, Stream Commit, Prepare, Stream Prepare, Commit Prepared,
    /// Rollback Prepared), which is also where the server sent it; the position otherwise.
    fn commit_lsn(&self, payload: &[u8], wal_start: Lsn) -> Lsn {
        end_lsn(payload).filter(|l| !l.is_invalid()).unwrap_or(wal_start)
    }
    /// [`StreamedTxns`]: a streamed transaction's segments are held until its Stream Commit (or Stream Prepare)
    /// and dropped at its Stream Abort, so that the application gets it whole, in commit order; the decoder
    /// then reads the held segments as they came (Stream Start and Stop included).
    fn router(&self) -> Box<dyn Router> {
        Box::new(StreamedTxns::default())
    }
}

impl Decoding for Pgoutput {
    type Decoder = PgoutputDecoder;
    fn decoder(&self) -> PgoutputDecoder {
        PgoutputDecoder::new()
    }
}

/// [`Pgoutput`]'s classification (see its docs): by the type byte, knowing whether a streamed block is open
/// (inside one a Message carries an xid before its flags).
#[derive(Debug, Default, Clone, Copy)]
pub struct PgoutputTracker {
    in_stream: bool,
    open: bool,
}

impl TxnClassifier for PgoutputTracker {
    fn classify(&mut self, p: &[u8]) -> Boundary {
        let Some((tag, transactional)) = peek_message_flags(p, self.in_stream) else {
            return if self.open || self.in_stream { Boundary::Inside } else { Boundary::Whole };
        };
        match tag {
            b'B' | b'b' => {
                self.open = true;
                Boundary::Begin
            }
            b'C' | b'P' => {
                self.open = false;
                Boundary::End
            }
            // after the last segment's Stream Stop
            b'c' | b'p' => Boundary::End,
            b'K' | b'r' => Boundary::Whole,
            b'S' => {
                self.in_stream = true;
                Boundary::Inside
            }
            b'E' => {
                self.in_stream = false;
                Boundary::Inside
            }
            b'A' => Boundary::Inside,
            b'M' if transactional == Some(false) => Boundary::Whole,
            _ if self.open || self.in_stream => Boundary::Inside,
            b'R' | b'Y' | b'O' | b'I' | b'U' | b'D' | b'T' | b'M' => Boundary::Inside,
            _ => Boundary::Whole,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_merge_and_check() {
        let p = Pgoutput::default();
        assert_eq!(p.default_options(), vec![]);
        let e = p.options(&[]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(e.to_string().contains("publication_names=NAME"), "{e}");
        let o = p.options(&[("publication_names".into(), Some("p".into()))]).unwrap();
        assert_eq!(o, vec![("publication_names".into(), Some("p".into()))]);
        // start_options: the server's highest protocol when none is given, a given one kept
        let start = p.start_options(Some(150_018), &o).unwrap();
        assert_eq!(start[0], ("proto_version".into(), Some("3".into())));
        let start = p.start_options(Some(130_000), &o).unwrap();
        assert_eq!(start[0], ("proto_version".into(), Some("1".into())));
        let mut given = o.clone();
        given.push(("proto_version".into(), Some("2".into())));
        let start = p.start_options(Some(180_000), &given).unwrap();
        assert!(start.contains(&("proto_version".into(), Some("2".into()))) && start.len() == 2, "{start:?}");
        let e = p.start_options(Some(150_000), &[]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        let p = Pgoutput::new(["My Pub", "b\"q"]).proto_version(2).messages(true).streaming("on");
        assert_eq!(p.publications(), ["My Pub", "b\"q"]);
        let o =
            p.options(&[("proto_version".into(), Some("3".into())), ("binary".into(), Some("true".into()))]).unwrap();
        assert_eq!(
            o,
            vec![
                ("proto_version".into(), Some("3".into())),
                ("publication_names".into(), Some("\"My Pub\",\"b\"\"q\"".into())),
                ("messages".into(), Some("true".into())),
                ("streaming".into(), Some("on".into())),
                ("binary".into(), Some("true".into())),
            ]
        );
        assert!(p.options(&[("proto_version".into(), Some("x".into()))]).is_err());
        assert!(p.options(&[("proto_version".into(), None)]).is_err());
        assert!(p.options(&[("publication_names".into(), Some(" ".into()))]).is_err());
        let p = Pgoutput::new(["p"]).binary(false).two_phase(true).origin("none");
        let o = p.default_options();
        assert!(o.contains(&("binary".into(), Some("false".into()))));
        assert!(o.contains(&("two_phase".into(), Some("true".into()))));
        assert!(o.contains(&("origin".into(), Some("none".into()))));
        assert_eq!(Pgoutput::proto_version_for(130_010), 1);
        assert_eq!(Pgoutput::proto_version_for(140_000), 2);
        assert_eq!(Pgoutput::proto_version_for(150_018), 3);
        assert_eq!(Pgoutput::proto_version_for(160_000), 4);
        assert_eq!(Pgoutput::proto_version_for(180_004), 4);
    }

    #[test]
    fn boundaries() {
        let mut t = PgoutputTracker::default();
        let lsn = [0u8; 8];
        let m = |xid: Option<u32>, flags: u8| {
            let mut v = vec![b'M'];
            if let Some(x) = xid {
                v.extend_from_slice(&x.to_be_bytes());
            }
            v.push(flags);
            v.extend_from_slice(&lsn);
            v.extend_from_slice(b"p\0\0\0\0\0");
            v
        };
        for (p, b) in [
            (vec![b'B'], Boundary::Begin),
            (vec![b'R'], Boundary::Inside),
            (vec![b'I'], Boundary::Inside),
            (m(None, 1), Boundary::Inside),
            (m(None, 0), Boundary::Whole),
            (vec![b'C'], Boundary::End),
            (m(None, 0), Boundary::Whole),
            (m(None, 1), Boundary::Inside),
            // a streamed block: nothing in it is a boundary; a Message there has an xid before its flags
            (vec![b'S', 0, 0, 0, 9, 1], Boundary::Inside),
            (vec![b'R'], Boundary::Inside),
            (vec![b'I'], Boundary::Inside),
            (m(Some(0x0100_0000), 1), Boundary::Inside),
            (vec![b'E'], Boundary::Inside),
            // another transaction between two segments
            (vec![b'B'], Boundary::Begin),
            (vec![b'U'], Boundary::Inside),
            (vec![b'C'], Boundary::End),
            (vec![b'S', 0, 0, 0, 9, 0], Boundary::Inside),
            (vec![b'D'], Boundary::Inside),
            (vec![b'E'], Boundary::Inside),
            (vec![b'A'], Boundary::Inside),
            (vec![b'c'], Boundary::End),
            (m(None, 0), Boundary::Whole),
            (vec![b'b'], Boundary::Begin),
            (vec![b'T'], Boundary::Inside),
            (vec![b'P'], Boundary::End),
            (vec![b'K'], Boundary::Whole),
            (vec![b'r'], Boundary::Whole),
            (vec![b'p'], Boundary::End),
            (vec![b'A'], Boundary::Inside),
            (vec![], Boundary::Whole),
            (vec![b'?'], Boundary::Whole),
        ] {
            assert_eq!(t.classify(&p), b, "{p:?}");
        }
    }

    #[test]
    fn streamed_transactions_are_routed() {
        let mut r = Pgoutput::default().router();
        assert_eq!(r.route(&[b'S', 0, 0, 0, 7, 1]).unwrap(), super::super::Route::Hold { xid: 7, sub: 7 });
        assert_eq!(r.route(b"E").unwrap(), super::super::Route::Hold { xid: 7, sub: 7 });
        assert_eq!(r.route(b"B").unwrap(), super::super::Route::Deliver);
    }

    #[test]
    fn commit_lsn_is_the_end_lsn() {
        let p = Pgoutput::default();
        let mut c = vec![b'C', 0];
        c.extend_from_slice(&0x10_u64.to_be_bytes());
        c.extend_from_slice(&0x28_u64.to_be_bytes());
        c.extend_from_slice(&0_i64.to_be_bytes());
        assert_eq!(p.commit_lsn(&c, Lsn(0x28)), Lsn(0x28));
        assert_eq!(p.commit_lsn(&c, Lsn(7)), Lsn(0x28));
        let mut sc = vec![b'c', 0, 0, 0, 5, 0];
        sc.extend_from_slice(&0x30_u64.to_be_bytes());
        sc.extend_from_slice(&0x48_u64.to_be_bytes());
        sc.extend_from_slice(&0_i64.to_be_bytes());
        assert_eq!(p.commit_lsn(&sc, Lsn(1)), Lsn(0x48));
        assert_eq!(p.commit_lsn(b"C", Lsn(9)), Lsn(9));
        assert_eq!(p.commit_lsn(b"B", Lsn(9)), Lsn(9));
    }
}
