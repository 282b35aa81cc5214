//! The client of a TLS connection as its handshake checked it, and whether it still passes later. The
//! identity a connection proved is proved once, at its handshake: without this, a client let in by a CA
//! since dropped, with a certificate since revoked or expired, or without one where one is now required
//! would keep its connection, and `X-Forwarded-Client-Cert` the old check's word, for as long as it stays
//! open. Each connection checks its client again when a reload changes the check, so a revocation list
//! reissued with nothing new on it (which `client_crl`'s next update makes routine) ends no connection, and
//! when a date the check depends on passes: a certificate of the chain the client showed expiring, a CA
//! certificate of `client_ca` leaving its dates, or the lists going stale.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::sync::watch;

use super::{ClientCheck, Listener, expiry};

/// The longest a connection waiting for a date sleeps before it reads the wall clock again. Certificates
/// expire by the wall clock and tokio's timers run on the monotonic one: a clock stepped forward (NTP, a
/// virtual machine resumed) would otherwise leave an expired client served until the sleep ran out.
const CLOCK_CHECK: Duration = Duration::from_secs(60);

/// Connections whose client a later check refused, since the process started.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// A TLS connection's client: the chain it showed (if any), the check it passed, and the channel a reload
/// sends the listener's next TLS on. Clones share the verdict.
#[derive(Clone)]
pub struct Peer {
    tls: watch::Receiver<Option<Arc<Listener>>>,
    chain: Option<Arc<[CertificateDer<'static>]>>,
    /// When the chain stops passing by its own certificates' dates.
    chain_refused_from: Option<SystemTime>,
    check: Arc<ClientCheck>,
    verdict: Verdict,
}

/// Whether a later check has refused a connection's client, as each of its requests reads it.
#[derive(Debug, Clone, Default)]
pub struct Verdict(Arc<AtomicBool>);

impl Verdict {
    /// The connection serves no further request: it is answered 421, and the client is to connect again.
    pub fn refused(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl Peer {
    /// The client of a connection whose handshake `listener` made, showing `chain`. `tls` is the
    /// channel as the acceptor last read it: a reload since then is checked at once.
    pub fn new(
        tls: watch::Receiver<Option<Arc<Listener>>>,
        listener: &Listener,
        chain: Option<&[CertificateDer<'static>]>,
    ) -> Peer {
        Peer {
            tls,
            chain: chain.map(Arc::from),
            chain_refused_from: chain.and_then(expiry::chain_refused_from),
            check: listener.clients.clone(),
            verdict: Verdict::default(),
        }
    }

    pub fn verdict(&self) -> Verdict {
        self.verdict.clone()
    }

    /// Connections whose client a later check refused, by every generation, for `/metrics`.
    pub fn refused_total() -> u64 {
        REFUSED.load(Ordering::Relaxed)
    }

    /// Resolves, with why, once a later check refuses the client of `peer`; never for a connection in
    /// clear, which has none.
    pub async fn refusal(peer: Option<Peer>) -> Refusal {
        match peer {
            // Boxed: a connection in clear would otherwise keep room for a check it never runs (640 bytes).
            Some(peer) => Box::pin(peer.checked_anew()).await,
            None => std::future::pending().await,
        }
    }

    /// Resolves once a check this client does not pass comes, having marked it refused: a reload's with
    /// another check (a reload with the same check costs a comparison), or the same check again once a date
    /// it depends on has passed.
    async fn checked_anew(mut self) -> Refusal {
        let refusal = loop {
            let due = self.next_date(SystemTime::now());
            let wake = async {
                match due.map(|at| at.duration_since(SystemTime::now()).unwrap_or_default()) {
                    Some(wait) => tokio::time::sleep(wait.min(CLOCK_CHECK)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.tls.changed() => {
                    if changed.is_err() {
                        // The sender is dropped only as the process ends: the server's own drain comes
                        // instead.
                        std::future::pending::<()>().await;
                    }
                    // Cloned out, so that no verification runs under the channel's lock.
                    let now = self.tls.borrow_and_update().clone();
                    match now {
                        Some(listener) if self.passes(&listener) => self.check = listener.clients.clone(),
                        _ => break Refusal::Reloaded,
                    }
                }
                () = wake => {
                    // Woken early to read the clock, or the date has come: then the check runs as a new
                    // handshake's would (a reload not yet seen here included).
                    if due.is_some_and(|at| SystemTime::now() >= at) {
                        let now = self.tls.borrow().clone();
                        if !now.is_some_and(|listener| self.verified_by(&listener)) {
                            break Refusal::Expired;
                        }
                    }
                }
            }
        };
        // A tunnel's Peer shares its connection's verdict: the connection is counted once.
        if !self.verdict.0.swap(true, Ordering::Relaxed) {
            REFUSED.fetch_add(1, Ordering::Relaxed);
        }
        refusal
    }

    /// The first date after `now` at which the check may refuse what it let in: a certificate of the
    /// chain expiring, the lists going stale, an anchor of the CA leaving its dates. One already past that
    /// the client still passes (a certificate it sent beyond its path) is no date.
    fn next_date(&self, now: SystemTime) -> Option<SystemTime> {
        self.chain.as_ref()?;
        let anchors = self.check.anchors_change.iter().copied();
        [self.chain_refused_from, self.check.stale_from]
            .into_iter()
            .flatten()
            .chain(anchors)
            .filter(|at| *at > now)
            .min()
    }

    fn passes(&self, listener: &Listener) -> bool {
        // The same allocation when a reload kept the check (crate::reload): no bytes compared.
        listener.clients == self.check || self.verified_by(listener)
    }

    /// Whether the client passes `listener`'s check now, as at a handshake.
    fn verified_by(&self, listener: &Listener) -> bool {
        match (&listener.verifier, &self.chain) {
            (None, None) => true,
            // Nothing vouches for the certificate now: its header would still say something did.
            (None, Some(_)) => false,
            (Some(verifier), None) => !verifier.client_auth_mandatory(),
            (Some(verifier), Some(chain)) => {
                let Some((leaf, intermediates)) = chain.split_first() else {
                    return false;
                };
                (verifier.verify_client_cert(leaf, intermediates, UnixTime::now())).is_ok()
            }
        }
    }
}

/// Why a connection's client no longer passes, as its log line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Reloaded,
    Expired,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Reloaded => "a reload's check of clients' certificates refused its client",
            Refusal::Expired => {
                "its client's certificate or the CA it chains to expired, or the revocation lists went \
                 stale, while it was open"
            }
        })
    }
}
