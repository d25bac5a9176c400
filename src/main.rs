//! The `frontdesk` binary: parses the command line, starts logging and the tokio runtime, and
//! hands over to the library. Exit codes: 0 ok, 1 `check` found errors, 64 invalid config at start.

use clap::{Parser, Subcommand};
use frontdesk::config::{self, Source};
use std::path::PathBuf;
use std::process::ExitCode;

// mimalloc: cheaper allocation than glibc's, and freed memory goes back to the system (with the
// workers' `return_freed_memory`), so connections that went idle after a burst stop costing
// memory (bench/idle_conns.py).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "frontdesk", version, about = "A reverse proxy and edge server")]
struct Cli {
    /// Configuration file (same as `frontdesk run --config FILE`).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with the given configuration (the default command).
    Run,
    /// Validate the configuration and exit: 0 when valid, 1 with every error otherwise.
    Check,
    /// Start three demo origins and a proxy in front of them.
    Demo {
        /// Where the demo proxy listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Where the demo admin listener listens.
        #[arg(long, default_value = "127.0.0.1:9900")]
        admin: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(cli.config),
        Command::Run => run(cli.config),
        Command::Demo { listen, admin } => demo(listen, admin),
    }
}

fn config_path(path: Option<PathBuf>) -> Result<PathBuf, ExitCode> {
    path.ok_or_else(|| {
        eprintln!("error: --config FILE is required (try `frontdesk demo` for a quick start)");
        ExitCode::from(2)
    })
}

fn check(path: Option<PathBuf>) -> ExitCode {
    let path = match config_path(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let source = match Source::read(&path) {
        Ok(s) => s,
        Err(d) => {
            eprintln!("{d}");
            return ExitCode::from(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    // Compiling needs a runtime context (backends are created in it), but nothing is bound.
    let result = rt.block_on(async {
        let runtime = frontdesk::runtime::Runtime::new();
        config::load(&source, &runtime, 1)
    });
    match result {
        Ok(snap) => {
            println!("{}: ok ({})", source.name, snap.summary());
            ExitCode::SUCCESS
        }
        Err(diags) => {
            eprintln!("{diags}");
            eprintln!("{}: {} error(s)", source.name, diags.0.len());
            ExitCode::from(1)
        }
    }
}

fn init_logging(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level.unwrap_or("info")))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn build_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers == 1 {
        // One worker: the single-threaded scheduler does the same job without work-stealing
        // bookkeeping (per-poll clock reads, cross-thread wake-ups).
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(on_park)
            .build();
    }
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        b.worker_threads(workers);
    }
    b.enable_all()
        .thread_name("frontdesk-worker")
        .on_thread_park(on_park)
        .build()
}

/// Run when a worker is about to wait for work: the moment to hand its access log lines to the
/// writer (they need not wait any longer) and to let mimalloc give memory back.
fn on_park() {
    frontdesk::observe::access_log::flush_thread_batch();
    return_freed_memory();
}

/// At most once a second per worker, lets mimalloc hand the pages its thread freed back to the
/// system. mimalloc keeps emptied pages with the thread and purges them (after a second) only from later allocations that need fresh pages,
/// which a worker whose connections went idle does not make: the RSS of 10,000 idle
/// connections stayed at whatever the burst that opened them peaked at (3–7 KiB each, run to
/// run) instead of about 2 KiB (bench/idle_conns.py). The first call after a release schedules
/// the pages, a call a second later purges them.
fn return_freed_memory() {
    use std::cell::Cell;
    use std::time::{Duration, Instant};
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    LAST.with(|last| {
        let now = Instant::now();
        if last
            .get()
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            last.set(Some(now));
            // SAFETY: mi_collect has no preconditions; it works on the calling thread's heap.
            unsafe { libmimalloc_sys::mi_collect(false) };
        }
    });
}

fn run(path: Option<PathBuf>) -> ExitCode {
    let path = match config_path(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let parsed = Source::read(&path).and_then(|s| config::parse(&s).map(|f| (s, f)));
    let (source, file) = match parsed {
        Ok(v) => v,
        Err(d) => {
            eprintln!("{d}");
            return ExitCode::from(64);
        }
    };
    init_logging(file.log.level.as_deref());
    let rt = match build_runtime(file.runtime.workers.unwrap_or(0)) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(frontdesk::run(path, source)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(frontdesk::StartError::Config(d)) => {
            eprintln!("{d}");
            ExitCode::from(64)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn demo(listen: String, admin: String) -> ExitCode {
    init_logging(None);
    let rt = match build_runtime(0) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let result: Result<(), String> = rt.block_on(async {
        let mut origins = Vec::new();
        for i in 1..=3 {
            origins.push(frontdesk::demo::start_origin(format!("origin-{i}")).await.map_err(|e| e.to_string())?);
        }
        let source = frontdesk::demo::config(&listen, &admin, &origins);
        let proxy = frontdesk::Proxy::start(&source).await.map_err(|e| e.to_string())?;
        frontdesk::announce_ready(&proxy);
        eprintln!("\nDemo running. Try:\n  for i in 1 2 3 4 5 6; do curl -s http://{listen}/; done\n  curl -s http://{admin}/upstreams\nCtrl-C stops it.\n");
        frontdesk::serve_until_signal(&proxy, None).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
