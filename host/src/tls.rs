//! TLS on the listener: the certificates of `[server.tls]` with their stapled OCSP responses, the resolver
//! that picks one by the name the client asks for (SNI), and the rustls config the acceptor shakes hands
//! with.
//!
//! The crypto is ring's, as for HTTPS upstreams ([`crate::upstream::tls::provider`]): one implementation of
//! the primitives in the binary, no C library.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateRevocationListDer, PrivateKeyDer, TrustAnchor};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, VerifierBuilderError, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::anchors::{Dated, DatedClientCheck, wall_clock};
use crate::config::tls::{ClientCert, ListenerTls};
use crate::config::{ConfigErrors, Source, Step};
use crate::pem_file::{self, PemFileError};

mod expiry;
mod ocsp;
mod peer;
pub use expiry::{Deadline, upstream_anchors_passed};
pub use ocsp::{Staple, StapleError};
pub use peer::{Peer, Refusal, Verdict};

/// A connection over TLS: `X-Forwarded-Proto` and the plugins' `request.scheme` say `https` for its requests.
/// It carries the client's certificate, verified, as `X-Forwarded-Client-Cert` tells of it
/// ([`crate::client_cert`]), when the client showed one, and whether a later check has refused the client
/// since ([`Peer`]).
#[derive(Debug, Clone)]
pub struct Https {
    pub client_cert: Option<http::HeaderValue>,
    pub verdict: Verdict,
}

/// Why a certificate or key cannot be used (`[server.tls]`'s, or one an upstream shows its endpoints);
/// each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    File(#[from] PemFileError),
    #[error("{} holds no private key (a PEM \"PRIVATE KEY\" block)", file.display())]
    NoKey { file: PathBuf },
    #[error("{} is a key rustls cannot sign with: {source}", file.display())]
    Key {
        file: PathBuf,
        source: Box<rustls::Error>,
    },
    #[error("the TLS library refused the settings: {0}")]
    Settings(Box<rustls::Error>),
    #[error("{} cannot check clients' certificates: {source}", file.display())]
    ClientCheck {
        file: PathBuf,
        source: VerifierBuilderError,
    },
    #[error("{} is not the key of the certificate in {}: {source}", key.display(), cert.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        source: Box<rustls::Error>,
    },
    #[error(transparent)]
    Staple(#[from] StapleError),
}

/// A failure of `[server.tls]`, with the field it is about (`server.tls.cert`, `server.tls.sni.0.key`, …).
#[derive(Debug)]
pub struct FieldError {
    pub field: Vec<Step<'static>>,
    pub error: CertError,
}

/// The listener's TLS as a handshake takes it: the rustls config, its check of clients' certificates, and
/// what that check trusts. A connection keeps its client's chain, so that a reload which changes the check
/// can end the connections whose client the new one would refuse ([`Peer`]).
pub struct Listener {
    pub config: Arc<rustls::ServerConfig>,
    /// None when the listener asks for no certificate.
    pub verifier: Option<Arc<dyn ClientCertVerifier>>,
    pub clients: Arc<ClientCheck>,
    /// When each of its files expires, for `/metrics` and a load's warnings.
    pub deadlines: Vec<Deadline>,
}

/// What a client's certificate was checked against: the CA's anchors, the revocation lists, and whether a
/// client may show none. Two equal checks let in and keep out the same clients, whichever files they came
/// from; a listener that asks for no certificate has the empty check.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClientCheck {
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    optional: bool,
    /// The earliest next update of the lists, from which they refuse every certificate they cover: a
    /// connection open then is checked again ([`Peer`]).
    stale_from: Option<std::time::SystemTime>,
    /// When an anchor leaves its dates ([`DatedClientCheck`]): a connection open then is checked again.
    anchors_change: Vec<std::time::SystemTime>,
}

/// The TLS of `[server.tls]`, if the config has one; a file that does not load is an error on its field,
/// as `weir check` reports it.
pub fn listener_config(source: &Source) -> Result<Option<Listener>, ConfigErrors> {
    let Some(tls) = &source.config.server.tls else {
        return Ok(None);
    };
    server_config(tls, |file| source.resolve(file))
        .map(Some)
        .map_err(|failures| {
            ConfigErrors(
                failures
                    .into_iter()
                    .map(|f| source.field_error(&f.field, f.error.to_string()))
                    .collect(),
            )
        })
}

/// The rustls config of the listener: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1` (the server speaks both),
/// each certificate loaded now so that a bad file is a config error, never a failed handshake. Paths are
/// relative to the config file (`resolve`).
pub fn server_config(
    tls: &ListenerTls,
    resolve: impl Fn(&Path) -> PathBuf,
) -> Result<Listener, Vec<FieldError>> {
    let provider = crate::upstream::tls::provider();
    let mut errors = Vec::new();
    let mut deadlines = Vec::new();
    let mut load = |cert: &Path, key: &Path, ocsp: Option<&Path>, at: &[Step<'static>]| {
        let field = |name| {
            let mut field = tls_field(at);
            field.push(Step::Key(name));
            field
        };
        let mut fail = |which, error| {
            errors.push(FieldError {
                field: field(which),
                error,
            })
        };
        let loaded = certified_key(&resolve(cert), &resolve(key), &provider)
            .map_err(|(which, error)| fail(which, error))
            .ok()?;
        let staple = ocsp
            .map(|file| Staple::load(&resolve(file), &loaded.cert, &resolve(cert)))
            .transpose()
            .map_err(|error| fail("ocsp", error.into()))
            .ok()?;
        let leaf = loaded.cert.first()?;
        deadlines.extend(Deadline::certificate(field("cert"), leaf));
        if let Some(at) = staple.as_ref().and_then(|s| s.next_update) {
            deadlines.push(Deadline::staple(field("ocsp"), at));
        }
        Some(Served::new(loaded, staple))
    };
    let default = load(&tls.cert, &tls.key, tls.ocsp.as_deref(), &[]);
    let mut by_name = HashMap::new();
    for (index, sni) in tls.sni.iter().enumerate() {
        let at = [Step::Key("sni"), Step::Index(index)];
        if let Some(served) = load(&sni.cert, &sni.key, sni.ocsp.as_deref(), &at) {
            let served = Arc::new(served);
            for name in &sni.names {
                by_name.insert(name.to_ascii_lowercase(), served.clone());
            }
        }
    }
    let client_auth = client_verifier(tls, &resolve, &provider).unwrap_or_else(|(which, error)| {
        let field = tls_field(&[Step::Key(which)]);
        errors.push(FieldError { field, error });
        None
    });
    let (client_auth, clients) = match client_auth {
        Some(client) => {
            deadlines.extend(client.deadlines);
            (Some(client.verifier), Some(client.check))
        }
        None => (None, None),
    };
    let Some(default) = default else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let resolver = BySni { default, by_name };
    // Both versions rustls offers by default; 1.2 is still what some clients and scanners speak.
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| {
            vec![FieldError {
                field: tls_field(&[]),
                error: CertError::Settings(Box::new(e)),
            }]
        })?;
    // A `client_ca` that failed to load returned above: no config is made without the check it asks for.
    let verifier = client_auth.clone();
    let builder = match client_auth {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    if verifier.is_some() {
        // A resumed session brings back the client's certificate as it was checked then, past a
        // revocation list, an expiry or a reload since: every connection checks it afresh.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    // h2 first: a client offering both gets HTTP/2, one connection for its concurrent requests.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Listener {
        config: Arc::new(config),
        verifier,
        clients: Arc::new(clients.unwrap_or_default()),
        deadlines,
    })
}

/// The field `server.tls.…` of the config file, `at` within `[server.tls]`.
fn tls_field(at: &[Step<'static>]) -> Vec<Step<'static>> {
    let mut field = vec![Step::Key("server"), Step::Key("tls")];
    field.extend_from_slice(at);
    field
}

/// rustls's check of clients' certificates, what it checks them against, and when its files go stale.
struct ClientVerifier {
    verifier: Arc<dyn ClientCertVerifier>,
    check: ClientCheck,
    deadlines: Vec<Deadline>,
}

/// The check of clients' certificates against `client_ca`, when there is one: rustls's verifier of the
/// chain, the validity dates (the CA's own too: [`DatedClientCheck`]) and the client-auth usage, with a
/// client that shows none refused unless `client_cert = "optional"`. With `client_crl`, each certificate
/// of the chain below the CA must be covered by a list of its issuer, not on it, and the list not past its
/// next update, as nginx's `ssl_crl` has it. The error names the field at fault.
fn client_verifier(
    tls: &ListenerTls,
    resolve: impl Fn(&Path) -> PathBuf,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<ClientVerifier>, (&'static str, CertError)> {
    let Some(ca) = &tls.client_ca else {
        return Ok(None);
    };
    let ca = resolve(ca);
    let mut roots = RootCertStore::empty();
    let certs = pem_file::add_anchors(&mut roots, &ca).map_err(|e| ("client_ca", e.into()))?;
    let field = |name| tls_field(&[Step::Key(name)]);
    let mut check = ClientCheck {
        anchors: roots.roots.clone(),
        optional: tls.client_cert == Some(ClientCert::Optional),
        crls: Vec::new(),
        stale_from: None,
        anchors_change: Vec::new(),
    };
    let crl = tls.client_crl.as_deref().map(&resolve);
    let mut lists = None;
    if let Some(file) = &crl {
        check.crls = pem_file::revocation_lists(file).map_err(|e| ("client_crl", e.into()))?;
        lists = Deadline::revocation_lists(field("client_crl"), &check.crls);
        check.stale_from = lists.as_ref().map(Deadline::time);
    }
    // Kept by the check, which makes the verifier of a period over part of the anchors when one comes.
    let (optional, crls, provider) = (check.optional, check.crls.clone(), provider.clone());
    let build = move |roots: RootCertStore| {
        let mut builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        if optional {
            builder = builder.allow_unauthenticated();
        }
        if !crls.is_empty() {
            builder = builder
                .with_crls(crls.iter().cloned())
                .enforce_revocation_expiration();
        }
        builder.build()
    };
    let anchors = (roots.roots.into_iter())
        .zip(certs.iter().map(Dated::of))
        .collect();
    let verifier = DatedClientCheck::new(anchors, build).map_err(|source| {
        match (source, crl) {
            // A list that does not parse is the CRL file's fault; anything else, the CA file's.
            (source @ VerifierBuilderError::InvalidCrl(_), Some(file)) => {
                ("client_crl", CertError::ClientCheck { file, source })
            }
            (source, _) => ("client_ca", CertError::ClientCheck { file: ca, source }),
        }
    })?;
    check.anchors_change = verifier.changes();
    let anchors = verifier.earliest_not_after();
    let anchors = anchors.map(|at| Deadline::anchors(field("client_ca"), at));
    let deadlines = anchors.into_iter().chain(lists).collect();
    Ok(Some(ClientVerifier {
        verifier: Arc::new(verifier),
        check,
        deadlines,
    }))
}

/// One certificate chain and its key, checked to belong together; the error names the field at fault
/// (`cert` or `key`). The listener's certificates, and one an upstream shows its endpoints.
pub(crate) fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, (&'static str, CertError)> {
    let chain = pem_file::certificates(cert).map_err(|e| ("cert", e.into()))?;
    let pem = pem_file::read(key).map_err(|e| ("key", e.into()))?;
    let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|source| {
        let file = key.to_owned();
        let error = match source {
            pem::Error::NoItemsFound => CertError::NoKey { file },
            source => PemFileError::Pem { file, source }.into(),
        };
        ("key", error)
    })?;
    let signer = provider
        .key_provider
        .load_private_key(private)
        .map_err(|source| {
            let file = key.to_owned();
            let source = Box::new(source);
            ("key", CertError::Key { file, source })
        })?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|source| {
        let (cert, key, source) = (cert.to_owned(), key.to_owned(), Box::new(source));
        ("key", CertError::Mismatch { cert, key, source })
    })?;
    Ok(certified)
}

/// A certificate as handshakes get it: with its OCSP response stapled until the response's next update,
/// and without it after.
struct Served {
    bare: Arc<CertifiedKey>,
    stapled: Option<(Arc<CertifiedKey>, Option<SystemTime>)>,
}

impl Served {
    fn new(key: CertifiedKey, staple: Option<Staple>) -> Served {
        let stapled = staple.map(|staple| {
            let mut stapled = key.clone();
            stapled.ocsp = Some(staple.der);
            (Arc::new(stapled), staple.next_update.map(wall_clock))
        });
        Served {
            bare: Arc::new(key),
            stapled,
        }
    }

    fn key(&self) -> &Arc<CertifiedKey> {
        match &self.stapled {
            Some((stapled, until)) if until.is_none_or(|until| SystemTime::now() < until) => {
                stapled
            }
            _ => &self.bare,
        }
    }
}

/// Picks the certificate for the name the client sent: that name, else `*.` and its parent for a wildcard
/// entry, else the default (a client that sends no SNI, or one asking for a name no entry has, gets it).
struct BySni {
    default: Served,
    by_name: HashMap<String, Arc<Served>>,
}

impl fmt::Debug for BySni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BySni")
            .field("names", &self.by_name.keys())
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello.server_name().and_then(|name| {
            // rustls hands the name over lowercased and without a trailing dot.
            self.by_name.get(name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.by_name.get(&format!("*.{parent}"))
            })
        });
        Some(chosen.map_or(&self.default, |served| served).key().clone())
    }
}
