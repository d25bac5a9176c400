//! From a request path to a file under the root, refusing every way out of it: `..` segments
//! (also when percent-encoded), NUL and backslashes, and symlinks that lead outside the root.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum Resolved {
    File {
        path: PathBuf,
        meta: Metadata,
    },
    /// A directory asked for without its trailing slash.
    AddSlash,
    NotFound,
    /// Outside the root (through a symlink) or not a regular file.
    Forbidden,
    /// A path that tries to climb out of the root or is not valid.
    BadPath,
}

/// `root` must be canonical. Blocking: call from a blocking task.
pub fn resolve(root: &Path, url_path: &str, index: &[String]) -> Resolved {
    let Some(decoded) = percent_decode(url_path) else {
        return Resolved::BadPath;
    };
    if decoded.contains(['\0', '\\']) {
        return Resolved::BadPath;
    }
    let mut candidate = root.to_path_buf();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Resolved::BadPath,
            s => candidate.push(s),
        }
    }
    let (path, meta) = match inside(root, &candidate) {
        Ok(found) => found,
        Err(m) => return m.into(),
    };
    if meta.is_dir() {
        if !url_path.ends_with('/') {
            return Resolved::AddSlash;
        }
        for name in index {
            match inside(root, &path.join(name)) {
                Ok((p, m)) if m.is_file() => return Resolved::File { path: p, meta: m },
                Ok(_) | Err(Miss::NotFound) => {}
                Err(m) => return m.into(),
            }
        }
        return Resolved::NotFound;
    }
    if !meta.is_file() {
        return Resolved::Forbidden;
    }
    Resolved::File { path, meta }
}

/// A sibling (`name.br`) of a resolved file, if it is a regular file inside the root.
pub fn sibling(root: &Path, file: &Path, suffix: &str) -> Option<(PathBuf, Metadata)> {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    match inside(root, Path::new(&name)) {
        Ok((p, m)) if m.is_file() => Some((p, m)),
        _ => None,
    }
}

/// The canonical form of `p` and its metadata, when it exists inside `root`.
fn inside(root: &Path, p: &Path) -> Result<(PathBuf, Metadata), Miss> {
    let canonical = match std::fs::canonicalize(p) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(Miss::Forbidden),
        Err(_) => return Err(Miss::NotFound),
    };
    if !canonical.starts_with(root) {
        return Err(Miss::Forbidden);
    }
    match std::fs::metadata(&canonical) {
        Ok(m) => Ok((canonical, m)),
        Err(_) => Err(Miss::NotFound),
    }
}

#[derive(Debug, PartialEq)]
enum Miss {
    NotFound,
    Forbidden,
}

impl From<Miss> for Resolved {
    fn from(m: Miss) -> Resolved {
        match m {
            Miss::NotFound => Resolved::NotFound,
            Miss::Forbidden => Resolved::Forbidden,
        }
    }
}

/// Percent-decodes a path; `None` when the result is not UTF-8 or an escape is malformed.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (h, l) = (hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?);
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (PathBuf, PathBuf) {
        let base = std::env::temp_dir().join(format!("fd-resolve-{}", fastrand::u64(..)));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("sub/index.html"), "i").unwrap();
        std::fs::write(root.join("a b.txt"), "space").unwrap();
        std::fs::write(base.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("alias")).unwrap();
        (std::fs::canonicalize(&root).unwrap(), base)
    }

    #[test]
    fn paths_resolve_inside_the_root_only() {
        let (root, base) = tree();
        let index = vec!["index.html".to_string()];
        let r = |p: &str| resolve(&root, p, &index);
        assert!(matches!(r("/a.txt"), Resolved::File { .. }));
        assert!(matches!(r("/a%20b.txt"), Resolved::File { .. }));
        assert!(matches!(r("/alias"), Resolved::File { .. }), "symlink inside the root");
        assert!(matches!(r("/sub/"), Resolved::File { path, .. } if path.ends_with("sub/index.html")));
        assert!(matches!(r("/sub"), Resolved::AddSlash));
        assert!(matches!(r("/"), Resolved::NotFound), "no index in the root");
        assert!(matches!(r("/missing"), Resolved::NotFound));
        for bad in [
            "/../secret",
            "/sub/../../secret",
            "/%2e%2e/secret",
            "/%2E%2E%2fsecret",
            "/sub%2f..%2f..%2fsecret",
            "/a%00.txt",
            "/..%5csecret",
            "/%zz",
        ] {
            assert!(matches!(r(bad), Resolved::BadPath), "{bad}: {:?}", r(bad));
        }
        assert!(matches!(r("/escape"), Resolved::Forbidden), "symlink leading outside");
        std::fs::remove_dir_all(base).unwrap();
    }
}
