use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than the C library's allocator: a chat turn makes a few
/// hundred small allocations, and under concurrent turns glibc's malloc and
/// free took about a sixth of the server's time (BENCHMARKS.md, issue 9).
/// Built without transparent huge pages, so that an idle server stays small.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = magdi::cli::Cli::parse();
    magdi::cli::run(cli)
}
