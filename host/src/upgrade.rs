//! Zero-downtime binary upgrade, as nginx's SIGUSR2 and Pingora's graceful upgrade: the running process
//! starts a new `weir` with its own command line and hands it its listening sockets; the new process takes
//! them over instead of binding, loads its config and says when it serves; only then does the old one stop
//! accepting and drain. Both accept on the same sockets in between, so no connection is refused, and a new
//! process that fails to start changes nothing.
//!
//! The sockets pass by inheritance, as systemd's `LISTEN_FDS` passes them: their descriptors stay open
//! across the new process's exec and are named in `WEIR_INHERITED_FDS` (`listen:9,admin:10`). The new
//! process says it serves by writing `ready` to a pipe that `WEIR_UPGRADE_READY_FD` names; the pipe ends
//! without a word if it exits first.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::Signal;

/// Names the inherited listening sockets: `role:descriptor`, comma-separated.
pub const INHERITED_FDS: &str = "WEIR_INHERITED_FDS";
/// Names the pipe the new process writes `ready` to.
pub const READY_FD: &str = "WEIR_UPGRADE_READY_FD";

const READY: &[u8] = b"ready\n";

/// Which listener a socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The proxy's own, `server.listen`.
    Listen,
    /// `admin.listen`.
    Admin,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Listen => "listen",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("{variable}={value:?}: {why}")]
    Environment {
        variable: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("the inherited {} socket is not a listening socket", .0.name())]
    NotListening(Role),
    #[error(
        "the inherited {} socket is on {inherited}, the config says {configured}: an upgrade keeps the \
         addresses it listens on, only a restart changes them", role.name()
    )]
    Moved {
        role: Role,
        inherited: SocketAddr,
        configured: SocketAddr,
    },
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        program: OsString,
        #[source]
        source: io::Error,
    },
    #[error("the new process (pid {pid}) ended before it served: {status}")]
    Ended { pid: u32, status: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What this process got from the one it replaces, when an upgrade started it; nothing otherwise.
#[derive(Default)]
pub struct Inheritance {
    listen: Option<OwnedFd>,
    admin: Option<OwnedFd>,
    ready: Option<File>,
}

/// Set once the environment's descriptors are claimed: a second claim would own them twice.
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// Claims the descriptors the environment names (once per process; later calls get nothing).
pub fn inherit() -> Result<Inheritance, UpgradeError> {
    let mut inheritance = Inheritance::default();
    if CLAIMED.swap(true, Ordering::SeqCst) {
        return Ok(inheritance);
    }
    let mut numbers = Vec::new();
    if let Some(value) = std::env::var_os(INHERITED_FDS) {
        let value = value.to_string_lossy().into_owned();
        let bad = |why| UpgradeError::Environment {
            variable: INHERITED_FDS,
            value: value.clone(),
            why,
        };
        for item in value.split(',').filter(|item| !item.is_empty()) {
            let (role, fd) = item.split_once(':').ok_or_else(|| bad("not role:fd"))?;
            let fd: RawFd = fd.parse().map_err(|_| bad("not role:fd"))?;
            let slot = match role {
                "listen" => &mut inheritance.listen,
                "admin" => &mut inheritance.admin,
                _ => return Err(bad("a role is neither listen nor admin")),
            };
            if slot.is_some() || numbers.contains(&fd) {
                return Err(bad("a role or a descriptor named twice"));
            }
            numbers.push(fd);
            *slot = Some(claim(fd).ok_or_else(|| bad("a descriptor that is not open"))?);
        }
    }
    if let Some(value) = std::env::var_os(READY_FD) {
        let value = value.to_string_lossy().into_owned();
        let bad = |why| UpgradeError::Environment {
            variable: READY_FD,
            value: value.clone(),
            why,
        };
        let fd: RawFd = value.parse().map_err(|_| bad("not a descriptor"))?;
        if numbers.contains(&fd) {
            return Err(bad("a descriptor also named as a socket"));
        }
        inheritance.ready = Some(File::from(
            claim(fd).ok_or_else(|| bad("a descriptor that is not open"))?,
        ));
    }
    Ok(inheritance)
}

/// Owns an inherited descriptor, and keeps it from this process's own children. `None` when nothing is
/// open there, or it is a standard stream, which no upgrade hands over.
fn claim(fd: RawFd) -> Option<OwnedFd> {
    if fd <= 2 {
        return None;
    }
    // SAFETY: fcntl with F_GETFD reads a flag of whatever number it is given, failing when none is open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return None;
    }
    // SAFETY: the descriptor is open and came across exec for this process to take: nothing in this
    // process opened it, and `inherit` claims each number once (CLAIMED, and no number twice).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: as above, on a descriptor this process now owns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    Some(owned)
}

impl Inheritance {
    /// The inherited socket for `role`, if one was handed over; the config's address must be the one it
    /// listens on (a port of 0 in the config takes any).
    pub fn take(
        &mut self,
        role: Role,
        configured: SocketAddr,
    ) -> Result<Option<TcpListener>, UpgradeError> {
        let inherited = match role {
            Role::Listen => self.listen.take(),
            Role::Admin => self.admin.take(),
        };
        let Some(fd) = inherited else {
            return Ok(None);
        };
        if !is_listening(&fd) {
            return Err(UpgradeError::NotListening(role));
        }
        let listener = std::net::TcpListener::from(fd);
        let inherited = listener.local_addr()?;
        let same = inherited.ip() == configured.ip()
            && (configured.port() == 0 || configured.port() == inherited.port());
        if !same {
            return Err(UpgradeError::Moved {
                role,
                inherited,
                configured,
            });
        }
        listener.set_nonblocking(true)?;
        Ok(Some(TcpListener::from_std(listener)?))
    }

    /// Tells the process this one replaces that it serves: that one then stops accepting and drains.
    pub fn announce_ready(&mut self) {
        if let Some(mut pipe) = self.ready.take()
            && let Err(e) = pipe.write_all(READY)
        {
            // The old process is gone already (stopped while this one started): nobody to tell.
            tracing::warn!(
                "cannot tell the process this upgrade replaces that this one serves: {e}"
            );
        }
    }
}

fn is_listening(fd: &OwnedFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(0);
    // SAFETY: getsockopt writes at most `len` bytes into `value`, which has room for them.
    let done = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    done == 0 && value != 0
}

/// What the running process hands to a successor: its command line and its listening sockets.
pub struct Handover {
    program: OsString,
    args: Vec<OsString>,
    sockets: Vec<(Role, RawFd)>,
}

impl Handover {
    /// The successor runs the command line this process was started with, from the same path: a binary
    /// replaced there is the one that starts (`/proc/self/exe` would still name the old one). A bare name
    /// was found on `PATH`, and is looked up there again.
    pub fn new(listen: &TcpListener, admin: Option<&TcpListener>) -> Handover {
        let mut argv = std::env::args_os();
        let program = argv
            .next()
            .or_else(|| std::env::current_exe().ok().map(Into::into))
            .unwrap_or_else(|| "weir".into());
        let program = if program.as_bytes().contains(&b'/') {
            std::path::absolute(&program).map_or(program, Into::into)
        } else {
            program
        };
        let mut sockets = vec![(Role::Listen, listen.as_raw_fd())];
        sockets.extend(admin.map(|admin| (Role::Admin, admin.as_raw_fd())));
        Handover {
            program,
            args: argv.collect(),
            sockets,
        }
    }

    /// Starts the successor and waits until it serves (its pid) or ends; this process serves on either
    /// way. The listeners must stay open while this runs: their descriptors are passed by number.
    pub async fn start(&self) -> Result<u32, UpgradeError> {
        let (reader, writer) = io::pipe()?;
        let mut inheritable: Vec<RawFd> = self.sockets.iter().map(|(_, fd)| *fd).collect();
        inheritable.push(writer.as_raw_fd());
        let list: Vec<String> = self
            .sockets
            .iter()
            .map(|(role, fd)| format!("{}:{fd}", role.name()))
            .collect();
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env(INHERITED_FDS, list.join(","))
            .env(READY_FD, writer.as_raw_fd().to_string());
        // SAFETY: runs in the forked child before exec and calls only fcntl, which is async-signal-safe; the
        // numbers are the parent's open descriptors, which the fork copied.
        unsafe {
            command.pre_exec(move || inheritable.iter().try_for_each(|&fd| keep_open(fd)));
        }
        let child = command.spawn().map_err(|source| UpgradeError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        // Only the child's copy may keep the pipe open, so that it ends when the child does.
        drop(writer);
        let pid = child.id();
        if said_ready(reader).await? {
            return Ok(pid);
        }
        Err(UpgradeError::Ended {
            pid,
            status: reap(child).await,
        })
    }
}

/// Clears close-on-exec, so that the descriptor survives the exec.
fn keep_open(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number; it fails cleanly if nothing is open there.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the pipe until the successor says `ready` (true) or the pipe ends without it (false).
async fn said_ready(reader: io::PipeReader) -> io::Result<bool> {
    let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;
    let mut said = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        pipe.readable().await?;
        match pipe.try_read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                said.extend_from_slice(&buf[..n]);
                if said.starts_with(READY) {
                    return Ok(true);
                }
                if said.len() >= READY.len() {
                    return Ok(false);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// The exit status of a successor that closed its pipe without a word, which it does by ending.
async fn reap(mut child: Child) -> String {
    for _ in 0..500 {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => return format!("cannot tell how: {e}"),
        }
    }
    // Alive with its pipe closed: it will never say ready, and must not serve beside this process.
    let _ = child.kill();
    let _ = child.wait();
    "it closed its pipe without a word, and was killed".into()
}

/// Upgrades on each SIGUSR2 until a successor serves, and then resolves: this process is to stop. A failed
/// upgrade is logged with why, and this process serves on.
pub async fn on_signal(handover: &Handover, usr2: Option<Signal>) {
    let Some(mut usr2) = usr2 else {
        return std::future::pending().await;
    };
    while usr2.recv().await.is_some() {
        tracing::info!("SIGUSR2: starting a new process to take over the listeners");
        let mut attempt = std::pin::pin!(handover.start());
        let outcome = loop {
            tokio::select! {
                outcome = &mut attempt => break outcome,
                Some(()) = usr2.recv() => tracing::warn!("SIGUSR2 ignored: an upgrade is under way"),
            }
        };
        match outcome {
            Ok(pid) => {
                tracing::info!(
                    "upgrade: pid {pid} serves; this process (pid {}) stops accepting and drains",
                    std::process::id()
                );
                return;
            }
            Err(e) => tracing::error!("upgrade failed, this process serves on: {e}"),
        }
    }
    std::future::pending().await
}
