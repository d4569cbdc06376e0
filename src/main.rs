use clap::Parser;

/// jemalloc for the whole process: Rust's allocations, and (its symbols unprefixed) libtorch's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (`MALLOC_CONF` in the environment still overrides
/// them): freed pages are never handed back to the kernel on jemalloc's own timer
/// (`dirty_decay_ms:-1`), only when a run ends (`trainyard::alloc::release_freed_memory`).
/// Its default decay hands back part of each freed buffer within milliseconds, and a training
/// loop allocates the same batch-sized buffers again at once: evaluation at batch 1000 spent
/// half its time faulting fresh pages in (BENCHMARKS.md, "The allocator's decay").
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static malloc_conf: Option<&'static std::ffi::c_char> = Some(&ALLOCATOR_OPTIONS[0]);
static ALLOCATOR_OPTIONS: [std::ffi::c_char; 18] = {
    let text = b"dirty_decay_ms:-1\0";
    let mut out = [0; 18];
    let mut i = 0;
    while i < text.len() {
        out[i] = text[i] as std::ffi::c_char;
        i += 1;
    }
    out
};

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
