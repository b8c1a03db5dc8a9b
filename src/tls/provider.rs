//! The crypto provider: which library does TLS's cryptography, and with which algorithms.
//!
//! [`crypto_provider`] is the one place it is chosen, at build time:
//!
//! | | feature `tls`: *ring* | feature `tls-aws-lc`: aws-lc-rs |
//! |---|---|---|
//! | key exchange, preferred first | X25519, secp256r1, secp384r1 | **X25519MLKEM768**, X25519, secp256r1, secp384r1 |
//! | TLS 1.3 suites | AES-256-GCM-SHA384, AES-128-GCM-SHA256, CHACHA20-POLY1305-SHA256 | the same |
//! | TLS 1.2 suites | ECDHE-ECDSA then ECDHE-RSA, each with AES-256-GCM, AES-128-GCM, CHACHA20-POLY1305 | the same |
//! | signatures, keys, randomness | *ring*'s | aws-lc-rs's |
//!
//! With both features on, aws-lc-rs is used. Protocol versions are TLS 1.3 and 1.2 (PostgreSQL's
//! `ssl_min_protocol_version` defaults to TLS 1.2).
//!
//! **Why the lists are spelled out.** rustls's defaults change between patch releases: 0.23.48 put secp384r1
//! ahead of X25519 in *ring*'s default key-exchange order and deprecated `rustls::crypto::ring::default_provider`
//! ("no support for post-quantum algorithms"). Listed here, what pgrepl offers changes only with this file. The
//! lists are rustls 0.23.46's defaults, which pgrepl used until then, plus the post-quantum group for aws-lc-rs.
//!
//! **ring** (the `tls` feature, as before): a small C and assembly build that needs only a C compiler, classical
//! key exchange only. A recording of the session made today can be decrypted by whoever gets a large enough
//! quantum computer later ("harvest now, decrypt later"); for replication traffic that matters when it must stay
//! confidential for years. rustls exposes *ring*'s signature-verification algorithms, key loader and random
//! source only through the deprecated `default_provider`: [`ring`] takes them from it, in one place, and replaces
//! its cipher suites and key-exchange groups.
//!
//! **aws-lc-rs** (`tls-aws-lc`): X25519MLKEM768 (ML-KEM-768 combined with X25519, draft-ietf-tls-ecdhe-mlkem)
//! first. The ClientHello then carries two key shares, the hybrid one and, free, its X25519 component, so a
//! server without ML-KEM (OpenSSL before 3.5, so most PostgreSQL servers today) picks X25519 with no extra round
//! trip; one with it (OpenSSL 3.5+ offers it by default) agrees on the hybrid. The cost is the build: AWS-LC is
//! a large C library (a C compiler suffices on Linux x86-64 and aarch64; some other platforms want CMake), which
//! README's TLS section measures.

use rustls::crypto::CryptoProvider;

/// The crypto provider for every TLS connection pgrepl makes: aws-lc-rs with `tls-aws-lc` (also when `tls` is
/// on), else *ring*.
pub(crate) fn crypto_provider() -> CryptoProvider {
    #[cfg(feature = "tls-aws-lc")]
    return aws_lc_rs();
    #[cfg(not(feature = "tls-aws-lc"))]
    return ring();
}

/// The cipher suites, most preferred first, from the provider module `$backend` (`ring` or `aws_lc_rs`): the
/// same list for both.
macro_rules! cipher_suites {
    ($backend:ident) => {{
        use rustls::crypto::$backend::cipher_suite::*;
        vec![
            TLS13_AES_256_GCM_SHA384,
            TLS13_AES_128_GCM_SHA256,
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ]
    }};
}

/// aws-lc-rs: post-quantum hybrid key exchange first, then the classical groups.
#[cfg(feature = "tls-aws-lc")]
fn aws_lc_rs() -> CryptoProvider {
    use rustls::crypto::aws_lc_rs::{self as backend, kx_group};
    CryptoProvider {
        cipher_suites: cipher_suites!(aws_lc_rs),
        kx_groups: vec![kx_group::X25519MLKEM768, kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..backend::default_provider()
    }
}

/// *ring*: classical key exchange, X25519 first.
#[cfg(not(feature = "tls-aws-lc"))]
fn ring() -> CryptoProvider {
    use rustls::crypto::ring::kx_group;
    CryptoProvider {
        cipher_suites: cipher_suites!(ring),
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..ring_signatures_keys_and_randomness()
    }
}

/// *ring*'s provider, of which [`ring`] keeps the signature-verification algorithms, the key loader and the
/// random source: rustls makes them public only through `ring::default_provider`, deprecated in 0.23.48 because
/// *ring* has no post-quantum key exchange. That is this configuration's known limit (see the module docs), and
/// the cipher suites and key-exchange groups the function would choose are replaced, so the deprecation is
/// allowed here and nowhere else.
#[cfg(not(feature = "tls-aws-lc"))]
#[allow(deprecated)]
fn ring_signatures_keys_and_randomness() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Host};
    use crate::conn::{Endpoint, Socket};
    use crate::tls::Plan;
    use rustls::crypto::SupportedKxGroup;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::{CipherSuite, HandshakeKind, NamedGroup, ServerConfig};
    use std::sync::Arc;
    use tokio::net::{TcpListener, TcpStream};

    /// What the provider promises (module docs), most preferred first.
    fn promised_groups() -> Vec<NamedGroup> {
        let classical = [NamedGroup::X25519, NamedGroup::secp256r1, NamedGroup::secp384r1];
        if cfg!(feature = "tls-aws-lc") {
            [NamedGroup::X25519MLKEM768].into_iter().chain(classical).collect()
        } else {
            classical.to_vec()
        }
    }

    #[test]
    fn offers_the_documented_configuration() {
        let p = crypto_provider();
        assert_eq!(p.kx_groups.iter().map(|g| g.name()).collect::<Vec<_>>(), promised_groups());
        use CipherSuite::*;
        assert_eq!(
            p.cipher_suites.iter().map(|s| s.suite()).collect::<Vec<_>>(),
            [
                TLS13_AES_256_GCM_SHA384,
                TLS13_AES_128_GCM_SHA256,
                TLS13_CHACHA20_POLY1305_SHA256,
                TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ]
        );
        assert!(p.signature_verification_algorithms.supported_schemes().len() >= 9);
        assert!(p.kx_groups.iter().all(|g| g.usable_for_version(rustls::ProtocolVersion::TLSv1_3)));
    }

    /// Every group the backend has, in the reverse of its own order: a server that prefers differently.
    fn every_group_reversed() -> Vec<&'static dyn SupportedKxGroup> {
        #[cfg(feature = "tls-aws-lc")]
        let all = rustls::crypto::aws_lc_rs::ALL_KX_GROUPS;
        #[cfg(not(feature = "tls-aws-lc"))]
        let all = rustls::crypto::ring::ALL_KX_GROUPS;
        all.iter().rev().copied().collect()
    }

    /// A TLS 1.3 handshake between pgrepl's client configuration (direct TLS, as `Plan` runs it) and an in-process
    /// rustls server offering `server_groups`: the group each side agreed on, and how the handshake went.
    async fn handshake(server_groups: Vec<&'static dyn SupportedKxGroup>) -> (NamedGroup, NamedGroup, HandshakeKind) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let provider = CryptoProvider { kx_groups: server_groups, ..crypto_provider() };
        let mut server = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        server.alpn_protocols = vec![crate::tls::ALPN_POSTGRESQL.to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(s).await.unwrap();
            tls.get_ref().1.negotiated_key_exchange_group().unwrap().name()
        });
        let c =
            Config::parse(&format!("user=u dbname=d host=127.0.0.1 port={port} sslmode=require sslnegotiation=direct"))
                .unwrap();
        let host = Host::Tcp("127.0.0.1".into());
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (sock, _) = Plan::new(&c, &host)
            .negotiate(&c, &host, &Endpoint::Tcp(([127, 0, 0, 1], port).into()), Socket::Tcp(tcp))
            .await
            .unwrap();
        let Socket::Tls(tls) = &sock else { panic!("not TLS") };
        let client = tls.get_ref().1;
        let group = client.negotiated_key_exchange_group().unwrap().name();
        let kind = client.handshake_kind().unwrap();
        (group, server.await.unwrap(), kind)
    }

    /// A server with every group agrees on the provider's first choice — X25519MLKEM768 with aws-lc-rs, X25519
    /// with *ring* — even when it would rather have another: in one round trip.
    #[tokio::test]
    async fn negotiates_the_promised_group() {
        let first = promised_groups()[0];
        let (client, server, kind) = handshake(every_group_reversed()).await;
        assert_eq!((client, server), (first, first));
        assert_eq!(kind, HandshakeKind::Full);
    }

    /// A server without post-quantum key exchange (OpenSSL before 3.5): X25519 without a HelloRetryRequest, the
    /// X25519 share travelling beside the hybrid one. A server with only secp384r1: reached after a
    /// HelloRetryRequest.
    #[tokio::test]
    async fn falls_back_to_classical_groups() {
        let x25519 = *crypto_provider().kx_groups.iter().find(|g| g.name() == NamedGroup::X25519).unwrap();
        let p384 = *crypto_provider().kx_groups.iter().find(|g| g.name() == NamedGroup::secp384r1).unwrap();
        let (client, server, kind) = handshake(vec![x25519]).await;
        assert_eq!((client, server, kind), (NamedGroup::X25519, NamedGroup::X25519, HandshakeKind::Full));
        let (client, server, kind) = handshake(vec![p384]).await;
        assert_eq!(
            (client, server, kind),
            (NamedGroup::secp384r1, NamedGroup::secp384r1, HandshakeKind::FullWithHelloRetryRequest)
        );
    }
}
