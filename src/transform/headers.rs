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
