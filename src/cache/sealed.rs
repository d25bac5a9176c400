//! Large stored bodies kept in sealed memory files (Linux `memfd`): the body's bytes are a
//! read-only mapping of the file, so they cost no more memory than a heap copy, and a hit on a
//! plain TCP connection hands the file to the kernel with `sendfile` instead of copying the body
//! into the socket (what nginx does with its cache files). The file is sealed against writes
//! before it is mapped or sent: pages the kernel still holds in a socket queue after the entry is
//! evicted can never change under it.

use bytes::Bytes;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bodies at least this large are sealed; smaller ones go out with their head in one write.
pub const SEAL_MIN: usize = 32 * 1024;

/// Larger bodies stay on the heap: sealing copies the body on the worker thread that stores it,
/// and this much takes about 0.1 ms.
pub const SEAL_MAX: usize = 1024 * 1024;

/// A stored body's sealed memory file.
pub struct SealedBody {
    file: std::fs::File,
    len: u64,
    budget: Arc<FileBudget>,
}

impl SealedBody {
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for SealedBody {
    fn drop(&mut self) {
        self.budget.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many sealed files the process may hold open: each is a file descriptor (and a mapping),
/// and connections need theirs more.
pub struct FileBudget {
    open: AtomicUsize,
    max: usize,
    /// The kernel has no sealed memory files: stop trying.
    unsupported: AtomicBool,
}

impl FileBudget {
    /// A quarter of the process's open-file limit, at most 16,384.
    pub fn from_process_limit() -> Arc<FileBudget> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given and reads nothing else.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            limit.rlim_cur as usize
        } else {
            1024
        };
        Arc::new(FileBudget {
            open: AtomicUsize::new(0),
            max: (soft / 4).min(16 * 1024),
            unsupported: AtomicBool::new(false),
        })
    }

    fn take(self: &Arc<Self>) -> bool {
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }
}

/// `body` in a sealed memory file, and the same bytes read from the file's mapping; `None` when
/// the body is small, the budget is spent or the kernel refuses (the heap copy then serves).
pub fn seal(body: &[u8], budget: &Arc<FileBudget>) -> Option<(Bytes, Arc<SealedBody>)> {
    if !(SEAL_MIN..=SEAL_MAX).contains(&body.len()) || budget.unsupported.load(Ordering::Relaxed) || !budget.take() {
        return None;
    }
    let sealed = SealedBody {
        file: match write_sealed(body) {
            Ok(file) => file,
            Err(e) => {
                budget.open.fetch_sub(1, Ordering::Relaxed);
                if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL))
                    && !budget.unsupported.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(error = %e, "no sealed memory files on this kernel; cached bodies stay on the heap and hits copy them");
                }
                tracing::debug!(error = %e, "cannot keep a cached body in a memory file; it stays on the heap");
                return None;
            }
        },
        len: body.len() as u64,
        budget: budget.clone(),
    };
    // SAFETY: the file is sealed against writing, shrinking and growing (F_SEAL_WRITE and
    // friends, then F_SEAL_SEAL), so the mapped bytes can never change or vanish.
    let map = unsafe { memmap2::Mmap::map(&sealed.file) }.ok()?;
    if map.len() != body.len() {
        return None;
    }
    Some((Bytes::from_owner(map), Arc::new(sealed)))
}

fn write_sealed(body: &[u8]) -> std::io::Result<std::fs::File> {
    use std::io::Write;
    // SAFETY: the name is a NUL-terminated literal; the returned descriptor is checked and owned.
    let fd = unsafe { libc::memfd_create(c"frontdesk-cache".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut file = std::fs::File::from(owned);
    file.write_all(body)?;
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor this function owns, with an integer argument.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_body_reads_back_and_cannot_be_written() {
        let budget = FileBudget::from_process_limit();
        let body: Vec<u8> = (0..SEAL_MIN + 1000).map(|i| (i % 251) as u8).collect();
        let (bytes, sealed) = seal(&body, &budget).expect("sealed");
        assert_eq!(&bytes[..], &body[..]);
        assert_eq!(sealed.len, body.len() as u64);
        assert_eq!(budget.open.load(Ordering::Relaxed), 1);
        // The write seal holds: not even the owner can change the bytes the kernel may be sending.
        let mut file = &sealed.file;
        assert!(std::io::Write::write_all(&mut file, b"x").is_err());
        drop(sealed);
        assert_eq!(budget.open.load(Ordering::Relaxed), 0);
        // The mapping outlives the file handle.
        assert_eq!(bytes[SEAL_MIN], body[SEAL_MIN]);
    }

    #[test]
    fn small_bodies_and_a_spent_budget_stay_on_the_heap() {
        let budget = Arc::new(FileBudget {
            open: AtomicUsize::new(0),
            max: 1,
            unsupported: AtomicBool::new(false),
        });
        assert!(seal(&[0u8; 100], &budget).is_none());
        assert!(seal(&vec![0u8; SEAL_MAX + 1], &budget).is_none());
        let big = vec![7u8; SEAL_MIN];
        let first = seal(&big, &budget).expect("sealed");
        assert!(seal(&big, &budget).is_none(), "the budget allows one");
        drop(first);
        assert!(seal(&big, &budget).is_some());
    }
}
