//! Merkle trees over the log's records, as Certificate Transparency builds them (RFC 6962,
//! section 2.1; RFC 9162, section 2.1): one signature over a tree's root stands for every
//! record in it, and each record's inclusion path, a few dozen bytes, proves it was in the
//! signed tree. The hash is SM3 with SM2 signatures and SHA-256 with ECDSA.

use crate::keys::Algorithm;

/// A 32-byte digest.
pub type Digest = [u8; 32];

/// The hash function of a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    Sm3,
    Sha256,
}

impl HashAlgorithm {
    /// The digest that goes with a signature algorithm.
    pub fn for_signatures(algorithm: Algorithm) -> HashAlgorithm {
        match algorithm {
            Algorithm::Sm2Sm3 => HashAlgorithm::Sm3,
            Algorithm::EcdsaP256Sha256 => HashAlgorithm::Sha256,
        }
    }

    /// The digest of `parts` one after another.
    pub fn digest(self, parts: &[&[u8]]) -> Digest {
        match self {
            HashAlgorithm::Sm3 => {
                use sm3::Digest as _;
                let mut hasher = sm3::Sm3::new();
                for part in parts {
                    hasher.update(part);
                }
                hasher.finalize().into()
            }
            HashAlgorithm::Sha256 => {
                use sha2::Digest as _;
                let mut hasher = sha2::Sha256::new();
                for part in parts {
                    hasher.update(part);
                }
                hasher.finalize().into()
            }
        }
    }

    /// A leaf's hash: the record's bytes under the prefix 0, so a leaf can never pass for a
    /// node.
    pub fn leaf(self, record: &[u8]) -> Digest {
        self.digest(&[&[0], record])
    }

    fn node(self, left: &Digest, right: &Digest) -> Digest {
        self.digest(&[&[1], left, right])
    }

    /// The root of the tree over `leaves` (leaf hashes, in order); the empty tree's root is
    /// the digest of nothing.
    pub fn root(self, leaves: &[Digest]) -> Digest {
        match leaves.len() {
            0 => self.digest(&[]),
            1 => leaves[0],
            n => {
                let k = split(n);
                self.node(&self.root(&leaves[..k]), &self.root(&leaves[k..]))
            }
        }
    }

    /// The inclusion path of leaf `index` in the tree over `leaves`: the sibling hashes from
    /// the leaf up to the root. `None` when there is no such leaf.
    pub fn inclusion_path(self, leaves: &[Digest], index: usize) -> Option<Vec<Digest>> {
        if index >= leaves.len() {
            return None;
        }
        let mut path = Vec::new();
        self.path_into(leaves, index, &mut path);
        Some(path)
    }

    fn path_into(self, leaves: &[Digest], index: usize, path: &mut Vec<Digest>) {
        if leaves.len() <= 1 {
            return;
        }
        let k = split(leaves.len());
        if index < k {
            self.path_into(&leaves[..k], index, path);
            path.push(self.root(&leaves[k..]));
        } else {
            self.path_into(&leaves[k..], index - k, path);
            path.push(self.root(&leaves[..k]));
        }
    }

    /// Whether `leaf` is leaf `index` of a tree of `size` leaves with `root`, by `path`
    /// (RFC 9162, section 2.1.3.2).
    pub fn verify_inclusion(
        self,
        leaf: &Digest,
        index: u64,
        size: u64,
        path: &[Digest],
        root: &Digest,
    ) -> bool {
        if index >= size {
            return false;
        }
        let (mut fn_, mut sn) = (index, size - 1);
        let mut hash = *leaf;
        for sibling in path {
            if sn == 0 {
                return false;
            }
            if fn_ & 1 == 1 || fn_ == sn {
                hash = self.node(sibling, &hash);
                if fn_ & 1 == 0 {
                    while fn_ & 1 == 0 && fn_ != 0 {
                        fn_ >>= 1;
                        sn >>= 1;
                    }
                }
            } else {
                hash = self.node(&hash, sibling);
            }
            fn_ >>= 1;
            sn >>= 1;
        }
        sn == 0 && hash == *root
    }
}

/// The largest power of two smaller than `n` (for `n` of at least 2): where the tree splits.
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}
