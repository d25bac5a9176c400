//! Path rewrite before proxying: strip a prefix, then add one.

use std::borrow::Cow;

#[derive(Default)]
pub struct PathRewrite {
    pub strip_prefix: Option<String>,
    pub add_prefix: Option<String>,
}

impl PathRewrite {
    pub fn is_identity(&self) -> bool {
        self.strip_prefix.is_none() && self.add_prefix.is_none()
    }

    /// The rewritten path; always starts with '/'.
    pub fn apply<'a>(&self, path: &'a str) -> Cow<'a, str> {
        if self.is_identity() {
            return Cow::Borrowed(path);
        }
        let mut p = path;
        if let Some(strip) = &self.strip_prefix {
            if let Some(rest) = p.strip_prefix(strip.as_str()) {
                p = rest;
            }
        }
        let mut out = String::with_capacity(path.len() + 16);
        if let Some(add) = &self.add_prefix {
            out.push_str(add.trim_end_matches('/'));
        }
        if !p.starts_with('/') {
            out.push('/');
        }
        out.push_str(p);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_and_add() {
        let r = PathRewrite {
            strip_prefix: Some("/api".into()),
            add_prefix: None,
        };
        assert_eq!(r.apply("/api/users"), "/users");
        assert_eq!(r.apply("/api"), "/");
        assert_eq!(r.apply("/other"), "/other");
        let r = PathRewrite {
            strip_prefix: Some("/api/".into()),
            add_prefix: Some("/v2/".into()),
        };
        assert_eq!(r.apply("/api/users"), "/v2/users");
        assert_eq!(PathRewrite::default().apply("/x"), "/x");
    }
}
