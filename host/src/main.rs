//! The `weir` command line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use tokio::signal::unix::{Signal, SignalKind, signal};
use weir::config::{ConfigErrors, ServerConfig, Source};
use weir::pid_file::PidFile;
use weir::reload::Control;
use weir::sandbox::Sandbox;
use weir::upgrade::{self, Handover, Inheritance, Role};
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
/// limit, as nginx's `worker_rlimit_nofile` would be set by hand. The limit in force after, when known.
fn raise_open_files() -> Option<u64> {
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
    // SAFETY: as above.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 };
    known.then_some(limit.rlim_cur)
}

/// A line on stdout for scripts and tests. Never a panic: after an upgrade stdout may be a pipe whose
/// reader has gone (the first process's starter read its lines and left).
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout(), "{line}");
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
    let open_files = raise_open_files();
    // Before the runtime, so dropped after it: what the runtime logs as it stops is flushed too.
    let _log = logging::init(&source.config.server.log_level);
    let runtime = runtime(source.config.server.workers)?;
    runtime.block_on(async {
        let signals = Signals::install();
        let mut inheritance = upgrade::inherit()?;
        let loaded = match load_all(&source).await {
            Ok(loaded) => loaded,
            Err(code) => return Ok(code),
        };
        let server = source.config.server.clone();
        let listener = listen(&mut inheritance, Role::Listen, server.listen).await?;
        let admin = match &source.config.admin {
            Some(admin) => Some(listen(&mut inheritance, Role::Admin, admin.listen).await?),
            None => None,
        };
        // Before the lines below, so that whoever reads them finds it.
        let pid_file = server
            .pid_file
            .as_ref()
            .map(|file| {
                let file = source.resolve(file);
                PidFile::write(file.clone())
                    .with_context(|| format!("cannot write the pid file {}", file.display()))
            })
            .transpose()?;
        let handover = Handover::new(&listener, admin.as_ref());
        let listening = listener.local_addr()?;
        let admin_listening = admin.as_ref().map(|a| a.local_addr()).transpose()?;
        let plugin_dir = plugin_dir(&source);
        // `load_all` checked the certificates; read again, one that changed since is reported the same.
        let tls = match weir::tls::listener_config(&source) {
            Ok(tls) => tls.map(Arc::new),
            Err(errors) => {
                eprintln!("{errors}");
                return Ok(ExitCode::FAILURE);
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let control = Arc::new(Control::new(loaded, source, plugin_dir));
        control.tls.send_replace(tls);
        // Ready before the lines below: whoever reads them may ask /readyz at once.
        control.set_ready(true);
        let admin =
            admin.map(|listener| tokio::spawn(weir::admin::serve(listener, control.clone())));
        tokio::spawn(reload_on_hangup(control.clone(), signals.hangup));
        if let Some(every) = server.watch_config {
            tokio::spawn(weir::config_watch::watch(control.clone(), every));
        }
        // Tests and scripts read this line for the bound address (the config may say port 0), and the
        // admin listener's after it.
        say(format_args!("weir listening on {scheme}://{listening}"));
        if let Some(admin) = admin_listening {
            say(format_args!("weir admin on http://{admin}"));
        }
        // Last: the process this one replaces stops accepting as soon as it reads this.
        inheritance.announce_ready();
        let stop = {
            let control = control.clone();
            async move {
                let handed_over = tokio::select! {
                    () = received(signals.terminate) => false,
                    () = received(signals.interrupt) => false,
                    () = upgrade::on_signal(&handover, signals.upgrade) => true,
                };
                // Balancers polling /readyz stop sending while what is in flight finishes.
                control.set_ready(false);
                // The new process answers the admin listener now; this one's /readyz would say otherwise.
                if let (true, Some(admin)) = (handed_over, admin) {
                    admin.abort();
                }
            }
        };
        let connections = server::connection_limit(server.max_connections, open_files);
        let (proxy, tls) = (control.proxy.clone(), control.tls.subscribe());
        server::serve(listener, proxy, tls, stop, &server, connections).await;
        drop(pid_file);
        Ok(ExitCode::SUCCESS)
    })
}

/// The listener for `role`: the one an upgrade handed over, or bound now.
async fn listen(
    inheritance: &mut Inheritance,
    role: Role,
    address: SocketAddr,
) -> anyhow::Result<tokio::net::TcpListener> {
    let what = match role {
        Role::Listen => "",
        Role::Admin => " (admin)",
    };
    if let Some(listener) = inheritance.take(role, address)? {
        tracing::info!(
            "listening on {}{what} through the socket of the process this upgrade replaces (pid {})",
            listener.local_addr()?,
            std::os::unix::process::parent_id()
        );
        return Ok(listener);
    }
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}{what}"))
}

/// SIGHUP reloads the config, as it does nginx's.
async fn reload_on_hangup(control: Arc<Control>, hangup: Option<Signal>) {
    let Some(mut hangup) = hangup else {
        return;
    };
    while hangup.recv().await.is_some() {
        // The outcome is logged by the reload itself.
        let _ = control.reload().await;
    }
}

/// The signals Weir acts on. Each handler is installed before anything slow, since the default action of
/// every one of them ends the process, and a signal sent as soon as the first line is printed must find its
/// handler there; one received before it is awaited is kept for it.
struct Signals {
    hangup: Option<Signal>,
    terminate: Option<Signal>,
    interrupt: Option<Signal>,
    upgrade: Option<Signal>,
}

impl Signals {
    fn install() -> Signals {
        let install = |kind, name: &str, otherwise: &str| {
            signal(kind)
                .inspect_err(|e| {
                    tracing::warn!("cannot install the {name} handler ({e}): {otherwise}")
                })
                .ok()
        };
        Signals {
            hangup: install(
                SignalKind::hangup(),
                "SIGHUP",
                "reload through the admin listener instead",
            ),
            terminate: install(SignalKind::terminate(), "SIGTERM", "only Ctrl-C drains"),
            interrupt: install(SignalKind::interrupt(), "SIGINT", "only SIGTERM drains"),
            upgrade: install(SignalKind::user_defined2(), "SIGUSR2", "no upgrades"),
        }
    }
}

/// Resolves when `signal` arrives; never, without a handler.
async fn received(signal: Option<Signal>) {
    if let Some(mut signal) = signal
        && signal.recv().await.is_some()
    {
        return;
    }
    std::future::pending().await
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

/// jemalloc rather than glibc's malloc: a plugin call boxes its wasmtime future (~1.4 KB), above what glibc
/// serves from its thread cache, so every call took glibc's slow path; measured in README, Design.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
