use crate::config::value::{ByteSize, Cidr, ConfigDuration};
use serde::Deserialize;
use toml::Spanned;

/// `[[listener]]`: one socket the proxy accepts client connections on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// "ip:port"; port 0 picks a free port (reported at start).
    pub listen: Spanned<String>,
    /// Certificates; the first is the default when SNI names none of them.
    pub tls: Option<Vec<Spanned<CertSection>>>,
    /// PEM file of CAs whose client certificates are accepted (turns on mTLS).
    pub client_ca: Option<Spanned<String>>,
    /// "required" (default when client_ca is set) or "optional".
    pub client_auth: Option<ClientAuthMode>,
    /// Answer every request with a redirect to https on `https_port`.
    pub redirect_https: Option<bool>,
    /// Port used in HTTPS redirects (default 443).
    pub https_port: Option<u16>,
    /// Serve HTTP/2 (h2c prior knowledge on plain listeners, ALPN h2 on TLS); default true.
    pub http2: Option<bool>,
    /// Peers whose X-Forwarded-* and Forwarded headers are kept and extended.
    pub trusted_proxies: Option<Vec<Spanned<Cidr>>>,
    /// Request id header name (default "x-request-id").
    pub request_id_header: Option<Spanned<String>>,
    /// Accept a connection only once its first bytes have arrived (TCP_DEFER_ACCEPT); default false.
    pub defer_accept: Option<bool>,
    pub limits: Option<LimitsSection>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    Required,
    Optional,
}

/// One certificate chain and its key, both PEM files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertSection {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

/// `limits = { ... }` on a listener: what a client may send and how long it may take.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Total bytes of the request head (request line + headers); default 16KiB → 431.
    pub max_header_bytes: Option<ByteSize>,
    /// Number of request header fields; default 100 → 431.
    pub max_headers: Option<usize>,
    /// Request target length; default 8KiB → 414.
    pub max_uri_bytes: Option<ByteSize>,
    /// Request body size; default 100MiB → 413.
    pub max_body_bytes: Option<ByteSize>,
    /// Time allowed to receive a whole request head; default 10s (slowloris guard).
    pub header_read_timeout: Option<ConfigDuration>,
    /// Idle keep-alive connections are closed after this; default 60s.
    pub idle_timeout: Option<ConfigDuration>,
    /// HTTP/2 concurrent streams per connection; default 128.
    pub h2_max_concurrent_streams: Option<u32>,
    /// HTTP/2 resets a client may cause before the connection is closed (rapid reset guard); default 50.
    pub h2_max_pending_resets: Option<usize>,
}
