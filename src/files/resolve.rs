//! From a request path to an open file under the root, refusing every way out of it: `..`
//! segments (also when percent-encoded), NUL and backslashes, and symlinks that lead outside
//! the root.
//!
//! This runs on the worker thread, as nginx opens files on its event loop: on a local file
//! system an open and an fstat are served from the kernel's caches in microseconds, while
//! handing them to a blocking thread cost five times nginx's CPU per request (session 14). A
//! path without symlinks is opened with one `openat2(RESOLVE_NO_SYMLINKS)`: the root is
//! canonical and `..` is refused before, so what opens is inside the root. Only a path through
//! a symlink takes the slower way: canonicalise, check the prefix, open the canonical path.

use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};

/// An open regular file and the path it was opened by.
#[derive(Debug)]
pub struct Opened {
    pub path: PathBuf,
    pub file: File,
    pub meta: Metadata,
}

#[derive(Debug)]
pub enum Resolved {
    File(Box<Opened>),
    /// A directory asked for without its trailing slash.
    AddSlash,
    NotFound,
    /// Outside the root (through a symlink) or not a regular file.
    Forbidden,
    /// A path that tries to climb out of the root or is not valid.
    BadPath,
}

/// `root` must be canonical.
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
    let (path, file, meta) = match open_inside(root, candidate) {
        Ok(found) => found,
        Err(m) => return m.into(),
    };
    if meta.is_dir() {
        if !url_path.ends_with('/') {
            return Resolved::AddSlash;
        }
        for name in index {
            match open_inside(root, path.join(name)) {
                Ok((path, file, meta)) if meta.is_file() => {
                    return Resolved::File(Box::new(Opened { path, file, meta }))
                }
                Ok(_) | Err(Miss::NotFound) => {}
                Err(m) => return m.into(),
            }
        }
        return Resolved::NotFound;
    }
    if !meta.is_file() {
        return Resolved::Forbidden;
    }
    Resolved::File(Box::new(Opened { path, file, meta }))
}

/// A sibling (`name.br`) of a resolved file, if it is a regular file inside the root.
pub fn sibling(root: &Path, file: &Path, suffix: &str) -> Option<(PathBuf, File, Metadata)> {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    match open_inside(root, PathBuf::from(name)) {
        Ok(found) if found.2.is_file() => Some(found),
        _ => None,
    }
}

/// Opens `p` (under the canonical `root`, with no `..`) when what it names is inside `root`:
/// the path that was opened, the open file and its metadata.
fn open_inside(root: &Path, p: PathBuf) -> Result<(PathBuf, File, Metadata), Miss> {
    let file = match open_no_symlinks(&p) {
        Ok(f) => f,
        Err(e) => match e.raw_os_error() {
            // A symlink on the way, or no openat2: a kernel before 5.6 (ENOSYS) or a seccomp
            // filter that refuses system calls it does not know (EPERM).
            Some(libc::ELOOP | libc::ENOSYS | libc::EPERM) => return open_through_symlinks(root, &p),
            _ => return Err(Miss::of(&e)),
        },
    };
    let meta = file.metadata().map_err(|e| Miss::of(&e))?;
    Ok((p, file, meta))
}

/// Canonicalises `p`, refuses it outside `root`, and opens the canonical path, which must have
/// no symlink left when it is opened (a swap in between is refused, not followed).
fn open_through_symlinks(root: &Path, p: &Path) -> Result<(PathBuf, File, Metadata), Miss> {
    let canonical = std::fs::canonicalize(p).map_err(|e| Miss::of(&e))?;
    if !canonical.starts_with(root) {
        return Err(Miss::Forbidden);
    }
    let file = match open_no_symlinks(&canonical) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => open_plain(&canonical),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(Miss::Forbidden),
        opened => opened,
    }
    .map_err(|e| Miss::of(&e))?;
    let meta = file.metadata().map_err(|e| Miss::of(&e))?;
    Ok((canonical, file, meta))
}

/// Read-only and non-blocking, so a FIFO or a device in the root cannot stall the worker: it
/// opens at once and is then refused as not a regular file.
const OPEN_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;

#[cfg(target_os = "linux")]
fn open_no_symlinks(p: &Path) -> std::io::Result<File> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::ENOENT))?;
    // SAFETY: open_how is plain integers, for which zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = OPEN_FLAGS as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: `c` is a NUL-terminated path and `how` a valid open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd as libc::c_int) })
}

#[cfg(not(target_os = "linux"))]
fn open_no_symlinks(_: &Path) -> std::io::Result<File> {
    Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
}

fn open_plain(p: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OPEN_FLAGS & !libc::O_RDONLY)
        .open(p)
}

#[derive(Debug, PartialEq)]
enum Miss {
    NotFound,
    Forbidden,
}

impl Miss {
    fn of(e: &std::io::Error) -> Miss {
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => Miss::Forbidden,
            _ => Miss::NotFound,
        }
    }
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
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("sub/index.html"), "i").unwrap();
        std::fs::write(root.join("sub/b.txt"), "b").unwrap();
        std::fs::write(root.join("a b.txt"), "space").unwrap();
        std::fs::write(base.join("secret"), "s").unwrap();
        std::fs::write(base.join("outside/c.txt"), "c").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(base.join("outside"), root.join("far")).unwrap();
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("alias")).unwrap();
        std::os::unix::fs::symlink("sub", root.join("near")).unwrap();
        (std::fs::canonicalize(&root).unwrap(), base)
    }

    fn content(r: Resolved) -> String {
        match r {
            Resolved::File(opened) => std::io::read_to_string(opened.file).unwrap(),
            other => panic!("not a file: {other:?}"),
        }
    }

    #[test]
    fn paths_resolve_inside_the_root_only() {
        let (root, base) = tree();
        let index = vec!["index.html".to_string()];
        let r = |p: &str| resolve(&root, p, &index);
        assert_eq!(content(r("/a.txt")), "a");
        assert_eq!(content(r("/a%20b.txt")), "space");
        assert_eq!(content(r("/alias")), "a", "symlink inside the root");
        assert_eq!(content(r("/near/b.txt")), "b", "directory symlink inside the root");
        assert_eq!(content(r("/near/")), "i", "index through a directory symlink");
        assert!(matches!(r("/sub/"), Resolved::File(o) if o.path.ends_with("sub/index.html")));
        assert!(matches!(r("/sub"), Resolved::AddSlash));
        assert!(matches!(r("/"), Resolved::NotFound), "no index in the root");
        assert!(matches!(r("/missing"), Resolved::NotFound));
        assert!(matches!(r("/a.txt/x"), Resolved::NotFound), "a file is not a directory");
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
        assert!(
            matches!(r("/far/c.txt"), Resolved::Forbidden),
            "directory symlink leading outside"
        );
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_fifo_in_the_root_is_refused_without_waiting_for_a_writer() {
        let (root, base) = tree();
        let fifo = std::ffi::CString::new(root.join("pipe").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        // A blocking open of a FIFO would wait for a writer that never comes.
        let (tx, rx) = std::sync::mpsc::channel();
        let r = root.clone();
        std::thread::spawn(move || tx.send(Box::new(resolve(&r, "/pipe", &[]))));
        let answer = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert!(matches!(answer.as_deref(), Ok(Resolved::Forbidden)), "{answer:?}");
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn siblings_are_regular_files_inside_the_root() {
        let (root, base) = tree();
        std::fs::write(root.join("a.txt.gz"), "gz").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), root.join("a.txt.br")).unwrap();
        std::fs::create_dir(root.join("a.txt.zst")).unwrap();
        let file = root.join("a.txt");
        let (_, f, _) = sibling(&root, &file, ".gz").unwrap();
        assert_eq!(std::io::read_to_string(f).unwrap(), "gz");
        assert!(sibling(&root, &file, ".br").is_none(), "a sibling that leads outside");
        assert!(sibling(&root, &file, ".zst").is_none(), "a directory");
        assert!(sibling(&root, &file, ".none").is_none());
        std::fs::remove_dir_all(base).unwrap();
    }
}
