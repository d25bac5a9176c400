//! Built without the `acceleration` feature: no route has a cache, so there are no hits to serve.

use super::exchange::Outcome;
use super::Conn;
use crate::route::Route;
use crate::server::conn::ConnInfo;
use tokio::io::AsyncWrite;

/// Stands for a cache zone; no value of it exists in this build.
pub(super) enum NoCache {}

pub(super) fn cache_of(_route: &Route) -> Option<&NoCache> {
    None
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn serve<T>(
    _io: &mut T,
    _c: &mut Conn,
    _info: &ConnInfo,
    _route: &Route,
    cache: &NoCache,
    _id_name: &[u8],
    _request_id: &[u8],
) -> Option<Outcome>
where
    T: AsyncWrite + Unpin,
{
    match *cache {}
}
