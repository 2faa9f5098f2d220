//! `pipewatch serve`: the long-running service (sources, intake, online
//! detection, operational endpoints), configured by a TOML file with
//! process settings from flags and `PIPEWATCH_*` variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::serve::{self, ServeSettings};

use super::DataDir;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    data: DataDir,
    /// Configuration file (TOML): sources, intake, detection. See
    /// deploy/config/pipewatch.example.toml.
    #[arg(long, env = "PIPEWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on; overrides `[server] listen`.
    #[arg(long, env = "PIPEWATCH_LISTEN")]
    listen: Option<SocketAddr>,
}

pub(crate) fn run(args: Args, verbose: u8) -> anyhow::Result<ExitCode> {
    let mut config = Config::load_or_default(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.process.server.listen = listen;
    }
    let runtime = super::runtime()?;
    runtime.block_on(serve::run(ServeSettings {
        config,
        data_dir: args.data.data_dir,
        verbose,
    }))?;
    Ok(ExitCode::SUCCESS)
}
