//! `pipewatch formats`: what each native format reads, with an example.

use std::process::ExitCode;

use pipewatch_ingest::Format;

pub(crate) fn run() -> anyhow::Result<ExitCode> {
    for format in Format::ALL {
        println!("{}", format.name());
        println!("    reads:   {}", format.reads());
        println!("    example: {}", format.example());
    }
    println!();
    println!(
        "Formats are detected from content; --format NAME forces one (needed for OTLP protobuf)."
    );
    Ok(ExitCode::SUCCESS)
}
