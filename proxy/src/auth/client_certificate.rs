//! Mode `clientCertificate`: the caller is named by the certificate it presented in the TLS
//! handshake, which rustls already verified against the entry point's client CA (tls.rs).
//!
//! The rule: the first URI subject alternative name (a SPIFFE ID such as
//! `spiffe://cluster.local/ns/agents/sa/builder`, what service meshes and cert-manager's CSI
//! driver issue), else the subject's common name; a certificate with neither names nobody and
//! is refused. A URI SAN comes first because SANs are what modern issuers set and what a CA
//! constrains; a CN is the fallback for certificates issued the old way.
//!
//! Parsed with `x509-cert` (RustCrypto): 6 crates new to the binary (der, der_derive,
//! const-oid, spki, flagset, x509-cert). `x509-parser`, already in Cargo.lock through the test
//! dependency rcgen, would have added 19 (nom, time, num-bigint, asn1-rs and their helpers).

use rustls::pki_types::CertificateDer;
use x509_cert::Certificate;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Tag, Tagged};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use super::Failure;
use crate::request::Identity;

/// Longest identity taken from a certificate; it lands in logs, metrics and tool rules.
const MAX_IDENTITY_BYTES: usize = 1024;

/// The subject's common name (2.5.4.3).
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// The caller named by the verified client certificate `cert` (the leaf), if one came.
pub fn authenticate(cert: Option<&CertificateDer<'_>>) -> Result<Identity, Failure> {
    let cert = cert.ok_or(Failure::Missing)?;
    let name = identity_of(cert)?;
    Ok(Identity::named(name))
}

/// The identity rule (module docs) applied to one DER certificate.
fn identity_of(der: &[u8]) -> Result<String, Failure> {
    // rustls verified the certificate, so it parses; a parser that disagrees refuses it.
    let cert = Certificate::from_der(der).map_err(|_| Failure::Malformed)?;
    let tbs = &cert.tbs_certificate;
    let san = tbs
        .get::<SubjectAltName>()
        .map_err(|_| Failure::Malformed)?;
    let uri = san
        .into_iter()
        .flat_map(|(_, san)| san.0)
        .find_map(|n| match n {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.as_str().to_owned()),
            _ => None,
        });
    let name = match uri {
        Some(uri) => uri,
        None => common_name(&cert).ok_or(Failure::NoIdentity)?,
    };
    // Visible ASCII only: the name is written to logs and compared with tool rules as is.
    if name.is_empty()
        || name.len() > MAX_IDENTITY_BYTES
        || !name.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Failure::Malformed);
    }
    Ok(name)
}

/// The subject's (first) common name, in any of the string types issuers use for it.
fn common_name(cert: &Certificate) -> Option<String> {
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == COMMON_NAME)
        .find_map(|atv| match atv.value.tag() {
            Tag::Utf8String | Tag::PrintableString | Tag::Ia5String => {
                std::str::from_utf8(atv.value.value())
                    .ok()
                    .map(str::to_owned)
            }
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn der(edit: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        edit(&mut params);
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn the_first_uri_san_names_the_caller_else_the_common_name() {
        let spiffe = "spiffe://cluster.local/ns/agents/sa/builder";
        let both = der(|p| {
            p.distinguished_name.push(DnType::CommonName, "cn-name");
            p.subject_alt_names = vec![
                SanType::DnsName("a.example".try_into().expect("dns")),
                SanType::URI(spiffe.try_into().expect("uri")),
                SanType::URI("spiffe://other/x".try_into().expect("uri")),
            ];
        });
        assert_eq!(identity_of(&both).as_deref(), Ok(spiffe));

        let cn_only = der(|p| {
            p.distinguished_name.push(DnType::CommonName, "ci-runner");
            p.subject_alt_names = vec![SanType::DnsName("a.example".try_into().expect("dns"))];
        });
        assert_eq!(identity_of(&cn_only).as_deref(), Ok("ci-runner"));

        let neither = der(|p| {
            p.distinguished_name
                .push(DnType::OrganizationName, "no name");
        });
        assert_eq!(identity_of(&neither), Err(Failure::NoIdentity));

        let spaced = der(|p| p.distinguished_name.push(DnType::CommonName, "two words"));
        assert_eq!(identity_of(&spaced), Err(Failure::Malformed));
        assert_eq!(identity_of(b"not a certificate"), Err(Failure::Malformed));
        assert_eq!(authenticate(None).map(|i| i.name), Err(Failure::Missing));
    }
}
