//! What routing and balancing read from a request, independent of how it was parsed: hyper's
//! `Parts` on the general path, borrowed slices of the raw head on the HTTP/1 fast path.

use http::request::Parts;

pub trait RequestView {
    fn method(&self) -> &str;
    fn path(&self) -> &str;
    fn query(&self) -> Option<&str>;
    /// Values of the header `name` (given in lower case), in order.
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;

    /// The first value of header `name` (lower case).
    fn header(&self, name: &str) -> Option<&[u8]>;
}

impl RequestView for Parts {
    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn path(&self) -> &str {
        self.uri.path()
    }

    fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.get_all(name).into_iter().map(|v| v.as_bytes())
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(|v| v.as_bytes())
    }
}
