//! When the listener's TLS files stop serving: a certificate past its `notAfter` fails every handshake that
//! gets it, a `client_ca` certificate past its own refuses every client that chains to it, and a
//! `client_crl` list past its next update refuses every certificate it covers; an `ocsp` response past its
//! own is no longer stapled. A client's own chain expires too, on a connection that outlives it
//! ([`super::Peer`]). `/metrics` reports each of these times, so that an alert can fire before a renewal is
//! missed (nginx reports none, and Traefik's `tls_certs_not_after` only certificates); a load or a reload
//! warns of one already past.

use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::anchors::{out_of_date_from, validity, wall_clock};
use crate::config::Step;

/// The time past which the file `field` names expires: what that costs depends on the kind of file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    /// The field of the config file: `server.tls.cert`, `server.tls.sni.0.cert`, `server.tls.client_ca`…
    pub field: Vec<Step<'static>>,
    /// Seconds since the Unix epoch.
    pub at: i64,
    what: What,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Certificate,
    Anchor,
    UpstreamAnchor,
    RevocationList,
    Staple,
}

impl Deadline {
    /// The certificate's `notAfter` (the leaf's, for a chain).
    pub fn certificate(field: Vec<Step<'static>>, leaf: &CertificateDer<'_>) -> Option<Deadline> {
        Some(Deadline::new(
            field,
            validity(leaf)?.not_after,
            What::Certificate,
        ))
    }

    /// The earliest `notAfter` of the listener's trust anchors (`client_ca`), `at`.
    pub fn anchors(field: Vec<Step<'static>>, at: i64) -> Deadline {
        Deadline::new(field, at, What::Anchor)
    }

    /// The next update of a stapled OCSP response, `at`.
    pub fn staple(field: Vec<Step<'static>>, at: i64) -> Deadline {
        Deadline::new(field, at, What::Staple)
    }

    /// The earliest next update of the lists; a list without one is never stale.
    pub fn revocation_lists(
        field: Vec<Step<'static>>,
        lists: &[CertificateRevocationListDer<'_>],
    ) -> Option<Deadline> {
        let first = lists
            .iter()
            .filter_map(|list| {
                CertificateRevocationList::from_der(list)
                    .ok()?
                    .1
                    .next_update()
            })
            .map(|next| next.timestamp())
            .min()?;
        Some(Deadline::new(field, first, What::RevocationList))
    }

    fn new(field: Vec<Step<'static>>, at: i64, what: What) -> Deadline {
        Deadline { field, at, what }
    }

    /// The field as `/metrics` labels it, dotted: `server.tls.sni.0.cert`.
    pub fn label(&self) -> String {
        let steps: Vec<String> = (self.field.iter())
            .map(|step| match step {
                Step::Key(key) => (*key).to_owned(),
                Step::Index(index) => index.to_string(),
            })
            .collect();
        steps.join(".")
    }

    /// The deadline as a time of the wall clock.
    pub fn time(&self) -> SystemTime {
        wall_clock(self.at)
    }

    /// What a load says of a deadline already past at `now`.
    pub fn passed(&self, now: SystemTime) -> Option<String> {
        passed(self.what, self.at, now)
    }
}

/// What a load says of an upstream's trust anchors (`ca_file`) when the earliest `notAfter` among them,
/// `at`, is already past at `now`. (An upstream's is no [`Deadline`], which names a field of `[server]`.)
pub fn upstream_anchors_passed(at: i64, now: SystemTime) -> Option<String> {
    passed(What::UpstreamAnchor, at, now)
}

fn passed(what: What, at: i64, now: SystemTime) -> Option<String> {
    let at = wall_clock(at);
    if at > now {
        return None;
    }
    let shown = humantime::format_rfc3339_seconds(at);
    Some(match what {
        What::Certificate => {
            format!("the certificate expired on {shown}: clients refuse the handshake")
        }
        What::Anchor => format!(
            "a CA certificate expired on {shown}: clients whose certificates chain to it are refused"
        ),
        What::UpstreamAnchor => format!(
            "a CA certificate expired on {shown}: endpoints whose certificates chain to it are \
             refused (502)"
        ),
        What::RevocationList => format!(
            "a revocation list was due for its next update on {shown}: every client certificate \
             it covers is refused until a fresh list is loaded"
        ),
        What::Staple => format!(
            "the OCSP response was due for its next update on {shown}: it is not stapled until a \
             fresh one is loaded"
        ),
    })
}

/// When a client's `chain` stops passing by its certificates' own dates: the second after the earliest
/// `notAfter` among them. Certificates the client sent beyond its path count too: the check that runs
/// then finds whether they mattered.
pub fn chain_refused_from(chain: &[CertificateDer<'_>]) -> Option<SystemTime> {
    Some(wall_clock(out_of_date_from(earliest_not_after(chain)?)))
}

fn earliest_not_after(certs: &[CertificateDer<'_>]) -> Option<i64> {
    certs
        .iter()
        .filter_map(|cert| Some(validity(cert)?.not_after))
        .min()
}
