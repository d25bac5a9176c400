//! Integration tests: the real proxy on loopback ports in front of real origin servers.

mod harness;

// Modules marked `acceleration` test the cache, compression and static files, which a build
// without that (default) feature does not have.

mod balance;
#[cfg(feature = "acceleration")]
mod cache;
#[cfg(feature = "acceleration")]
mod cache_disk;
#[cfg(feature = "acceleration")]
mod cache_large;
mod cli;
#[cfg(feature = "acceleration")]
mod compress;
mod docs;
mod fastpath;
#[cfg(feature = "acceleration")]
mod files;
mod forwarding;
mod h1_random;
mod h2;
mod h2_random;
mod health;
mod interim;
mod limits;
#[cfg(target_os = "linux")]
mod listener;
mod reload;
mod routing;
mod tls;
mod upgrade;
mod upstream_h1;
mod upstream_tls;
