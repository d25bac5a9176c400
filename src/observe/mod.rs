//! Log/metrics stage: what happened to each request, written after its response ends.

pub mod access_log;
pub mod log_line;
