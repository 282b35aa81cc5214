//! The client of a TLS connection as its handshake checked it, and whether it still passes once a reload
//! changes the check. The identity a connection proved is proved once, at its handshake: without this, a
//! client let in by a CA since dropped, with a certificate since revoked, or without one where one is now
//! required would keep its connection, and `X-Forwarded-Client-Cert` the old check's word, for as long as
//! it stays open. Each connection checks its client again under the new check, so a revocation list
//! reissued with nothing new on it (which `client_crl`'s next update makes routine) ends no connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::sync::watch;

use super::{ClientCheck, Listener};

/// Connections whose client a reload's check refused, since the process started.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// A TLS connection's client: the chain it showed (if any), the check it passed, and the channel a reload
/// sends the listener's next TLS on. Clones share the verdict.
#[derive(Clone)]
pub struct Peer {
    tls: watch::Receiver<Option<Arc<Listener>>>,
    chain: Option<Arc<[CertificateDer<'static>]>>,
    check: Arc<ClientCheck>,
    verdict: Verdict,
}

/// Whether a reload's check has refused a connection's client, as each of its requests reads it.
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
            check: listener.clients.clone(),
            verdict: Verdict::default(),
        }
    }

    pub fn verdict(&self) -> Verdict {
        self.verdict.clone()
    }

    /// Connections whose client a reload's check refused, by every generation, for `/metrics`.
    pub fn refused_total() -> u64 {
        REFUSED.load(Ordering::Relaxed)
    }

    /// Resolves once a reload's check refuses the client of `peer`; never for a connection in clear, which
    /// has none.
    pub async fn refusal(peer: Option<Peer>) {
        match peer {
            Some(peer) => peer.checked_anew().await,
            None => std::future::pending().await,
        }
    }

    /// Resolves once a reload brings a check this client does not pass, having marked it refused. A
    /// reload with the same check costs a comparison; one with another check, a verification of the chain
    /// the client showed.
    async fn checked_anew(mut self) {
        loop {
            if self.tls.changed().await.is_err() {
                // The sender is dropped only as the process ends: the server's own drain comes instead.
                std::future::pending::<()>().await;
            }
            // Cloned out, so that no verification runs under the channel's lock.
            let now = self.tls.borrow_and_update().clone();
            match now {
                Some(listener) if self.passes(&listener) => self.check = listener.clients.clone(),
                _ => break,
            }
        }
        // A tunnel's Peer shares its connection's verdict: the connection is counted once.
        if !self.verdict.0.swap(true, Ordering::Relaxed) {
            REFUSED.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn passes(&self, listener: &Listener) -> bool {
        // The same allocation when a reload kept the check (crate::reload): no bytes compared.
        if listener.clients == self.check {
            return true;
        }
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
