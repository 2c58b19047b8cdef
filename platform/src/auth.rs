//! Credentials: Argon2id password hashes for people, random bearer tokens for sessions and
//! API keys for systems.
//!
//! Tokens and keys carry 256 random bits, so the store keeps only their SHA-256 digest: a
//! slow hash adds nothing against guessing such a secret, and every data-plane call checks a
//! key. Passwords are chosen by people and get Argon2id.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};

use crate::store::{SignInAttempt, Store};

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

/// Argon2id hashes and checks running at once, in the whole process: each takes tens of
/// milliseconds of a processor and 19 MiB, so a flood of sign-ins, however many names it
/// uses, costs at most this many processors and this much memory, and other calls keep
/// theirs.
fn password_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        )
    })
}

/// How long password work waits for a slot before it is refused as busy.
const PASSWORD_QUEUE: std::time::Duration = std::time::Duration::from_secs(2);

/// Password work (hashing, checking) did not get a slot in time.
#[derive(Debug, thiserror::Error)]
#[error("password checks are all busy")]
pub struct PasswordBusy;

/// Runs password work off the runtime's threads, a bounded number at a time
/// ([`password_slots`]); refused with [`PasswordBusy`] after waiting two seconds for a slot.
pub async fn password_work<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PasswordBusy> {
    let _slot = tokio::time::timeout(PASSWORD_QUEUE, password_slots().acquire())
        .await
        .map_err(|_| PasswordBusy)?
        .map_err(|_| PasswordBusy)?;
    tokio::task::spawn_blocking(work).await.map_err(|_| PasswordBusy)
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

// The bound on password guesses. After `MAX_SIGN_IN_ATTEMPTS` attempts for one username
// (known or not, so that probing cannot tell them apart) without a success, each within
// `SIGN_IN_LOCK` of the one before, the name is locked until `SIGN_IN_LOCK` after the last: its
// sign-ins are refused before any password is checked, so a locked name costs no hashing. Each
// attempt is counted in the store before its password is checked, so every gateway on the
// store counts the same guesses, and guesses sent all at once are bounded too. A success
// clears the count. Anyone can lock a name this way; being locked out for 15 minutes is the
// accepted price of bounding guesses.

/// Attempts to sign in as one username, without a success, before it is locked.
pub const MAX_SIGN_IN_ATTEMPTS: u32 = 5;
/// How long a username stays locked, counted from its last counted attempt.
pub const SIGN_IN_LOCK: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// Counts an attempt to sign in as `username` at `now` in `store`, or tells how long the name
/// stays locked.
pub async fn count_sign_in(
    store: &Store,
    username: &str,
    now: chrono::NaiveDateTime,
) -> crate::store::Result<Result<(), std::time::Duration>> {
    let name = username.to_lowercase();
    Ok(match store.count_sign_in_attempt(&name, now, SIGN_IN_LOCK, MAX_SIGN_IN_ATTEMPTS).await? {
        SignInAttempt::Counted(_) => Ok(()),
        SignInAttempt::Locked { until } => {
            // Whole seconds, rounded up, so that a caller who waits that long is let in.
            let millis = (until - now).num_milliseconds().max(0);
            Err(std::time::Duration::from_secs(u64::try_from(millis).unwrap_or(0).div_ceil(1000)))
        }
    })
}

/// Clears the count of `username`: it signed in, or was given a new password.
pub async fn clear_sign_ins(store: &Store, username: &str) -> crate::store::Result<()> {
    store.clear_sign_in_attempts(&username.to_lowercase()).await
}

/// Forgets attempts that no longer count towards a lock, so the store keeps only recent ones
/// however many names are tried.
pub async fn sweep_sign_ins(store: &Store, now: chrono::NaiveDateTime) -> crate::store::Result<u64> {
    store.sweep_sign_in_attempts(now - SIGN_IN_LOCK).await
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
