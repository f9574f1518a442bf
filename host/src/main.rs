//! The `easel` command.

use clap::{Parser, Subcommand};
use easel::{
    config::Config,
    server::{self, Mode},
};

/// Self-hosted generation gateway.
#[derive(Parser)]
#[command(name = "easel", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the APIs and run workers (the default).
    Serve,
    /// Run workers only, against the same database as a `serve`.
    Worker,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EASEL_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = Config::from_env()?;
    let mode = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => Mode::Serve,
        Command::Worker => Mode::Worker,
    };
    server::run(config, mode).await
}
