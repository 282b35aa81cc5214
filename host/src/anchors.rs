//! Trust anchors held to their own dates: `client_ca`'s, and an upstream's `ca_file`. webpki checks the
//! dates of the certificates a peer shows, not those of the anchor its chain ends at (RFC 5280 §6.1 leaves
//! that to the relying party), so a CA past its `notAfter` would go on vouching. OpenSSL checks them: nginx
//! refuses a client under an expired CA with a `certificate_expired` alert, and an upstream under one with
//! a 502; so does Weir.
//!
//! The anchors' `notBefore` and `notAfter` cut time into periods, each with its own set of anchors in date.
//! Each period's check is rustls's verifier over that set alone, built at load: a chain that could end at an
//! expired CA or at its renewal (a cross-signed intermediate) is judged by the renewal, as path building
//! over the anchors in date finds it. A period over every anchor shares the one verifier; each over a part
//! of them holds its own, with its own copy of the parsed revocation lists: a file of CAs with staggered
//! dates costs that memory once a period.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::SignatureScheme;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::server::VerifierBuilderError;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore};

/// The seconds since the Unix epoch through which a certificate is in date, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// An anchor that comes with no dates (the built-in roots), or whose dates do not parse: those are
    /// left to webpki, as before.
    pub const ALWAYS: Validity = Validity {
        not_before: i64::MIN,
        not_after: i64::MAX,
    };

    fn holds_at(&self, seconds: i64) -> bool {
        (self.not_before..=self.not_after).contains(&seconds)
    }
}

/// The certificate's validity; [`Validity::ALWAYS`] for one whose dates do not parse.
pub fn validity(cert: &CertificateDer<'_>) -> Validity {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
        return Validity::ALWAYS;
    };
    let validity = parsed.validity();
    Validity {
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    }
}

/// Seconds since the Unix epoch as a time of the wall clock; one before it, as the epoch.
pub fn wall_clock(seconds: i64) -> SystemTime {
    UNIX_EPOCH + since_epoch(seconds)
}

fn since_epoch(seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// A verifier of rustls's for each period, over the anchors in date in it.
struct Periods<V: ?Sized> {
    /// Over every anchor: its hints, its signature checks, and the judge of a chain that ends only at an
    /// anchor out of date.
    all: Arc<V>,
    /// The periods in order, each from its start (the first from the beginning of time); `None` for one
    /// with no anchor in date.
    periods: Vec<(i64, Option<Arc<V>>)>,
    validity: Vec<Validity>,
}

impl<V: ?Sized> Periods<V> {
    /// The periods of `anchors`, whose dates `validity` are, in the same order; `build` makes rustls's
    /// verifier over a set of them, with the other settings of the check.
    fn new<E>(
        anchors: &[TrustAnchor<'static>],
        validity: Vec<Validity>,
        build: impl Fn(RootCertStore) -> Result<Arc<V>, E>,
    ) -> Result<Periods<V>, E> {
        let store = |keep: &dyn Fn(usize) -> bool| RootCertStore {
            roots: (anchors.iter().enumerate())
                .filter(|(index, _)| keep(*index))
                .map(|(_, anchor)| anchor.clone())
                .collect(),
        };
        let all = build(store(&|_| true))?;
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
        Ok(Periods {
            all,
            periods,
            validity,
        })
    }

    fn changes(&self) -> Vec<SystemTime> {
        (self.periods.iter().skip(1))
            .map(|(start, _)| wall_clock(*start))
            .collect()
    }

    /// `verify` by the check of the period `now` is in. A chain no anchor in date vouches for is then
    /// judged over every anchor: said to be out of date when an anchor out of date would have passed it
    /// (the certificate_expired alert, as OpenSSL sends), unknown otherwise, as webpki says it.
    fn judge<T>(&self, now: UnixTime, verify: impl Fn(&V) -> Result<T, Error>) -> Result<T, Error> {
        let seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let unknown = || Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let index = self.periods.partition_point(|(start, _)| *start <= seconds);
        let period = index
            .checked_sub(1)
            .and_then(|i| self.periods[i].1.as_ref());
        if let Some(verifier) = period {
            match verify(verifier) {
                Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {}
                decided => return decided,
            }
        }
        match verify(&self.all) {
            Ok(_) => Err(Error::InvalidCertificate(self.out_of_date(seconds))),
            Err(_) => Err(unknown()),
        }
    }

    /// Why a chain that passes over every anchor fails over those in date: it ends only at anchors out of
    /// date, expired (the latest of those named) or not yet valid.
    fn out_of_date(&self, now: i64) -> CertificateError {
        let time = UnixTime::since_unix_epoch(since_epoch(now));
        let at = |seconds| UnixTime::since_unix_epoch(since_epoch(seconds));
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
                not_after: at(not_after),
            },
            (None, Some(not_before)) => CertificateError::NotValidYetContext {
                time,
                not_before: at(not_before),
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

impl<V: ?Sized> fmt::Debug for Periods<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Periods")
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

/// The listener's check of clients' chains against `client_ca`, each anchor in its dates.
#[derive(Debug)]
pub struct DatedClientCheck(Periods<dyn ClientCertVerifier>);

impl DatedClientCheck {
    pub fn new(
        anchors: &[TrustAnchor<'static>],
        validity: Vec<Validity>,
        build: impl Fn(RootCertStore) -> Result<Arc<dyn ClientCertVerifier>, VerifierBuilderError>,
    ) -> Result<DatedClientCheck, VerifierBuilderError> {
        Periods::new(anchors, validity, build).map(DatedClientCheck)
    }

    /// When the set of anchors in date changes, in order: a connection open then is checked again.
    pub fn changes(&self) -> Vec<SystemTime> {
        self.0.changes()
    }
}

impl ClientCertVerifier for DatedClientCheck {
    fn offer_client_auth(&self) -> bool {
        self.0.all.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.all.client_auth_mandatory()
    }

    // Every anchor's name, in date or not: a client picks its certificate by them, and one under an expired
    // CA is better told so by the alert than left to guess.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.all.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        (self.0).judge(now, |v| {
            v.verify_client_cert(end_entity, intermediates, now)
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.all.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.all.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.all.supported_verify_schemes()
    }
}

/// An upstream's check of its endpoints' chains against the built-in roots and its `ca_file`, each of the
/// file's anchors in its dates.
#[derive(Debug)]
pub struct DatedServerCheck(Periods<WebPkiServerVerifier>);

impl DatedServerCheck {
    pub fn new(
        anchors: &[TrustAnchor<'static>],
        validity: Vec<Validity>,
        build: impl Fn(RootCertStore) -> Result<Arc<WebPkiServerVerifier>, VerifierBuilderError>,
    ) -> Result<DatedServerCheck, VerifierBuilderError> {
        Periods::new(anchors, validity, build).map(DatedServerCheck)
    }
}

impl ServerCertVerifier for DatedServerCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        (self.0).judge(now, |v| {
            v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.all.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.all.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.all.supported_verify_schemes()
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
