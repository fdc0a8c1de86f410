use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = magdi::cli::Cli::parse();
    magdi::cli::run(cli)
}
