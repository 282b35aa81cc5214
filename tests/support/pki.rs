//! A certificate authority of a test's own (rcgen), its certificate written to `ca.pem` in a temporary
//! directory, and leaves it signs written beside it: shared by the TLS tests of the listener (tests/tls.rs,
//! and the upgrade over TLS in tests/upgrade.rs) and of upstreams (tests/upstream_tls.rs, which adds the
//! servers it needs).
#![allow(dead_code, reason = "each test file uses its own part of it")]

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    RevocationReason, RevokedCertParams, SanType, SerialNumber, date_time_ymd,
};

pub struct Pki {
    pub ca: CertifiedIssuer<'static, KeyPair>,
    pub dir: tempfile::TempDir,
    /// The CA's CN.
    cn: String,
    /// The serial number of the last client certificate issued.
    serial: std::cell::Cell<u64>,
}

impl Pki {
    pub fn new() -> Pki {
        Pki::named("Weir test CA", None, None)
    }

    /// A CA whose subject's CN is `cn`, valid from `not_before` until `not_after` when given (rcgen's
    /// defaults else: 1975 and 4096).
    pub fn named(
        cn: &str,
        not_before: Option<std::time::SystemTime>,
        not_after: Option<std::time::SystemTime>,
    ) -> Pki {
        let params = ca_params(cn, not_before, not_after);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a CA key"))
            .expect("the CA certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca.pem");
        Pki {
            ca,
            dir,
            cn: cn.to_owned(),
            serial: std::cell::Cell::new(0),
        }
    }

    /// The CA's certificate issued again, same name and key (so that what it signed still chains to it),
    /// valid until `not_after`: PEM.
    pub fn renewed_until(&self, not_after: std::time::SystemTime) -> String {
        let params = ca_params(&self.cn, None, Some(not_after));
        params
            .self_signed(self.ca.key())
            .expect("the renewed CA certificate")
            .pem()
    }

    /// Writes a leaf for `name` whose subject's CN is `cn` (so a test can tell two of one name apart), as
    /// `{cn}.pem` and `{cn}.key`.
    pub fn leaf(&self, name: &str, cn: &str) {
        let key = KeyPair::generate().expect("a leaf key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.ca).expect("the leaf");
        std::fs::write(self.path(&format!("{cn}.pem")), cert.pem()).expect("write the leaf");
        std::fs::write(self.path(&format!("{cn}.key")), key.serialize_pem())
            .expect("write the key");
    }

    /// Writes a client's certificate (client-auth usage) as `{cn}.pem` and `{cn}.key`: subject `O=Weir
    /// tests, CN={cn}`, and names `uri` and `dns`, in that order. Its serial number is returned: 1 for the
    /// first, 2 for the next.
    pub fn client(&self, cn: &str, uri: &str, dns: &str) -> u64 {
        self.client_until(cn, uri, dns, None)
    }

    /// As `client`, the certificate valid until `not_after` when given (rcgen's default else: 4096).
    pub fn client_until(
        &self,
        cn: &str,
        uri: &str,
        dns: &str,
        not_after: Option<std::time::SystemTime>,
    ) -> u64 {
        let key = KeyPair::generate().expect("a client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        // rcgen's default name holds a CN already, which would keep the CN first.
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Weir tests");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = vec![
            SanType::URI(uri.try_into().expect("an IA5 URI")),
            SanType::DnsName(dns.try_into().expect("an IA5 name")),
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if let Some(not_after) = not_after {
            params.not_after = not_after.into();
        }
        let serial = self.serial.get() + 1;
        self.serial.set(serial);
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("the client certificate");
        std::fs::write(self.path(&format!("{cn}.pem")), cert.pem()).expect("write the certificate");
        std::fs::write(self.path(&format!("{cn}.key")), key.serialize_pem())
            .expect("write the key");
        serial
    }

    /// Writes the CA's revocation list as `crl.pem`: the certificates of `revoked` serial numbers, and
    /// the next update on `next_update` (year, month, day).
    pub fn crl(&self, revoked: &[u64], next_update: (i32, u8, u8)) {
        let (year, month, day) = next_update;
        self.crl_until(revoked, date_time_ymd(year, month, day).into());
    }

    /// As `crl`, the next update at `next_update`.
    pub fn crl_until(&self, revoked: &[u64], next_update: std::time::SystemTime) {
        let revoked_certs = revoked
            .iter()
            .map(|&serial| RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: date_time_ymd(2026, 1, 1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2025, 1, 1),
            next_update: next_update.into(),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.ca).expect("the revocation list");
        std::fs::write(self.path("crl.pem"), crl.pem().expect("PEM")).expect("write crl.pem");
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }
}

fn ca_params(
    cn: &str,
    not_before: Option<std::time::SystemTime>,
    not_after: Option<std::time::SystemTime>,
) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    if let Some(not_before) = not_before {
        params.not_before = not_before.into();
    }
    if let Some(not_after) = not_after {
        params.not_after = not_after.into();
    }
    params
}
