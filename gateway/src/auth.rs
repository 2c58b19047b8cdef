//! Credentials: Argon2id password hashes for people, random bearer tokens for sessions and
//! API keys for systems.
//!
//! Tokens and keys carry 256 random bits, so the store keeps only their SHA-256 digest: a
//! slow hash adds nothing against guessing such a secret, and every data-plane call checks a
//! key. Passwords are chosen by people and get Argon2id.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};

/// Prefix of session tokens.
pub const SESSION_PREFIX: &str = "tbs_";
/// Prefix of system API keys.
pub const API_KEY_PREFIX: &str = "tbk_";
/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    bytes
}

/// A new secret: `prefix` and 256 random bits in hex.
pub fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(random_bytes::<32>()))
}

/// A newly issued API key: the key, shown once; its digest, stored; and its first
/// characters, stored so people can tell their keys apart.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key: String,
    pub digest: String,
    pub prefix: String,
}

/// Issues a new system API key.
pub fn issue_api_key() -> IssuedKey {
    let key = new_secret(API_KEY_PREFIX);
    let digest = digest(&key);
    let prefix = key.chars().take(API_KEY_PREFIX.len() + 6).collect();
    IssuedKey { key, digest, prefix }
}

/// The digest under which a token or key is stored and looked up.
pub fn digest(secret: &str) -> String {
    hex::encode(digest_bytes(secret))
}

/// [`digest`] before it is written in hex.
pub fn digest_bytes(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// An Argon2id PHC string for `password`, with a fresh salt.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).expect("16 bytes is a valid salt length");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("default parameters hash any input")
        .to_string()
}

/// Whether `password` matches `phc`. A malformed stored hash matches nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// A hash that no password matches, verified when a user does not exist so that the answer
/// takes as long as for a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&new_secret("decoy_")))
}

/// A readable random password for generated accounts.
pub fn new_password() -> String {
    // Without 0/O and 1/l/I, so it can be read off a screen.
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    random_bytes::<16>().iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_secrets() {
        let hash = hash_password("correct horse battery");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("anything", "not a hash"));
        assert!(!verify_password("anything", decoy_hash()));
        let (a, b) = (new_secret(API_KEY_PREFIX), new_secret(API_KEY_PREFIX));
        assert_ne!(a, b);
        assert_eq!(a.len(), API_KEY_PREFIX.len() + 64);
        assert_eq!(digest(&a).len(), 64);
        assert_eq!(new_password().len(), 16);
    }
}

/// Wrong passwords tolerated for one username before sign-in is locked.
pub const MAX_FAILED_SIGN_INS: u32 = 5;
/// How long a username stays locked, counted from its last wrong password.
pub const SIGN_IN_LOCK: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Wrong passwords per username. After [`MAX_FAILED_SIGN_INS`] of them within
/// [`SIGN_IN_LOCK`] of each other, the username is locked for that long: its sign-ins are
/// refused before any password is checked, so guessing is bounded and a locked name costs no
/// hashing. Kept in memory per gateway (several gateways each count their own), and cleared
/// by a successful sign-in. Anyone can lock a name this way; being locked out for 15 minutes
/// is the accepted price of bounding guesses.
#[derive(Clone)]
pub struct SignInGuard {
    failures: moka::sync::Cache<String, u32>,
    max_failures: u32,
    lock: std::time::Duration,
}

impl std::fmt::Debug for SignInGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInGuard").field("names", &self.failures.entry_count()).finish()
    }
}

impl Default for SignInGuard {
    fn default() -> Self {
        SignInGuard::new(MAX_FAILED_SIGN_INS, SIGN_IN_LOCK)
    }
}

impl SignInGuard {
    pub fn new(max_failures: u32, lock: std::time::Duration) -> SignInGuard {
        SignInGuard {
            // Each wrong password inserts again, so an entry lives `lock` past the last one.
            failures: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(lock).build(),
            max_failures,
            lock,
        }
    }

    /// Whether `username` is locked now.
    pub fn locked(&self, username: &str) -> bool {
        self.failures.get(&username.to_lowercase()).is_some_and(|n| n >= self.max_failures)
    }

    pub fn failed(&self, username: &str) {
        let key = username.to_lowercase();
        let failures = self.failures.get(&key).unwrap_or(0).saturating_add(1);
        self.failures.insert(key, failures);
    }

    pub fn succeeded(&self, username: &str) {
        self.failures.invalidate(&username.to_lowercase());
    }

    /// How long a locked name waits, at most.
    pub fn lock(&self) -> std::time::Duration {
        self.lock
    }
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    #[test]
    fn a_name_locks_after_its_wrong_passwords_and_opens_after_the_lock() {
        let guard = SignInGuard::new(3, std::time::Duration::from_millis(300));
        for _ in 0..2 {
            guard.failed("Reviewer.Henan");
            assert!(!guard.locked("reviewer.henan"));
        }
        guard.failed("reviewer.henan");
        assert!(guard.locked("REVIEWER.HENAN"), "names are counted whatever their case");
        assert!(!guard.locked("operator"), "other names are not");
        std::thread::sleep(std::time::Duration::from_millis(400));
        assert!(!guard.locked("reviewer.henan"), "the lock ends");

        guard.failed("operator");
        guard.failed("operator");
        guard.succeeded("operator");
        guard.failed("operator");
        assert!(!guard.locked("operator"), "a success clears the count");
    }
}
