use std::process::ExitCode;

use clap::Parser;

mod allocator;

fn main() -> ExitCode {
    let cli = magdi::cli::Cli::parse();
    magdi::cli::run(cli)
}
