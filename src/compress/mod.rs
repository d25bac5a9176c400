//! Compression stage (`compress` on a route): picks gzip, brotli or zstd from the client's
//! Accept-Encoding q-values and the route's preference order, and encodes upstream responses as
//! they stream. Runs before the cache fills, so the cache stores the encoded variant (keyed by
//! the negotiated coding, which is why the request's Accept-Encoding is reduced to it).

pub mod encoder;

use crate::pipeline::body::ResponseBody;
use encoder::Encoder;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Brotli,
    Zstd,
}

impl Coding {
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    pub fn parse(s: &str) -> Option<Coding> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "br" => Some(Coding::Brotli),
            "zstd" => Some(Coding::Zstd),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Levels {
    pub gzip: u32,
    pub brotli: u32,
    pub zstd: i32,
}

impl Default for Levels {
    /// Levels for compressing on the fly: most of the size gain for a fraction of the CPU.
    fn default() -> Self {
        Levels {
            gzip: 5,
            brotli: 4,
            zstd: 3,
        }
    }
}

/// A content type pattern: `text/html`, `text/*`, or `application/*+json`.
#[derive(Clone, Debug)]
pub struct TypePattern(String);

impl TypePattern {
    pub fn new(s: &str) -> TypePattern {
        TypePattern(s.trim().to_ascii_lowercase())
    }

    fn matches(&self, mime: &str) -> bool {
        match self.0.split_once('*') {
            None => self.0 == mime,
            Some((prefix, suffix)) => {
                mime.len() >= prefix.len() + suffix.len() && mime.starts_with(prefix) && mime.ends_with(suffix)
            }
        }
    }
}

pub const DEFAULT_TYPES: &[&str] = &[
    "text/html",
    "text/plain",
    "text/css",
    "text/javascript",
    "text/xml",
    "text/csv",
    "text/markdown",
    "text/vtt",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/xml",
    "application/*+xml",
    "application/wasm",
    "image/svg+xml",
    "font/ttf",
    "font/otf",
];

pub struct Compression {
    /// Enabled codings, most preferred first (ties in q-value go to the earlier one).
    pub codings: Vec<Coding>,
    pub min_size: u64,
    pub types: Vec<TypePattern>,
    pub levels: Levels,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            codings: vec![Coding::Zstd, Coding::Brotli, Coding::Gzip],
            min_size: 256,
            types: DEFAULT_TYPES.iter().map(|t| TypePattern::new(t)).collect(),
            levels: Levels::default(),
        }
    }
}

/// The coding negotiated for one request (`None`: identity).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated(pub Option<Coding>);

impl Compression {
    /// The best coding the client accepts, by q-value then by our preference order.
    pub fn negotiate(&self, headers: &HeaderMap) -> Option<Coding> {
        preference(&self.codings, headers).into_iter().next()
    }

    /// Negotiates and reduces the request's Accept-Encoding to the result, so the upstream
    /// and the cache's variant key see one of a few values. Range requests get identity:
    /// ranges of an encoding made on the fly would not be stable.
    pub fn prepare_request(&self, parts: &mut Parts) -> Negotiated {
        let chosen = self.choose(parts).0;
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static(chosen.map_or("identity", Coding::token)),
        );
        Negotiated(chosen)
    }

    /// The coding for this request, without changing it (identity for ranges).
    pub fn choose(&self, parts: &Parts) -> Negotiated {
        if parts.headers.contains_key(header::RANGE) {
            Negotiated(None)
        } else {
            Negotiated(self.negotiate(&parts.headers))
        }
    }

    /// Encodes an upstream response when it qualifies; otherwise leaves it as it is. Adds
    /// `Vary: Accept-Encoding` whenever the answer depended on the client's Accept-Encoding.
    pub fn apply(
        &self,
        chosen: Negotiated,
        method: &Method,
        parts: &mut http::response::Parts,
        body: ResponseBody,
    ) -> ResponseBody {
        if !self.eligible(parts) {
            return body;
        }
        add_vary(&mut parts.headers);
        let Some(coding) = chosen.0 else { return body };
        let encoder = match Encoder::new(coding, &self.levels) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, coding = coding.token(), "cannot start encoder; sending identity");
                return body;
            }
        };
        let h = &mut parts.headers;
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
        h.remove(header::CONTENT_LENGTH);
        h.remove(header::ACCEPT_RANGES);
        weaken_etag(h);
        if method == Method::HEAD || matches!(body, ResponseBody::Empty) {
            return body;
        }
        ResponseBody::Encoded {
            inner: Box::new(body),
            encoder: Box::new(encoder),
        }
    }

    fn eligible(&self, parts: &http::response::Parts) -> bool {
        let h = &parts.headers;
        if parts.status.is_informational()
            || matches!(
                parts.status,
                StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED | StatusCode::PARTIAL_CONTENT
            )
            || h.contains_key(header::CONTENT_RANGE)
        {
            return false;
        }
        if h.get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
        {
            return false;
        }
        if h.get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        {
            return false;
        }
        let Some(mime) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let mime = mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !self.types.iter().any(|t| t.matches(&mime)) {
            return false;
        }
        let length = h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        length.is_none_or(|n| n >= self.min_size)
    }
}

/// The `codings` the client accepts (q > 0), best first: by q-value, ties in the order given.
pub fn preference(codings: &[Coding], headers: &HeaderMap) -> Vec<Coding> {
    // Per coding: the q of its own entry, else of `*`, else none (not acceptable).
    let mut own: Vec<Option<u16>> = vec![None; codings.len()];
    let mut wildcard: Option<u16> = None;
    for item in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| qvalue(v.trim()))
            })
            .unwrap_or(1000);
        if name == "*" {
            wildcard = Some(q);
        } else if let Some(rank) = Coding::parse(name).and_then(|c| codings.iter().position(|x| *x == c)) {
            own[rank] = Some(q);
        }
    }
    let mut ranked: Vec<(u16, usize)> = own
        .iter()
        .enumerate()
        .filter_map(|(rank, q)| q.or(wildcard).filter(|q| *q > 0).map(|q| (q, rank)))
        .collect();
    ranked.sort_by_key(|(q, rank)| (std::cmp::Reverse(*q), *rank));
    ranked.into_iter().map(|(_, rank)| codings[rank]).collect()
}

/// A q-value in thousandths ("0.5" → 500); malformed values count as 0.
fn qvalue(s: &str) -> u16 {
    let Some((int, frac)) = s.split_once('.').or(Some((s, ""))) else {
        return 0;
    };
    let frac_digits: String = frac.chars().take(3).collect();
    if !int.chars().all(|c| c.is_ascii_digit()) || !frac_digits.chars().all(|c| c.is_ascii_digit()) {
        return 0;
    }
    let whole: u16 = int.parse().unwrap_or(0);
    let thousandths: u16 = format!("{frac_digits:0<3}").parse().unwrap_or(0);
    (whole.min(1) * 1000 + thousandths).min(1000)
}

pub fn add_vary(h: &mut HeaderMap) {
    let present = h
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|n| n.trim() == "*" || n.trim().eq_ignore_ascii_case("accept-encoding"));
    if !present {
        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// The encoded body is a different representation: a strong validator no longer holds.
pub fn weaken_etag(h: &mut HeaderMap) {
    if let Some(etag) = h.get(header::ETAG) {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&weak) {
                h.insert(header::ETAG, v);
            }
        }
    }
}

#[cfg(test)]
mod tests;
