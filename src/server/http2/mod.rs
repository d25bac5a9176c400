//! HTTP/2 framing (RFC 9113) and HPACK (RFC 7541) of our own, for a server path that forwards
//! header bytes instead of building `HeaderMap`s (docs/performance.md, target 3). hyper still
//! serves HTTP/2; nothing here is on the request path yet.

pub mod conn;
pub mod direct;
pub mod frame;
pub mod hpack;
pub mod output;
pub mod request;
pub mod stream;
