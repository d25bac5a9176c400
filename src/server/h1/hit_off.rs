//! Built without the `acceleration` feature: no route has a cache, so there are no hits to serve.

use super::exchange::Outcome;
use super::head::RequestHead;
use crate::route::Route;
use crate::server::conn::ConnInfo;

/// Stands for a cache zone; no value of it exists in this build.
pub(super) enum NoCache {}

/// Stands for a prepared hit; no value of it exists in this build.
pub(super) enum Ready {}

impl Ready {
    pub(super) fn request_id(&self) -> std::ops::Range<usize> {
        match *self {}
    }

    pub(super) fn outcome(self, _ok: bool) -> Outcome {
        match self {}
    }

    pub(super) fn closes(&self) -> bool {
        match *self {}
    }
}

pub(super) fn cache_of(_route: &Route) -> Option<&NoCache> {
    None
}

#[allow(clippy::too_many_arguments)]
pub(super) fn prepare(
    _buf: &[u8],
    _head: &RequestHead,
    _out: &mut Vec<u8>,
    _info: &ConnInfo,
    _route: &Route,
    cache: &NoCache,
    _host: &str,
    _id_name: &http::HeaderName,
    _request_id: &[u8],
) -> Option<Ready> {
    match *cache {}
}

pub(super) async fn send<T>(_io: &mut T, _out: &[u8], hit: &Ready) -> bool {
    match *hit {}
}
