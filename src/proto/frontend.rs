//! Frontend (client → server) message encoders. Each appends one message to a `BytesMut` and back-fills its
//! length; a message that would not fit the protocol's i32 length, or a string with an embedded NUL, is an error.

use bytes::{BufMut, BytesMut};

use crate::error::{Error, Result};

/// Protocol version 3.0.
pub const PROTOCOL_VERSION: i32 = 196608;
/// The SSLRequest code.
pub const SSL_REQUEST_CODE: i32 = 80877103;

fn write_body(buf: &mut BytesMut, tag: Option<u8>, f: impl FnOnce(&mut BytesMut) -> Result<()>) -> Result<()> {
    let start = buf.len();
    if let Some(t) = tag {
        buf.put_u8(t);
    }
    let len_at = buf.len();
    buf.put_i32(0);
    if let Err(e) = f(buf) {
        buf.truncate(start);
        return Err(e);
    }
    let len = buf.len() - len_at;
    let Ok(len32) = i32::try_from(len) else {
        buf.truncate(start);
        return Err(Error::protocol(format!("outbound message of {len} bytes exceeds the protocol's limit")));
    };
    if let Some(slot) = buf.get_mut(len_at..len_at + 4) {
        slot.copy_from_slice(&len32.to_be_bytes());
    }
    Ok(())
}

fn put_cstr(buf: &mut BytesMut, s: &[u8], what: &str) -> Result<()> {
    if s.contains(&0) {
        return Err(Error::new(crate::ErrorKind::Config, format!("{what} contains a NUL byte")));
    }
    buf.put_slice(s);
    buf.put_u8(0);
    Ok(())
}

/// StartupMessage with protocol 3.0 and the given parameters (user, database, replication, …).
pub fn startup(params: &[(&str, &str)], buf: &mut BytesMut) -> Result<()> {
    write_body(buf, None, |b| {
        b.put_i32(PROTOCOL_VERSION);
        for (k, v) in params {
            put_cstr(b, k.as_bytes(), "startup parameter name")?;
            put_cstr(b, v.as_bytes(), k)?;
        }
        b.put_u8(0);
        Ok(())
    })
}

/// SSLRequest.
pub fn ssl_request(buf: &mut BytesMut) {
    buf.put_i32(8);
    buf.put_i32(SSL_REQUEST_CODE);
}

/// PasswordMessage carrying a cleartext password or an MD5 hash (NUL-terminated).
pub fn password(pw: &[u8], buf: &mut BytesMut) -> Result<()> {
    write_body(buf, Some(b'p'), |b| put_cstr(b, pw, "password"))
}

/// SASLInitialResponse.
pub fn sasl_initial_response(mechanism: &str, data: &[u8], buf: &mut BytesMut) -> Result<()> {
    write_body(buf, Some(b'p'), |b| {
        put_cstr(b, mechanism.as_bytes(), "SASL mechanism")?;
        let n = i32::try_from(data.len()).map_err(|_| Error::protocol("SASL data too long"))?;
        b.put_i32(n);
        b.put_slice(data);
        Ok(())
    })
}

/// SASLResponse.
pub fn sasl_response(data: &[u8], buf: &mut BytesMut) -> Result<()> {
    write_body(buf, Some(b'p'), |b| {
        b.put_slice(data);
        Ok(())
    })
}

/// Query (simple query protocol).
pub fn query(sql: &str, buf: &mut BytesMut) -> Result<()> {
    write_body(buf, Some(b'Q'), |b| put_cstr(b, sql.as_bytes(), "query"))
}

/// CopyData.
pub fn copy_data(data: &[u8], buf: &mut BytesMut) -> Result<()> {
    write_body(buf, Some(b'd'), |b| {
        b.put_slice(data);
        Ok(())
    })
}

/// CopyDone.
pub fn copy_done(buf: &mut BytesMut) {
    buf.put_u8(b'c');
    buf.put_i32(4);
}

/// Terminate.
pub fn terminate(buf: &mut BytesMut) {
    buf.put_u8(b'X');
    buf.put_i32(4);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_exact_bytes() {
        let mut b = BytesMut::new();
        startup(&[("user", "u"), ("database", "d"), ("replication", "database")], &mut b).unwrap();
        let body = b"\0\x03\0\0user\0u\0database\0d\0replication\0database\0\0";
        assert_eq!(&b[..4], &((body.len() + 4) as i32).to_be_bytes());
        assert_eq!(&b[4..], &body[..]);

        let mut b = BytesMut::new();
        password(b"md5abc", &mut b).unwrap();
        assert_eq!(&b[..], b"p\0\0\0\x0bmd5abc\0");

        let mut b = BytesMut::new();
        sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=x", &mut b).unwrap();
        assert_eq!(&b[..], b"p\0\0\0\x1fSCRAM-SHA-256\0\0\0\0\x09n,,n=,r=x");

        let mut b = BytesMut::new();
        sasl_response(b"c=biws", &mut b).unwrap();
        assert_eq!(&b[..], b"p\0\0\0\x0ac=biws");

        let mut b = BytesMut::new();
        query("SELECT 1", &mut b).unwrap();
        assert_eq!(&b[..], b"Q\0\0\0\x0dSELECT 1\0");

        let mut b = BytesMut::new();
        copy_data(b"xy", &mut b).unwrap();
        copy_done(&mut b);
        terminate(&mut b);
        ssl_request(&mut b);
        assert_eq!(&b[..], b"d\0\0\0\x06xyc\0\0\0\x04X\0\0\0\x04\0\0\0\x08\x04\xd2\x16\x2f");
    }

    #[test]
    fn rejects_nul_and_leaves_buffer_untouched() {
        let mut b = BytesMut::from(&b"keep"[..]);
        assert!(query("SELECT '\0'", &mut b).is_err());
        assert!(password(b"a\0b", &mut b).is_err());
        assert!(startup(&[("user", "a\0")], &mut b).is_err());
        assert_eq!(&b[..], b"keep");
    }
}
