//! The gateway's signing certificate: X.509, as every government PKI issues them, binding the
//! signing key to the gateway's name for a period. A certificate is read from PEM, made
//! self-signed for development (`tongban certs`), and checked: that its key signed a piece of
//! evidence, that it was valid when the evidence was signed, and that an issuer signed it.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use x509_cert::builder::{Builder, CertificateBuilder, profile::BuilderProfile};
use x509_cert::der::asn1::BitString;
use x509_cert::der::{Decode, DecodePem, Encode, EncodePem};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey, ObjectIdentifier,
    SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef,
};
use x509_cert::time::Validity;

use crate::keys::{Algorithm, SigningKey, VerifyingKey};

/// SM2 signatures over SM3 digests (GM/T 0006).
const SM2_WITH_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.501");
/// ECDSA over SHA-256 (RFC 5758).
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// Why a certificate cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("not a PEM X.509 certificate: {0}")]
    Unreadable(String),
    #[error("the certificate's key is not an SM2 or P-256 key")]
    UnsupportedKey,
    #[error("the certificate is signed with an algorithm other than SM2-with-SM3 or ECDSA-with-SHA256")]
    UnsupportedSignature,
    #[error("the certificate was not signed by the issuer's key")]
    BadIssuerSignature,
    #[error("the certificate cannot be made: {0}")]
    Building(String),
}

/// A certificate and the key it certifies.
#[derive(Debug, Clone)]
pub struct Certificate {
    inner: x509_cert::Certificate,
    key: VerifyingKey,
    der: Vec<u8>,
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Certificate) -> bool {
        self.der == other.der
    }
}

impl Eq for Certificate {}

impl Certificate {
    /// Reads one PEM certificate (`-----BEGIN CERTIFICATE-----`).
    pub fn from_pem(pem: &str) -> Result<Certificate, CertError> {
        let inner =
            x509_cert::Certificate::from_pem(pem.trim()).map_err(|e| CertError::Unreadable(e.to_string()))?;
        Certificate::from_parsed(inner)
    }

    /// Reads every PEM certificate in `pem`, in order.
    pub fn all_from_pem(pem: &str) -> Result<Vec<Certificate>, CertError> {
        const END: &str = "-----END CERTIFICATE-----";
        pem.split_inclusive(END)
            .filter(|block| block.contains("-----BEGIN CERTIFICATE-----"))
            .map(Certificate::from_pem)
            .collect()
    }

    pub fn from_der(der: &[u8]) -> Result<Certificate, CertError> {
        let inner =
            x509_cert::Certificate::from_der(der).map_err(|e| CertError::Unreadable(e.to_string()))?;
        Certificate::from_parsed(inner)
    }

    fn from_parsed(inner: x509_cert::Certificate) -> Result<Certificate, CertError> {
        let spki = inner
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|_| CertError::UnsupportedKey)?;
        let key = VerifyingKey::from_public_key_der(&spki).map_err(|_| CertError::UnsupportedKey)?;
        let der = inner.to_der().map_err(|e| CertError::Unreadable(e.to_string()))?;
        Ok(Certificate { inner, key, der })
    }

    pub fn to_pem(&self) -> Result<String, CertError> {
        self.inner.to_pem(x509_cert::der::pem::LineEnding::LF).map_err(|e| CertError::Building(e.to_string()))
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The key the certificate binds.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The certified key's fingerprint, which evidence names its signer by.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint()
    }

    /// The subject, as RFC 4514 text (`CN=…,O=…`).
    pub fn subject(&self) -> String {
        self.inner.tbs_certificate().subject().to_string()
    }

    pub fn issuer(&self) -> String {
        self.inner.tbs_certificate().issuer().to_string()
    }

    /// The validity period, as seconds since the Unix epoch.
    pub fn validity(&self) -> (u64, u64) {
        let validity = self.inner.tbs_certificate().validity();
        (validity.not_before.to_unix_duration().as_secs(), validity.not_after.to_unix_duration().as_secs())
    }

    /// Whether the certificate was valid at `unix_seconds`.
    pub fn valid_at(&self, unix_seconds: u64) -> bool {
        let (from, until) = self.validity();
        (from..=until).contains(&unix_seconds)
    }

    /// Checks that `issuer`'s key signed this certificate (for a self-signed certificate,
    /// pass it as its own issuer).
    pub fn verify_issued_by(&self, issuer: &Certificate) -> Result<(), CertError> {
        let algorithm = match self.inner.signature_algorithm().oid {
            oid if oid == SM2_WITH_SM3 => Algorithm::Sm2Sm3,
            oid if oid == ECDSA_WITH_SHA256 => Algorithm::EcdsaP256Sha256,
            _ => return Err(CertError::UnsupportedSignature),
        };
        if issuer.key.algorithm() != algorithm {
            return Err(CertError::BadIssuerSignature);
        }
        let tbs = self.inner.tbs_certificate().to_der().map_err(|e| CertError::Unreadable(e.to_string()))?;
        let signature = self.inner.signature().as_bytes().ok_or(CertError::BadIssuerSignature)?;
        issuer.key.verify(&tbs, signature).map_err(|_| CertError::BadIssuerSignature)
    }

    /// The certificate's signed part (its TBSCertificate, DER) and its issuer's signature
    /// (DER): what a tool of one's own checks the certificate's signature over.
    pub fn signed_part(&self) -> Result<(Vec<u8>, Vec<u8>), CertError> {
        let tbs = self.inner.tbs_certificate().to_der().map_err(|e| CertError::Unreadable(e.to_string()))?;
        let signature = self.inner.signature().as_bytes().ok_or(CertError::BadIssuerSignature)?.to_vec();
        Ok((tbs, signature))
    }

    /// A self-signed certificate for `key`, named by `subject` (RFC 4514, for example
    /// `CN=tongban 410000,O=河南省大数据局`), valid from now for `valid_for`: for development,
    /// or for deployments whose peers pin each other's certificates.
    pub fn self_signed(
        key: &SigningKey,
        subject: &str,
        valid_for: Duration,
    ) -> Result<Certificate, CertError> {
        let subject = Name::from_str(subject).map_err(|e| CertError::Building(format!("subject: {e}")))?;
        let mut serial = [0u8; 16];
        getrandom::fill(&mut serial).map_err(|e| CertError::Building(e.to_string()))?;
        serial[0] &= 0x7f;
        let serial = SerialNumber::new(&serial).map_err(|e| CertError::Building(e.to_string()))?;
        // A minute back, so that a peer whose clock runs a little behind accepts it at once.
        let not_before = SystemTime::now() - Duration::from_secs(60);
        let validity = Validity::new(
            not_before.try_into().map_err(|e: x509_cert::der::Error| CertError::Building(e.to_string()))?,
            (not_before + valid_for)
                .try_into()
                .map_err(|e: x509_cert::der::Error| CertError::Building(e.to_string()))?,
        );
        let signer = CertSigner(key);
        let spki = SubjectPublicKeyInfoOwned::from_key(&signer.0.verifying_key())
            .map_err(|e| CertError::Building(e.to_string()))?;
        let mut builder = CertificateBuilder::new(EvidenceProfile { subject }, serial, validity, spki)
            .map_err(|e| CertError::Building(e.to_string()))?;
        let tbs = builder.finalize(&signer).map_err(|e| CertError::Building(e.to_string()))?;
        let signature =
            BitString::from_bytes(&key.sign(&tbs)).map_err(|e| CertError::Building(e.to_string()))?;
        let inner = builder.assemble(signature, &signer).map_err(|e| CertError::Building(e.to_string()))?;
        Certificate::from_parsed(inner)
    }
}

/// A signing key as the certificate builder takes it. The builder's own signing path would
/// write SM2 signatures as 64 raw bytes; certificates carry them in DER, as OpenSSL and the
/// GM/T 0015 certificate profile expect, so the signature is made by `SigningKey::sign`.
struct CertSigner<'k>(&'k SigningKey);

impl signature::Keypair for CertSigner<'_> {
    type VerifyingKey = VerifyingKey;

    fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }
}

impl DynSignatureAlgorithmIdentifier for CertSigner<'_> {
    fn signature_algorithm_identifier(&self) -> x509_cert::spki::Result<AlgorithmIdentifierOwned> {
        let oid = match self.0.algorithm() {
            Algorithm::Sm2Sm3 => SM2_WITH_SM3,
            Algorithm::EcdsaP256Sha256 => ECDSA_WITH_SHA256,
        };
        Ok(AlgorithmIdentifierOwned { oid, parameters: None })
    }
}

impl EncodePublicKey for VerifyingKey {
    fn to_public_key_der(&self) -> x509_cert::spki::Result<x509_cert::der::Document> {
        x509_cert::der::Document::try_from(self.spki_der()).map_err(Into::into)
    }
}

/// The evidence signer's profile: a self-issued end-entity certificate whose key signs
/// evidence (digital signature and non-repudiation), and nothing else.
struct EvidenceProfile {
    subject: Name,
}

impl BuilderProfile for EvidenceProfile {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &x509_cert::TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let subject = tbs.subject();
        let basic = BasicConstraints { ca: false, path_len_constraint: None }.to_extension(subject, &[])?;
        let usage = KeyUsage(KeyUsages::DigitalSignature | KeyUsages::NonRepudiation)
            .to_extension(subject, std::slice::from_ref(&basic))?;
        let identifier =
            SubjectKeyIdentifier::try_from(spk)?.to_extension(subject, &[basic.clone(), usage.clone()])?;
        Ok(vec![basic, usage, identifier])
    }
}

/// A signing key with the certificate that binds it: what a gateway signs evidence as.
#[derive(Debug, Clone)]
pub struct SigningIdentity {
    pub key: SigningKey,
    pub certificate: Certificate,
    /// The key's fingerprint, computed once.
    pub fingerprint: String,
}

impl SigningIdentity {
    /// Pairs a key with its certificate, refusing a certificate of another key.
    pub fn new(key: SigningKey, certificate: Certificate) -> Result<SigningIdentity, CertError> {
        if certificate.key() != &key.verifying_key() {
            return Err(CertError::Building("the certificate is not the signing key's".into()));
        }
        let fingerprint = certificate.fingerprint();
        Ok(SigningIdentity { key, certificate, fingerprint })
    }

    /// Reads the key (PKCS#8 PEM) and certificate (PEM) files' contents.
    pub fn from_pem(key_pem: &str, certificate_pem: &str) -> Result<SigningIdentity, CertError> {
        let key = SigningKey::from_pkcs8_pem(key_pem).map_err(|e| CertError::Unreadable(e.to_string()))?;
        SigningIdentity::new(key, Certificate::from_pem(certificate_pem)?)
    }
}
