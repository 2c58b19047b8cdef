//! Signing keys: SM2 with SM3 (GM/T 0003-2012 and 0004-2012), which government systems are
//! required to use, by default; ECDSA on P-256 with SHA-256 where a deployment configures it.
//! Keys are PKCS#8 PEM files and public keys SubjectPublicKeyInfo PEM, as OpenSSL writes them,
//! and signatures are DER, so either side can check evidence with tools it already has.

use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};

/// The distinguishing identifier SM2 signatures are made with: GM/T 0009's default, which
/// OpenSSL and the other implementations use unless told otherwise.
pub const SM2_DISTINGUISHING_ID: &str = "1234567812345678";

/// A signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// SM2 signatures over SM3 digests.
    Sm2Sm3,
    /// ECDSA on P-256 over SHA-256 digests.
    EcdsaP256Sha256,
}

impl Algorithm {
    /// The name evidence carries: `sm2-sm3` or `ecdsa-p256-sha256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sm2Sm3 => "sm2-sm3",
            Algorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
        }
    }

    pub fn parse(name: &str) -> Option<Algorithm> {
        [Algorithm::Sm2Sm3, Algorithm::EcdsaP256Sha256].into_iter().find(|a| a.as_str() == name)
    }
}

/// Why a key or signature could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a PKCS#8 private key on the SM2 or P-256 curve")]
    UnreadablePrivateKey,
    #[error("not a public key on the SM2 or P-256 curve")]
    UnreadablePublicKey,
    #[error("the key cannot be encoded: {0}")]
    Encoding(String),
    #[error("the signature is malformed or does not match")]
    BadSignature,
}

/// A private signing key.
#[derive(Clone)]
pub enum SigningKey {
    Sm2(sm2::dsa::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

// The key material stays out of debug output.
impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, {})", self.algorithm().as_str(), self.verifying_key().fingerprint())
    }
}

impl SigningKey {
    /// A new random key from the operating system's generator.
    pub fn generate(algorithm: Algorithm) -> Result<SigningKey, KeyError> {
        match algorithm {
            Algorithm::Sm2Sm3 => {
                let secret = random_scalar(|bytes| sm2::SecretKey::from_slice(bytes).ok())?;
                sm2::dsa::SigningKey::new(SM2_DISTINGUISHING_ID, &secret)
                    .map(SigningKey::Sm2)
                    .map_err(|e| KeyError::Encoding(e.to_string()))
            }
            Algorithm::EcdsaP256Sha256 => {
                let secret = random_scalar(|bytes| p256::SecretKey::from_slice(bytes).ok())?;
                Ok(SigningKey::P256(p256::ecdsa::SigningKey::from(&secret)))
            }
        }
    }

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`): its curve says the
    /// algorithm.
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, KeyError> {
        if let Ok(secret) = sm2::SecretKey::from_pkcs8_pem(pem) {
            return sm2::dsa::SigningKey::new(SM2_DISTINGUISHING_ID, &secret)
                .map(SigningKey::Sm2)
                .map_err(|_| KeyError::UnreadablePrivateKey);
        }
        p256::SecretKey::from_pkcs8_pem(pem)
            .map(|secret| SigningKey::P256(p256::ecdsa::SigningKey::from(&secret)))
            .map_err(|_| KeyError::UnreadablePrivateKey)
    }

    /// The key as PKCS#8 PEM, for a file only its owner may read.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        let pem = match self {
            SigningKey::Sm2(key) => {
                sm2::SecretKey::from(key.as_nonzero_scalar()).to_pkcs8_pem(LineEnding::LF)
            }
            SigningKey::P256(key) => {
                p256::SecretKey::from(key.as_nonzero_scalar()).to_pkcs8_pem(LineEnding::LF)
            }
        };
        pem.map(|pem| pem.to_string()).map_err(|e| KeyError::Encoding(e.to_string()))
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            SigningKey::Sm2(_) => Algorithm::Sm2Sm3,
            SigningKey::P256(_) => Algorithm::EcdsaP256Sha256,
        }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            SigningKey::Sm2(key) => VerifyingKey::Sm2(key.verifying_key().clone()),
            SigningKey::P256(key) => VerifyingKey::P256(*key.verifying_key()),
        }
    }

    /// Signs `message` (hashed by the algorithm's digest, with SM2's identifier for SM2),
    /// answering the DER signature.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::Sm2(key) => {
                let signature: sm2::dsa::Signature = sm2::dsa::signature::Signer::sign(key, message);
                signature.to_der().as_bytes().to_vec()
            }
            SigningKey::P256(key) => {
                let signature: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(key, message);
                signature.to_der().as_bytes().to_vec()
            }
        }
    }
}

/// A secret scalar from 32 bytes of the operating system's generator, drawn again in the
/// vanishing case that they are zero or not below the curve's order.
fn random_scalar<K>(accept: impl Fn(&[u8]) -> Option<K>) -> Result<K, KeyError> {
    for _ in 0..64 {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Encoding(format!("no randomness: {e}")))?;
        if let Some(key) = accept(&bytes) {
            return Ok(key);
        }
    }
    Err(KeyError::Encoding("the random generator gave no valid scalar".into()))
}

/// A public key that checks signatures.
#[derive(Debug, Clone)]
pub enum VerifyingKey {
    Sm2(sm2::dsa::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &VerifyingKey) -> bool {
        self.algorithm() == other.algorithm() && self.spki_der() == other.spki_der()
    }
}

impl Eq for VerifyingKey {}

impl VerifyingKey {
    pub(crate) fn spki_der(&self) -> Vec<u8> {
        match self {
            VerifyingKey::Sm2(key) => key.to_public_key_der(),
            VerifyingKey::P256(key) => key.to_public_key_der(),
        }
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default()
    }

    /// Reads a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_public_key_pem(pem: &str) -> Result<VerifyingKey, KeyError> {
        if let Ok(public) = sm2::PublicKey::from_public_key_pem(pem) {
            return sm2::dsa::VerifyingKey::new(SM2_DISTINGUISHING_ID, public)
                .map(VerifyingKey::Sm2)
                .map_err(|_| KeyError::UnreadablePublicKey);
        }
        p256::ecdsa::VerifyingKey::from_public_key_pem(pem)
            .map(VerifyingKey::P256)
            .map_err(|_| KeyError::UnreadablePublicKey)
    }

    /// Reads a SubjectPublicKeyInfo in DER, as certificates hold it.
    pub fn from_public_key_der(der: &[u8]) -> Result<VerifyingKey, KeyError> {
        if let Ok(public) = sm2::PublicKey::from_public_key_der(der) {
            return sm2::dsa::VerifyingKey::new(SM2_DISTINGUISHING_ID, public)
                .map(VerifyingKey::Sm2)
                .map_err(|_| KeyError::UnreadablePublicKey);
        }
        p256::ecdsa::VerifyingKey::from_public_key_der(der)
            .map(VerifyingKey::P256)
            .map_err(|_| KeyError::UnreadablePublicKey)
    }

    pub fn to_public_key_pem(&self) -> Result<String, KeyError> {
        match self {
            VerifyingKey::Sm2(key) => key.to_public_key_pem(LineEnding::LF),
            VerifyingKey::P256(key) => key.to_public_key_pem(LineEnding::LF),
        }
        .map_err(|e| KeyError::Encoding(e.to_string()))
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            VerifyingKey::Sm2(_) => Algorithm::Sm2Sm3,
            VerifyingKey::P256(_) => Algorithm::EcdsaP256Sha256,
        }
    }

    /// Checks a DER `signature` of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        match self {
            VerifyingKey::Sm2(key) => {
                let signature =
                    sm2::dsa::Signature::from_der(signature).map_err(|_| KeyError::BadSignature)?;
                sm2::dsa::signature::Verifier::verify(key, message, &signature)
            }
            VerifyingKey::P256(key) => {
                let signature =
                    p256::ecdsa::Signature::from_der(signature).map_err(|_| KeyError::BadSignature)?;
                p256::ecdsa::signature::Verifier::verify(key, message, &signature)
            }
        }
        .map_err(|_| KeyError::BadSignature)
    }

    /// The key's identifier: the algorithm's digest of its SubjectPublicKeyInfo DER, in hex,
    /// so evidence names the key it was signed with and retired keys stay findable.
    pub fn fingerprint(&self) -> String {
        let bytes = self.spki_der();
        let digest: [u8; 32] = match self.algorithm() {
            Algorithm::Sm2Sm3 => <sm3::Sm3 as sm3::Digest>::digest(&bytes).into(),
            Algorithm::EcdsaP256Sha256 => <sha2::Sha256 as sha2::Digest>::digest(&bytes).into(),
        };
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}
