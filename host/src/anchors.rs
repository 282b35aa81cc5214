//! Trust anchors held to their own dates: `client_ca`'s, and an upstream's `ca_file`. webpki checks the
//! dates of the certificates a peer shows, not those of the anchor its chain ends at (RFC 5280 §6.1 leaves
//! that to the relying party), so a CA past its `notAfter` would go on vouching. OpenSSL checks them, and
//! nginx with it refuses such a client (with a 400) and such an upstream (with a 502); so does Weir, with a
//! `certificate_expired` alert to the client.
//!
//! The anchors' `notBefore` and `notAfter` cut time into periods, each with its own set of anchors in date.
//! Each period's check is rustls's verifier over that set alone: a chain that could end at an expired CA or
//! at its renewal (a cross-signed intermediate) is judged by the renewal, as path building over the anchors
//! in date finds it. A period over every anchor shares the verifier made at load; one over a part of them
//! is made the first time a handshake falls in it, so that a file of many CAs with staggered dates (a
//! system bundle) costs one verifier for now, not one for each period of its history.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::SignatureScheme;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::server::VerifierBuilderError;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore};
use x509_parser::certificate::X509Certificate;

/// The seconds since the Unix epoch through which a certificate is in date, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    fn holds_at(&self, seconds: i64) -> bool {
        (self.not_before..=self.not_after).contains(&seconds)
    }
}

/// The certificate's validity, when x509-parser reads it.
pub fn validity(cert: &CertificateDer<'_>) -> Option<Validity> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(validity_of(&parsed))
}

fn validity_of(parsed: &X509Certificate<'_>) -> Validity {
    let validity = parsed.validity();
    Validity {
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    }
}

/// The first second a certificate is out of date: webpki holds one valid through its `notAfter`'s second,
/// and so does every check here.
pub fn out_of_date_from(not_after: i64) -> i64 {
    not_after.saturating_add(1)
}

/// Seconds since the Unix epoch as a time of the wall clock; one before it, as the epoch.
pub fn wall_clock(seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// A trust anchor's dates, and the name a chain that ends at it names as its issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dated {
    validity: Validity,
    /// The subject, as DER.
    subject: Vec<u8>,
}

impl Dated {
    /// The anchor of certificate `cert`. `None` for one whose dates x509-parser cannot read though webpki
    /// took it as an anchor: it is left to webpki, in date throughout, as every anchor was before.
    pub fn of(cert: &CertificateDer<'_>) -> Option<Dated> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
        Some(Dated {
            validity: validity_of(&parsed),
            subject: parsed.subject().as_raw().to_vec(),
        })
    }
}

/// Makes rustls's verifier over a set of anchors, with the other settings of the check.
type Build<V> = Box<dyn Fn(RootCertStore) -> Result<Arc<V>, String> + Send + Sync>;

/// A verifier of rustls's for each period, over the anchors in date in it.
struct Periods<V: ?Sized> {
    /// Over every anchor: the one of each period where all are in date, its hints and signature checks,
    /// and the judge of a chain that ends only at an anchor out of date.
    all: Arc<V>,
    anchors: Vec<(TrustAnchor<'static>, Option<Dated>)>,
    /// The periods in order, each from its start (the first from the beginning of time), its verifier made
    /// when first needed; `None` for one with no anchor in date.
    periods: Vec<(i64, OnceLock<Option<Arc<V>>>)>,
    build: Build<V>,
}

impl<V: ?Sized> Periods<V> {
    /// The periods of `anchors`; `build` makes rustls's verifier over a set of them, once now over all of
    /// them (its error is the config's), later over those of a period.
    fn new<E: fmt::Display>(
        anchors: Vec<(TrustAnchor<'static>, Option<Dated>)>,
        build: impl Fn(RootCertStore) -> Result<Arc<V>, E> + Send + Sync + 'static,
    ) -> Result<Periods<V>, E> {
        let all = build(store(&anchors, |_| true))?;
        let periods = period_starts(anchors.iter().filter_map(|(_, dated)| dated.as_ref()))
            .into_iter()
            .map(|start| (start, OnceLock::new()))
            .collect();
        Ok(Periods {
            all,
            anchors,
            periods,
            build: Box::new(move |roots| build(roots).map_err(|e| e.to_string())),
        })
    }

    /// When an anchor leaves its dates, in order: a connection open then is checked again. (One coming into
    /// its dates refuses nobody.)
    fn changes(&self) -> Vec<SystemTime> {
        let ends: Vec<i64> = (self.anchors.iter())
            .filter_map(|(_, dated)| dated.as_ref())
            .map(|dated| out_of_date_from(dated.validity.not_after))
            .collect();
        (self.periods.iter())
            .map(|(start, _)| *start)
            .filter(|start| ends.contains(start))
            .map(wall_clock)
            .collect()
    }

    /// The earliest `notAfter` of the anchors that have dates, in seconds since the epoch.
    fn earliest_not_after(&self) -> Option<i64> {
        (self.anchors.iter())
            .filter_map(|(_, dated)| Some(dated.as_ref()?.validity.not_after))
            .min()
    }

    /// The check of the period `seconds` is in, made if it is the first handshake in it. `None` when no
    /// anchor is in date, or the check could not be made (it was once, over every anchor, at load): every
    /// chain is then refused.
    fn at(&self, seconds: i64) -> Option<Arc<V>> {
        // The first period starts at the beginning of time, so some period holds every second.
        let index = self.periods.partition_point(|(start, _)| *start <= seconds);
        let (start, verifier) = self.periods.get(index.checked_sub(1)?)?;
        let in_date = |dated: &Option<Dated>| {
            (dated.as_ref()).is_none_or(|dated| dated.validity.holds_at(*start))
        };
        let made = verifier.get_or_init(|| {
            if self.anchors.iter().all(|(_, dated)| in_date(dated)) {
                return Some(self.all.clone());
            }
            if !self.anchors.iter().any(|(_, dated)| in_date(dated)) {
                return None;
            }
            (self.build)(store(&self.anchors, in_date))
                .inspect_err(|e| tracing::error!("cannot make the check of certificates: {e}"))
                .ok()
        });
        made.clone()
    }

    /// `verify` by the check of the period `now` is in. A chain no anchor in date vouches for is then
    /// judged over every anchor: said to be out of date when one of the anchors out of date that it names
    /// as an issuer would have passed it (the certificate_expired alert, as OpenSSL sends), refused as
    /// that judge says otherwise.
    fn judge<T>(
        &self,
        now: UnixTime,
        chain: (&CertificateDer<'_>, &[CertificateDer<'_>]),
        verify: impl Fn(&V) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if let Some(verifier) = self.at(seconds) {
            if Arc::ptr_eq(&verifier, &self.all) {
                return verify(&verifier);
            }
            match verify(&verifier) {
                Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {}
                decided => return decided,
            }
        }
        verify(&self.all)?;
        Err(Error::InvalidCertificate(
            self.out_of_date(now, seconds, chain),
        ))
    }

    /// Why a chain that passes over every anchor fails over those in date: it ends only at anchors out of
    /// date. Of those the chain names as an issuer, an expired one (the latest) before one not yet valid.
    fn out_of_date(
        &self,
        time: UnixTime,
        seconds: i64,
        (end_entity, intermediates): (&CertificateDer<'_>, &[CertificateDer<'_>]),
    ) -> CertificateError {
        let issuers: Vec<Vec<u8>> = std::iter::once(end_entity)
            .chain(intermediates)
            .filter_map(|cert| {
                let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
                Some(parsed.issuer().as_raw().to_vec())
            })
            .collect();
        let named: Vec<Validity> = (self.anchors.iter())
            .filter_map(|(_, dated)| dated.as_ref())
            .filter(|dated| !dated.validity.holds_at(seconds) && issuers.contains(&dated.subject))
            .map(|dated| dated.validity)
            .collect();
        let at = |seconds| {
            UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
        };
        let expired = named
            .iter()
            .filter(|v| v.not_after < seconds)
            .map(|v| v.not_after)
            .max();
        let early = named
            .iter()
            .filter(|v| v.not_before > seconds)
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

/// The anchors `keep` keeps, as rustls takes them.
fn store(
    anchors: &[(TrustAnchor<'static>, Option<Dated>)],
    keep: impl Fn(&Option<Dated>) -> bool,
) -> RootCertStore {
    RootCertStore {
        roots: (anchors.iter())
            .filter(|(_, dated)| keep(dated))
            .map(|(anchor, _)| anchor.clone())
            .collect(),
    }
}

/// The starts of the periods: the beginning of time, then each second at which an anchor comes into date
/// (its `notBefore`) or leaves it.
fn period_starts<'a>(dated: impl Iterator<Item = &'a Dated>) -> Vec<i64> {
    let mut starts: Vec<i64> = dated
        .flat_map(|d| {
            [
                d.validity.not_before,
                out_of_date_from(d.validity.not_after),
            ]
        })
        // A date past what the clock can say is no change.
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
            .field("periods", &self.periods.len())
            .finish_non_exhaustive()
    }
}

/// What both checks take as it is from the verifier over every anchor: a handshake's signatures are the
/// key's, whichever anchor vouched for it.
macro_rules! from_every_anchor {
    () => {
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

        fn requires_raw_public_keys(&self) -> bool {
            self.0.all.requires_raw_public_keys()
        }
    };
}

/// The listener's check of clients' chains against `client_ca`, each anchor in its dates.
#[derive(Debug)]
pub struct DatedClientCheck(Periods<dyn ClientCertVerifier>);

impl DatedClientCheck {
    pub fn new(
        anchors: Vec<(TrustAnchor<'static>, Option<Dated>)>,
        build: impl Fn(RootCertStore) -> Result<Arc<dyn ClientCertVerifier>, VerifierBuilderError>
        + Send
        + Sync
        + 'static,
    ) -> Result<DatedClientCheck, VerifierBuilderError> {
        Periods::new(anchors, build).map(DatedClientCheck)
    }

    /// When an anchor leaves its dates, in order: a connection open then is checked again.
    pub fn changes(&self) -> Vec<SystemTime> {
        self.0.changes()
    }

    /// The earliest `notAfter` of the anchors, in seconds since the epoch.
    pub fn earliest_not_after(&self) -> Option<i64> {
        self.0.earliest_not_after()
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
        let chain = (end_entity, intermediates);
        (self.0).judge(now, chain, |v| {
            v.verify_client_cert(end_entity, intermediates, now)
        })
    }

    from_every_anchor!();
}

/// An upstream's check of its endpoints' chains against the built-in roots and its `ca_file`, each of the
/// file's anchors in its dates.
#[derive(Debug)]
pub struct DatedServerCheck(Periods<WebPkiServerVerifier>);

impl DatedServerCheck {
    pub fn new(
        anchors: Vec<(TrustAnchor<'static>, Option<Dated>)>,
        build: impl Fn(RootCertStore) -> Result<Arc<WebPkiServerVerifier>, VerifierBuilderError>
        + Send
        + Sync
        + 'static,
    ) -> Result<DatedServerCheck, VerifierBuilderError> {
        Periods::new(anchors, build).map(DatedServerCheck)
    }

    /// When an anchor leaves its dates, in order: sessions made before are not resumed after.
    pub fn changes(&self) -> Vec<SystemTime> {
        self.0.changes()
    }

    /// The earliest `notAfter` of `ca_file`'s anchors (the built-in roots have none), in seconds since
    /// the epoch.
    pub fn earliest_not_after(&self) -> Option<i64> {
        self.0.earliest_not_after()
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
        (self.0).judge(now, (end_entity, intermediates), |v| {
            v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        })
    }

    from_every_anchor!();

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.0.all.root_hint_subjects()
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    use super::*;

    /// A verifier that passes a chain when it holds the anchor the test names.
    struct Holds(Vec<Vec<u8>>);

    /// A CA named `name`, in date from `from` through `until` (years, on 1 January), as an anchor of
    /// rustls's and its dates; and a leaf it signed.
    fn ca(
        name: &str,
        from: i32,
        until: i32,
    ) -> (
        (TrustAnchor<'static>, Option<Dated>),
        CertificateDer<'static>,
    ) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key"))
            .expect("a CA");
        let mut roots = RootCertStore::empty();
        roots.add(issuer.der().clone()).expect("an anchor");
        let key = KeyPair::generate().expect("a key");
        let leaf = CertificateParams::new(vec!["leaf.test".into()]).expect("params");
        let leaf = leaf.signed_by(&key, &issuer).expect("a leaf");
        let anchor = roots.roots.remove(0);
        ((anchor, Dated::of(issuer.der())), leaf.der().clone())
    }

    fn year(y: i32) -> i64 {
        SystemTime::from(rcgen::date_time_ymd(y, 1, 1))
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
    }

    fn at(seconds: i64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
    }

    #[test]
    fn each_chain_is_judged_by_the_anchors_in_date_and_told_which_of_its_own_is_not() {
        let (old, by_old) = ca("old", 2020, 2025);
        let (new, by_new) = ca("new", 2024, 2030);
        // Long gone, and no issuer of either chain: never the reason given for them.
        let (gone, _) = ca("gone", 2010, 2015);
        let subject = |anchor: &(TrustAnchor<'static>, Option<Dated>)| anchor.0.subject.to_vec();
        let (old_name, new_name) = (subject(&old), subject(&new));
        let periods: Periods<Holds> = Periods::new(vec![gone, old, new], |roots: RootCertStore| {
            let names = roots.roots.iter().map(|a| a.subject.to_vec()).collect();
            Ok::<_, VerifierBuilderError>(Arc::new(Holds(names)))
        })
        .expect("periods");
        let under = |name: &Vec<u8>| {
            let name = name.clone();
            move |v: &Holds| match v.0.contains(&name) {
                true => Ok(()),
                false => Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            }
        };
        // Only leaving a date can refuse anyone: the old CA's, the second after its notAfter, and the new's.
        assert_eq!(
            periods.changes(),
            [2015, 2025, 2030].map(|y| wall_clock(year(y) + 1))
        );
        let judged = |when, leaf: &CertificateDer<'static>, name| {
            periods.judge(at(when), (leaf, &[]), under(name))
        };
        assert!(judged(year(2021), &by_old, &old_name).is_ok());
        assert!(
            judged(year(2025), &by_old, &old_name).is_ok(),
            "through its notAfter's second"
        );
        assert!(judged(year(2025), &by_new, &new_name).is_ok());
        assert!(matches!(
            judged(year(2025) + 1, &by_old, &old_name),
            Err(Error::InvalidCertificate(CertificateError::ExpiredContext { not_after, .. }))
                if not_after == at(year(2025))
        ));
        assert!(judged(year(2025) + 1, &by_new, &new_name).is_ok());
        // Before the new CA's dates, its own notBefore is named, not the gone CA's notAfter.
        assert!(matches!(
            judged(year(2021), &by_new, &new_name),
            Err(Error::InvalidCertificate(CertificateError::NotValidYetContext { not_before, .. }))
                if not_before == at(year(2024))
        ));
        // No anchor in date at all: refused, and said why.
        assert!(matches!(
            judged(year(2031), &by_new, &new_name),
            Err(Error::InvalidCertificate(
                CertificateError::ExpiredContext { .. }
            ))
        ));
        // What the check over every anchor refuses for another reason is refused for it.
        let revoked = periods.judge(at(year(2026)), (&by_old, &[]), |v: &Holds| {
            match v.0.len() {
                3 => Err::<(), _>(Error::InvalidCertificate(CertificateError::Revoked)),
                _ => Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            }
        });
        assert!(
            matches!(
                revoked,
                Err(Error::InvalidCertificate(CertificateError::Revoked))
            ),
            "{revoked:?}"
        );
    }
}
