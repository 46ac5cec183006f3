//! Reading stored hashes: the [`HashReader`] port and an in-memory store for tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::compact::Frontier;
use crate::hash::Hash;
use crate::node::NodeId;
use crate::proof::ProofPlan;
use crate::Error;

/// Where the stored (perfect-subtree) hashes of a log live: a `(level, index)` table, or
/// tiles through [`crate::tile::TileHashReader`]. One call per proof, so an adapter can
/// answer with one query.
///
/// Async storage uses the [`ProofPlan`] directly instead: `plan.nodes()`, read, `assemble`.
pub trait HashReader {
    type Error: From<Error>;

    /// The hashes of `nodes`, in the same order. Callers only ask for nodes that are
    /// complete in the tree they prove against; a node that is missing is an error.
    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, Self::Error>;
}

fn run<R: HashReader>(reader: &R, plan: &ProofPlan) -> Result<Vec<Hash>, R::Error> {
    let hashes = reader.read_hashes(plan.nodes())?;
    Ok(plan.assemble(&hashes)?)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves: O(log n) reads.
pub fn inclusion_proof<R: HashReader>(reader: &R, index: u64, size: u64) -> Result<Vec<Hash>, R::Error> {
    run(reader, &ProofPlan::inclusion(index, size)?)
}

/// The consistency proof from `size1` to `size2`: O(log n) reads.
pub fn consistency_proof<R: HashReader>(reader: &R, size1: u64, size2: u64) -> Result<Vec<Hash>, R::Error> {
    run(reader, &ProofPlan::consistency(size1, size2)?)
}

/// The root of the tree of `size` leaves, for any size the log ever had.
pub fn root_at<R: HashReader>(reader: &R, size: u64) -> Result<Hash, R::Error> {
    let mut v = run(reader, &ProofPlan::root(size))?;
    Ok(v.pop().unwrap_or_else(crate::hash::empty_root))
}

/// The appender state at `size`, rebuilt from stored hashes (at most 64 reads).
pub fn frontier_at<R: HashReader>(reader: &R, size: u64) -> Result<Frontier, R::Error> {
    let hashes = reader.read_hashes(&Frontier::nodes(size))?;
    Ok(Frontier::from_hashes(size, hashes)?)
}

/// An in-memory log: every completed node keyed `(level, index)`, the way a table would
/// keep them. For tests; counts the hashes read so tests can check proofs stay O(log n).
#[derive(Debug, Default)]
pub struct MemoryLog {
    frontier: Frontier,
    nodes: HashMap<NodeId, Hash>,
    reads: AtomicU64,
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash; returns its index.
    pub fn append(&mut self, leaf: Hash) -> Result<u64, Error> {
        let index = self.frontier.size();
        for (id, h) in self.frontier.append(leaf)? {
            self.nodes.insert(id, h);
        }
        Ok(index)
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Every stored node, for copying into another store in tests.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeId, &Hash)> {
        self.nodes.iter()
    }

    /// Hashes read so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Overwrites a stored hash: for tests that tamper with storage.
    pub fn tamper(&mut self, id: NodeId, h: Hash) {
        self.nodes.insert(id, h);
    }
}

impl HashReader for MemoryLog {
    type Error = Error;

    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, Error> {
        self.reads.fetch_add(nodes.len() as u64, Ordering::Relaxed);
        nodes
            .iter()
            .map(|id| self.nodes.get(id).copied().ok_or(Error::MissingNode(*id)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{leaf_hash, root_of};
    use crate::proof::{verify_consistency, verify_inclusion};

    #[test]
    fn proofs_from_stored_nodes_verify_against_the_stored_roots() {
        let mut log = MemoryLog::new();
        let mut leaves = Vec::new();
        let mut roots = vec![crate::hash::empty_root()];
        for i in 0..100u64 {
            let l = leaf_hash(&i.to_be_bytes());
            leaves.push(l);
            log.append(l).unwrap();
            roots.push(log.root());
        }
        for size in 1..=100u64 {
            assert_eq!(root_at(&log, size).unwrap(), roots[size as usize]);
            assert_eq!(root_at(&log, size).unwrap(), root_of(&leaves[..size as usize]));
            assert_eq!(frontier_at(&log, size).unwrap().root(), roots[size as usize]);
            for index in (0..size).step_by(7) {
                let p = inclusion_proof(&log, index, size).unwrap();
                verify_inclusion(index, size, &leaves[index as usize], &p, &roots[size as usize]).unwrap();
            }
            for size1 in (1..=size).step_by(5) {
                let p = consistency_proof(&log, size1, size).unwrap();
                verify_consistency(size1, size, &p, &roots[size1 as usize], &roots[size as usize]).unwrap();
            }
        }
    }

    #[test]
    fn a_node_past_the_tree_is_missing_not_invented() {
        let mut log = MemoryLog::new();
        log.append(leaf_hash(b"a")).unwrap();
        assert!(matches!(
            inclusion_proof(&log, 0, 2),
            Err(Error::MissingNode(NodeId { level: 0, index: 1 }))
        ));
    }
}
