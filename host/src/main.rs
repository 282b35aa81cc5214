//! The `weir` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use tokio::signal::unix::{SignalKind, signal};
use weir::config::{ConfigErrors, ServerConfig, Source};
use weir::reload::Control;
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
    /// Ask the running Weir to reload its config (through the admin listener the config names); the
    /// errors of a config it refused are printed as `weir check` prints them. SIGHUP does the same.
    Reload {
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
        Command::Reload { config } => reload(&config),
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
        let loaded = match load_all(&source).await {
            Ok(loaded) => loaded,
            Err(code) => return Ok(code),
        };
        let server = source.config.server.clone();
        let listener = tokio::net::TcpListener::bind(server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", server.listen))?;
        // Tests and scripts read this line for the bound address (the config may say port 0).
        println!("weir listening on http://{}", listener.local_addr()?);
        let admin = match &source.config.admin {
            Some(admin) => Some(
                tokio::net::TcpListener::bind(admin.listen)
                    .await
                    .with_context(|| format!("cannot listen on {} (admin)", admin.listen))?,
            ),
            None => None,
        };
        let plugin_dir = plugin_dir(&source);
        let control = Arc::new(Control::new(loaded, source, plugin_dir));
        if let Some(listener) = admin {
            // After the proxy's own line, which scripts read first.
            println!("weir admin on http://{}", listener.local_addr()?);
            tokio::spawn(weir::admin::serve(listener, control.clone()));
        }
        tokio::spawn(reload_on_hangup(control.clone()));
        control.set_ready(true);
        let draining = {
            let control = control.clone();
            async move {
                shutdown_signal().await;
                // Balancers polling /readyz stop sending while what is in flight finishes.
                control.set_ready(false);
            }
        };
        server::serve(listener, control.proxy.clone(), draining, &server).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGHUP reloads the config, as it does nginx's.
async fn reload_on_hangup(control: Arc<Control>) {
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!(
            "cannot install the SIGHUP handler: reload through the admin listener instead"
        );
        return;
    };
    while hangup.recv().await.is_some() {
        // The outcome is logged by the reload itself.
        let _ = control.reload().await;
    }
}

async fn shutdown_signal() {
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(
                "cannot install the SIGTERM handler ({e}): only Ctrl-C stops Weir gracefully"
            );
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn reload(config: &Path) -> anyhow::Result<ExitCode> {
    // Only the admin address is read here: the rest of the file is the running Weir's to judge, and a
    // mistake in it is reported as the reload's answer, as `weir check` would report it.
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let address = text
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("admin")?.get("listen")?.as_str()?.parse().ok());
    let Some(address) = address else {
        anyhow::bail!(
            "{} names no [admin] listen address: `weir reload` asks the admin listener; send the process \
             SIGHUP instead",
            config.display()
        );
    };
    runtime(Some(1))?.block_on(async {
        let (status, body) = weir::admin::post_reload(address)
            .await
            .with_context(|| format!("cannot reach the admin listener on {address}"))?;
        print!("{body}");
        Ok(if status.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
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
