use crate::config::value::{ByteSize, OneOrMany};
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
    /// Action: serve files from a directory.
    pub files: Option<Spanned<FilesSection>>,
    /// Remove this prefix from the path before proxying.
    pub strip_prefix: Option<Spanned<String>>,
    /// Put this prefix in front of the (stripped) path before proxying.
    pub add_prefix: Option<Spanned<String>>,
    pub request_headers: Option<HeaderOpsSection>,
    pub response_headers: Option<HeaderOpsSection>,
    /// Cache zone (`[cache.NAME]`) for this route's proxied GET/HEAD responses.
    pub cache: Option<Spanned<String>>,
    /// `true` for the defaults, or a table of compression settings.
    pub compress: Option<Spanned<CompressSetting>>,
}

/// `compress = true | false | { ... }`.
#[derive(Debug)]
pub enum CompressSetting {
    Switch(bool),
    Table(CompressSection),
}

impl<'de> Deserialize<'de> for CompressSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CompressSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false, or a table such as { encodings = [\"br\", \"gzip\"] }")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<CompressSetting, E> {
                Ok(CompressSetting::Switch(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<CompressSetting, A::Error> {
                CompressSection::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(CompressSetting::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// Compression settings; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressSection {
    /// Codings to offer, most preferred first: "zstd", "br", "gzip" (default all three, in that order).
    pub encodings: Option<Spanned<Vec<String>>>,
    /// Responses with a smaller Content-Length are sent as they are (default 256B).
    pub min_size: Option<ByteSize>,
    /// Content types to compress: exact, `text/*` or `application/*+json` (default: text, JSON,
    /// JavaScript, XML, SVG, WASM, fonts).
    pub types: Option<Vec<String>>,
    /// 1-9 (default 5).
    pub gzip_level: Option<Spanned<u32>>,
    /// 0-11 (default 4).
    pub brotli_level: Option<Spanned<u32>>,
    /// 1-19 (default 3).
    pub zstd_level: Option<Spanned<i32>>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSection {
    /// Directory served (relative to the config file's directory).
    pub root: Spanned<String>,
    /// Files tried for a path ending in '/' (default ["index.html"]).
    pub index: Option<Vec<String>>,
    /// Precompressed siblings looked for, most preferred first (default ["br", "zstd", "gzip"]).
    pub precompressed: Option<Spanned<Vec<String>>>,
}

/// Header edits, applied in the order remove → set → add.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOpsSection {
    pub set: Option<BTreeMap<String, String>>,
    pub add: Option<BTreeMap<String, String>>,
    pub remove: Option<Vec<String>>,
}
