//! Backend (server → client) messages and the framing decoder.

use bytes::{Buf, Bytes, BytesMut};

use super::cursor::Cursor;
use crate::error::{DbError, Error, Result};

/// Largest authentication (`R`) message accepted (libpq uses the same bound).
pub const MAX_AUTH_LEN: usize = 2000;
/// Largest message of a type that is never big (anything but T/D/d/V/E/N/A).
pub const MAX_SMALL_LEN: usize = 30000;
/// Default cap for CopyData, DataRow and the other large message types: the server's own 1 GiB limit.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 1 << 30;

/// An `Authentication*` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// `AuthenticationOk`
    Ok,
    /// `AuthenticationCleartextPassword`
    CleartextPassword,
    /// `AuthenticationMD5Password`
    Md5Password {
        /// The 4-byte salt.
        salt: [u8; 4],
    },
    /// `AuthenticationSASL`: the mechanisms the server offers.
    Sasl(Vec<String>),
    /// `AuthenticationSASLContinue`
    SaslContinue(Bytes),
    /// `AuthenticationSASLFinal`
    SaslFinal(Bytes),
    /// Another method (2 KerberosV5, 6 SCM credentials, 7 GSS, 8 GSS continue, 9 SSPI): not supported.
    Unsupported(i32),
}

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    /// Column name.
    pub name: String,
    /// Table OID (0 if not a table column).
    pub table_oid: i32,
    /// Column attribute number.
    pub column: i16,
    /// Data type OID.
    pub type_oid: i32,
    /// Type length.
    pub type_len: i16,
    /// Type modifier.
    pub type_modifier: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// CopyInResponse / CopyOutResponse / CopyBothResponse body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyResponse {
    /// 0 text, 1 binary.
    pub format: u8,
    /// Per-column formats.
    pub column_formats: Vec<i16>,
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendMessage {
    /// `R`
    Authentication(Authentication),
    /// `S`
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// Its value.
        value: String,
    },
    /// `K`
    BackendKeyData {
        /// Backend process id.
        process_id: i32,
        /// Cancel key (4 bytes in protocol 3.0).
        secret_key: Bytes,
    },
    /// `Z` with the transaction status byte (`I`, `T`, `E`).
    ReadyForQuery(u8),
    /// `T`
    RowDescription(Vec<FieldDescription>),
    /// `D`: column values, `None` for NULL; zero-copy slices of the frame.
    DataRow(Vec<Option<Bytes>>),
    /// `C`: the command tag.
    CommandComplete(String),
    /// `I`
    EmptyQueryResponse,
    /// `E` (boxed, as `N`: the fields are large, and every message is moved a few times on the stream's hot
    /// path, where these are rare)
    ErrorResponse(Box<DbError>),
    /// `N`
    NoticeResponse(Box<DbError>),
    /// `A`
    NotificationResponse {
        /// Notifying backend pid.
        process_id: i32,
        /// Channel.
        channel: String,
        /// Payload.
        payload: String,
    },
    /// `G`
    CopyInResponse(CopyResponse),
    /// `H`
    CopyOutResponse(CopyResponse),
    /// `W`
    CopyBothResponse(CopyResponse),
    /// `d`: the payload, zero-copy.
    CopyData(Bytes),
    /// `c`
    CopyDone,
    /// `v`
    NegotiateProtocolVersion {
        /// Newest minor version the server supports.
        newest_minor: i32,
        /// Protocol options it did not recognize.
        unrecognized: Vec<String>,
    },
}

impl BackendMessage {
    /// A short name for errors ("unexpected CopyData during startup").
    pub fn name(&self) -> &'static str {
        match self {
            BackendMessage::Authentication(_) => "Authentication",
            BackendMessage::ParameterStatus { .. } => "ParameterStatus",
            BackendMessage::BackendKeyData { .. } => "BackendKeyData",
            BackendMessage::ReadyForQuery(_) => "ReadyForQuery",
            BackendMessage::RowDescription(_) => "RowDescription",
            BackendMessage::DataRow(_) => "DataRow",
            BackendMessage::CommandComplete(_) => "CommandComplete",
            BackendMessage::EmptyQueryResponse => "EmptyQueryResponse",
            BackendMessage::ErrorResponse(_) => "ErrorResponse",
            BackendMessage::NoticeResponse(_) => "NoticeResponse",
            BackendMessage::NotificationResponse { .. } => "NotificationResponse",
            BackendMessage::CopyInResponse(_) => "CopyInResponse",
            BackendMessage::CopyOutResponse(_) => "CopyOutResponse",
            BackendMessage::CopyBothResponse(_) => "CopyBothResponse",
            BackendMessage::CopyData(_) => "CopyData",
            BackendMessage::CopyDone => "CopyDone",
            BackendMessage::NegotiateProtocolVersion { .. } => "NegotiateProtocolVersion",
        }
    }
}

/// Splits a byte stream into backend messages.
///
/// Feed it the connection's read buffer; [`Decoder::decode`] returns `Ok(None)` until a whole frame is there
/// and never reserves memory for a length the server merely claims: the buffer only grows as bytes arrive, and
/// a frame longer than its type's cap is an error as soon as its header is seen.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_message_len: usize,
    startup: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { max_message_len: DEFAULT_MAX_MESSAGE_LEN, startup: true }
    }
}

impl Decoder {
    /// A decoder in startup mode with the default caps.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the cap for large message types (CopyData, DataRow, …). At least [`MAX_SMALL_LEN`].
    pub fn with_max_message_len(mut self, n: usize) -> Self {
        self.max_message_len = n.max(MAX_SMALL_LEN);
        self
    }

    /// Leave startup mode (after the first ReadyForQuery): pre-3.0 error detection is turned off.
    pub fn set_startup_done(&mut self) {
        self.startup = false;
    }

    /// Decode one message from the front of `buf`, consuming its bytes. `Ok(None)`: need more bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BackendMessage>> {
        let Some(header) = buf.get(..5) else {
            return self.check_partial_header(buf);
        };
        let tag = header.first().copied().unwrap_or(0);
        let len_bytes: [u8; 4] = header.get(1..5).and_then(|s| s.try_into().ok()).unwrap_or([0; 4]);
        let len = u32::from_be_bytes(len_bytes) as usize;
        if tag == b'E' && self.startup && !(8..=MAX_SMALL_LEN).contains(&len) {
            // A pre-3.0 server (or the postmaster failing to fork) answers with "E" and plain text up to a NUL:
            // wait for the NUL (bounded), as libpq does, so the whole text is reported.
            let text = buf.get(1..).unwrap_or(&[]);
            return match text.iter().position(|&b| b == 0) {
                Some(end) => Err(old_server_error(text.get(..end).unwrap_or(&[]))),
                None if text.len() >= MAX_SMALL_LEN => Err(old_server_error(text.get(..MAX_SMALL_LEN).unwrap_or(&[]))),
                None => Ok(None),
            };
        }
        if !is_known_tag(tag) {
            return Err(unknown_tag(tag));
        }
        if len < 4 {
            return Err(Error::protocol(format!("message {:?} has invalid length {len} (below 4)", tag as char)));
        }
        let cap = match tag {
            b'R' => MAX_AUTH_LEN,
            b'T' | b'D' | b'd' | b'V' | b'E' | b'N' | b'A' => self.max_message_len,
            _ => MAX_SMALL_LEN,
        };
        if tag == b'R' && len < 8 {
            return Err(Error::protocol(format!("authentication message length {len} below 8")));
        }
        if len > cap {
            return Err(Error::protocol(format!(
                "message {:?} claims length {len}, above the cap of {cap} for this message type",
                printable(tag)
            )));
        }
        if self.startup && !is_startup_tag(tag) {
            return Err(unexpected_in_startup(tag));
        }
        let total = len + 1;
        if buf.len() < total {
            return Ok(None);
        }
        buf.advance(5);
        let body = buf.split_to(len - 4).freeze();
        parse_body(tag, body).map(Some)
    }

    fn check_partial_header(&self, buf: &BytesMut) -> Result<Option<BackendMessage>> {
        // Even before the length is complete, an unknown tag is an error: fail fast on garbage.
        if let Some(&tag) = buf.first() {
            if !is_known_tag(tag) {
                return Err(unknown_tag(tag));
            }
            if self.startup && !is_startup_tag(tag) {
                return Err(unexpected_in_startup(tag));
            }
        }
        Ok(None)
    }

    /// The error to report when the server closes the connection with `buf` unconsumed: during startup, the
    /// text of a pre-3.0 error that never got its NUL terminator; otherwise `None` (a plain "connection closed").
    pub fn eof_error(&self, buf: &BytesMut) -> Option<Error> {
        if !self.startup || buf.first() != Some(&b'E') {
            return None;
        }
        let len_bytes: [u8; 4] = buf.get(1..5).and_then(|s| s.try_into().ok())?;
        if (8..=MAX_SMALL_LEN).contains(&(u32::from_be_bytes(len_bytes) as usize)) {
            return None;
        }
        let text = buf.get(1..).unwrap_or(&[]);
        Some(old_server_error(text.get(..text.len().min(MAX_SMALL_LEN)).unwrap_or(&[])))
    }
}

fn printable(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        (tag as char).to_string()
    } else {
        format!("\\x{tag:02x}")
    }
}

fn is_known_tag(tag: u8) -> bool {
    matches!(
        tag,
        b'R' | b'S'
            | b'K'
            | b'Z'
            | b'T'
            | b'D'
            | b'C'
            | b'I'
            | b'E'
            | b'N'
            | b'A'
            | b'G'
            | b'H'
            | b'W'
            | b'd'
            | b'c'
            | b'v'
    )
}

/// Message types a server sends before the first ReadyForQuery.
fn is_startup_tag(tag: u8) -> bool {
    matches!(tag, b'R' | b'E' | b'N' | b'v' | b'S' | b'K' | b'Z')
}

fn unexpected_in_startup(tag: u8) -> Error {
    Error::protocol(format!("unexpected message type '{}' during startup", printable(tag)))
}

fn old_server_error(text: &[u8]) -> Error {
    let msg = String::from_utf8_lossy(text);
    Error::protocol(format!("server sent a pre-protocol-3.0 error during startup: {}", msg.trim_end()))
}

fn unknown_tag(tag: u8) -> Error {
    Error::protocol(format!("unknown backend message type '{}'", printable(tag)))
}

/// Parse the body of a message whose tag and length were already checked.
pub fn parse_body(tag: u8, body: Bytes) -> Result<BackendMessage> {
    let msg = match tag {
        b'R' => BackendMessage::Authentication(parse_auth(&body)?),
        b'S' => {
            let mut c = Cursor::new(&body, "ParameterStatus");
            let name = c.string()?;
            let value = c.string()?;
            c.finish()?;
            BackendMessage::ParameterStatus { name, value }
        }
        b'K' => {
            let mut c = Cursor::new(&body, "BackendKeyData");
            let process_id = c.i32()?;
            let secret_key = c.rest();
            if secret_key.len() < 4 || secret_key.len() > 256 {
                return Err(Error::protocol(format!("BackendKeyData key of {} bytes", secret_key.len())));
            }
            BackendMessage::BackendKeyData { process_id, secret_key }
        }
        b'Z' => {
            let mut c = Cursor::new(&body, "ReadyForQuery");
            let s = c.u8()?;
            c.finish()?;
            if !matches!(s, b'I' | b'T' | b'E') {
                return Err(Error::protocol(format!("ReadyForQuery with unknown status {:?}", printable(s))));
            }
            BackendMessage::ReadyForQuery(s)
        }
        b'T' => BackendMessage::RowDescription(parse_row_description(&body)?),
        b'D' => BackendMessage::DataRow(parse_data_row(&body)?),
        b'C' => {
            let mut c = Cursor::new(&body, "CommandComplete");
            let tag = c.string()?;
            c.finish()?;
            BackendMessage::CommandComplete(tag)
        }
        b'I' => {
            Cursor::new(&body, "EmptyQueryResponse").finish()?;
            BackendMessage::EmptyQueryResponse
        }
        b'E' => BackendMessage::ErrorResponse(Box::new(parse_fields(&body, "ErrorResponse")?)),
        b'N' => BackendMessage::NoticeResponse(Box::new(parse_fields(&body, "NoticeResponse")?)),
        b'A' => {
            let mut c = Cursor::new(&body, "NotificationResponse");
            let process_id = c.i32()?;
            let channel = c.string()?;
            let payload = c.string()?;
            c.finish()?;
            BackendMessage::NotificationResponse { process_id, channel, payload }
        }
        b'G' => BackendMessage::CopyInResponse(parse_copy_response(&body, "CopyInResponse")?),
        b'H' => BackendMessage::CopyOutResponse(parse_copy_response(&body, "CopyOutResponse")?),
        b'W' => BackendMessage::CopyBothResponse(parse_copy_response(&body, "CopyBothResponse")?),
        b'd' => BackendMessage::CopyData(body),
        b'c' => {
            Cursor::new(&body, "CopyDone").finish()?;
            BackendMessage::CopyDone
        }
        b'v' => {
            let mut c = Cursor::new(&body, "NegotiateProtocolVersion");
            let newest_minor = c.i32()?;
            let n = c.i32()?;
            if n < 0 || n as usize > c.remaining() {
                return Err(Error::protocol(format!("NegotiateProtocolVersion with {n} options")));
            }
            let mut unrecognized = Vec::with_capacity(n as usize);
            for _ in 0..n {
                unrecognized.push(c.string()?);
            }
            c.finish()?;
            BackendMessage::NegotiateProtocolVersion { newest_minor, unrecognized }
        }
        other => return Err(unknown_tag(other)),
    };
    Ok(msg)
}

fn parse_auth(body: &Bytes) -> Result<Authentication> {
    let mut c = Cursor::new(body, "Authentication");
    let code = c.i32()?;
    let a = match code {
        0 => Authentication::Ok,
        3 => Authentication::CleartextPassword,
        5 => {
            let s = c.take(4)?;
            let salt: [u8; 4] = s.try_into().map_err(|_| Error::protocol("MD5 salt"))?;
            Authentication::Md5Password { salt }
        }
        10 => {
            let mut mechs = Vec::new();
            loop {
                let m = c.cstr()?;
                if m.is_empty() {
                    break;
                }
                mechs.push(String::from_utf8_lossy(m).into_owned());
            }
            Authentication::Sasl(mechs)
        }
        11 => return Ok(Authentication::SaslContinue(c.rest())),
        12 => return Ok(Authentication::SaslFinal(c.rest())),
        2 | 6 | 7 | 9 => Authentication::Unsupported(code),
        8 => return Ok(Authentication::Unsupported(code)),
        other => return Err(Error::protocol(format!("unknown authentication request type {other}"))),
    };
    c.finish()?;
    Ok(a)
}

fn parse_row_description(body: &Bytes) -> Result<Vec<FieldDescription>> {
    let mut c = Cursor::new(body, "RowDescription");
    let n = c.i16()?;
    // each field needs at least 19 bytes: never allocate for more fields than could fit
    if n < 0 || (n as usize).saturating_mul(19) > c.remaining() {
        return Err(Error::protocol(format!("RowDescription claims {n} fields in {} bytes", body.len())));
    }
    let mut fields = Vec::with_capacity(n as usize);
    for _ in 0..n {
        fields.push(FieldDescription {
            name: c.string()?,
            table_oid: c.i32()?,
            column: c.i16()?,
            type_oid: c.i32()?,
            type_len: c.i16()?,
            type_modifier: c.i32()?,
            format: c.i16()?,
        });
    }
    c.finish()?;
    Ok(fields)
}

fn parse_data_row(body: &Bytes) -> Result<Vec<Option<Bytes>>> {
    let mut c = Cursor::new(body, "DataRow");
    let n = c.i16()?;
    if n < 0 || (n as usize).saturating_mul(4) > c.remaining() {
        return Err(Error::protocol(format!("DataRow claims {n} columns in {} bytes", body.len())));
    }
    let mut cols = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let len = c.i32()?;
        if len == -1 {
            cols.push(None);
        } else if len < 0 {
            return Err(Error::protocol(format!("DataRow column length {len}")));
        } else {
            cols.push(Some(c.take_bytes(len as usize)?));
        }
    }
    c.finish()?;
    Ok(cols)
}

fn parse_copy_response(body: &Bytes, what: &'static str) -> Result<CopyResponse> {
    let mut c = Cursor::new(body, what);
    let format = c.u8()?;
    let n = c.i16()?;
    if n < 0 || (n as usize).saturating_mul(2) != c.remaining() {
        return Err(Error::protocol(format!("{what} claims {n} columns in {} bytes", body.len())));
    }
    let mut column_formats = Vec::with_capacity(n as usize);
    for _ in 0..n {
        column_formats.push(c.i16()?);
    }
    Ok(CopyResponse { format, column_formats })
}

/// Parse ErrorResponse / NoticeResponse fields.
pub fn parse_fields(body: &Bytes, what: &'static str) -> Result<DbError> {
    let mut c = Cursor::new(body, what);
    let mut e = DbError::default();
    let mut localized_severity = None;
    loop {
        let code = c.u8()?;
        if code == 0 {
            break;
        }
        let v = c.string()?;
        match code {
            b'S' => localized_severity = Some(v),
            b'V' => e.severity = v,
            b'C' => e.code = v,
            b'M' => e.message = v,
            b'D' => e.detail = Some(v),
            b'H' => e.hint = Some(v),
            b'P' | b'p' => e.position = Some(v),
            b'W' => e.where_ = Some(v),
            b's' => e.schema = Some(v),
            b't' => e.table = Some(v),
            b'c' => e.column = Some(v),
            b'd' => e.datatype = Some(v),
            b'n' => e.constraint = Some(v),
            b'F' => e.file = Some(v),
            b'L' => e.line = Some(v),
            b'R' => e.routine = Some(v),
            _ => {} // the protocol says unknown field types must be ignored
        }
    }
    c.finish()?;
    if e.severity.is_empty() {
        e.severity = localized_severity.unwrap_or_default();
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    /// Every CopyData of a stream is moved a few times as a `BackendMessage` (decoder, result, match): large
    /// variants stay boxed so that the enum stays a few words (it was 368 bytes with `DbError` inline, and those
    /// moves were 3 % of a drain's instructions).
    #[test]
    fn a_backend_message_is_small() {
        assert!(std::mem::size_of::<BackendMessage>() <= 64, "{}", std::mem::size_of::<BackendMessage>());
        assert!(std::mem::size_of::<Result<Option<BackendMessage>>>() <= 72);
    }

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<BackendMessage>> {
        let mut d = Decoder::new();
        d.set_startup_done();
        let mut buf = BytesMut::from(bytes);
        let mut out = vec![];
        while let Some(m) = d.decode(&mut buf)? {
            out.push(m);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(out)
    }

    #[test]
    fn parses_every_startup_message() {
        let mut b = vec![];
        b.extend(frame(b'R', &0i32.to_be_bytes()));
        b.extend(frame(b'R', &3i32.to_be_bytes()));
        b.extend(frame(b'R', &[0, 0, 0, 5, 1, 2, 3, 4]));
        b.extend(frame(b'R', b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"));
        b.extend(frame(b'R', b"\0\0\0\x0br=abc"));
        b.extend(frame(b'R', b"\0\0\0\x0cv=xyz"));
        b.extend(frame(b'S', b"server_version\x0015.4\0"));
        b.extend(frame(b'K', &[0, 0, 0, 42, 9, 9, 9, 9]));
        b.extend(frame(b'Z', b"I"));
        b.extend(frame(b'v', b"\0\0\0\0\0\0\0\x01_pq_.x\0"));
        let m = decode_all(&b).unwrap();
        assert_eq!(m[0], BackendMessage::Authentication(Authentication::Ok));
        assert_eq!(m[1], BackendMessage::Authentication(Authentication::CleartextPassword));
        assert_eq!(m[2], BackendMessage::Authentication(Authentication::Md5Password { salt: [1, 2, 3, 4] }));
        assert_eq!(
            m[3],
            BackendMessage::Authentication(Authentication::Sasl(vec![
                "SCRAM-SHA-256-PLUS".into(),
                "SCRAM-SHA-256".into()
            ]))
        );
        assert_eq!(m[4], BackendMessage::Authentication(Authentication::SaslContinue(Bytes::from_static(b"r=abc"))));
        assert_eq!(m[5], BackendMessage::Authentication(Authentication::SaslFinal(Bytes::from_static(b"v=xyz"))));
        assert_eq!(m[6], BackendMessage::ParameterStatus { name: "server_version".into(), value: "15.4".into() });
        assert_eq!(
            m[7],
            BackendMessage::BackendKeyData { process_id: 42, secret_key: Bytes::from_static(&[9, 9, 9, 9]) }
        );
        assert_eq!(m[8], BackendMessage::ReadyForQuery(b'I'));
        assert_eq!(
            m[9],
            BackendMessage::NegotiateProtocolVersion { newest_minor: 0, unrecognized: vec!["_pq_.x".into()] }
        );
    }

    #[test]
    fn parses_query_and_copy_messages() {
        let mut rd = vec![0, 2];
        for name in [&b"slot_name"[..], b"lsn"] {
            rd.extend_from_slice(name);
            rd.push(0);
            rd.put_i32(0);
            rd.put_i16(0);
            rd.put_i32(25);
            rd.put_i16(-1);
            rd.put_i32(-1);
            rd.put_i16(0);
        }
        let mut b = frame(b'T', &rd);
        b.extend(frame(b'D', b"\0\x02\0\0\0\x02ab\xff\xff\xff\xff"));
        b.extend(frame(b'C', b"SELECT 1\0"));
        b.extend(frame(b'I', b""));
        b.extend(frame(b'W', b"\0\0\0"));
        b.extend(frame(b'H', b"\0\0\x01\0\0"));
        b.extend(frame(b'd', b"hello"));
        b.extend(frame(b'c', b""));
        b.extend(frame(b'E', b"SERROR\0VERROR\0C28P01\0Mpassword authentication failed\0Dd\0Hh\0Xignored\0\0"));
        b.extend(frame(b'N', b"SWARNUNG\0VWARNING\0C01000\0Mcareful\0\0"));
        let m = decode_all(&b).unwrap();
        match &m[0] {
            BackendMessage::RowDescription(f) => {
                assert_eq!(f.len(), 2);
                assert_eq!(f[1].name, "lsn");
                assert_eq!(f[1].type_oid, 25);
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(m[1], BackendMessage::DataRow(vec![Some(Bytes::from_static(b"ab")), None]));
        assert_eq!(m[2], BackendMessage::CommandComplete("SELECT 1".into()));
        assert_eq!(m[3], BackendMessage::EmptyQueryResponse);
        assert_eq!(m[4], BackendMessage::CopyBothResponse(CopyResponse { format: 0, column_formats: vec![] }));
        assert_eq!(m[5], BackendMessage::CopyOutResponse(CopyResponse { format: 0, column_formats: vec![0] }));
        assert_eq!(m[6], BackendMessage::CopyData(Bytes::from_static(b"hello")));
        assert_eq!(m[7], BackendMessage::CopyDone);
        match &m[8] {
            BackendMessage::ErrorResponse(e) => {
                assert_eq!(e.code, "28P01");
                assert_eq!(e.severity, "ERROR");
                assert_eq!(e.message, "password authentication failed");
                assert_eq!(e.detail.as_deref(), Some("d"));
                assert_eq!(e.hint.as_deref(), Some("h"));
            }
            o => panic!("{o:?}"),
        }
        match &m[9] {
            BackendMessage::NoticeResponse(e) => assert_eq!(e.severity, "WARNING"),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let all = frame(b'd', b"0123456789");
        let mut d = Decoder::new();
        d.set_startup_done();
        let mut buf = BytesMut::new();
        for (i, b) in all.iter().enumerate() {
            buf.put_u8(*b);
            let r = d.decode(&mut buf).unwrap();
            if i + 1 < all.len() {
                assert!(r.is_none());
            } else {
                assert_eq!(r, Some(BackendMessage::CopyData(Bytes::from_static(b"0123456789"))));
            }
        }
    }

    #[test]
    fn framing_caps() {
        let mut d = Decoder::new();
        d.set_startup_done();
        // length below 4
        let e = d.decode(&mut BytesMut::from(&b"d\0\0\0\x03"[..])).unwrap_err();
        assert!(e.to_string().contains("below 4"), "{e}");
        // auth message too long, too short
        assert!(d.decode(&mut BytesMut::from(&b"R\0\0\x07\xd1"[..])).is_err());
        assert!(d.decode(&mut BytesMut::from(&b"R\0\0\0\x06"[..])).is_err());
        // a small type above 30000
        assert!(d.decode(&mut BytesMut::from(&b"S\0\0\x75\x31"[..])).is_err());
        // 0xFFFFFFFF
        assert!(d.decode(&mut BytesMut::from(&b"d\xff\xff\xff\xff"[..])).is_err());
        // HTTP / RESP / garbage
        assert!(d.decode(&mut BytesMut::from(&b"@RSYNCD: 31.0\n"[..])).is_err());
        assert!(d.decode(&mut BytesMut::from(&b"HTTP/1.1 400"[..])).is_err());
        // unknown tag fails even before a full header
        assert!(d.decode(&mut BytesMut::from(&b"@"[..])).is_err());
        // configurable cap for CopyData
        let mut small = Decoder::new().with_max_message_len(40000);
        small.set_startup_done();
        assert!(small.decode(&mut BytesMut::from(&b"d\0\x01\0\0"[..])).is_err());
        assert!(small.decode(&mut BytesMut::from(&b"d\0\0\x9c\x40"[..])).unwrap().is_none());
    }

    #[test]
    fn old_server_plain_text_error() {
        let mut d = Decoder::new();
        let e = d.decode(&mut BytesMut::from(&b"EFATAL: unsupported frontend protocol\n\0"[..])).unwrap_err();
        assert!(e.to_string().contains("unsupported frontend protocol"), "{e}");
        // "Ecoul…" (Ecould not …): the length bytes are ASCII, far above the cap; the text waits for its NUL
        let mut buf = BytesMut::from(&b"Ecould not fork"[..]);
        assert!(d.decode(&mut buf).unwrap().is_none());
        assert!(d.eof_error(&buf).unwrap().to_string().contains("could not fork"));
        buf.extend_from_slice(b" new process\0");
        let e = d.decode(&mut buf).unwrap_err();
        assert!(e.to_string().contains("could not fork new process"), "{e}");
        // bounded: no NUL within 30000 bytes is an error, not a wait
        let mut long = BytesMut::from(&b"Ex"[..]);
        long.extend_from_slice(&vec![b'a'; MAX_SMALL_LEN]);
        assert!(d.decode(&mut long).is_err());
    }

    #[test]
    fn startup_accepts_only_startup_types() {
        // large types claiming up to the 1 GiB cap fail on the header, not after the body
        for tag in [b'd', b'D', b'T', b'A'] {
            let mut d = Decoder::new();
            let e = d.decode(&mut BytesMut::from(&[tag, 0x3f, 0xff, 0xff, 0xff][..])).unwrap_err();
            assert!(e.to_string().contains("during startup"), "{e}");
        }
        for tag in [b'd', b'D', b'T', b'A', b'W', b'C', b'c', b'I', b'G', b'H'] {
            let mut d = Decoder::new();
            assert!(d.decode(&mut BytesMut::from(&[tag, 0, 0, 0, 4][..])).is_err());
            assert!(Decoder::new().decode(&mut BytesMut::from(&[tag][..])).is_err());
        }
        let mut d = Decoder::new();
        assert!(d.decode(&mut BytesMut::from(&frame(b'Z', b"I")[..])).unwrap().is_some());
    }

    #[test]
    fn strings_must_end_inside_the_message() {
        assert!(decode_all(&frame(b'S', b"name\0value")).is_err());
        assert!(decode_all(&frame(b'C', b"SELECT")).is_err());
        assert!(decode_all(&frame(b'E', b"Mno terminator")).is_err());
        assert!(decode_all(&frame(b'R', b"\0\0\0\x0aSCRAM")).is_err());
        // DataRow column longer than the message, negative counts
        assert!(decode_all(&frame(b'D', b"\0\x01\0\0\0\x09ab")).is_err());
        assert!(decode_all(&frame(b'D', b"\xff\xff")).is_err());
        assert!(decode_all(&frame(b'D', b"\x7f\xff")).is_err());
        assert!(decode_all(&frame(b'T', b"\x7f\xff")).is_err());
        // trailing bytes
        assert!(decode_all(&frame(b'Z', b"II")).is_err());
        assert!(decode_all(&frame(b'Z', b"Q")).is_err());
        assert!(decode_all(&frame(b'R', b"\0\0\0\x63")).is_err());
        assert!(decode_all(&frame(b'c', b"x")).is_err());
    }
}
