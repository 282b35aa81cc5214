//! The `weir` command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use weir::config::{ConfigErrors, ServerConfig, Source};
use weir::sandbox::Sandbox;
use weir::{inspect, load, server};

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "A reverse proxy that runs a chain of WebAssembly plugins on every request"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config file.
    Run {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Parse a config, load every plugin and run every plugin's init; report all errors at once.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Work with plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Print a component's imports and exports and whether it fits the Weir contract.
    Inspect { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Check { config } => check(&config),
        Command::Plugin {
            command: PluginCommand::Inspect { file },
        } => inspect_plugin(&file),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn plugin_dir(source: &Source) -> PathBuf {
    match &source.config.server.plugin_dir {
        Some(dir) => source.resolve(dir),
        None => load::default_plugin_dir(),
    }
}

/// Validates and loads everything, as `load::prepare` does for both commands; config errors are printed
/// and give `Err(exit code)`.
async fn load_all(source: &Source) -> Result<(weir::proxy::Proxy, Arc<Sandbox>), ExitCode> {
    load::prepare(source, &plugin_dir(source))
        .await
        .map_err(|errors| {
            eprintln!("{errors}");
            ExitCode::FAILURE
        })
}

fn read_source(config: &Path) -> Result<Source, ExitCode> {
    Source::read(config).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::FAILURE
    })
}

fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    Ok(builder.enable_all().build()?)
}

fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let source = match read_source(config) {
        Ok(source) => source,
        Err(code) => return Ok(code),
    };
    // The runtime is sized by the config, so the config is held to its ranges before the runtime exists
    // (`workers = 0` is refused here, not asserted on by tokio); `load_all` validates again, as check does.
    let errors = source.validate();
    if !errors.is_empty() {
        eprintln!("{}", ConfigErrors(errors));
        return Ok(ExitCode::FAILURE);
    }
    init_logging(&source.config.server.log_level);
    let runtime = runtime(source.config.server.workers)?;
    runtime.block_on(async {
        let (proxy, _sandbox) = match load_all(&source).await {
            Ok(loaded) => loaded,
            Err(code) => return Ok(code),
        };
        let listen = source.config.server.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        // Tests and scripts read this line for the bound address (the config may say port 0).
        println!("weir listening on http://{}", listener.local_addr()?);
        let proxy = Arc::new(ArcSwap::from_pointee(proxy));
        server::serve(listener, proxy, shutdown_signal(), &source.config.server).await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn check(config: &Path) -> anyhow::Result<ExitCode> {
    let source = match read_source(config) {
        Ok(source) => source,
        Err(code) => return Ok(code),
    };
    init_logging("warn");
    runtime(Some(1))?.block_on(async {
        let (proxy, _sandbox) = match load_all(&source).await {
            Ok(loaded) => loaded,
            Err(code) => return Ok(code),
        };
        let plugins: usize = proxy.routes.iter().map(|r| r.chain.len()).sum();
        println!(
            "{}: ok ({} routes, {} upstreams, {plugins} plugins)",
            config.display(),
            proxy.routes.len(),
            source.config.upstreams.len()
        );
        Ok(ExitCode::SUCCESS)
    })
}

fn inspect_plugin(file: &Path) -> anyhow::Result<ExitCode> {
    init_logging("warn");
    let sandbox = Sandbox::new(&load::sandbox_settings(&ServerConfig::default(), None))?;
    let inspection = inspect::inspect(&sandbox, file)?;
    print!("{}", inspection.report);
    Ok(if inspection.fits {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
