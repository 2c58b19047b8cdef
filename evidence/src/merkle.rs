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

    /// A hasher fed piece by piece, for bodies that arrive in parts.
    pub fn hasher(self) -> Hasher {
        match self {
            HashAlgorithm::Sm3 => Hasher::Sm3(<sm3::Sm3 as sm3::Digest>::new()),
            HashAlgorithm::Sha256 => Hasher::Sha256(<sha2::Sha256 as sha2::Digest>::new()),
        }
    }

    /// The name evidence carries: `sm3` or `sha256`.
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlgorithm::Sm3 => "sm3",
            HashAlgorithm::Sha256 => "sha256",
        }
    }

    /// A leaf's hash: the record's bytes under the prefix 0, so a leaf can never pass for a
    /// node.
    pub fn leaf(self, record: &[u8]) -> Digest {
        self.digest(&[&[0], record])
    }

    pub fn node(self, left: &Digest, right: &Digest) -> Digest {
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

/// A digest being computed piece by piece.
#[derive(Debug, Clone)]
pub enum Hasher {
    Sm3(sm3::Sm3),
    Sha256(sha2::Sha256),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sm3(h) => sm3::Digest::update(h, bytes),
            Hasher::Sha256(h) => sha2::Digest::update(h, bytes),
        }
    }

    pub fn finalize(self) -> Digest {
        match self {
            Hasher::Sm3(h) => sm3::Digest::finalize(h).into(),
            Hasher::Sha256(h) => sha2::Digest::finalize(h).into(),
        }
    }
}

/// A whole tree kept level by level, so that every leaf's inclusion path is read off in
/// logarithmic time: a group of a thousand records costs a thousand node hashes once, not a
/// thousand per record. Pairing each level's nodes left to right and lifting an odd last node
/// unchanged builds exactly the tree RFC 6962 defines by splitting at powers of two.
#[derive(Debug, Clone)]
pub struct Tree {
    hash: HashAlgorithm,
    /// `levels[0]` holds the leaves and the last level the root alone.
    levels: Vec<Vec<Digest>>,
}

impl Tree {
    /// The tree over `leaves` (leaf hashes, in order). An empty tree has the digest of
    /// nothing as its root and no paths.
    pub fn new(hash: HashAlgorithm, leaves: Vec<Digest>) -> Tree {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|level| level.len() > 1) {
            let below = levels.last().expect("at least one level");
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => hash.node(left, right),
                    [single] => *single,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
            levels.push(above);
        }
        Tree { hash, levels }
    }

    pub fn size(&self) -> usize {
        self.levels[0].len()
    }

    pub fn root(&self) -> Digest {
        match self.levels.last().and_then(|level| level.first()) {
            Some(root) => *root,
            None => self.hash.digest(&[]),
        }
    }

    /// The inclusion path of leaf `index`, from the leaf's sibling up; `None` when there is no
    /// such leaf.
    pub fn path(&self, index: usize) -> Option<Vec<Digest>> {
        if index >= self.size() {
            return None;
        }
        let mut path = Vec::with_capacity(self.levels.len());
        let mut at = index;
        for level in &self.levels[..self.levels.len() - 1] {
            // An odd last node has no sibling on its level: it rises unchanged.
            if let Some(sibling) = level.get(at ^ 1) {
                path.push(*sibling);
            }
            at /= 2;
        }
        Some(path)
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
