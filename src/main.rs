//! The `pipewatch` binary: the command line, wiring ingest, analytics and
//! the demo data generator together.

mod cli;
mod config;
mod serve;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

// Ingest builds and drops many short-lived buffers (decoded records, Arrow
// builders, Parquet pages) and queries many small ones: glibc's allocator
// spent markedly more CPU on both. jemalloc is built to keep the pages it
// has freed instead of handing them back to the kernel
// (`.cargo/config.toml`), because zeroing them again at the next first touch
// cost ingest about an eighth of its CPU; the memory held stays at the
// process's peak. It also serves the C libraries' `malloc` (zstd builds a
// context per Parquet column chunk, and glibc trimmed its heap after each).
// `MALLOC_CONF=dirty_decay_ms:10000` at run time makes it return idle pages
// after about ten seconds instead (BENCHMARKS.md, tuning log).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
