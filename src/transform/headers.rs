//! `request_headers` / `response_headers`: remove, then set, then add.

use http::{HeaderMap, HeaderName, HeaderValue};

#[derive(Default)]
pub struct HeaderOps {
    pub remove: Vec<HeaderName>,
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Does this edit remove or replace header `name`? (The fast path then skips the original.)
    pub fn replaces(&self, name: &[u8]) -> bool {
        self.remove
            .iter()
            .any(|n| n.as_str().as_bytes().eq_ignore_ascii_case(name))
            || self
                .set
                .iter()
                .any(|(n, _)| n.as_str().as_bytes().eq_ignore_ascii_case(name))
    }

    /// Writes the `set` and `add` fields as raw header lines.
    pub fn write_raw(&self, out: &mut Vec<u8>) {
        for (name, value) in self.set.iter().chain(&self.add) {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_then_set_then_add() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("old"));
        h.insert("x-gone", HeaderValue::from_static("1"));
        let ops = HeaderOps {
            remove: vec![HeaderName::from_static("x-gone")],
            set: vec![(HeaderName::from_static("x-a"), HeaderValue::from_static("new"))],
            add: vec![(HeaderName::from_static("x-a"), HeaderValue::from_static("more"))],
        };
        ops.apply(&mut h);
        let a: Vec<_> = h.get_all("x-a").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(a, vec!["new", "more"]);
        assert!(h.get("x-gone").is_none());
    }
}
