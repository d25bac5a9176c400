//! Integration tests: the real proxy on loopback ports in front of real origin servers.

mod harness;

mod balance;
mod cache;
mod cache_disk;
mod cli;
mod compress;
mod docs;
mod fastpath;
mod files;
mod forwarding;
mod h2;
mod health;
mod interim;
mod limits;
mod reload;
mod routing;
mod tls;
mod upgrade;
