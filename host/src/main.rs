//! The `weir` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};

use weir::config::{ConfigErrors, ServerConfig, Source};
use weir::sandbox::Sandbox;
use weir::{inspect, load, logging, server};

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

fn plugin_dir(source: &Source) -> PathBuf {
    match &source.config.server.plugin_dir {
        Some(dir) => source.resolve(dir),
        None => load::default_plugin_dir(),
    }
}

/// Validates and loads everything, as `load::prepare` does for both commands; config errors are printed
/// and give `Err(exit code)`.
async fn load_all(source: &Source) -> Result<load::Loaded, ExitCode> {
    let loaded = load::prepare(source, &plugin_dir(source))
        .await
        .map_err(|errors| {
            eprintln!("{errors}");
            ExitCode::FAILURE
        })?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(loaded)
}

fn read_source(config: &Path) -> Result<Source, ExitCode> {
    Source::read(config).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::FAILURE
    })
}

/// A proxy holds two sockets per connection (the client's and the upstream's): the soft limit on open
/// files, often 1024, would refuse connections long before anything else runs out. Raised to the hard
/// limit, as nginx's `worker_rlimit_nofile` would be set by hand.
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    if !raised {
        eprintln!(
            "warning: cannot raise the limit on open files; connections may be refused early"
        );
    }
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
    raise_open_files();
    // Before the runtime, so dropped after it: what the runtime logs as it stops is flushed too.
    let _log = logging::init(&source.config.server.log_level);
    let runtime = runtime(source.config.server.workers)?;
    runtime.block_on(async {
        let load::Loaded {
            proxy,
            sandbox: _sandbox,
            ..
        } = match load_all(&source).await {
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
        if let Some(admin) = &source.config.admin {
            let listener = tokio::net::TcpListener::bind(admin.listen)
                .await
                .with_context(|| format!("cannot listen on {} (admin)", admin.listen))?;
            // After the proxy's own line, which scripts read first.
            println!("weir admin on http://{}", listener.local_addr()?);
            tokio::spawn(weir::admin::serve(listener, proxy.clone()));
        }
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
    let _log = logging::init("warn");
    runtime(Some(1))?.block_on(async {
        let load::Loaded { proxy, .. } = match load_all(&source).await {
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
    let _log = logging::init("warn");
    // One slot: inspecting instantiates nothing but the pre-instantiation check.
    let sandbox = Sandbox::new(&load::sandbox_settings(&ServerConfig::default(), 1, None))?;
    let inspection = inspect::inspect(&sandbox, file)?;
    print!("{}", inspection.report);
    Ok(if inspection.fits {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
