//! HTTP/2 (RFC 9113) on frontdesk's own codec, with HPACK (RFC 7541): `conn` drives a
//! connection, `recv` and `send` are its two directions, `stream` runs each request in a task,
//! and `direct` is the fast path that forwards header bytes for plain proxied GET and HEAD
//! requests instead of building `HeaderMap`s (docs/performance.md, "HTTP/2").

pub mod conn;
pub mod direct;
pub mod frame;
pub mod hpack;
pub mod output;
mod recv;
pub mod request;
mod send;
pub mod stream;
