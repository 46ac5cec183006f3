//! Properties: every generated proof verifies, and any single bit flipped in the proof,
//! the leaf or a root makes it fail.

use proptest::prelude::*;
use stele_tlog::{
    consistency_proof, encode_leaf, inclusion_proof, leaf_hash, root_at, root_of, verify_consistency, verify_inclusion,
    Hash, LeafData, MemoryLog,
};

fn log_of(size: u64) -> (MemoryLog, Vec<Hash>) {
    let mut log = MemoryLog::new();
    let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(format!("event {i}").as_bytes())).collect();
    for l in &leaves {
        log.append(*l).unwrap();
    }
    (log, leaves)
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut b = h.0;
    b[bit / 8 % 32] ^= 1 << (bit % 8);
    Hash(b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn inclusion_proofs_verify_and_any_bit_flip_fails(size in 1u64..600, index_seed: u64, bit in 0usize..256, pick: usize) {
        let (log, leaves) = log_of(size);
        let index = index_seed % size;
        let root = log.root();
        prop_assert_eq!(root, root_of(&leaves));
        let proof = inclusion_proof(&log, index, size).unwrap();
        let leaf = leaves[index as usize];
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &root).is_ok());

        prop_assert!(verify_inclusion(index, size, &flip(&leaf, bit), &proof, &root).is_err());
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &flip(&root, bit)).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let k = pick % bad.len();
            bad[k] = flip(&bad[k], bit);
            prop_assert!(verify_inclusion(index, size, &leaf, &bad, &root).is_err());
            let mut short = proof.clone();
            short.pop();
            prop_assert!(verify_inclusion(index, size, &leaf, &short, &root).is_err());
        }
        let mut long = proof.clone();
        long.push(leaf);
        prop_assert!(verify_inclusion(index, size, &leaf, &long, &root).is_err());
        // Another leaf's hash at this index fails.
        if size > 1 {
            let other = leaves[((index + 1) % size) as usize];
            prop_assert!(verify_inclusion(index, size, &other, &proof, &root).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify_and_any_bit_flip_fails(size2 in 1u64..600, s1: u64, bit in 0usize..256, pick: usize) {
        let (log, _) = log_of(size2);
        let size1 = 1 + s1 % size2;
        let (root1, root2) = (root_at(&log, size1).unwrap(), log.root());
        let proof = consistency_proof(&log, size1, size2).unwrap();
        prop_assert!(verify_consistency(size1, size2, &proof, &root1, &root2).is_ok());

        prop_assert!(verify_consistency(size1, size2, &proof, &flip(&root1, bit), &root2).is_err());
        prop_assert!(verify_consistency(size1, size2, &proof, &root1, &flip(&root2, bit)).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let k = pick % bad.len();
            bad[k] = flip(&bad[k], bit);
            prop_assert!(verify_consistency(size1, size2, &bad, &root1, &root2).is_err());
        }
        // The roots swapped, or the old tree claimed bigger than the new, fail.
        if size1 < size2 {
            prop_assert!(verify_consistency(size1, size2, &proof, &root2, &root1).is_err());
            prop_assert!(verify_consistency(size2, size1, &proof, &root1, &root2).is_err());
        }
    }

    #[test]
    fn a_tree_whose_old_leaf_changed_is_not_consistent(size2 in 2u64..300, s1: u64, victim: u64) {
        let (log, mut leaves) = log_of(size2);
        let size1 = 1 + s1 % (size2 - 1);
        let root1 = root_at(&log, size1).unwrap();
        // Rewrite history: change one leaf inside the old tree and rebuild the new one.
        let v = (victim % size1) as usize;
        leaves[v] = leaf_hash(b"forged");
        let mut forged = MemoryLog::new();
        for l in &leaves {
            forged.append(*l).unwrap();
        }
        let proof = consistency_proof(&forged, size1, size2).unwrap();
        prop_assert!(verify_consistency(size1, size2, &proof, &root1, &forged.root()).is_err());
    }

    #[test]
    fn leaf_encoding_round_trips_and_is_injective(
        t1 in "\\PC{1,20}", t2 in "\\PC{1,20}", h1: [u8; 32], h2: [u8; 32], r1: i64, r2: i64,
    ) {
        let a = encode_leaf(&t1, &h1, r1).unwrap();
        let b = encode_leaf(&t2, &h2, r2).unwrap();
        prop_assert_eq!(LeafData::decode(&a).unwrap(), LeafData::new(&t1, h1, r1));
        prop_assert_eq!(a == b, (t1, h1, r1) == (t2, h2, r2));
    }

    #[test]
    fn verification_of_arbitrary_input_never_panics(
        index: u64, size: u64, size1: u64, size2: u64, n in 0usize..70, seed: [u8; 32],
    ) {
        let proof: Vec<Hash> = (0..n).map(|i| leaf_hash(&[seed.as_slice(), &[i as u8]].concat())).collect();
        let h = Hash(seed);
        let _ = verify_inclusion(index, size, &h, &proof, &h);
        let _ = verify_consistency(size1, size2, &proof, &h, &h);
        let _ = verify_consistency(size1 % 1000, size2 % 1000, &proof, &h, &h);
        let _ = stele_tlog::TileId::for_node(stele_tlog::NodeId::new((index % 256) as u8, size1), size2);
    }

    #[test]
    fn leaf_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = LeafData::decode(&bytes);
    }

    #[test]
    fn note_and_checkpoint_parsing_never_panic(text in "\\PC{0,200}") {
        let _ = stele_tlog::note::Note::parse(text.as_bytes());
        let _ = stele_tlog::Checkpoint::parse(&text);
        let _ = stele_tlog::TlogProof::parse(&text);
        let _ = stele_tlog::TileId::parse_path(&text);
    }
}
