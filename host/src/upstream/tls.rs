//! TLS to `https://` endpoints: the rustls client config an upstream's settings make, and the connector
//! that shakes hands over the counted TCP connection.
//!
//! The connector is Weir's own rather than hyper-rustls's so that `connect_timeout` bounds the TCP connect
//! and the handshake together, a refused certificate is an error of its own type (the proxy tells it from
//! an unreachable host), and the TCP connection under TLS is the one [`CountingConnector`] counts.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12ClientSessionValue,
    Tls13ClientSessionValue, VerifierBuilderError, WebPkiServerVerifier,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, DigitallySignedStruct, NamedGroup, RootCertStore, SignatureScheme};
use tokio_rustls::client::TlsStream;

use crate::anchors::{Dated, DatedServerCheck};
use crate::body::BoxError;
use crate::connections::{CountedStream, CountingConnector};
use crate::pem_file::{self, PemFileError};

/// The ALPN id of HTTP/2.
const H2: &[u8] = b"h2";
const HTTP11: &[u8] = b"http/1.1";

/// Why an upstream's TLS settings could not be made; each names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(transparent)]
    File(#[from] PemFileError),
    #[error("the TLS library refused the settings: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot check the endpoints' certificates: {0}")]
    Verifier(#[from] VerifierBuilderError),
}

/// A failed TLS handshake with an endpoint: a certificate refused, no protocol in common.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake failed: {0}")]
pub struct HandshakeError(#[source] std::io::Error);

/// What an `https://` upstream's connections are made with.
pub struct TlsSettings {
    /// Trusted roots: the built-in Mozilla set (webpki-roots) plus `ca_file`'s certificates, each of those
    /// within its dates.
    pub ca_file: Option<PathBuf>,
    /// Shown to an endpoint that asks for a certificate (`client_cert`, `client_key`).
    pub client_cert: Option<CertifiedKey>,
    /// Checks no certificate at all (`tls_insecure_skip_verify_DANGEROUS`).
    pub skip_verify: bool,
    pub server_name: Option<ServerName<'static>>,
    /// Offer `h2` by ALPN instead of `http/1.1`.
    pub http2: bool,
}

/// ring, which the host already links for plugins' signatures; rustls's default, aws-lc-rs, would add a
/// C library and a second implementation of the same primitives.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls side of a connector, and the earliest `notAfter` of `ca_file`'s certificates.
pub struct ClientTls {
    pub config: ClientConfig,
    /// Seconds since the Unix epoch, for `/metrics`.
    pub ca_expires: Option<i64>,
}

/// The rustls side of a connector: trusted roots, the verifier and ALPN.
pub fn client_config(settings: &TlsSettings) -> Result<ClientTls, TlsSetupError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut anchors_leave = Vec::new();
    let mut ca_expires = None;
    let builder = if settings.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        // The built-in roots come without dates (their program retires them); `ca_file`'s are held to
        // theirs.
        let mut dates = vec![None; roots.roots.len()];
        if let Some(file) = &settings.ca_file {
            let certs = pem_file::add_anchors(&mut roots, file)?;
            dates.extend(certs.iter().map(Dated::of));
        }
        let anchors = roots.roots.into_iter().zip(dates).collect();
        let provider = provider.clone();
        let build = move |roots| {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()
        };
        let verifier = DatedServerCheck::new(anchors, build)?;
        anchors_leave = verifier.changes();
        ca_expires = verifier.earliest_not_after();
        // `dangerous` is rustls's door to a verifier of one's own: this one is webpki's, over fewer anchors.
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    };
    let mut config = match &settings.client_cert {
        Some(key) => {
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key.clone())))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![if settings.http2 { H2 } else { HTTP11 }.to_vec()];
    if !anchors_leave.is_empty() {
        config.resumption = Resumption::store(Arc::new(Sessions::new(anchors_leave)));
    }
    Ok(ClientTls { config, ca_expires })
}

/// The sessions an upstream's connections may resume, as rustls keeps them by default (256 server names),
/// forgotten each time one of `ca_file`'s anchors leaves its dates: a resumed session skips the check of
/// the endpoint's certificate, so one made before would outlive the CA that vouched for it.
#[derive(Debug)]
struct Sessions {
    /// The cache, and how many of `leave` have passed since it was made.
    cache: Mutex<(Arc<ClientSessionMemoryCache>, usize)>,
    leave: Vec<SystemTime>,
}

/// Server names whose sessions are kept: rustls's default.
const SESSIONS: usize = 256;

impl Sessions {
    fn new(leave: Vec<SystemTime>) -> Sessions {
        let now = SystemTime::now();
        let passed = leave.iter().take_while(|at| **at <= now).count();
        let cache = Arc::new(ClientSessionMemoryCache::new(SESSIONS));
        Sessions {
            cache: Mutex::new((cache, passed)),
            leave,
        }
    }

    /// The cache, a fresh one if an anchor has left its dates since the last.
    fn now(&self) -> Arc<ClientSessionMemoryCache> {
        let mut held = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let now = SystemTime::now();
        let (cache, passed) = &mut *held;
        let newly = self.leave[*passed..]
            .iter()
            .take_while(|at| **at <= now)
            .count();
        if newly > 0 {
            *cache = Arc::new(ClientSessionMemoryCache::new(SESSIONS));
            *passed += newly;
        }
        cache.clone()
    }
}

impl ClientSessionStore for Sessions {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.now().set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.now().kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.now().set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.now().tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.now().remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.now().insert_tls13_ticket(server_name, value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.now().take_tls13_ticket(server_name)
    }
}

/// The verifier of `tls_insecure_skip_verify_DANGEROUS`: any certificate for any name is accepted. The
/// handshake's signatures are still checked, so the connection is encrypted to whoever holds the key of
/// the certificate shown, but that may be anyone on the path.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Makes an upstream's connections: TCP, counted, and TLS over it for an `https://` upstream.
#[derive(Clone)]
pub struct Connector {
    tcp: CountingConnector,
    tls: Option<Arc<Tls>>,
    /// For the TCP connect and the handshake together.
    connect_timeout: Duration,
}

struct Tls {
    connector: tokio_rustls::TlsConnector,
    /// The name sent as SNI and checked; `None` takes each endpoint's host.
    server_name: Option<ServerName<'static>>,
}

impl Connector {
    pub fn new(
        tcp: CountingConnector,
        tls: Option<(ClientConfig, Option<ServerName<'static>>)>,
        connect_timeout: Duration,
    ) -> Connector {
        Connector {
            tcp,
            tls: tls.map(|(config, server_name)| {
                Arc::new(Tls {
                    connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
                    server_name,
                })
            }),
            connect_timeout,
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let connecting = self.tcp.call(dst.clone());
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = connecting.await?;
            let Some(tls) = tls else {
                return Ok(Stream::Plain(tcp));
            };
            let name = match &tls.server_name {
                Some(name) => name.clone(),
                None => host_name(&dst)?,
            };
            let handshake = tls.connector.connect(name, TokioIo::new(tcp));
            match tokio::time::timeout_at(deadline, handshake).await {
                Ok(Ok(stream)) => Ok(Stream::Tls(Box::new(TokioIo::new(stream)))),
                Ok(Err(e)) => Err(HandshakeError(e).into()),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the TLS handshake did not end within connect_timeout",
                )
                .into()),
            }
        })
    }
}

/// The endpoint's host as TLS names it: a DNS name, or an IP address (without the brackets of IPv6).
fn host_name(dst: &Uri) -> Result<ServerName<'static>, BoxError> {
    let host = dst.host().unwrap_or_default();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_owned())
        .map_err(|_| format!("\"{host}\" is not a name TLS can check; set server_name").into())
}

/// A connection to an endpoint, in clear or in TLS.
pub enum Stream {
    Plain(CountedStream),
    /// Boxed: a TLS session's buffers are kilobytes, the plain stream a few words.
    Tls(Box<TokioIo<TlsStream<TokioIo<CountedStream>>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(tcp) => tcp.connected(),
            Stream::Tls(tls) => {
                let (tcp, session) = tls.inner().get_ref();
                let connected = tcp.inner().connected();
                if session.alpn_protocol() == Some(H2) {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}

impl Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}
