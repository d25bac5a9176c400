//! TLS termination: certificates chosen by SNI (exact names, then wildcards, then the first
//! certificate as default), ALPN h2/http1.1, TLS 1.2 and 1.3 only, optional client certificates.

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
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

pub fn server_config(
    certs: &[CertFiles],
    client_ca: Option<(&str, bool)>,
    http2: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
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
    let resolver = Arc::new(SniResolver {
        exact,
        wildcard,
        default,
    });
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Cert {
            path: String::new(),
            reason: e.to_string(),
        })?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some((path, required)) => {
            let roots = load_roots(path)?;
            let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if !required {
                v = v.allow_unauthenticated();
            }
            let verifier = v.build().map_err(|e| TlsError::ClientCa {
                path: path.into(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    // Resumption: stateless TLS 1.3 tickets (keys rotate every 6 hours; a reload starts new
    // keys, so older tickets then fall back to a full handshake), and a bounded cache of TLS
    // 1.2 session ids.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| TlsError::Cert {
        path: String::new(),
        reason: format!("cannot create session ticket keys: {e}"),
    })?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    // One ticket per handshake is enough for a client that reconnects serially.
    config.send_tls13_tickets = 1;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
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
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
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
