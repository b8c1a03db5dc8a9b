//! `tls-server-end-point` channel binding (RFC 5929) for SCRAM-SHA-256-PLUS.
//!
//! [`server_end_point_hash`] computes RFC 5929's `tls-server-end-point` data from the server certificate:
//! its hash with the certificate signature's hash function, SHA-256 for MD5 and SHA-1 signatures, as
//! PostgreSQL does (OpenSSL's `X509_get_signature_info`). RSA-PSS signatures use the hash named in their
//! parameters. Ed25519/Ed448 (and unknown algorithms) have none: SCRAM-SHA-256-PLUS is then impossible and
//! [`crate::auth::Authenticator`] refuses it (security checklist item 14). The signature algorithm is read
//! with a tiny bounds-checked DER walk ([`signature_algorithm`]): no X.509 crate is needed for three fields.

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

/// The hash function of `tls-server-end-point` channel binding for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndPointHash {
    /// SHA-224 (`sha224With…` signatures).
    Sha224,
    /// SHA-256: SHA-256, SHA-1 and MD5 signatures.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl EndPointHash {
    /// The hash function for the certificate's signature algorithm; `None` when it has none that PostgreSQL
    /// would use (Ed25519, Ed448, SHA-3, unknown algorithms).
    pub fn for_certificate(cert_der: &[u8]) -> Option<EndPointHash> {
        let (oid, params) = signature_algorithm(cert_der)?;
        hash_for_signature(oid, params)
    }

    /// Hash `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            EndPointHash::Sha224 => Sha224::digest(data).to_vec(),
            EndPointHash::Sha256 => Sha256::digest(data).to_vec(),
            EndPointHash::Sha384 => Sha384::digest(data).to_vec(),
            EndPointHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// RFC 5929 `tls-server-end-point` data for a DER certificate: its hash with [`EndPointHash::for_certificate`];
/// `None` when there is no such hash (then channel binding is impossible).
pub fn server_end_point_hash(cert_der: &[u8]) -> Option<Vec<u8>> {
    EndPointHash::for_certificate(cert_der).map(|h| h.digest(cert_der))
}

// Object identifiers, as their DER content bytes.
const PKCS1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01]; // 1.2.840.113549.1.1
const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01]; // 1.2.840.10045.4.1
const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03]; // 1.2.840.10045.4.3
const DSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x03]; // 1.2.840.10040.4.3
const NIST_SIG: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03]; // 2.16.840.1.101.3.4.3
const NIST_HASH: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02]; // 2.16.840.1.101.3.4.2
const OIW_SHA1_RSA: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1d]; // 1.3.14.3.2.29
const OIW_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a]; // 1.3.14.3.2.26
const MD5: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05]; // 1.2.840.113549.2.5

/// `oid` = `prefix` followed by one arc below 128; that arc.
fn arc_after(oid: &[u8], prefix: &[u8]) -> Option<u8> {
    match oid.strip_prefix(prefix)? {
        [arc] if *arc < 0x80 => Some(*arc),
        _ => None,
    }
}

/// The channel-binding hash for a signature algorithm (`oid` and its DER parameters), as PostgreSQL picks it.
fn hash_for_signature(oid: &[u8], params: &[u8]) -> Option<EndPointHash> {
    use EndPointHash::*;
    if let Some(arc) = arc_after(oid, PKCS1) {
        return match arc {
            4 | 5 | 11 => Some(Sha256), // md5, sha1, sha256 WithRSAEncryption
            12 => Some(Sha384),
            13 => Some(Sha512),
            14 => Some(Sha224),
            10 => pss_hash(params), // RSASSA-PSS
            _ => None,              // md2, md4, sha512-224/256, unknown
        };
    }
    if oid == ECDSA_SHA1 || oid == DSA_SHA1 || oid == OIW_SHA1_RSA {
        return Some(Sha256);
    }
    if let Some(arc) = arc_after(oid, ECDSA_SHA2) {
        return match arc {
            1 => Some(Sha224),
            2 => Some(Sha256),
            3 => Some(Sha384),
            4 => Some(Sha512),
            _ => None,
        };
    }
    if let Some(arc) = arc_after(oid, NIST_SIG) {
        // dsa-with-sha224/256/384/512; 5..=16 are SHA-3 signatures, which need a SHA-3 hash we do not have.
        return match arc {
            1 => Some(Sha224),
            2 => Some(Sha256),
            3 => Some(Sha384),
            4 => Some(Sha512),
            _ => None,
        };
    }
    // Ed25519 (1.3.101.112), Ed448 (1.3.101.113) and everything else: no hash.
    None
}

/// The hash of an RSASSA-PSS signature: `hashAlgorithm [0]` of its parameters, SHA-1 (→ SHA-256) by default.
fn pss_hash(params: &[u8]) -> Option<EndPointHash> {
    let mut outer = Der::new(params);
    let mut seq = Der::new(outer.expect(TAG_SEQUENCE)?);
    let hash_oid = match seq.peek_tag() {
        Some(0xa0) => {
            let mut explicit = Der::new(seq.expect(0xa0)?);
            let mut alg = Der::new(explicit.expect(TAG_SEQUENCE)?);
            alg.expect(TAG_OID)?
        }
        _ => return Some(EndPointHash::Sha256),
    };
    if hash_oid == OIW_SHA1 || hash_oid == MD5 {
        return Some(EndPointHash::Sha256);
    }
    match arc_after(hash_oid, NIST_HASH)? {
        1 => Some(EndPointHash::Sha256),
        2 => Some(EndPointHash::Sha384),
        3 => Some(EndPointHash::Sha512),
        4 => Some(EndPointHash::Sha224),
        _ => None,
    }
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_OID: u8 = 0x06;

/// The certificate's `signatureAlgorithm`: its OID (content bytes) and the DER of its parameters (may be
/// empty). `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm AlgorithmIdentifier,
/// signatureValue BIT STRING }`, `AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }`.
/// `None` for anything malformed.
pub fn signature_algorithm(cert_der: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut outer = Der::new(cert_der);
    let mut cert = Der::new(outer.expect(TAG_SEQUENCE)?);
    cert.expect(TAG_SEQUENCE)?; // tbsCertificate
    let mut alg = Der::new(cert.expect(TAG_SEQUENCE)?);
    let oid = alg.expect(TAG_OID)?;
    Some((oid, alg.rest()))
}

/// A bounds-checked reader of DER tag-length-value items (single-byte tags, definite lengths up to 4 bytes).
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    fn rest(&self) -> &'a [u8] {
        self.rest
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next item: its tag and content.
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.rest.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // high-tag-number form: never used by the fields read here
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None; // indefinite length (not DER) or longer than any certificate
            }
            let (len_bytes, rest) = rest.split_at_checked(n)?;
            (len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)), rest)
        };
        let (content, rest) = rest.split_at_checked(len)?;
        self.rest = rest;
        Some((tag, content))
    }

    /// The next item's content if it has tag `tag`.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (t, content) if t == tag => Some(content),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    /// DER item with a definite length (long form when needed).
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        let n = content.len();
        if n < 0x80 {
            v.push(n as u8);
        } else if n < 0x100 {
            v.extend([0x81, n as u8]);
        } else {
            v.extend([0x82, (n >> 8) as u8, n as u8]);
        }
        v.extend_from_slice(content);
        v
    }

    /// A certificate-shaped DER: SEQUENCE { tbs SEQUENCE, AlgorithmIdentifier { oid, params }, BIT STRING }.
    fn cert_with(oid: &[u8], params: &[u8], tbs_len: usize) -> Vec<u8> {
        let mut alg = tlv(TAG_OID, oid);
        alg.extend_from_slice(params);
        let mut body = tlv(TAG_SEQUENCE, &vec![0x05; tbs_len]);
        body.extend(tlv(TAG_SEQUENCE, &alg));
        body.extend(tlv(0x03, &[0, 1, 2, 3]));
        tlv(TAG_SEQUENCE, &body)
    }

    fn oid(prefix: &[u8], arc: u8) -> Vec<u8> {
        let mut v = prefix.to_vec();
        v.push(arc);
        v
    }

    const NULL: &[u8] = &[0x05, 0x00];
    const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    const ED448: &[u8] = &[0x2b, 0x65, 0x71];

    #[test]
    fn hash_choice_follows_postgresql() {
        use EndPointHash::*;
        let cases: Vec<(Vec<u8>, &[u8], Option<EndPointHash>)> = vec![
            (oid(PKCS1, 4), NULL, Some(Sha256)),  // md5WithRSAEncryption
            (oid(PKCS1, 5), NULL, Some(Sha256)),  // sha1WithRSAEncryption
            (oid(PKCS1, 11), NULL, Some(Sha256)), // sha256WithRSAEncryption
            (oid(PKCS1, 12), NULL, Some(Sha384)),
            (oid(PKCS1, 13), NULL, Some(Sha512)),
            (oid(PKCS1, 14), NULL, Some(Sha224)),
            (oid(PKCS1, 2), NULL, None),  // md2
            (oid(PKCS1, 15), NULL, None), // sha512-224
            (OIW_SHA1_RSA.to_vec(), NULL, Some(Sha256)),
            (ECDSA_SHA1.to_vec(), b"", Some(Sha256)),
            (oid(ECDSA_SHA2, 1), b"", Some(Sha224)),
            (oid(ECDSA_SHA2, 2), b"", Some(Sha256)),
            (oid(ECDSA_SHA2, 3), b"", Some(Sha384)),
            (oid(ECDSA_SHA2, 4), b"", Some(Sha512)),
            (DSA_SHA1.to_vec(), b"", Some(Sha256)),
            (oid(NIST_SIG, 2), b"", Some(Sha256)),
            (oid(NIST_SIG, 10), b"", None), // ecdsa-with-SHA3-256
            (ED25519.to_vec(), b"", None),
            (ED448.to_vec(), b"", None),
            (vec![0x2a, 0x03], b"", None),
        ];
        for (o, params, want) in cases {
            for tbs_len in [3, 200, 300] {
                let cert = cert_with(&o, params, tbs_len);
                assert_eq!(EndPointHash::for_certificate(&cert), want, "oid {o:02x?} tbs {tbs_len}");
                assert_eq!(server_end_point_hash(&cert), want.map(|h| h.digest(&cert)));
            }
        }
    }

    #[test]
    fn rsa_pss_uses_the_hash_in_its_parameters() {
        let pss = oid(PKCS1, 10);
        let with_hash = |hash_oid: &[u8]| {
            let mut alg = tlv(TAG_OID, hash_oid);
            alg.extend_from_slice(NULL);
            let mut params = tlv(0xa0, &tlv(TAG_SEQUENCE, &alg));
            params.extend(tlv(0xa1, &tlv(TAG_SEQUENCE, &tlv(TAG_OID, &[0x2a, 0x86]))));
            params.extend(tlv(0xa2, &[0x02, 0x01, 0x20]));
            tlv(TAG_SEQUENCE, &params)
        };
        let cases = [
            (with_hash(&oid(NIST_HASH, 1)), Some(EndPointHash::Sha256)),
            (with_hash(&oid(NIST_HASH, 2)), Some(EndPointHash::Sha384)),
            (with_hash(&oid(NIST_HASH, 3)), Some(EndPointHash::Sha512)),
            (with_hash(&oid(NIST_HASH, 4)), Some(EndPointHash::Sha224)),
            (with_hash(OIW_SHA1), Some(EndPointHash::Sha256)),
            (with_hash(MD5), Some(EndPointHash::Sha256)),
            (with_hash(&oid(NIST_HASH, 8)), None), // SHA3-256
            // All defaults: SHA-1, so SHA-256.
            (tlv(TAG_SEQUENCE, &[]), Some(EndPointHash::Sha256)),
            (tlv(TAG_SEQUENCE, &tlv(0xa2, &[0x02, 0x01, 0x20])), Some(EndPointHash::Sha256)),
            // Missing or broken parameters.
            (Vec::new(), None),
            (NULL.to_vec(), None),
            (tlv(TAG_SEQUENCE, &tlv(0xa0, &[0x30, 0x05])), None),
        ];
        for (params, want) in cases {
            assert_eq!(EndPointHash::for_certificate(&cert_with(&pss, &params, 10)), want, "{params:02x?}");
        }
    }

    // Real certificates made with `openssl req -x509`; the expected hashes come from `openssl dgst`.
    const P384_SHA384: &str = "-----BEGIN CERTIFICATE-----
MIIBsjCCATigAwIBAgIURjXywr1uv5B7hmG+JF9dsZRN0EswCgYIKoZIzj0EAwMw
DzENMAsGA1UEAwwEcDM4NDAgFw0yNjExMjUxMzUwMjZaGA8yMTI2MTEwMTEzNTAy
NlowDzENMAsGA1UEAwwEcDM4NDB2MBAGByqGSM49AgEGBSuBBAAiA2IABCNePEZ/
IM4mHzRYtpOEXDy2f2HKOPVE+kngxPvbSj7sq/AU/fIfhpQQ6WEUlTaTTWmU0Rkb
0zZ7v2UU8sze6ij6B62qHs+OekVatdhcdf4dlbs68XJO1V4MmThBh/+AhKNTMFEw
HQYDVR0OBBYEFObETSrTM+IWsV8Fo5imt83JkZPqMB8GA1UdIwQYMBaAFObETSrT
M+IWsV8Fo5imt83JkZPqMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwMDaAAw
ZQIwRErfUxX2ep1lrypWrhzIvMCpqYOSt3javlBo1rRmhr0zX5X8i2md8xwvkFIh
maBZAjEA0XTBwxha5oaHx27+htpQJxBwJ6bqLafeb+uQAJQwZ/O51sfSrVjDx7kj
JCkqAg5L
-----END CERTIFICATE-----";
    const P384_SHA384_HASH: &str =
        "fb92607f67a15dc5cf314aa84c66f240aa93b1c016b0bf83b1e7c13852ac3696c4975eb343b5b8f89f6b30568b8d9195";
    const P256_SHA1: &str = "-----BEGIN CERTIFICATE-----
MIIBczCCARqgAwIBAgIUTApDtbTtlJ/JDxF7awb+vMprO0EwCQYHKoZIzj0EATAP
MQ0wCwYDVQQDDARzaGExMCAXDTI2MTEyNTEzNTAyN1oYDzIxMjYxMTAxMTM1MDI3
WjAPMQ0wCwYDVQQDDARzaGExMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENeK8
PEFsXOQwD9EX4aYYU3wb1PfhQVEsBUskVkvspZyylX9NzmHB/sCJQvQ63il+Zs4u
5W/tr/4IDg/ssnlC+aNTMFEwHQYDVR0OBBYEFJufQMwpI95vQ6jof11sJ1Db0tRd
MB8GA1UdIwQYMBaAFJufQMwpI95vQ6jof11sJ1Db0tRdMA8GA1UdEwEB/wQFMAMB
Af8wCQYHKoZIzj0EAQNIADBFAiB1Yp95jFfs9YA4w1J7j3qvgzkp8Enl1hzuZ65l
1w8emQIhAKVdfhpABRRll8Sz7NBroeSRoWn+OvR0k71S5t33ivNW
-----END CERTIFICATE-----";
    const P256_SHA1_HASH: &str = "432d077d384606434605c46ec08266597ce8722b8d5dfd99aed474a5164e4607";
    const ED25519_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBMDCB46ADAgECAhRLYho7aG81TGEq4z54taT47PTWrDAFBgMrZXAwDTELMAkG
A1UEAwwCZWQwIBcNMjYxMTI1MTM1MDI2WhgPMjEyNjExMDExMzUwMjZaMA0xCzAJ
BgNVBAMMAmVkMCowBQYDK2VwAyEA3uSSilwBC2YHeKaZPYFx7g8ApT/9XKrotreJ
/C44DkKjUzBRMB0GA1UdDgQWBBS2RYqCcChSB0qmGAt4viCDC0ZMgzAfBgNVHSME
GDAWgBS2RYqCcChSB0qmGAt4viCDC0ZMgzAPBgNVHRMBAf8EBTADAQH/MAUGAytl
cANBAO4GrygmWfCIYii+QJJ0w/iWWGIe9A01TGq+lDABpoXZxJsyrQ6ViTM+nG5r
UAPa9q/p4Yj0aOfnlRW/HcGJRAQ=
-----END CERTIFICATE-----";

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn real_certificates() {
        let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let p384 = der(P384_SHA384);
        assert_eq!(EndPointHash::for_certificate(&p384), Some(EndPointHash::Sha384));
        assert_eq!(hex(&server_end_point_hash(&p384).unwrap()), P384_SHA384_HASH);
        let p256 = der(P256_SHA1);
        assert_eq!(EndPointHash::for_certificate(&p256), Some(EndPointHash::Sha256));
        assert_eq!(hex(&server_end_point_hash(&p256).unwrap()), P256_SHA1_HASH);
        let ed = der(ED25519_CERT);
        assert_eq!(signature_algorithm(&ed).map(|(o, _)| o.to_vec()), Some(ED25519.to_vec()));
        assert_eq!(server_end_point_hash(&ed), None);
    }

    #[test]
    fn malformed_der_is_none() {
        let good = cert_with(&oid(PKCS1, 11), NULL, 5);
        assert!(signature_algorithm(&good).is_some());
        for cut in 0..good.len() {
            assert_eq!(signature_algorithm(&good[..cut]), None, "cut at {cut}");
        }
        let bad: &[&[u8]] = &[
            &[],
            &[0x30],
            &[0x30, 0x80, 0x00, 0x00],                         // indefinite length
            &[0x30, 0x85, 1, 0, 0, 0, 0],                      // 5-byte length
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],             // longer than the input
            &[0x31, 0x02, 0x30, 0x00],                         // SET, not SEQUENCE
            &[0x30, 0x04, 0x30, 0x00, 0x31, 0x00],             // algorithm is not a SEQUENCE
            &[0x30, 0x06, 0x30, 0x00, 0x30, 0x02, 0x05, 0x00], // no OID
            &[0x1f, 0x81, 0x00],                               // high tag number
        ];
        for b in bad {
            assert_eq!(signature_algorithm(b), None, "{b:02x?}");
            assert_eq!(server_end_point_hash(b), None);
        }
    }

    proptest! {
        #[test]
        fn der_walk_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), oidb in any::<u8>()) {
            let _ = server_end_point_hash(&bytes);
            let _ = pss_hash(&bytes);
            let cert = cert_with(&oid(PKCS1, oidb & 0x7f), &bytes, 3);
            let _ = EndPointHash::for_certificate(&cert);
        }
    }
}
