//! Keys, signatures and trees, checked against published vectors and against OpenSSL, an
//! implementation that did not make them.

use proptest::prelude::*;
use tongban_evidence::{Algorithm, HashAlgorithm, SigningKey, VerifyingKey};

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// GM/T 0004-2012, appendix A: the SM3 digests of "abc" and of "abcd" sixteen times.
#[test]
fn sm3_matches_the_standards_examples() {
    assert_eq!(
        hex(&HashAlgorithm::Sm3.digest(&[b"abc"])),
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    );
    assert_eq!(
        hex(&HashAlgorithm::Sm3.digest(&["abcd".repeat(16).as_bytes()])),
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    );
}

/// Certificate Transparency's tree vectors (RFC 6962's reference test data): the roots of the
/// trees over the first 1 to 8 of eight leaves.
#[test]
fn sha256_trees_have_certificate_transparencys_roots() {
    let leaves =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    let roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let sha = HashAlgorithm::Sha256;
    let hashed: Vec<_> = leaves.iter().map(|l| sha.leaf(&hex::decode(l).expect("hex"))).collect();
    for (size, root) in (1..=8).zip(roots) {
        assert_eq!(hex(&sha.root(&hashed[..size])), root, "tree of {size}");
    }
    assert_eq!(
        hex(&sha.root(&[])),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "the empty tree"
    );
}

proptest! {
    /// Every leaf's path proves it into its tree, and into no other position, size or root.
    #[test]
    fn every_leaf_is_proved_in_its_tree_and_nothing_else_is(
        records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 1..70),
        sm3 in any::<bool>(),
    ) {
        let hash = if sm3 { HashAlgorithm::Sm3 } else { HashAlgorithm::Sha256 };
        let leaves: Vec<_> = records.iter().map(|r| hash.leaf(r)).collect();
        let root = hash.root(&leaves);
        let size = leaves.len() as u64;
        for (index, leaf) in leaves.iter().enumerate() {
            let path = hash.inclusion_path(&leaves, index).expect("a path");
            prop_assert!(path.len() <= 7);
            prop_assert!(hash.verify_inclusion(leaf, index as u64, size, &path, &root));
            prop_assert!(!hash.verify_inclusion(leaf, size, size, &path, &root));
            if size > 1 {
                let other = (index + 1) % leaves.len();
                prop_assert!(leaves[other] == *leaf || !hash.verify_inclusion(leaf, other as u64, size, &path, &root));
                prop_assert!(!hash.verify_inclusion(&hash.leaf(b"\xffforged"), index as u64, size, &path, &root));
                let mut bent = root;
                bent[0] ^= 1;
                prop_assert!(!hash.verify_inclusion(leaf, index as u64, size, &path, &bent));
            }
        }
        prop_assert!(hash.inclusion_path(&leaves, leaves.len()).is_none());
    }
}

#[test]
fn signatures_verify_and_one_changed_byte_fails_for_both_algorithms() {
    for algorithm in [Algorithm::Sm2Sm3, Algorithm::EcdsaP256Sha256] {
        let key = SigningKey::generate(algorithm).expect("key");
        let message = "交换 0190e0b4 的签名树根".as_bytes();
        let signature = key.sign(message);
        let public = key.verifying_key();
        assert_eq!(public.verify(message, &signature), Ok(()), "{algorithm:?}");

        let mut changed = message.to_vec();
        changed[3] ^= 1;
        assert!(public.verify(&changed, &signature).is_err(), "{algorithm:?}: a changed message");
        for at in [0, signature.len() / 2, signature.len() - 1] {
            let mut bent = signature.clone();
            bent[at] ^= 1;
            assert!(public.verify(message, &bent).is_err(), "{algorithm:?}: a changed signature byte {at}");
        }
        let stranger = SigningKey::generate(algorithm).expect("key").verifying_key();
        assert!(stranger.verify(message, &signature).is_err(), "{algorithm:?}: another key");

        // Keys go to PEM and back unchanged, and name themselves by fingerprint.
        let again = SigningKey::from_pkcs8_pem(&key.to_pkcs8_pem().expect("pem")).expect("read back");
        assert_eq!(again.algorithm(), algorithm);
        assert_eq!(again.verifying_key(), public);
        let read =
            VerifyingKey::from_public_key_pem(&public.to_public_key_pem().expect("pem")).expect("read");
        assert_eq!(read.fingerprint(), public.fingerprint());
        assert_eq!(public.fingerprint().len(), 64);
    }
    assert!(
        SigningKey::from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err()
    );
    assert!(VerifyingKey::from_public_key_pem("not a key").is_err());
    // The two algorithms never take each other's signatures.
    let sm2 = SigningKey::generate(Algorithm::Sm2Sm3).expect("key");
    let p256 = SigningKey::generate(Algorithm::EcdsaP256Sha256).expect("key");
    assert!(p256.verifying_key().verify(b"x", &sm2.sign(b"x")).is_err());
}

/// The `openssl` command, or `None` (with a message) when it is absent and not required.
fn openssl() -> Option<&'static str> {
    let present =
        std::process::Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    assert!(
        present || std::env::var_os("TONGBAN_REQUIRE_OPENSSL").is_none(),
        "tests/run.sh installs openssl"
    );
    if !present {
        eprintln!("skipped: no openssl command");
    }
    present.then_some("openssl")
}

fn run(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    let output =
        std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// OpenSSL 3 checks this crate's SM2 and ECDSA signatures, and this crate checks OpenSSL's,
/// with keys made on either side.
#[test]
fn openssl_and_this_crate_check_each_others_signatures() {
    let Some(_) = openssl() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("message"), "跨省通办交换记录 merkle root".as_bytes()).expect("write");
    let message = std::fs::read(path("message")).expect("read");
    for (algorithm, digest, curve) in
        [(Algorithm::Sm2Sm3, "-sm3", "SM2"), (Algorithm::EcdsaP256Sha256, "-sha256", "prime256v1")]
    {
        let sm2_options: &[&str] =
            if algorithm == Algorithm::Sm2Sm3 { &["-sigopt", "distid:1234567812345678"] } else { &[] };

        // Made here, checked by OpenSSL.
        let ours = SigningKey::generate(algorithm).expect("key");
        std::fs::write(path("ours.pub"), ours.verifying_key().to_public_key_pem().expect("pem"))
            .expect("write");
        std::fs::write(path("ours.sig"), ours.sign(&message)).expect("write");
        let mut verify = vec!["dgst", digest, "-verify", "ours.pub", "-signature", "ours.sig"];
        verify.extend_from_slice(sm2_options);
        verify.push("message");
        let said = run(&verify, dir.path());
        assert!(String::from_utf8_lossy(&said.stdout).contains("Verified OK"), "{algorithm:?}");
        // And a changed message fails there too.
        std::fs::write(path("changed"), b"another message").expect("write");
        let mut refused = verify.clone();
        *refused.last_mut().expect("file") = "changed";
        let output = std::process::Command::new("openssl")
            .args(&refused)
            .current_dir(dir.path())
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{algorithm:?}: OpenSSL refuses a changed message");

        // Made by OpenSSL, read and checked here.
        run(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                &format!("ec_paramgen_curve:{curve}"),
                "-out",
                "theirs.pem",
            ],
            dir.path(),
        );
        run(&["pkey", "-in", "theirs.pem", "-pubout", "-out", "theirs.pub"], dir.path());
        let mut sign = vec!["dgst", digest, "-sign", "theirs.pem", "-out", "theirs.sig"];
        sign.extend_from_slice(sm2_options);
        sign.push("message");
        run(&sign, dir.path());
        let theirs = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(path("theirs.pem")).expect("read"))
            .expect("OpenSSL's private key reads here");
        assert_eq!(theirs.algorithm(), algorithm);
        let public =
            VerifyingKey::from_public_key_pem(&std::fs::read_to_string(path("theirs.pub")).expect("read"))
                .expect("OpenSSL's public key reads here");
        let signature = std::fs::read(path("theirs.sig")).expect("read");
        assert_eq!(public.verify(&message, &signature), Ok(()), "{algorithm:?}: OpenSSL's signature");
        assert!(public.verify(b"another message", &signature).is_err());
        assert_eq!(theirs.verifying_key(), public);
    }
}

/// A signed head and the certificate it names, checked by OpenSSL 3: the certificate parses
/// there as SM2-with-SM3 (or ECDSA-with-SHA256), its self-signature verifies over its signed
/// part with GM/T 0009's identifier (OpenSSL 3.0's `verify` cannot be given an SM2 identifier
/// for certificates, so the signature is checked with `dgst`; an ECDSA certificate also passes
/// `openssl verify`), and its public key verifies the head's signature over the head's text,
/// as a third party with its own tools would check a receipt's head.
#[test]
fn openssl_checks_a_signed_head_with_its_certificate() {
    use base64::Engine as _;
    use tongban_evidence::{Certificate, SignedHead, Tree};
    let Some(_) = openssl() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let path = |name: &str| dir.path().join(name);
    for (algorithm, digest) in [(Algorithm::EcdsaP256Sha256, "-sha256"), (Algorithm::Sm2Sm3, "-sm3")] {
        let key = SigningKey::generate(algorithm).expect("key");
        let certificate = Certificate::self_signed(
            &key,
            "CN=tongban evidence henan,O=Tongban",
            std::time::Duration::from_secs(3600),
        )
        .expect("certificate");
        certificate.verify_issued_by(&certificate).expect("self-signed, checked here");
        std::fs::write(path("cert.pem"), certificate.to_pem().expect("pem")).expect("write");
        let text = run(&["x509", "-in", "cert.pem", "-noout", "-text"], dir.path());
        let named = if algorithm == Algorithm::Sm2Sm3 { "SM2-with-SM3" } else { "ecdsa-with-SHA256" };
        assert!(String::from_utf8_lossy(&text.stdout).contains(named), "{algorithm:?}");
        run(&["x509", "-in", "cert.pem", "-pubkey", "-noout", "-out", "cert.pub"], dir.path());
        let sigopt: &[&str] =
            if algorithm == Algorithm::Sm2Sm3 { &["-sigopt", "distid:1234567812345678"] } else { &[] };
        let (tbs, signature) = certificate.signed_part().expect("signed part");
        std::fs::write(path("tbs.der"), tbs).expect("write");
        std::fs::write(path("tbs.sig"), signature).expect("write");
        let mut check = vec!["dgst", digest, "-verify", "cert.pub", "-signature", "tbs.sig"];
        check.extend_from_slice(sigopt);
        check.push("tbs.der");
        let said = run(&check, dir.path());
        assert!(
            String::from_utf8_lossy(&said.stdout).contains("Verified OK"),
            "{algorithm:?}: the certificate"
        );
        if algorithm == Algorithm::EcdsaP256Sha256 {
            let said = run(&["verify", "-CAfile", "cert.pem", "-check_ss_sig", "cert.pem"], dir.path());
            assert!(String::from_utf8_lossy(&said.stdout).contains("OK"), "{said:?}");
        }

        let hash = HashAlgorithm::for_signatures(algorithm);
        let tree = Tree::new(hash, (0..5u8).map(|n| hash.leaf(&[n])).collect());
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
            "henan",
            1,
            5,
            Some(0),
            &tree.root(),
            &tree.root(),
            now,
        );
        head.verify(std::slice::from_ref(&certificate)).expect("verifies here");
        std::fs::write(path("head.txt"), head.signed_bytes()).expect("write");
        let signature =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&head.signature).expect("base64");
        std::fs::write(path("head.sig"), signature).expect("write");
        let mut verify = vec!["dgst", digest, "-verify", "cert.pub", "-signature", "head.sig"];
        verify.extend_from_slice(sigopt);
        verify.push("head.txt");
        let said = run(&verify, dir.path());
        assert!(String::from_utf8_lossy(&said.stdout).contains("Verified OK"), "{algorithm:?}");
    }
}
