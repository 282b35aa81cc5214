//! `client_ca`'s certificates held to their own dates. webpki checks the dates of the certificates a client
//! shows, not those of the anchor its chain ends at (RFC 5280 §6.1 leaves that to the relying party), so a
//! CA past its `notAfter` would go on vouching for clients. OpenSSL checks them, and nginx with it refuses
//! such a client with a `certificate_expired` alert; so does Weir.
//!
//! The anchors' `notBefore` and `notAfter` cut time into periods, each with its own set of anchors in date.
//! Each period's check is rustls's verifier over that set alone, built at load: a chain that could end at an
//! expired CA or at its renewal (a cross-signed intermediate) is judged by the renewal, as path building
//! over the anchors in date finds it. A period over every anchor shares the one verifier; each over a part
//! of them holds its own, with its own copy of the parsed revocation lists: a file of CAs with staggered
//! dates costs that memory once a period.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use rustls::server::VerifierBuilderError;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore};
use rustls::{SignatureScheme, client::danger::HandshakeSignatureValid};

use super::expiry::{self, Validity};

/// rustls's check of clients' chains, run over the anchors in date at the time of the check.
pub struct DatedAnchors {
    /// Over every anchor: its hints, its signature checks, and the judge of a chain that ends only at an
    /// anchor out of date.
    all: Arc<dyn ClientCertVerifier>,
    /// The periods in order, each from its start (the first from the beginning of time); `None` for one
    /// with no anchor in date.
    periods: Vec<(i64, Option<Arc<dyn ClientCertVerifier>>)>,
    validity: Vec<Validity>,
}

impl DatedAnchors {
    /// The check over `anchors`, whose certificates `certs` are, in the same order; `build` makes rustls's
    /// verifier over a set of them, with the listener's other settings (revocation lists, an optional
    /// certificate).
    pub fn new(
        anchors: &[TrustAnchor<'static>],
        certs: &[CertificateDer<'_>],
        build: impl Fn(RootCertStore) -> Result<Arc<dyn ClientCertVerifier>, VerifierBuilderError>,
    ) -> Result<DatedAnchors, VerifierBuilderError> {
        let store = |keep: &dyn Fn(usize) -> bool| RootCertStore {
            roots: (anchors.iter().enumerate())
                .filter(|(index, _)| keep(*index))
                .map(|(_, anchor)| anchor.clone())
                .collect(),
        };
        let all = build(store(&|_| true))?;
        // A certificate whose dates do not parse is left to webpki, as before: in date throughout.
        let validity: Vec<Validity> = certs
            .iter()
            .map(|cert| expiry::validity(cert).unwrap_or(Validity::ALWAYS))
            .collect();
        let mut periods = Vec::new();
        for start in period_starts(&validity) {
            let in_date = |index: usize| validity[index].holds_at(start);
            let verifier = if (0..anchors.len()).all(in_date) {
                Some(all.clone())
            } else if (0..anchors.len()).any(in_date) {
                Some(build(store(&in_date))?)
            } else {
                None
            };
            periods.push((start, verifier));
        }
        Ok(DatedAnchors {
            all,
            periods,
            validity,
        })
    }

    /// When the set of anchors in date changes, in order: a connection open then is checked again.
    pub fn changes(&self) -> Vec<SystemTime> {
        (self.periods.iter().skip(1))
            .map(|(start, _)| expiry::wall_clock(*start))
            .collect()
    }

    /// The check of the period `now` is in.
    fn at(&self, now: i64) -> Option<&Arc<dyn ClientCertVerifier>> {
        let index = self.periods.partition_point(|(start, _)| *start <= now);
        self.periods.get(index.checked_sub(1)?)?.1.as_ref()
    }

    /// Why a chain that passes over every anchor fails over those in date: it ends only at anchors out of
    /// date, expired (the latest of those named, as nginx names its CA's) or not yet valid.
    fn out_of_date(&self, now: i64) -> CertificateError {
        let time = UnixTime::since_unix_epoch(expiry::since_epoch(now));
        let expired = (self.validity.iter())
            .filter(|v| v.not_after < now)
            .map(|v| v.not_after)
            .max();
        let early = (self.validity.iter())
            .filter(|v| v.not_before > now)
            .map(|v| v.not_before)
            .min();
        match (expired, early) {
            (Some(not_after), _) => CertificateError::ExpiredContext {
                time,
                not_after: UnixTime::since_unix_epoch(expiry::since_epoch(not_after)),
            },
            (None, Some(not_before)) => CertificateError::NotValidYetContext {
                time,
                not_before: UnixTime::since_unix_epoch(expiry::since_epoch(not_before)),
            },
            (None, None) => CertificateError::UnknownIssuer,
        }
    }
}

/// The starts of the periods: the beginning of time, then each second at which an anchor comes into date
/// (its `notBefore`) or leaves it (the second after its `notAfter`: webpki holds a certificate valid
/// through that second, and so does this check).
fn period_starts(validity: &[Validity]) -> Vec<i64> {
    let mut starts: Vec<i64> = (validity.iter())
        .flat_map(|v| [v.not_before, v.not_after.saturating_add(1)])
        // The ends of time are no change: ALWAYS's, or a date past what the clock can say.
        .filter(|at| *at > i64::MIN && *at < i64::MAX)
        .collect();
    starts.push(i64::MIN);
    starts.sort_unstable();
    starts.dedup();
    starts
}

impl fmt::Debug for DatedAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatedAnchors")
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for DatedAnchors {
    fn offer_client_auth(&self) -> bool {
        self.all.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.all.client_auth_mandatory()
    }

    // Every anchor's name, in date or not: a client picks its certificate by them, and one under an expired
    // CA is better told so by the alert than left to guess.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.all.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let refused = match self.at(seconds) {
            Some(verifier) => match verifier.verify_client_cert(end_entity, intermediates, now) {
                Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                    Error::InvalidCertificate(CertificateError::UnknownIssuer)
                }
                decided => return decided,
            },
            None => Error::InvalidCertificate(CertificateError::UnknownIssuer),
        };
        // Only a chain no anchor in date vouches for comes here: said to be out of date when an anchor out
        // of date would have passed it, unknown otherwise, as webpki says it.
        match self.all.verify_client_cert(end_entity, intermediates, now) {
            Ok(_) => Err(Error::InvalidCertificate(self.out_of_date(seconds))),
            Err(_) => Err(refused),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.all.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.all.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.all.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_when_an_anchor_comes_into_date_and_the_second_after_it_leaves() {
        let validity = [
            Validity::ALWAYS,
            Validity {
                not_before: 100,
                not_after: 200,
            },
            Validity {
                not_before: i64::MIN,
                not_after: 200,
            },
        ];
        assert_eq!(period_starts(&validity), [i64::MIN, 100, 201]);
        // At its notAfter's second an anchor is still in date; the period it leaves starts after.
        assert!(validity[1].holds_at(200) && !validity[1].holds_at(201));
    }
}
