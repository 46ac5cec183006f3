//! The right edge of the tree: what an appender keeps to add leaves and know the root.

use crate::hash::{empty_root, Hash};
use crate::node::{fold_range, perfect_nodes, NodeId};
use crate::proof::ProofPlan;
use crate::Error;

/// The hashes of the perfect subtrees that make up `[0, size)`: one per set bit of
/// `size`, largest first, so at most 64. This is all an appender needs: appending a
/// leaf merges equal-sized subtrees from the right, and the root folds them.
///
/// Store it with the log head (`size` + `hashes`), or rebuild it from stored nodes
/// with [`Frontier::plan`] / [`Frontier::from_hashes`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The nodes whose hashes make the frontier of a tree of `size` leaves, in order.
    pub fn nodes(size: u64) -> Vec<NodeId> {
        perfect_nodes(0, size)
    }

    /// Same stored hashes as the root of `size` needs: read them with this plan.
    pub fn plan(size: u64) -> ProofPlan {
        ProofPlan::root(size)
    }

    /// A frontier from its stored form; refuses a hash count that does not fit `size`.
    pub fn from_hashes(size: u64, hashes: Vec<Hash>) -> Result<Self, Error> {
        let want = size.count_ones() as usize;
        if hashes.len() != want {
            return Err(Error::HashCount {
                got: hashes.len(),
                want,
            });
        }
        Ok(Frontier { size, hashes })
    }

    /// Number of leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier hashes, largest subtree first (the stored form).
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The current root. O(log n) hashing, no reads.
    pub fn root(&self) -> Hash {
        fold_range(&self.hashes).unwrap_or_else(empty_root)
    }

    /// Appends one leaf hash and returns every node that became complete, the leaf
    /// itself first: exactly the new hashes a log must store so that any later proof can
    /// be built without re-reading leaves. One leaf plus, on average, one interior node.
    pub fn append(&mut self, leaf: Hash) -> Result<Vec<(NodeId, Hash)>, Error> {
        if self.size == u64::MAX {
            return Err(Error::TreeFull);
        }
        let index = self.size;
        let mut created = vec![(NodeId::leaf(index), leaf)];
        let mut h = leaf;
        let mut level: u8 = 0;
        // Each trailing one bit of the old size is a subtree of equal size to merge with.
        while (index >> level) & 1 == 1 {
            let left = self.hashes.pop().ok_or(Error::HashCount { got: 0, want: 1 })?;
            h = crate::hash::node_hash(&left, &h);
            level += 1;
            created.push((NodeId::new(level, index >> level), h));
        }
        self.hashes.push(h);
        self.size += 1;
        Ok(created)
    }

    /// Appends many leaves; the created nodes of all of them, in order.
    pub fn extend<I: IntoIterator<Item = Hash>>(&mut self, leaves: I) -> Result<Vec<(NodeId, Hash)>, Error> {
        let mut created = Vec::new();
        for leaf in leaves {
            created.extend(self.append(leaf)?);
        }
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{leaf_hash, root_of};

    #[test]
    fn frontier_root_matches_the_reference_root_at_every_size() {
        let mut f = Frontier::new();
        let mut all = Vec::new();
        assert_eq!(f.root(), empty_root());
        for i in 0..300u64 {
            let l = leaf_hash(&i.to_le_bytes());
            all.push(l);
            f.append(l).unwrap();
            assert_eq!(f.root(), root_of(&all), "size {}", i + 1);
            assert_eq!(f.hashes().len(), f.size().count_ones() as usize);
        }
    }

    #[test]
    fn append_reports_each_completed_node_with_its_hash() {
        let mut f = Frontier::new();
        let l: Vec<Hash> = (0..8u64).map(|i| leaf_hash(&[i as u8])).collect();
        let mut created = Vec::new();
        for h in &l {
            created.extend(f.append(*h).unwrap());
        }
        assert_eq!(created.len(), 15, "8 leaves + 4 + 2 + 1 interior nodes");
        for (id, h) in created {
            assert_eq!(h, root_of(&l[id.start() as usize..id.end() as usize]), "{id:?}");
        }
    }

    #[test]
    fn stored_frontier_must_fit_its_size() {
        assert!(Frontier::from_hashes(3, vec![Hash::default()]).is_err());
        let f = Frontier::from_hashes(3, vec![Hash::default(); 2]).unwrap();
        assert_eq!(f.size(), 3);
    }
}
