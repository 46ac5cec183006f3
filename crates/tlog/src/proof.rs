//! Inclusion and consistency proofs (RFC 9162 §2.1.3–2.1.4): generation from stored
//! hashes, and verification that needs nothing but the proof.
//!
//! Generation is split in two so that storage can be async and batched: a
//! [`ProofPlan`] names every stored hash the proof needs (O(log n) of them), the caller
//! reads them however it likes (one SQL query, a few tiles), and
//! [`ProofPlan::assemble`] turns them into the proof.

use crate::hash::{empty_root, largest_power_of_two_below, node_hash, Hash};
use crate::node::{fold_range, perfect_nodes, NodeId};
use crate::Error;

/// The stored hashes a proof (or a root) needs, and how they combine into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofPlan {
    nodes: Vec<NodeId>,
    /// For each element of the result, the run of `nodes` whose fold is that element.
    spans: Vec<(usize, usize)>,
}

impl ProofPlan {
    /// The audit path of leaf `index` in the tree of `size` leaves.
    pub fn inclusion(index: u64, size: u64) -> Result<Self, Error> {
        if index >= size {
            return Err(Error::IndexOutOfRange { index, size });
        }
        let mut ranges = Vec::new();
        inclusion_ranges(index, 0, size, &mut ranges);
        Ok(Self::from_ranges(&ranges))
    }

    /// The proof that the tree of `size1` leaves is a prefix of the tree of `size2`.
    /// Every tree extends the empty one, so `size1 == 0` has no proof (as in RFC 9162
    /// and transparency-dev/merkle); callers treat an empty old tree as consistent.
    pub fn consistency(size1: u64, size2: u64) -> Result<Self, Error> {
        if size2 < size1 {
            return Err(Error::SizeOrder { size1, size2 });
        }
        if size1 == 0 {
            return Err(Error::ConsistencyFromEmpty);
        }
        let mut ranges = Vec::new();
        if size1 < size2 {
            consistency_ranges(size1, 0, size2, true, &mut ranges);
        }
        Ok(Self::from_ranges(&ranges))
    }

    /// The root of the tree of `size` leaves (one element; the empty root for size 0).
    pub fn root(size: u64) -> Self {
        let nodes = perfect_nodes(0, size);
        let spans = vec![(0, nodes.len())];
        ProofPlan { nodes, spans }
    }

    fn from_ranges(ranges: &[(u64, u64)]) -> Self {
        let mut nodes = Vec::new();
        let mut spans = Vec::with_capacity(ranges.len());
        for &(a, b) in ranges {
            let start = nodes.len();
            nodes.extend(perfect_nodes(a, b));
            spans.push((start, nodes.len()));
        }
        ProofPlan { nodes, spans }
    }

    /// The stored hashes to read, in the order `assemble` wants them. No duplicates.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// Number of hashes in the finished proof.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The proof from the hashes of `nodes()`, in that order.
    pub fn assemble(&self, hashes: &[Hash]) -> Result<Vec<Hash>, Error> {
        if hashes.len() != self.nodes.len() {
            return Err(Error::HashCount {
                got: hashes.len(),
                want: self.nodes.len(),
            });
        }
        Ok(self
            .spans
            .iter()
            .map(|&(a, b)| fold_range(&hashes[a..b]).unwrap_or_else(empty_root))
            .collect())
    }
}

/// PATH(m, D[a:b]) of RFC 9162 §2.1.3.1, as the ranges whose hashes form the path,
/// leaf-sibling first.
fn inclusion_ranges(m: u64, a: u64, b: u64, out: &mut Vec<(u64, u64)>) {
    if b - a <= 1 {
        return;
    }
    let k = largest_power_of_two_below(b - a);
    if m < a + k {
        inclusion_ranges(m, a, a + k, out);
        out.push((a + k, b));
    } else {
        inclusion_ranges(m, a + k, b, out);
        out.push((a, a + k));
    }
}

/// SUBPROOF(m, D[a:b], start) of RFC 9162 §2.1.4.1 with `m` absolute, `a < m <= b`.
fn consistency_ranges(m: u64, a: u64, b: u64, start: bool, out: &mut Vec<(u64, u64)>) {
    if m == b {
        if !start {
            out.push((a, b));
        }
        return;
    }
    let k = largest_power_of_two_below(b - a);
    if m <= a + k {
        consistency_ranges(m, a, a + k, start, out);
        out.push((a + k, b));
    } else {
        consistency_ranges(m, a + k, b, false, out);
        out.push((a, a + k));
    }
}

/// The root that `proof` leads to from `leaf` at `index` in a tree of `size` leaves.
pub fn root_from_inclusion_proof(index: u64, size: u64, leaf: &Hash, proof: &[Hash]) -> Result<Hash, Error> {
    if index >= size {
        return Err(Error::IndexOutOfRange { index, size });
    }
    let want = ProofPlan::inclusion(index, size)?.len();
    if proof.len() != want {
        return Err(Error::ProofLength { got: proof.len(), want });
    }
    // RFC 9162 §2.1.3.2.
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(Error::ProofLength { got: proof.len(), want });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            // Right border: skip the levels where this node has no right sibling.
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(Error::ProofLength { got: proof.len(), want });
    }
    Ok(r)
}

/// Proves `leaf` is the `index`-th leaf of the tree of `size` leaves with `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> Result<(), Error> {
    let computed = root_from_inclusion_proof(index, size, leaf, proof)?;
    check_root(&computed, root)
}

/// Proves the tree of `size1` leaves with `root1` is a prefix of the tree of `size2`
/// leaves with `root2`: nothing in the old tree was changed, removed or reordered.
pub fn verify_consistency(size1: u64, size2: u64, proof: &[Hash], root1: &Hash, root2: &Hash) -> Result<(), Error> {
    let want = ProofPlan::consistency(size1, size2)?.len();
    if proof.len() != want {
        return Err(Error::ProofLength { got: proof.len(), want });
    }
    if size1 == size2 {
        return check_root(root1, root2);
    }
    // RFC 9162 §2.1.4.2. A power-of-two old tree is itself a node of the new one, so
    // its root is the implicit first element of the path.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(*root1);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(Error::ProofLength { got: proof.len(), want });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(Error::ProofLength { got: proof.len(), want });
    }
    check_root(&fr, root1)?;
    check_root(&sr, root2)
}

fn check_root(computed: &Hash, expected: &Hash) -> Result<(), Error> {
    if computed == expected {
        Ok(())
    } else {
        Err(Error::RootMismatch {
            computed: *computed,
            expected: *expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{leaf_hash, root_of};

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// Reads a node straight from the leaves (test oracle).
    fn node(leaves: &[Hash], id: NodeId) -> Hash {
        root_of(&leaves[id.start() as usize..id.end() as usize])
    }

    fn build(plan: &ProofPlan, l: &[Hash]) -> Vec<Hash> {
        let hashes: Vec<Hash> = plan.nodes().iter().map(|&id| node(l, id)).collect();
        plan.assemble(&hashes).unwrap()
    }

    #[test]
    fn every_inclusion_proof_up_to_40_leaves_verifies() {
        for size in 1..=40u64 {
            let l = leaves(size);
            let root = root_of(&l);
            assert_eq!(build(&ProofPlan::root(size), &l), vec![root]);
            for index in 0..size {
                let proof = build(&ProofPlan::inclusion(index, size).unwrap(), &l);
                verify_inclusion(index, size, &l[index as usize], &proof, &root)
                    .unwrap_or_else(|e| panic!("index {index} size {size}: {e}"));
                if index + 1 < size {
                    assert!(verify_inclusion(index + 1, size, &l[index as usize], &proof, &root).is_err());
                }
            }
        }
    }

    #[test]
    fn every_consistency_proof_up_to_40_leaves_verifies() {
        let l = leaves(40);
        for size2 in 1..=40u64 {
            let root2 = root_of(&l[..size2 as usize]);
            for size1 in 1..=size2 {
                let root1 = root_of(&l[..size1 as usize]);
                let proof = build(&ProofPlan::consistency(size1, size2).unwrap(), &l);
                verify_consistency(size1, size2, &proof, &root1, &root2)
                    .unwrap_or_else(|e| panic!("{size1} -> {size2}: {e}"));
            }
        }
    }

    #[test]
    fn rfc_example_tree_of_seven_has_the_documented_proof_shapes() {
        // RFC 9162 §2.1.5: the inclusion proof for d0 is [b, h, l]; the consistency
        // proof between 3 and 7 is [c, d, g, l].
        let plan = ProofPlan::inclusion(0, 7).unwrap();
        assert_eq!(plan.len(), 3);
        assert_eq!(ProofPlan::consistency(3, 7).unwrap().len(), 4);
        assert_eq!(ProofPlan::consistency(4, 7).unwrap().len(), 1);
        assert_eq!(ProofPlan::consistency(6, 7).unwrap().len(), 3);
    }

    #[test]
    fn empty_root_plan_reads_nothing() {
        let plan = ProofPlan::root(0);
        assert!(plan.nodes().is_empty());
        assert_eq!(plan.assemble(&[]).unwrap(), vec![empty_root()]);
    }

    #[test]
    fn assemble_refuses_the_wrong_number_of_hashes() {
        let plan = ProofPlan::inclusion(3, 10).unwrap();
        assert!(matches!(plan.assemble(&[]), Err(Error::HashCount { .. })));
    }
}
