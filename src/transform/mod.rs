//! Request rewrite and response header stages configured per route.

mod headers;
mod path;

pub use headers::HeaderOps;
pub use path::PathRewrite;
