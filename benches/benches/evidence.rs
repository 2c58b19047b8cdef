//! Signatures per second for the two evidence algorithms (SM2 over SM3, ECDSA P-256 over
//! SHA-256), signing and verifying a signed tree head's text, and the cost of a group's tree
//! and receipts: what one group commit adds beside its one signature.

// A benchmark reports on standard output.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use tongban_evidence::{Algorithm, Certificate, SignedHead, SigningKey, Tree};

/// Runs `each` for about `budget`, answering operations per second and microseconds each.
fn rate(budget: Duration, mut each: impl FnMut()) -> (f64, f64) {
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < budget {
        for _ in 0..16 {
            each();
        }
        done += 16;
    }
    let seconds = started.elapsed().as_secs_f64();
    (done as f64 / seconds, seconds * 1e6 / done as f64)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let budget = Duration::from_secs(2);
    for algorithm in [Algorithm::Sm2Sm3, Algorithm::EcdsaP256Sha256] {
        let key = SigningKey::generate(algorithm).expect("key");
        let certificate = Certificate::self_signed(&key, "CN=bench,O=Tongban", Duration::from_secs(3600))
            .expect("certificate");
        let hash = tongban_evidence::HashAlgorithm::for_signatures(algorithm);
        let leaves: Vec<_> = (0..64u32).map(|n| hash.leaf(&n.to_be_bytes())).collect();
        let tree = Tree::new(hash, leaves.clone());
        // Signed now: the certificate is checked for validity at the signing time.
        let now = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_millis(),
        )
        .expect("milliseconds");
        let head = SignedHead::sign(
            &key,
            &certificate.fingerprint(),
            "bench",
            1,
            64,
            Some(0),
            &tree.root(),
            &tree.root(),
            now,
        );
        let (signs, sign_us) = rate(budget, || {
            std::hint::black_box(SignedHead::sign(
                &key,
                "fingerprint",
                "bench",
                1,
                64,
                Some(0),
                &tree.root(),
                &tree.root(),
                1,
            ));
        });
        let certificates = [certificate];
        let (verifies, verify_us) = rate(budget, || {
            head.verify_with(certificates[0].key()).expect("verifies");
        });
        // A group of 64 records: its tree and every record's path, without the signature.
        let (_, group_us) = rate(budget, || {
            let tree = Tree::new(hash, leaves.clone());
            for index in 0..64 {
                std::hint::black_box(tree.path(index));
            }
        });
        // One record's claims (about 600 bytes) hashed as its leaf.
        let claims = vec![b'x'; 600];
        let (_, leaf_us) = rate(budget, || {
            std::hint::black_box(hash.leaf(&claims));
        });
        println!(
            "evidence {}: sign {signs:.0}/s ({sign_us:.1} us), verify {verifies:.0}/s ({verify_us:.1} us); \
             a group of 64's tree and paths {group_us:.1} us ({:.2} us per record); a 600-byte leaf {leaf_us:.2} us",
            algorithm.as_str(),
            group_us / 64.0
        );
    }
}
