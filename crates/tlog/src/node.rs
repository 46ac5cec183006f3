//! Addresses of the stored hashes: perfect subtrees, keyed `(level, index)`.

use crate::hash::{largest_power_of_two_below, node_hash, Hash};

/// A perfect subtree: the `index`-th run of `2^level` consecutive leaves,
/// i.e. leaves `[index << level, (index + 1) << level)`. Level 0 nodes are leaf hashes.
///
/// Once the tree has grown past a node's last leaf, that node's hash never changes
/// again, so it can be stored once and read forever: these are the only hashes a log
/// keeps. Every other hash (roots, right-border nodes) is computed from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub const fn new(level: u8, index: u64) -> Self {
        NodeId { level, index }
    }

    /// The leaf hash of leaf `index`.
    pub const fn leaf(index: u64) -> Self {
        NodeId { level: 0, index }
    }

    /// First leaf covered (saturating: a node past `u64` leaves is in no tree).
    pub fn start(&self) -> u64 {
        self.shifted(self.index)
    }

    /// One past the last leaf covered: the tree size from which this node exists.
    /// Saturating, so a nonsense node is simply never complete.
    pub fn end(&self) -> u64 {
        self.shifted(self.index.saturating_add(1))
    }

    fn shifted(&self, i: u64) -> u64 {
        if self.level >= 64 {
            return if i == 0 { 0 } else { u64::MAX };
        }
        u64::try_from(u128::from(i) << self.level).unwrap_or(u64::MAX)
    }
}

/// The perfect subtrees that make up `[start, end)` as RFC 6962 splits it, left to right.
///
/// Valid for the ranges the RFC's recursions produce (`start` aligned to a power of two at
/// least as large as the range), which are the only ranges this crate asks for: the whole
/// tree `[0, n)` and the right-border ranges `[k, n)` of proofs. Sizes descend, so the
/// range's hash is `fold_right(node_hash)` over the result.
pub(crate) fn perfect_nodes(start: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::with_capacity(64);
    let mut a = start;
    while a < end {
        let size = end - a;
        // Power-of-two ranges are one node; otherwise the left part is the largest
        // power of two strictly below the size (RFC 6962 §2.1) and the rest recurses.
        let k = if size.is_power_of_two() {
            size
        } else {
            largest_power_of_two_below(size)
        };
        let level = k.trailing_zeros() as u8;
        debug_assert_eq!(a % k, 0, "range [{start}, {end}) is not RFC-aligned");
        out.push(NodeId::new(level, a >> level));
        a += k;
    }
    out
}

/// The hash of a range from the hashes of its `perfect_nodes`, in the same order.
/// `None` only for an empty slice.
pub(crate) fn fold_range(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_tree_decomposes_by_the_bits_of_its_size() {
        assert_eq!(perfect_nodes(0, 0), vec![]);
        assert_eq!(perfect_nodes(0, 1), vec![NodeId::new(0, 0)]);
        assert_eq!(perfect_nodes(0, 8), vec![NodeId::new(3, 0)]);
        assert_eq!(
            perfect_nodes(0, 13),
            vec![NodeId::new(3, 0), NodeId::new(2, 2), NodeId::new(0, 12)]
        );
    }

    #[test]
    fn right_border_range_decomposes_from_its_aligned_start() {
        assert_eq!(perfect_nodes(8, 13), vec![NodeId::new(2, 2), NodeId::new(0, 12)]);
        assert_eq!(perfect_nodes(12, 14), vec![NodeId::new(1, 6)]);
    }

    #[test]
    fn nodes_beyond_any_tree_saturate_instead_of_overflowing() {
        assert_eq!(NodeId::new(200, 1).end(), u64::MAX);
        assert_eq!(NodeId::new(1, u64::MAX).end(), u64::MAX);
        assert_eq!(NodeId::new(63, 1).start(), 1 << 63);
    }

    #[test]
    fn node_covers_its_leaves() {
        let n = NodeId::new(3, 5);
        assert_eq!((n.start(), n.end()), (40, 48));
    }
}
