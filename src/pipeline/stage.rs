//! Stages a route runs around its action. Every feature that inspects or edits requests and
//! responses (ACL, rate limit, WAF, bot, auth, cache, compression, ...) becomes a variant here, so
//! the whole set is visible in one enum and the compiler points at every place a new one needs.

use super::body::ClientBody;
use super::ctx::RequestCtx;
use crate::transform::HeaderOps;
use http::request::Parts;
use http::Response;

pub enum Stage {
    /// `request_headers`: edits of the request sent upstream.
    RequestHeaders(HeaderOps),
    /// `response_headers`: edits of the response sent to the client.
    ResponseHeaders(HeaderOps),
}

/// What a request hook decided.
pub enum Flow {
    Continue,
    /// Answer now; later stages and the action do not run.
    Respond(Response<ClientBody>),
}

impl Stage {
    /// Can the HTTP/1 fast path run this stage on raw header lines? A route with any other
    /// stage is served by the general path.
    pub fn works_on_raw_heads(&self) -> bool {
        match self {
            Stage::RequestHeaders(_) | Stage::ResponseHeaders(_) => true,
        }
    }

    pub fn request_header_ops(&self) -> Option<&HeaderOps> {
        match self {
            Stage::RequestHeaders(ops) => Some(ops),
            Stage::ResponseHeaders(_) => None,
        }
    }

    pub fn response_header_ops(&self) -> Option<&HeaderOps> {
        match self {
            Stage::ResponseHeaders(ops) => Some(ops),
            Stage::RequestHeaders(_) => None,
        }
    }

    pub fn on_request(&self, parts: &mut Parts, _ctx: &mut RequestCtx) -> Flow {
        match self {
            Stage::RequestHeaders(ops) => ops.apply(&mut parts.headers),
            Stage::ResponseHeaders(_) => {}
        }
        Flow::Continue
    }

    pub fn on_response(&self, resp: &mut Response<ClientBody>, _ctx: &mut RequestCtx) {
        match self {
            Stage::RequestHeaders(_) => {}
            Stage::ResponseHeaders(ops) => ops.apply(resp.headers_mut()),
        }
    }
}
