//! Merkle root of a tenant's event hashes, RFC 6962 style (leaf `H(0x00‖h)`,
//! node `H(0x01‖l‖r)`, the empty tree is `H("")`), built incrementally in
//! O(log n) memory. Leaves are the rows' `event_hash` in archive order
//! (`occurred_at`, then `event_id`), so anyone holding the files can recompute it.

use sha2::{Digest, Sha256};

#[derive(Debug, Default, Clone)]
pub struct MerkleBuilder {
    /// Complete subtrees, largest first: (height, hash).
    stack: Vec<(u32, [u8; 32])>,
    leaves: u64,
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

impl MerkleBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, event_hash: &[u8]) {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(event_hash);
        let mut cur: [u8; 32] = h.finalize().into();
        let mut height = 0;
        while let Some((top_height, top)) = self.stack.last() {
            if *top_height != height {
                break;
            }
            cur = node(top, &cur);
            height += 1;
            self.stack.pop();
        }
        self.stack.push((height, cur));
        self.leaves += 1;
    }

    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    /// The root, hex-encoded.
    pub fn root_hex(&self) -> String {
        let mut it = self.stack.iter().rev();
        let root = match it.next() {
            None => Sha256::digest(b"").into(),
            Some((_, last)) => it.fold(*last, |acc, (_, left)| node(left, &acc)),
        };
        hex::encode(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recursive definition of RFC 6962 §2.1, for comparison.
    fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
        match leaves.len() {
            0 => Sha256::digest(b"").into(),
            1 => {
                let mut h = Sha256::new();
                h.update([0u8]);
                h.update(leaves[0]);
                h.finalize().into()
            }
            n => {
                let k = n.next_power_of_two() / 2;
                node(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn incremental_root_equals_the_recursive_definition_for_every_size() {
        let leaves: Vec<[u8; 32]> = (0..70u8).map(|i| Sha256::digest([i]).into()).collect();
        for n in 0..leaves.len() {
            let mut b = MerkleBuilder::new();
            leaves[..n].iter().for_each(|l| b.push(l));
            assert_eq!(b.root_hex(), hex::encode(mth(&leaves[..n])), "n = {n}");
        }
    }
}
