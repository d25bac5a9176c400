use crate::config::value::OneOrMany;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// `[[route]]`: routes are tried in file order; the first whose `match` fits wins.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Name used in logs (default "route-N", N counted from 1).
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<MatchSection>,
    /// Action: proxy to this upstream.
    pub upstream: Option<Spanned<String>>,
    /// Action: answer with a redirect.
    pub redirect: Option<Spanned<RedirectSection>>,
    /// Action: answer with a fixed response.
    pub respond: Option<Spanned<RespondSection>>,
    /// Remove this prefix from the path before proxying.
    pub strip_prefix: Option<Spanned<String>>,
    /// Put this prefix in front of the (stripped) path before proxying.
    pub add_prefix: Option<Spanned<String>>,
    pub request_headers: Option<HeaderOpsSection>,
    pub response_headers: Option<HeaderOpsSection>,
    /// Cache zone (`[cache.NAME]`) for this route's proxied GET/HEAD responses.
    pub cache: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSection {
    /// Exact names or `*.example.com` wildcards.
    pub host: Option<Spanned<OneOrMany<String>>>,
    pub path: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub path_regex: Option<Spanned<String>>,
    pub method: Option<Spanned<OneOrMany<String>>>,
    /// name → value; the value "*" means "present with any value".
    pub header: Option<BTreeMap<String, Spanned<String>>>,
    pub cookie: Option<BTreeMap<String, String>>,
    pub query: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectSection {
    /// Location template: `$1`/`${name}` from `path_regex`, `{host}`, `{path}`, `{query}`.
    pub to: String,
    /// 301, 302, 303, 307 or 308 (default 302).
    pub status: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondSection {
    pub status: Option<u16>,
    pub body: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
}

/// Header edits, applied in the order remove → set → add.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOpsSection {
    pub set: Option<BTreeMap<String, String>>,
    pub add: Option<BTreeMap<String, String>>,
    pub remove: Option<Vec<String>>,
}
