use clap::Parser;

/// jemalloc for the whole process: Rust's allocations, and (its symbols unprefixed) libtorch's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (`MALLOC_CONF` in the environment still overrides
/// them): freed pages are never handed back to the kernel on jemalloc's own timer
/// (`dirty_decay_ms:-1`), only when a run ends (`trainyard::alloc::release_freed_memory`).
/// Its default decay hands back part of each freed buffer within milliseconds, and a training
/// loop allocates the same batch-sized buffers again at once: evaluation at batch 1000 spent
/// half its time faulting fresh pages in (BENCHMARKS.md, "Max pooling, linear layers and the allocator's decay").
#[allow(non_upper_case_globals)]
#[no_mangle]
// SAFETY: the first character of a 'static NUL-terminated string literal, which jemalloc only reads.
pub static malloc_conf: Option<&'static std::ffi::c_char> = Some(unsafe { &*c"dirty_decay_ms:-1".as_ptr() });

fn main() -> std::process::ExitCode {
    // N.B.: a write past a file-size limit (`ulimit -f`, systemd's LimitFSIZE) must fail that
    // write, as a full disk does, not kill the whole server with SIGXFSZ.
    // SAFETY: setting a signal's disposition to "ignore" before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx::postgres::notice=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match trainyard::cli::Cli::parse().run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", trainyard::fetch::describe(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
