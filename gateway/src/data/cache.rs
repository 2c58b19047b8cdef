//! The answer cache for verifications and look-ups.
//!
//! An entry is keyed by a digest of everything that decides the answer: the operation, the
//! resource and its catalog version, the grant and its version (and so its items, masks and
//! rows), the policy revision, the dataset generation, and the request itself. Two grants never
//! share an entry, and any change to grants, the catalog or the datasets leaves old entries
//! unreachable (they age out). Keys are digests, so the cache holds no identity numbers; values
//! are answers already masked. Concurrent misses for one key run the look-up once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tongban_policy::catalog::UpdateCycle;

use super::Answer;
use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// The most bytes of answers kept.
    pub max_bytes: u64,
    /// The longest an answer is kept, in seconds; shorter for resources updated more often
    /// than that, and never for real-time resources.
    pub max_ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { max_bytes: 64 * 1024 * 1024, max_ttl_secs: 300 }
    }
}

pub use tongban_exchange::CacheOutcome;

#[derive(Debug)]
struct Entry {
    status: axum::http::StatusCode,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
    rows: u64,
    ttl: Duration,
}

struct EntryTtl;

impl moka::Expiry<[u8; 32], Arc<Entry>> for EntryTtl {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

#[derive(Clone)]
pub struct AnswerCache {
    entries: moka::future::Cache<[u8; 32], Arc<Entry>>,
    max_ttl: Duration,
}

impl AnswerCache {
    /// Answers held now (approximate: moka counts lazily).
    pub fn entries(&self) -> u64 {
        self.entries.entry_count()
    }
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache").field("entries", &self.entries.entry_count()).finish_non_exhaustive()
    }
}

/// A cache key under construction: every part is length-prefixed, so parts cannot run into
/// each other.
pub(super) struct KeyBuilder(Sha256);

impl KeyBuilder {
    pub(super) fn new(operation: &str) -> Self {
        let mut builder = KeyBuilder(Sha256::new());
        builder.part(operation.as_bytes());
        builder
    }

    pub(super) fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    pub(super) fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

impl AnswerCache {
    pub fn new(config: &CacheConfig) -> Self {
        AnswerCache {
            entries: moka::future::Cache::builder()
                .max_capacity(config.max_bytes)
                .weigher(|_, entry: &Arc<Entry>| u32::try_from(entry.body.len() + 96).unwrap_or(u32::MAX))
                .expire_after(EntryTtl)
                .build(),
            max_ttl: Duration::from_secs(config.max_ttl_secs),
        }
    }

    /// How long answers of a resource updated every `cycle` may be kept; `None` when they
    /// may not be cached at all.
    pub fn ttl(&self, cycle: UpdateCycle) -> Option<Duration> {
        let cycle_length = match cycle {
            UpdateCycle::RealTime => return None,
            UpdateCycle::Daily => Duration::from_secs(24 * 3600),
            _ => Duration::from_secs(u64::from(cycle.max_age_days()) * 24 * 3600),
        };
        let ttl = self.max_ttl.min(cycle_length);
        (!ttl.is_zero()).then_some(ttl)
    }

    /// The cached answer for `key`, or the one `compute` gives, cached for `ttl` (or less, as
    /// the answer's source allows) when it succeeds. Concurrent callers with one key wait for a
    /// single `compute` and share its answer when it may be kept; when its source forbids
    /// keeping it, each waiting caller computes its own (as a source that says `no-store`
    /// expects every call to reach it).
    pub(super) async fn get_or_compute<F>(
        &self,
        key: [u8; 32],
        ttl: Duration,
        compute: F,
    ) -> Result<(Answer, CacheOutcome), ApiError>
    where
        F: std::future::Future<Output = Result<Answer, ApiError>>,
    {
        // A plain read first: most calls of a hot key find it, and the entry API that
        // coalesces misses costs more than a read.
        if let Some(entry) = self.entries.get(&key).await {
            return Ok((entry.to_answer(), CacheOutcome::Hit));
        }
        // The computation, until this caller runs it; a caller that waited on another's is
        // left holding its own.
        let mut own = Some(compute);
        // Boxed, so that the large future of the entry API is made only on a miss, and the
        // future of every call that hits stays small (it is moved several times per call).
        let result = Box::pin(self.entries.entry(key).or_try_insert_with(async {
            let compute = own.take().ok_or_else(|| Miss::Failed(ApiError::internal(&"computed twice")))?;
            let answer = compute.await.map_err(Miss::Failed)?;
            // Only whole 200 answers are kept, no longer than their source allows.
            let ttl = match answer.status {
                axum::http::StatusCode::OK => answer.max_age.map_or(ttl, |age| age.min(ttl)),
                _ => Duration::ZERO,
            };
            let entry = Arc::new(Entry {
                status: answer.status,
                headers: answer.headers,
                body: answer.body,
                rows: answer.rows,
                ttl,
            });
            // An answer that may not be kept is handed to the waiting callers as an error
            // of the insertion, so that nothing is stored, not even for an instant.
            if ttl.is_zero() { Err(Miss::Uncacheable(entry)) } else { Ok(entry) }
        }))
        .await;
        match result {
            Ok(entry) => {
                let outcome = if entry.is_fresh() { CacheOutcome::Miss } else { CacheOutcome::Hit };
                Ok((entry.into_value().to_answer(), outcome))
            }
            Err(miss) => match (&*miss, own) {
                (Miss::Uncacheable(_), Some(compute)) => Ok((compute.await?, CacheOutcome::Bypass)),
                (Miss::Uncacheable(entry), None) => Ok((entry.to_answer(), CacheOutcome::Bypass)),
                (Miss::Failed(error), _) => Err(error.clone()),
            },
        }
    }
}

/// Why a computed answer did not enter the cache.
enum Miss {
    Failed(ApiError),
    Uncacheable(Arc<Entry>),
}

impl Entry {
    fn to_answer(&self) -> Answer {
        Answer {
            status: self.status,
            headers: self.headers.clone(),
            body: self.body.clone(),
            rows: self.rows,
            max_age: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn answers_their_source_forbids_keeping_are_never_served_again() {
        let cache = AnswerCache::new(&CacheConfig::default());
        let computed = AtomicU32::new(0);
        let compute = |max_age: Option<Duration>| {
            computed.fetch_add(1, Ordering::SeqCst);
            let mut answer = Answer::ok("application/json", bytes::Bytes::from_static(b"{}"), 1);
            answer.max_age = max_age;
            async move { Ok(answer) }
        };
        let ttl = Duration::from_secs(60);
        for round in 1..=3 {
            let (_, outcome) =
                cache.get_or_compute([1; 32], ttl, compute(Some(Duration::ZERO))).await.expect("answer");
            assert_eq!((outcome, computed.load(Ordering::SeqCst)), (CacheOutcome::Bypass, round));
        }
        let (_, first) = cache.get_or_compute([2; 32], ttl, compute(None)).await.expect("answer");
        let (_, second) = cache.get_or_compute([2; 32], ttl, compute(None)).await.expect("answer");
        assert_eq!((first, second), (CacheOutcome::Miss, CacheOutcome::Hit));
        // Callers that waited on an answer that may not be kept compute their own.
        let calls = AtomicU32::new(0);
        let slow = |max_age: Option<Duration>| {
            let calls = &calls;
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let mut answer = Answer::ok("application/json", bytes::Bytes::from_static(b"{}"), 1);
                answer.max_age = max_age;
                Ok(answer)
            }
        };
        let waits = (0..4).map(|_| cache.get_or_compute([4; 32], ttl, slow(Some(Duration::ZERO))));
        for (_, outcome) in futures::future::join_all(waits).await.into_iter().map(|r| r.expect("answer")) {
            assert_eq!(outcome, CacheOutcome::Bypass);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // ...while answers that may be kept are computed once for all of them.
        let waits = (0..4).map(|_| cache.get_or_compute([5; 32], ttl, slow(None)));
        let outcomes: Vec<CacheOutcome> =
            futures::future::join_all(waits).await.into_iter().map(|r| r.expect("answer").1).collect();
        assert_eq!(calls.load(Ordering::SeqCst), 5, "{outcomes:?}");
        // A failure is not kept either.
        let failed = cache.get_or_compute([3; 32], ttl, async { Err(ApiError::invalid("no")) }).await;
        assert!(failed.is_err());
        let (_, after) = cache.get_or_compute([3; 32], ttl, compute(None)).await.expect("answer");
        assert_eq!(after, CacheOutcome::Miss);
    }
}
