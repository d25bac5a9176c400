//! Static files (`files = { root = ... }` on a route): index files, Content-Type by extension,
//! ETag and Last-Modified with conditional requests, single and multiple ranges, and
//! precompressed `.br` / `.zst` / `.gz` siblings chosen by Accept-Encoding. Bodies stream from
//! the file; nothing outside the root is ever opened. Files are opened and read on the worker
//! thread, as nginx does without `aio` (see `resolve`).

mod resolve;

use crate::compress::Coding;
use crate::pipeline::body::ResponseBody;
use crate::pipeline::range::{self, RangePlan};
use crate::pipeline::respond::ProxyError;
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use resolve::Resolved;
use std::fs::{File, Metadata};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A multipart range answer is built in memory; larger ones get the whole file instead.
const MAX_MULTIPART_BYTES: u64 = 8 * 1024 * 1024;

pub struct FileServer {
    /// Canonical root directory.
    pub root: PathBuf,
    pub index: Vec<String>,
    /// Codings whose precompressed siblings are looked for, most preferred first.
    pub precompressed: Vec<Coding>,
}

fn suffix(c: Coding) -> &'static str {
    match c {
        Coding::Gzip => ".gz",
        Coding::Brotli => ".br",
        Coding::Zstd => ".zst",
    }
}

/// The file chosen for a request: the resolved one or its precompressed sibling.
struct Chosen {
    file: File,
    meta: Metadata,
    /// Content-Type of the original file.
    mime: String,
    coding: Option<Coding>,
}

impl FileServer {
    /// Serves `path` (already rewritten by the route) for the request `parts`.
    pub fn serve(&self, parts: &Parts, path: &str) -> Result<Response<ResponseBody>, ProxyError> {
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return Err(ProxyError::MethodNotAllowed);
        }
        // Only offer precompressed files when the client would take them, and never for ranges.
        let wants: Vec<Coding> = if self.precompressed.is_empty() || parts.headers.contains_key(header::RANGE) {
            Vec::new()
        } else {
            crate::compress::preference(&self.precompressed, &parts.headers)
        };
        let Some(chosen) = choose(&self.root, path, &self.index, &wants)? else {
            return Ok(add_slash(parts));
        };
        let mut headers = HeaderMap::new();
        let etag = etag(&chosen.meta);
        headers.insert(header::ETAG, etag);
        if let Some(lm) = chosen.meta.modified().ok().map(httpdate::fmt_http_date) {
            if let Ok(v) = HeaderValue::from_str(&lm) {
                headers.insert(header::LAST_MODIFIED, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&chosen.mime) {
            headers.insert(header::CONTENT_TYPE, v);
        }
        if !self.precompressed.is_empty() {
            headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        match chosen.coding {
            Some(c) => {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c.token()));
            }
            None => {
                headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            }
        }
        if let Some(status) = precondition(&parts.headers, &headers, &chosen.meta) {
            return Ok(not_modified_or_failed(status, headers));
        }
        let len = chosen.meta.len();
        let head_only = parts.method == Method::HEAD;
        let plan = if chosen.coding.is_none() {
            range::plan(&parts.headers, &headers, len)
        } else {
            RangePlan::Whole
        };
        let (status, body) = match plan {
            RangePlan::Whole => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                (StatusCode::OK, file_body(chosen.file, 0, len, head_only))
            }
            RangePlan::Unsatisfiable(extra) => {
                headers.extend(extra);
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                (StatusCode::RANGE_NOT_SATISFIABLE, ResponseBody::Empty)
            }
            RangePlan::Parts(ranges) => match ranges[..] {
                [(start, end)] => {
                    headers.insert(header::CONTENT_RANGE, range::content_range(start, end, len));
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
                    (
                        StatusCode::PARTIAL_CONTENT,
                        file_body(chosen.file, start, end - start + 1, head_only),
                    )
                }
                _ if ranges.iter().map(|(a, b)| b - a + 1).sum::<u64>() > MAX_MULTIPART_BYTES => {
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                    (StatusCode::OK, file_body(chosen.file, 0, len, head_only))
                }
                _ => {
                    let (ctype, data) = range::multipart(&ranges, len, &chosen.mime, |start, end| {
                        read_at(&chosen.file, start, end)
                    })
                    .map_err(|e| ProxyError::FileRead(e.to_string()))?;
                    headers.insert(header::CONTENT_TYPE, ctype);
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(data.len()));
                    let body = if head_only {
                        ResponseBody::Empty
                    } else {
                        ResponseBody::Full { data: Some(data) }
                    };
                    (StatusCode::PARTIAL_CONTENT, body)
                }
            },
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        Ok(resp)
    }
}

/// Resolves the path and picks a precompressed sibling when one exists.
/// `None`: the path names a directory and lacks its trailing slash.
fn choose(root: &Path, url_path: &str, index: &[String], wants: &[Coding]) -> Result<Option<Chosen>, ProxyError> {
    let resolve::Opened { path, file, meta } = match resolve::resolve(root, url_path, index) {
        Resolved::File(opened) => *opened,
        Resolved::AddSlash => return Ok(None),
        Resolved::NotFound => return Err(ProxyError::NotFound),
        Resolved::Forbidden => return Err(ProxyError::Forbidden("outside the root or not a regular file")),
        Resolved::BadPath => return Err(ProxyError::BadPath),
    };
    let mime = content_type(&path);
    for &c in wants {
        if let Some((_, file, meta)) = resolve::sibling(root, &path, suffix(c)) {
            return Ok(Some(Chosen {
                file,
                meta,
                mime,
                coding: Some(c),
            }));
        }
    }
    Ok(Some(Chosen {
        file,
        meta,
        mime,
        coding: None,
    }))
}

/// A directory without its trailing slash: redirect so relative links in its index resolve.
fn add_slash(parts: &Parts) -> Response<ResponseBody> {
    let location = match parts.uri.query() {
        Some(q) => format!("{}/?{q}", parts.uri.path()),
        None => format!("{}/", parts.uri.path()),
    };
    let mut r = Response::new(ResponseBody::Empty);
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn content_type(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let textual = mime.type_() == "text"
        || matches!(
            mime.essence_str(),
            "application/javascript" | "application/json" | "image/svg+xml"
        );
    if textual {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.essence_str().to_string()
    }
}

/// A strong validator from modification time and size (like nginx's).
fn etag(meta: &Metadata) -> HeaderValue {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    let tag = format!("\"{:x}-{:x}\"", mtime.as_nanos(), meta.len());
    HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// Conditional request evaluation (RFC 9110 §13.2.2): `Some(412)` or `Some(304)` when the
/// request's preconditions say so.
fn precondition(req: &HeaderMap, repr: &HeaderMap, meta: &Metadata) -> Option<StatusCode> {
    let etag = repr.get(header::ETAG).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mtime = meta.modified().ok();
    let date = |name: header::HeaderName| {
        req.get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok())
    };
    let list_has = |name: header::HeaderName, weak: bool| {
        req.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|t| t == "*" || t == etag || (weak && t.trim_start_matches("W/") == etag.trim_start_matches("W/")))
    };
    if req.contains_key(header::IF_MATCH) {
        if !list_has(header::IF_MATCH, false) {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    } else if let (Some(since), Some(m)) = (date(header::IF_UNMODIFIED_SINCE), mtime) {
        if whole_seconds(m) > since {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    }
    if req.contains_key(header::IF_NONE_MATCH) {
        if list_has(header::IF_NONE_MATCH, true) {
            return Some(StatusCode::NOT_MODIFIED);
        }
    } else if let (Some(since), Some(m)) = (date(header::IF_MODIFIED_SINCE), mtime) {
        if whole_seconds(m) <= since {
            return Some(StatusCode::NOT_MODIFIED);
        }
    }
    None
}

/// HTTP dates have one-second resolution.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

fn not_modified_or_failed(status: StatusCode, mut headers: HeaderMap) -> Response<ResponseBody> {
    if status == StatusCode::PRECONDITION_FAILED {
        headers.clear();
    } else {
        headers.remove(header::ACCEPT_RANGES);
        headers.remove(header::CONTENT_ENCODING);
    }
    let mut r = Response::new(ResponseBody::Empty);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

fn file_body(file: File, start: u64, len: u64, head_only: bool) -> ResponseBody {
    if head_only || len == 0 {
        return ResponseBody::Empty;
    }
    ResponseBody::File {
        file: Box::new(file),
        offset: start,
        remaining: len,
    }
}

fn read_at(f: &File, start: u64, end: u64) -> std::io::Result<Bytes> {
    let mut buf = vec![0; (end - start + 1) as usize];
    f.read_exact_at(&mut buf, start)?;
    Ok(Bytes::from(buf))
}
