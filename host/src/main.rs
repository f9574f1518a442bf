//! The `easel` command.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use easel::{
    config::Config,
    server::{self, Mode},
};

// mimalloc: the request path allocates and frees many small buffers on two runtime threads
// and SQLite's thread; glibc's allocator cost measurably more CPU per chat (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Worker {
        /// Load and claim tasks of only these providers (`local` is the native diffusion
        /// model; plugin ids otherwise), comma-separated; every provider when unset or empty.
        #[arg(long, env = "EASEL_PROVIDERS", value_delimiter = ',')]
        providers: Option<Vec<String>>,
    },
    /// Write or check provider plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Scaffold a plugin crate that builds for wasm32-wasip2 and passes its own test.
    New {
        /// Provider id: lower-case letters, digits and `-`.
        name: String,
        /// Folder to create (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path of the `easel-sdk` checkout (an easel repository's `sdk/`; default: the one
        /// this binary was built from, when it is still there).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Validate a component against the contract and print its manifest.
    Check {
        /// The `.wasm` component.
        file: PathBuf,
    },
}

// The scaffold lives beside the SDK's template so the template and its writer change together.
#[path = "../../sdk/template/scaffold.rs"]
mod scaffold;

fn plugin(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::New { name, dir, sdk } => {
            let dest = dir.unwrap_or_else(|| PathBuf::from(&name));
            let sdk = sdk.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk"));
            anyhow::ensure!(
                sdk.join("Cargo.toml").is_file(),
                "no easel-sdk at {}: pass --sdk PATH, the sdk/ folder of an easel checkout (the \
                 SDK is not published to a registry)",
                sdk.display()
            );
            let secret = scaffold::scaffold(&name, &dest, &sdk)?;
            println!(
                "created {}; build it with: cargo build --release --target wasm32-wasip2\n\
                 then copy target/wasm32-wasip2/release/{}.wasm into the plugins folder; its \
                 vendor key reaches it as {} in easel's environment (README: Which secrets \
                 a plugin sees)",
                dest.display(),
                name.replace('-', "_"),
                easel_wasm::secrets::own_variable(&name, &secret),
            );
        }
        PluginCommand::Check { file } => {
            let report = easel_wasm::check_component_blocking(&file)?;
            for warning in &report.warnings {
                eprintln!("warning: {warning}");
            }
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}

/// Writes each log event as one line: a line break inside one (a vendor's error text, a
/// client's prompt) is written as `\n`, so no text a client sent can pass for a log line of
/// its own. The formatter hands over each event whole, its own line break last.
struct OneLine<W>(W);

impl<W: std::io::Write> std::io::Write for OneLine<W> {
    fn write(&mut self, event: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match event.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (event, &b""[..]),
        };
        if !body.contains(&b'\n') && !body.contains(&b'\r') {
            self.0.write_all(event)?;
            return Ok(event.len());
        }
        let mut line = Vec::with_capacity(event.len() + 8);
        for &byte in body {
            match byte {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                _ => line.push(byte),
            }
        }
        line.extend_from_slice(end);
        self.0.write_all(&line)?;
        Ok(event.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let asked_filter = std::env::var("EASEL_LOG")
        .ok()
        .filter(|f| !f.trim().is_empty());
    let filter = asked_filter
        .as_deref()
        .map(tracing_subscriber::EnvFilter::try_new);
    let refused_filter = filter
        .as_ref()
        .and_then(|f| f.as_ref().err().map(|e| e.to_string()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            filter
                .and_then(Result::ok)
                .unwrap_or_else(|| "info,sqlx=warn,tower_http=warn".into()),
        )
        .with_writer(|| OneLine(std::io::stderr()));
    // `EASEL_LOG_FORMAT=json`: one JSON object a line, with the fields of the spans it
    // happened in (`request_id`, `task_id`) under `span` and `spans`.
    match std::env::var("EASEL_LOG_FORMAT").as_deref() {
        Ok("json") => logs
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
        Ok("text") | Err(_) => logs.init(),
        Ok(other) => {
            logs.init();
            tracing::warn!(
                format = other,
                "EASEL_LOG_FORMAT is json or text; logging text"
            );
        }
    }
    if let (Some(asked), Some(error)) = (&asked_filter, refused_filter) {
        tracing::warn!(filter = %asked, %error, "EASEL_LOG is not a log filter; logging at info");
    }
    let cli = Cli::parse();
    if let Some(Command::Plugin(command)) = cli.command {
        return plugin(command);
    }
    let mut config = Config::from_env()?;
    let mode = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => Mode::Serve,
        Command::Worker { providers } => {
            // An empty list (`EASEL_PROVIDERS=` left blank) names none: every provider, as
            // unset, never a worker that serves nothing.
            config.providers = providers
                .map(|ids| {
                    ids.into_iter()
                        .map(|id| id.trim().to_string())
                        .filter(|id| !id.is_empty())
                        .collect::<std::collections::BTreeSet<_>>()
                })
                .filter(|ids| !ids.is_empty());
            Mode::Worker
        }
        Command::Plugin(_) => unreachable!("handled above"),
    };
    server::run(config, mode).await
}
