//! The decoders: [`Decoder`] (format 2), [`ChunkedDecoder`] (format 1, whole documents and write-in-chunks) and
//! [`AnyDecoder`] (either, detected per payload), and the [`Events`] iterator they return.

use crate::error::{Error, Result};

use std::borrow::Cow;

use super::scan::Cursor;
use super::{v1, v2, ChunkKind, Format};
use crate::event::{Column, Event, PkColumn, Transaction, Value};

/// Vecs kept for reuse, so that decoding allocates nothing per event in steady state.
const POOL_VECS: usize = 16;
/// Vecs grown past this many elements are not kept (a freak payload must not pin memory).
const POOL_MAX_CAPACITY: usize = 4096;

/// Reusable storage for the column vectors of events.
#[derive(Default)]
pub(crate) struct Scratch {
    cols: Vec<Vec<Column<'static>>>,
    pks: Vec<Vec<PkColumn<'static>>>,
    /// Strings of recycled events, reused to unescape strings with escapes.
    pub(crate) strings: Vec<String>,
    /// Format 1: the last `columnnames` / `columntypes` arrays of the current payload.
    pub(crate) names_cache: v1::ArrayCache,
    pub(crate) types_cache: v1::ArrayCache,
    /// Format 2: the previous row's column prefixes, for `columns` and for `identity`.
    pub(crate) col_prefixes: [v2::ColumnPrefixes; 2],
}

/// At most this many pooled strings, each of at most this capacity.
const POOL_STRINGS: usize = 1024;
const POOL_STRING_MAX: usize = 64 * 1024;

/// Empty `v` and give its allocation a new lifetime parameter. `Vec`'s in-place collection reuses the
/// allocation (same size and alignment), so no memory is allocated or freed here.
#[allow(clippy::unnecessary_filter_map)] // the map changes the lifetime parameter
fn relife_cols<'c>(mut v: Vec<Column<'_>>) -> Vec<Column<'c>> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

#[allow(clippy::unnecessary_filter_map)]
fn relife_pks<'c>(mut v: Vec<PkColumn<'_>>) -> Vec<PkColumn<'c>> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

impl Scratch {
    /// Forget what was cached about the previous payload.
    #[inline]
    fn new_payload(&mut self) -> &mut Self {
        self.names_cache.reset();
        self.types_cache.reset();
        self
    }
    #[inline]
    pub(crate) fn take_columns<'a>(&mut self) -> Vec<Column<'a>> {
        self.cols.pop().map(relife_cols).unwrap_or_default()
    }
    #[inline]
    pub(crate) fn put_columns(&mut self, v: Vec<Column<'_>>) {
        if v.capacity() == 0 || v.capacity() > POOL_MAX_CAPACITY || self.cols.len() >= POOL_VECS {
            return;
        }
        self.cols.push(relife_cols(v));
    }
    #[inline]
    pub(crate) fn take_pk<'a>(&mut self) -> Vec<PkColumn<'a>> {
        self.pks.pop().map(relife_pks).unwrap_or_default()
    }
    #[inline]
    pub(crate) fn put_pk(&mut self, v: Vec<PkColumn<'_>>) {
        if v.capacity() == 0 || v.capacity() > POOL_MAX_CAPACITY || self.pks.len() >= POOL_VECS {
            return;
        }
        self.pks.push(relife_pks(v));
    }
    #[inline]
    fn put_string(&mut self, s: Cow<'_, str>) {
        if let Cow::Owned(s) = s {
            if self.strings.len() < POOL_STRINGS && s.capacity() <= POOL_STRING_MAX {
                self.strings.push(s);
            }
        }
    }
    /// Take the owned strings out of `cols` (names and values into the pool) and empty it.
    ///
    /// The columns are emptied here field by field rather than by `clear()`: the compiler's drop of a whole
    /// `Column` (five `Cow`s to check) is an out-of-line call per column since `default` became a [`Nullable`]
    /// (+8 instructions per column, +2.4 % on the wide-row corpus); this loop visits each column anyway.
    ///
    /// [`Nullable`]: super::Nullable
    #[inline]
    fn harvest(&mut self, cols: &mut Vec<Column<'_>>) {
        for c in cols.iter_mut() {
            // every field named, so that a new one is a compile error here rather than a leak
            let Column { name, type_name, type_oid: _, value, optional: _, position: _, default } = c;
            if let Cow::Owned(s) = name {
                let s = std::mem::take(s);
                self.put_string(Cow::Owned(s));
            }
            if let Value::String(Cow::Owned(s)) | Value::Number(Cow::Owned(s)) = value {
                let s = std::mem::take(s);
                self.put_string(Cow::Owned(s));
            }
            // owned type names and defaults (unescaped or raw-quoted ones; rare): freed
            if let Some(Cow::Owned(s)) = type_name {
                drop(std::mem::take(s));
            }
            if let super::Nullable::Value(Cow::Owned(s)) = default {
                drop(std::mem::take(s));
            }
        }
        // SAFETY: a length of 0 exposes no uninitialised element. The columns are not dropped, but nothing in
        // them owns memory any more: each owned string was replaced by an empty `String` above, which owns none
        // (the other fields are borrowed strings and plain values).
        unsafe { cols.set_len(0) };
    }
    #[inline]
    pub(crate) fn recycle(&mut self, ev: Event<'_>) {
        if let Event::Insert(mut c) | Event::Update(mut c) | Event::Delete(mut c) = ev {
            self.harvest(&mut c.columns);
            self.harvest(&mut c.identity);
            self.put_columns(c.columns);
            self.put_columns(c.identity);
            if let Some(p) = c.pk {
                self.put_pk(p);
            }
        }
    }
}

/// Format 2 decoder: one payload, one event.
///
/// ```
/// use pgrepl::wal2json::{Decoder, Event};
/// let mut d = Decoder::new();
/// let payload = br#"{"action":"I","schema":"public","table":"t","columns":[{"name":"id","type":"integer","value":1}]}"#;
/// let ev = d.decode(payload)?;
/// if let Event::Insert(c) = &ev {
///     assert_eq!(c.table, "t");
///     assert_eq!(c.column("id").unwrap().value.as_i64(), Some(1));
/// }
/// d.recycle(ev); // hand the column storage back: no allocation on the next decode
/// # Ok::<(), pgrepl::Error>(())
/// ```
#[derive(Default)]
pub struct Decoder {
    scratch: Scratch,
}

impl Decoder {
    /// A new decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode one format 2 payload. The event borrows from `payload`.
    #[inline]
    pub fn decode<'a>(&mut self, payload: &'a [u8]) -> Result<Event<'a>> {
        let mut cur = Cursor::new(payload);
        v2::parse(&mut cur, &mut self.scratch)
    }

    /// Give an event's column storage back for reuse (optional; without it each change allocates its Vecs).
    #[inline]
    pub fn recycle(&mut self, ev: Event<'_>) {
        self.scratch.recycle(ev);
    }

    /// Decode the payload's one event, call `f` on it, recycle it. Returns the number of events (1).
    #[inline]
    pub fn decode_each<'a>(&mut self, payload: &'a [u8], f: impl FnOnce(&Event<'a>)) -> Result<usize> {
        let ev = self.decode(payload)?;
        f(&ev);
        self.recycle(ev);
        Ok(1)
    }

    /// Decode, call `f`, recycle, returning what `f` returns.
    #[deprecated(note = "use `decode_each` (one naming scheme for decoder entry points: see `pgrepl::plugin`)")]
    #[inline]
    pub fn decode_with<'a, R>(&mut self, payload: &'a [u8], f: impl FnOnce(&Event<'a>) -> R) -> Result<R> {
        let ev = self.decode(payload)?;
        let r = f(&ev);
        self.recycle(ev);
        Ok(r)
    }
}

/// Format 1 decoder for whole documents and write-in-chunks messages.
///
/// Feed every payload in order. A whole document yields `Begin`, its changes and `Commit`; with
/// write-in-chunks the header chunk (`{"xid":…,"change":[`) yields `Begin`, each change chunk (`{…}` or `,{…}`)
/// yields its change as it arrives, and the closing chunk (`]}`) yields `Commit`. Only the header's keys are
/// kept between chunks, so memory is bounded by the largest single change, whatever the transaction's size.
#[derive(Default)]
pub struct ChunkedDecoder {
    scratch: Scratch,
    open: Option<Transaction<'static>>,
}

impl ChunkedDecoder {
    /// A new decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Take one payload; iterate the returned [`Events`] to get its events.
    pub fn events<'d, 'a>(&'d mut self, payload: &'a [u8]) -> Result<Events<'d, 'a>> {
        let fmt = Format::detect(payload)?;
        self.feed_as(payload, fmt)
    }

    /// The former name of [`ChunkedDecoder::events`].
    #[deprecated(note = "use `events` (one naming scheme for decoder entry points: see `pgrepl::plugin`)")]
    pub fn feed<'d, 'a>(&'d mut self, payload: &'a [u8]) -> Result<Events<'d, 'a>> {
        self.events(payload)
    }

    /// Decode `payload` and call `f` on each event (recycling each afterwards). Returns the number of events.
    pub fn decode_each<'a>(&mut self, payload: &'a [u8], mut f: impl FnMut(&Event<'a>)) -> Result<usize> {
        let mut events = self.events(payload)?;
        let mut n = 0;
        while let Some(ev) = events.next() {
            let ev = ev?;
            f(&ev);
            events.recycle(ev);
            n += 1;
        }
        Ok(n)
    }

    /// Whether a chunked transaction is open (its header arrived, its end not yet).
    pub fn in_transaction(&self) -> bool {
        self.open.is_some()
    }

    /// Forget an open chunked transaction (e.g. after a reconnect).
    pub fn reset(&mut self) {
        self.open = None;
    }

    /// Give an event's column storage back for reuse.
    pub fn recycle(&mut self, ev: Event<'_>) {
        self.scratch.recycle(ev);
    }

    fn feed_as<'d, 'a>(&'d mut self, payload: &'a [u8], fmt: Format) -> Result<Events<'d, 'a>> {
        let mut cur = Cursor::new(payload);
        let state = match fmt {
            Format::V2 => return Err(Error::decode(0, "format 2 payload given to the format 1 decoder")),
            Format::V1Document => State::DocHeader,
            Format::V1Chunk(ChunkKind::Header) => {
                let tx = v1::header(&mut cur)?;
                if !cur.at_end() {
                    return Err(cur.err("trailing characters after a chunk header"));
                }
                // A header while another chunked transaction is open means the previous one was cut short
                // (the server does not interleave): the new one replaces it.
                self.open = Some(tx.clone().into_owned());
                State::Begin(tx)
            }
            Format::V1Chunk(ChunkKind::Change) => {
                if self.open.is_none() {
                    return Err(Error::decode(0, "change chunk outside a chunked transaction"));
                }
                State::ChunkChange
            }
            Format::V1Chunk(ChunkKind::End) => {
                cur.require(b']', "expected ']'")?;
                cur.require(b'}', "expected '}'")?;
                if !cur.at_end() {
                    return Err(cur.err("trailing characters after a chunk end"));
                }
                let tx = self.open.take().ok_or_else(|| Error::decode(0, "chunk end outside a chunked transaction"))?;
                State::Commit(tx)
            }
        };
        Ok(Events { scratch: self.scratch.new_payload(), cur, state })
    }
}

/// Decoder for payloads of any wal2json format, detected per payload (see [`Format::detect`]), with the
/// reassembly state for format 1 write-in-chunks and the transaction-boundary state the stream needs.
#[derive(Default)]
pub struct AnyDecoder {
    v1: ChunkedDecoder,
    v2_open: bool,
}

impl AnyDecoder {
    /// A new decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Take one payload; iterate the returned [`Events`] to get its events (zero or more).
    pub fn events<'d, 'a>(&'d mut self, payload: &'a [u8]) -> Result<Events<'d, 'a>> {
        let fmt = Format::detect(payload)?;
        if fmt == Format::V2 {
            self.note_v2(payload);
            return Ok(Events { scratch: self.v1.scratch.new_payload(), cur: Cursor::new(payload), state: State::V2 });
        }
        self.v1.feed_as(payload, fmt)
    }

    /// The former name of [`AnyDecoder::events`].
    #[deprecated(note = "use `events` (one naming scheme for decoder entry points: see `pgrepl::plugin`)")]
    pub fn feed<'d, 'a>(&'d mut self, payload: &'a [u8]) -> Result<Events<'d, 'a>> {
        self.events(payload)
    }

    /// Decode `payload` and call `f` on each event (recycling each afterwards). Returns the number of events.
    pub fn decode_each<'a>(&mut self, payload: &'a [u8], mut f: impl FnMut(&Event<'a>)) -> Result<usize> {
        let fmt = Format::detect(payload)?;
        if fmt == Format::V2 {
            // format 2: its one event decoded and handed to `f` in place, without the iterator's Option/Result
            // layers around it
            self.note_v2(payload);
            let scratch = self.v1.scratch.new_payload();
            let ev = v2::parse(&mut Cursor::new(payload), scratch)?;
            f(&ev);
            scratch.recycle(ev);
            return Ok(1);
        }
        let mut events = self.v1.feed_as(payload, fmt)?;
        let mut n = 0;
        while let Some(ev) = events.next() {
            let ev = ev?;
            f(&ev);
            events.recycle(ev);
            n += 1;
        }
        Ok(n)
    }

    /// Update the transaction-boundary state for `payload` without decoding it (cheap: looks at the first
    /// key, the action and, for messages, `transactional`). Use either this or [`AnyDecoder::events`] for a
    /// payload, not both.
    pub fn classify(&mut self, payload: &[u8]) -> Result<super::Boundary> {
        let b = super::boundary_after(payload)?;
        match Format::detect(payload)? {
            Format::V2 => self.note_v2(payload),
            Format::V1Document => {}
            Format::V1Chunk(ChunkKind::Header) => {
                let mut cur = Cursor::new(payload);
                self.v1.open = Some(v1::header(&mut cur)?.into_owned());
            }
            Format::V1Chunk(ChunkKind::Change) => {}
            Format::V1Chunk(ChunkKind::End) => self.v1.open = None,
        }
        Ok(b)
    }

    /// The former name of [`AnyDecoder::classify`].
    #[deprecated(note = "use `classify` (one naming scheme for decoder entry points: see `pgrepl::plugin`)")]
    pub fn observe(&mut self, payload: &[u8]) -> Result<super::Boundary> {
        self.classify(payload)
    }

    /// Whether the payloads so far leave a transaction open: format 2 between `B` and `C`, format 1 between a
    /// chunk header and its end. (Format 2 without include-transaction has no `B`/`C`: never in a
    /// transaction; a whole format 1 document is a whole transaction.)
    pub fn in_transaction(&self) -> bool {
        self.v2_open || self.v1.in_transaction()
    }

    /// Forget any open transaction (e.g. after a reconnect, when the server resends from a commit boundary).
    pub fn reset(&mut self) {
        self.v2_open = false;
        self.v1.reset();
    }

    /// Give an event's column storage back for reuse.
    pub fn recycle(&mut self, ev: Event<'_>) {
        self.v1.scratch.recycle(ev);
    }

    fn note_v2(&mut self, payload: &[u8]) {
        match super::v2_action(payload) {
            Some(b'B') => self.v2_open = true,
            Some(b'C') => self.v2_open = false,
            _ => {}
        }
    }
}

enum State<'a> {
    Done,
    /// one format 2 object
    V2,
    /// a whole format 1 document, before its header
    DocHeader,
    /// inside a document's change array
    DocChanges {
        tx: Transaction<'a>,
        first: bool,
        standalone: bool,
    },
    /// a chunk header: its Begin
    Begin(Transaction<'a>),
    /// one change chunk
    ChunkChange,
    /// a chunk end: its Commit
    Commit(Transaction<'static>),
}

/// The events of one payload, decoded lazily as they are pulled.
///
/// Events borrow the payload (`'a`), not the decoder: they can be kept after the next `events`. Hand each one
/// back with [`Events::recycle`] when done with it to reuse its storage.
pub struct Events<'d, 'a> {
    scratch: &'d mut Scratch,
    cur: Cursor<'a>,
    state: State<'a>,
}

impl<'a> Events<'_, 'a> {
    /// Give an event's column storage back for reuse.
    #[inline]
    pub fn recycle(&mut self, ev: Event<'_>) {
        self.scratch.recycle(ev);
    }

    #[inline(always)]
    fn step(&mut self) -> Result<Option<Event<'a>>> {
        loop {
            // the common case, inside a document's change array, without moving the state around
            if let State::DocChanges { tx, first, standalone } = &mut self.state {
                if self.cur.eat(b']') {
                    let mut tx = std::mem::take(tx);
                    let standalone = *standalone;
                    self.state = State::Done;
                    v1::trailer(&mut self.cur, &mut tx)?;
                    return Ok(if standalone { None } else { Some(Event::Commit(tx)) });
                }
                if *first {
                    *first = false;
                    // wal2json 2.5 can print `{"change":[,{…` after a multi-change transaction
                    self.cur.eat(b',');
                } else if !self.cur.eat(b',') {
                    self.state = State::Done;
                    return Err(self.cur.err("expected ',' or ']'"));
                }
                let r = v1::change(&mut self.cur, self.scratch);
                if r.is_err() {
                    self.state = State::Done;
                }
                return r.map(Some);
            }
            match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return Ok(None),
                State::V2 => return v2::parse(&mut self.cur, self.scratch).map(Some),
                State::DocHeader => {
                    let tx = v1::header(&mut self.cur)?;
                    let standalone = v1::starts_nontx_message(&self.cur);
                    if standalone {
                        self.state = State::DocChanges { tx, first: true, standalone };
                        continue;
                    }
                    self.state = State::DocChanges { tx: tx.clone(), first: true, standalone };
                    return Ok(Some(Event::Begin(tx)));
                }
                // handled above
                State::DocChanges { .. } => return Ok(None),
                State::Begin(tx) => return Ok(Some(Event::Begin(tx))),
                State::ChunkChange => {
                    self.cur.eat(b',');
                    let ev = v1::change(&mut self.cur, self.scratch)?;
                    if !self.cur.at_end() {
                        return Err(self.cur.err("trailing characters after a change chunk"));
                    }
                    return Ok(Some(ev));
                }
                State::Commit(tx) => return Ok(Some(Event::Commit(tx))),
            }
        }
    }
}

impl<'a> Iterator for Events<'_, 'a> {
    type Item = Result<Event<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.step().transpose()
    }
}
