//! Per-thread shards for state every request touches, so that worker threads do not contend on
//! one lock or one counter. A thread's shard is derived once from its thread id.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

/// Shard count: enough that distinct worker threads rarely share one.
pub fn count() -> usize {
    std::thread::available_parallelism()
        .map_or(8, |n| n.get() * 2)
        .next_power_of_two()
}

thread_local! {
    static THREAD_HASH: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The calling thread's shard among `n` (stable for the thread's life).
pub fn index(n: usize) -> usize {
    let h = THREAD_HASH.with(|c| match c.get() {
        Some(h) => h,
        None => {
            let mut hasher =
                std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
            std::hash::Hash::hash(&std::thread::current().id(), &mut hasher);
            let h = hasher.finish();
            c.set(Some(h));
            h
        }
    });
    (h as usize) % n.max(1)
}

/// Keeps each shard on its own cache line.
#[repr(align(128))]
#[derive(Default)]
pub struct Padded<T>(pub T);
