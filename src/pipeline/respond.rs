//! The one place that turns a failure into an HTTP answer and a log reason.

use super::body::ClientBody;
use http::{header, HeaderValue, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("request target too long")]
    UriTooLong,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("malformed request body: {0}")]
    ClientBody(String),
    #[error("no route matches")]
    NoRoute,
    #[error("file not found")]
    NotFound,
    #[error("not in cache (only-if-cached)")]
    NotCached,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("method not allowed here (GET and HEAD only)")]
    MethodNotAllowed,
    #[error("invalid path")]
    BadPath,
    #[error("cannot read file: {0}")]
    FileRead(String),
    #[error("no healthy backend in upstream `{0}`")]
    NoHealthyBackend(Arc<str>),
    #[error("{0}")]
    Connect(String),
    #[error("backend {addr} failed: {reason}")]
    UpstreamFailed { addr: String, reason: String },
    #[error("backend {addr} sent no response head within {after:?}")]
    UpstreamTimeout { addr: String, after: Duration },
    /// Not an error answer: a 5xx from a backend, counted by passive health.
    #[error("backend answered {0}")]
    UpstreamStatus(u16),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NoRoute | ProxyError::NotFound => StatusCode::NOT_FOUND,
            ProxyError::Forbidden(_) => StatusCode::FORBIDDEN,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::BadPath => StatusCode::BAD_REQUEST,
            ProxyError::FileRead(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::NoHealthyBackend(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect(_) | ProxyError::UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } | ProxyError::NotCached => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::UpstreamStatus(s) => StatusCode::from_u16(*s).unwrap_or(StatusCode::BAD_GATEWAY),
        }
    }

    /// Client-side framing errors leave the connection in an unknown state: close it.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::BadRequest(_) | ProxyError::ClientBody(_) | ProxyError::BodyTooLarge
        )
    }

    /// A short plain-text answer. It names the class of failure, never backend addresses.
    pub fn response(&self) -> Response<ClientBody> {
        let status = self.status();
        let text = match self {
            ProxyError::BadRequest(why) => format!("400 Bad Request: {why}\n"),
            ProxyError::NoHealthyBackend(_) => "503 Service Unavailable: no healthy upstream\n".to_string(),
            _ => format!("{} {}\n", status.as_u16(), status.canonical_reason().unwrap_or("")),
        };
        let mut resp = Response::new(ClientBody::full(text));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if matches!(self, ProxyError::MethodNotAllowed) {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        if self.closes_connection() {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}
