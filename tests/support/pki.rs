//! A certificate authority of a test's own (rcgen), its certificate written to `ca.pem` in a temporary
//! directory: shared by the TLS tests of the listener (tests/tls.rs) and of upstreams (tests/upstream_tls.rs),
//! each of which adds the leaves it needs.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

pub struct Pki {
    pub ca: CertifiedIssuer<'static, KeyPair>,
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Weir test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a CA key"))
            .expect("the CA certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca.pem");
        Pki { ca, dir }
    }
}
