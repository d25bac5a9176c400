use crate::config::value::{ByteSize, ConfigDuration};
use serde::Deserialize;
use toml::Spanned;

/// `[cache.NAME]`: a shared HTTP cache zone that routes use with `cache = "NAME"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Memory tier bound (default 256MiB).
    pub memory: Option<ByteSize>,
    /// Optional disk tier.
    pub disk: Option<Spanned<DiskSection>>,
    /// Larger responses are passed through, not stored (default 8MiB).
    pub max_object: Option<ByteSize>,
    pub key: Option<CacheKeySection>,
    /// Store responses that carry Set-Cookie (default false).
    pub store_set_cookie: Option<bool>,
    /// Serve stale content when every backend is down or failing (default true).
    pub stale_if_down: Option<bool>,
    /// How long concurrent misses for one key wait for the first one (default 5s).
    pub lock_timeout: Option<ConfigDuration>,
    /// Response header with the surrogate keys (tags) used by purge (default "surrogate-key").
    pub tag_header: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSection {
    pub path: String,
    pub size: Option<ByteSize>,
}

/// What the cache key is made of, besides scheme, host and path.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheKeySection {
    /// "all" (as sent, default), "sorted", "none", or a list of parameter names to keep (sorted).
    pub query: Option<Spanned<QueryKey>>,
    /// Request headers whose values become part of the key.
    pub headers: Option<Vec<Spanned<String>>>,
    /// Cookies whose values become part of the key.
    pub cookies: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum QueryKey {
    Mode(String),
    Params(Vec<String>),
}
