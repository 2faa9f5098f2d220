//! The `pipewatch` binary: the command line, wiring ingest, analytics and
//! the demo data generator together.

mod cli;
mod config;
mod serve;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

// Ingest builds and drops many small JSON trees and queries many small
// buffers: with mimalloc instead of glibc's allocator both take markedly
// less CPU (measured in BENCHMARKS.md, tuning log). Built without its
// transparent-huge-page advice (`no_thp`): where THP is on request only,
// the kernel zeroed a whole 2 MiB page at each first touch of short-lived
// buffers, for more CPU and a higher peak.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
