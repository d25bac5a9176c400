//! TLS termination: certificates chosen by SNI (exact names, then wildcards, then the first
//! certificate as default), ALPN h2/http1.1, TLS 1.2 and 1.3 only, optional client certificates.

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, StoresServerSessions, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::CipherSuite;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate file `{path}`: {reason}")]
    Cert { path: String, reason: String },
    #[error("cannot read private key file `{path}`: {reason}")]
    Key { path: String, reason: String },
    #[error("certificate `{path}` does not match its key: {reason}")]
    Mismatch { path: String, reason: String },
    #[error("cannot use client CA file `{path}`: {reason}")]
    ClientCa { path: String, reason: String },
}

pub struct CertFiles<'a> {
    pub cert: &'a str,
    pub key: &'a str,
}

#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// ("example.com", key) for a certificate naming "*.example.com".
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return Some(k.clone());
            }
        }
        Some(self.default.clone())
    }
}

pub fn load_certified_key(files: &CertFiles) -> Result<(Arc<CertifiedKey>, Vec<String>), TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: files.cert.into(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: files.cert.into(),
            reason: "no certificate in file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(files.key).map_err(|e| TlsError::Key {
        path: files.key.into(),
        reason: e.to_string(),
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let ck = CertifiedKey::from_der(certs, key, &provider).map_err(|e| TlsError::Mismatch {
        path: files.cert.into(),
        reason: e.to_string(),
    })?;
    let names = webpki::EndEntityCert::try_from(&ck.cert[0])
        .map(|ee| ee.valid_dns_names().map(|n| n.to_ascii_lowercase()).collect())
        .unwrap_or_default();
    Ok((Arc::new(ck), names))
}

/// TLS 1.2 sessions remembered for resumption by session id (a few hundred bytes each).
const SESSION_CACHE_ENTRIES: usize = 20_000;

/// A TLS listener's configurations: the same certificates, client verification, ticket keys
/// and session cache, with the cipher suites in two orders. As in Go's TLS server, the server
/// picks the suite: a client that lists an AES-GCM suite before any ChaCha20-Poly1305 one has
/// AES hardware, and gets AES-128-GCM with SHA-256 (OpenSSL clients ask for AES-256-GCM with
/// SHA-384 first, which costs more per handshake and per byte, and 128-bit security is ample);
/// a client that lists ChaCha20-Poly1305 first gets it.
pub struct ServerTls {
    aes_first: Arc<rustls::ServerConfig>,
    chacha_first: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    pub fn config_for(&self, hello: &ClientHello<'_>) -> Arc<rustls::ServerConfig> {
        if prefers_chacha(hello.cipher_suites()) {
            self.chacha_first.clone()
        } else {
            self.aes_first.clone()
        }
    }
}

/// Whether the first AES-GCM or ChaCha20-Poly1305 suite in the client's list is ChaCha20 (Go
/// decides on the first suite it knows at all; a client that lists a legacy CBC suite first
/// gets AES-GCM here rather than ChaCha20).
fn prefers_chacha(client_order: &[CipherSuite]) -> bool {
    client_order
        .iter()
        .find_map(|s| match bulk(*s) {
            Bulk::ChaCha20 => Some(true),
            Bulk::Aes128 | Bulk::Aes256 => Some(false),
            Bulk::Other => None,
        })
        .unwrap_or(false)
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Bulk {
    Aes128,
    Aes256,
    ChaCha20,
    Other,
}

fn bulk(suite: CipherSuite) -> Bulk {
    match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => Bulk::Aes128,
        CipherSuite::TLS13_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Bulk::Aes256,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Bulk::ChaCha20,
        _ => Bulk::Other,
    }
}

/// aws-lc's provider with its suites reordered, `first` before the rest (stable otherwise).
fn provider_with(first: Bulk) -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let rank = |b: Bulk| match (b == first, b) {
        (true, _) => 0,
        (false, Bulk::Aes128) => 1,
        (false, Bulk::Aes256) => 2,
        (false, Bulk::ChaCha20) => 3,
        (false, Bulk::Other) => 4,
    };
    provider.cipher_suites.sort_by_key(|s| rank(bulk(s.suite())));
    Arc::new(provider)
}

/// AES-128-GCM when this machine encrypts AES-GCM in hardware; without it ChaCha20 is faster
/// for every peer, as Go decides too.
fn preferred_bulk() -> Bulk {
    if aes_hardware() {
        Bulk::Aes128
    } else {
        Bulk::ChaCha20
    }
}

/// Whether this machine encrypts AES-GCM in hardware (x86_64 AES-NI and PCLMULQDQ, aarch64 AES
/// and PMULL).
pub fn aes_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq");
    #[cfg(target_arch = "aarch64")]
    return std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull");
    #[allow(unreachable_code)]
    false
}

pub fn server_config(
    certs: &[CertFiles],
    client_ca: Option<(&str, bool)>,
    http2: bool,
) -> Result<Arc<ServerTls>, TlsError> {
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut default = None;
    for files in certs {
        let (ck, names) = load_certified_key(files)?;
        for name in names {
            match name.strip_prefix("*.") {
                Some(parent) => wildcard.entry(parent.to_string()).or_insert_with(|| ck.clone()),
                None => exact.entry(name).or_insert_with(|| ck.clone()),
            };
        }
        default.get_or_insert(ck);
    }
    let default = default.ok_or_else(|| TlsError::Cert {
        path: String::new(),
        reason: "no certificates configured".into(),
    })?;
    let resolver: Arc<dyn ResolvesServerCert> = Arc::new(SniResolver {
        exact,
        wildcard,
        default,
    });
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match client_ca {
        None => None,
        Some((path, required)) => {
            let roots = load_roots(path)?;
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if !required {
                v = v.allow_unauthenticated();
            }
            Some(v.build().map_err(|e| TlsError::ClientCa {
                path: path.into(),
                reason: e.to_string(),
            })?)
        }
    };
    // Resumption: stateless TLS 1.3 tickets (keys rotate every 6 hours; a reload starts new
    // keys, so older tickets then fall back to a full handshake), and a bounded cache of TLS
    // 1.2 session ids. Both orders share them; rustls resumes a session only with the suite it
    // was made with, and a client that sends the same suites again is given that suite again.
    let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| TlsError::Cert {
        path: String::new(),
        reason: format!("cannot create session ticket keys: {e}"),
    })?;
    let sessions: Arc<dyn StoresServerSessions> = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    let build = |first: Bulk| -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider_with(first))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Cert {
                path: String::new(),
                reason: e.to_string(),
            })?;
        let builder = match &verifier {
            None => builder.with_no_client_auth(),
            Some(v) => builder.with_client_cert_verifier(v.clone()),
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.ignore_client_order = true;
        config.ticketer = ticketer.clone();
        config.session_storage = sessions.clone();
        // One ticket per handshake is enough for a client that reconnects serially.
        config.send_tls13_tickets = 1;
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(Arc::new(config))
    };
    let chacha_first = build(Bulk::ChaCha20)?;
    let aes_first = match preferred_bulk() {
        Bulk::Aes128 => build(Bulk::Aes128)?,
        _ => chacha_first.clone(),
    };
    Ok(Arc::new(ServerTls {
        aes_first,
        chacha_first,
    }))
}

/// Trust anchors from a PEM file of CA certificates.
fn load_roots(path: &str) -> Result<rustls::RootCertStore, TlsError> {
    let err = |reason: String| TlsError::ClientCa {
        path: path.into(),
        reason,
    };
    let cas = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca).map_err(|e| err(e.to_string()))?;
    }
    Ok(roots)
}

/// Client TLS settings for upstream connections.
pub fn client_config(ca: Option<&str>, verify: bool, http2: bool) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    // As a client, the same preference as Go's: AES-128-GCM first with AES hardware (a backend
    // that honours the client's order then does the cheaper handshake and records), else
    // ChaCha20 first.
    let provider = provider_with(preferred_bulk());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::ClientCa {
            path: String::new(),
            reason: e.to_string(),
        })?;
    let mut config = if verify {
        let roots = match ca {
            Some(path) => load_roots(path)?,
            None => {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                roots
            }
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// `verify = false`: accept any backend certificate (signatures are still checked).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_aes_or_chacha_suite_of_the_client_decides() {
        use CipherSuite::*;
        assert!(!prefers_chacha(&[
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256
        ]));
        assert!(prefers_chacha(&[
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS13_AES_128_GCM_SHA256
        ]));
        // Suites the server does not know are skipped.
        assert!(prefers_chacha(&[
            TLS_EMPTY_RENEGOTIATION_INFO_SCSV,
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        ]));
        assert!(!prefers_chacha(&[]));
    }

    #[test]
    fn reordered_providers_keep_every_suite() {
        let all = rustls::crypto::aws_lc_rs::default_provider().cipher_suites.len();
        for first in [Bulk::Aes128, Bulk::ChaCha20] {
            let p = provider_with(first);
            assert_eq!(p.cipher_suites.len(), all);
            assert!(bulk(p.cipher_suites[0].suite()) == first);
        }
        let p = provider_with(Bulk::Aes128);
        let order: Vec<Bulk> = p.cipher_suites.iter().map(|s| bulk(s.suite())).collect();
        assert!(
            order.windows(2).all(|w| w[0] <= w[1]),
            "AES-128, then AES-256, then ChaCha20"
        );
    }

    #[test]
    fn upstream_connections_offer_the_preferred_suite_first() {
        let config = client_config(None, false, false).unwrap();
        let first = config.crypto_provider().cipher_suites[0].suite();
        assert!(bulk(first) == preferred_bulk(), "{first:?}");
    }
}
