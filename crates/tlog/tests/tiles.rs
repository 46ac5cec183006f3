//! Tiles: built by appending, they answer every proof as the node store does, and
//! proofs read O(log n) of them.

use std::sync::OnceLock;

use stele_tlog::tile::{new_tiles, tile_appends, tile_data, tiles_for_nodes, TILE_WIDTH};
use stele_tlog::{
    consistency_proof, frontier_at, inclusion_proof, leaf_hash, root_at, verify_consistency, verify_inclusion,
    Checkpoint, Ed25519Signer, Frontier, Hash, MemoryLog, MemoryTiles, ProofPlan, TileHashReader, TileId, TlogProof,
    Verifiers,
};

/// One 70,000-leaf log (the tlog-tiles example size) shared by the tests: building it
/// is the slow part in a debug build.
fn shared() -> &'static (MemoryLog, MemoryTiles, Vec<Hash>, Vec<Hash>) {
    static LOG: OnceLock<(MemoryLog, MemoryTiles, Vec<Hash>, Vec<Hash>)> = OnceLock::new();
    LOG.get_or_init(|| build(70_000))
}

/// A log kept both ways: node table and tiles, fed by uneven batches as a writer would.
fn build(size: u64) -> (MemoryLog, MemoryTiles, Vec<Hash>, Vec<Hash>) {
    let mut log = MemoryLog::new();
    let mut tiles = MemoryTiles::new();
    let mut frontier = Frontier::new();
    let mut leaves = Vec::new();
    let mut roots = vec![frontier.root()];
    let mut i = 0u64;
    let mut batch = 1u64;
    while i < size {
        let n = batch.min(size - i);
        let batch_leaves: Vec<Hash> = (i..i + n).map(|k| leaf_hash(&k.to_be_bytes())).collect();
        let created = frontier.extend(batch_leaves.iter().copied()).unwrap();
        tiles.apply(&tile_appends(&created)).unwrap();
        for l in batch_leaves {
            log.append(l).unwrap();
            leaves.push(l);
            roots.push(log.root());
        }
        assert_eq!(frontier.root(), log.root());
        i += n;
        batch = batch * 7 % 1000 + 1;
    }
    (log, tiles, leaves, roots)
}

#[test]
fn tile_store_answers_every_proof_like_the_node_store() {
    let (log, tiles, leaves, roots) = shared();
    for size in [1u64, 2, 255, 256, 257, 511, 512, 65_535, 65_536, 65_537, 69_999, 70_000] {
        let reader = TileHashReader::new(size, tiles);
        assert_eq!(root_at(&reader, size).unwrap(), roots[size as usize], "root at {size}");
        assert_eq!(frontier_at(&reader, size).unwrap(), frontier_at(log, size).unwrap());
        for index in [0, size / 3, size / 2, size - 1] {
            let p = inclusion_proof(&reader, index, size).unwrap();
            assert_eq!(p, inclusion_proof(log, index, size).unwrap());
            verify_inclusion(index, size, &leaves[index as usize], &p, &roots[size as usize]).unwrap();
        }
        for size1 in [1, (size / 2).max(1), size.saturating_sub(1).max(1), size] {
            let p = consistency_proof(&reader, size1, size).unwrap();
            assert_eq!(p, consistency_proof(log, size1, size).unwrap());
            verify_consistency(size1, size, &p, &roots[size1 as usize], &roots[size as usize]).unwrap();
        }
    }
}

#[test]
fn appended_tiles_equal_tiles_built_from_the_node_store() {
    let (log, tiles, _, _) = shared();
    let all = new_tiles(0, 70_000);
    for t in &all {
        let from_nodes = tile_data(log, *t).unwrap();
        assert_eq!(from_nodes.len(), usize::from(t.width) * 32);
        assert_eq!(
            tiles.get(t.level, t.index).unwrap(),
            from_nodes.as_slice(),
            "{}",
            t.path()
        );
    }
    assert!(tiles.get(3, 0).is_none(), "no level-3 tile below 2^24 leaves");
}

#[test]
fn an_append_at_the_wrong_offset_is_refused() {
    let mut f = Frontier::new();
    let mut tiles = MemoryTiles::new();
    let created = f.extend((0..3u64).map(|i| leaf_hash(&[i as u8]))).unwrap();
    let appends = tile_appends(&created);
    tiles.apply(&appends).unwrap();
    // Replaying the same batch (a lost-update or double write) is caught.
    assert!(tiles.apply(&appends).is_err());
}

#[test]
fn proofs_read_few_tiles() {
    let (_, tiles, leaves, roots) = shared();
    let size = 70_000u64;
    let reader = TileHashReader::new(size, tiles);
    for index in [0u64, 1, 12_345, 65_535, 65_536, 69_998, 69_999] {
        let before = tiles.tiles_read();
        let p = inclusion_proof(&reader, index, size).unwrap();
        let read = tiles.tiles_read() - before;
        assert!(read <= 5, "inclusion proof of {index} read {read} tiles");
        verify_inclusion(index, size, &leaves[index as usize], &p, &roots[size as usize]).unwrap();
    }
}

/// The 10-million-leaf case without building it: the stored hashes and tiles a proof
/// needs depend only on the tree shape.
#[test]
fn a_proof_in_a_tree_of_ten_million_needs_at_most_48_hashes_in_6_tiles() {
    let size = 10_000_000u64;
    let depth = 64 - (size - 1).leading_zeros() as usize; // 24
    for index in [0, 1, 255, 256, 4_999_999, 8_388_607, 8_388_608, 9_999_743, size - 1] {
        let plan = ProofPlan::inclusion(index, size).unwrap();
        assert!(plan.len() <= depth);
        assert!(
            plan.nodes().len() <= 2 * depth,
            "{index}: {} hashes",
            plan.nodes().len()
        );
        let tiles = tiles_for_nodes(size, plan.nodes()).unwrap();
        assert!(tiles.len() <= 6, "{index}: {} tiles", tiles.len());
        assert!(tiles.iter().all(|t| t.width <= TILE_WIDTH));
    }
    for size1 in [1, 1000, 4_194_304, 9_999_999] {
        let plan = ProofPlan::consistency(size1, size).unwrap();
        assert!(plan.nodes().len() <= 2 * depth);
        assert!(tiles_for_nodes(size, plan.nodes()).unwrap().len() <= 6);
    }
}

#[test]
fn tile_reads_ask_for_the_width_the_tree_size_has() {
    let (t, from, to) = TileId::for_node(stele_tlog::NodeId::new(9, 0), 70_000).unwrap();
    assert_eq!(
        t,
        TileId {
            level: 1,
            index: 0,
            width: 256
        }
    );
    assert_eq!((from, to), (0, 2));
    let (t, _, _) = TileId::for_node(stele_tlog::NodeId::new(8, 272), 70_000).unwrap();
    assert_eq!(t.path(), "tile/1/001.p/17");
    assert!(TileId::for_node(stele_tlog::NodeId::new(0, 70_000), 70_000).is_err());
}

#[test]
fn a_tlog_proof_receipt_verifies_offline_and_fails_when_tampered() {
    let (log, _, leaves, _) = build(1000);
    let signer = Ed25519Signer::from_seed("stele.example/log", &[3; 32]).unwrap();
    let verifiers = Verifiers::from_vkeys([signer.verifier().vkey().as_str()]).unwrap();
    let origin = "stele.example/t/acme";
    let checkpoint = Checkpoint::new(origin, log.size(), log.root());
    let note = signer.sign_note(&checkpoint.to_text().unwrap()).unwrap();
    let receipt = TlogProof {
        extra: None,
        index: 417,
        proof: inclusion_proof(&log, 417, 1000).unwrap(),
        checkpoint: note,
    };

    let text = receipt.to_text();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex 417\n"));
    let parsed = TlogProof::parse(&text).unwrap();
    assert_eq!(parsed, receipt);
    assert_eq!(
        parsed.verify(&leaves[417], &verifiers, origin).unwrap().checkpoint,
        checkpoint
    );

    assert!(
        parsed.verify(&leaves[418], &verifiers, origin).is_err(),
        "another event"
    );
    let mut moved = parsed.clone();
    moved.index = 418;
    assert!(moved.verify(&leaves[417], &verifiers, origin).is_err(), "another index");
    assert!(
        parsed
            .verify(&leaves[417], &verifiers, "stele.example/t/other")
            .is_err(),
        "another tenant's log"
    );

    let with_extra = TlogProof {
        extra: Some(b"ctx".to_vec()),
        ..receipt.clone()
    };
    assert_eq!(TlogProof::parse(&with_extra.to_text()).unwrap(), with_extra);
    for bad in [
        text.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
        text.replacen("index 417", "index 0417", 1),
        text.replacen("index 417", "index", 1),
        text.replacen("index 417\n", "index 417\nnot-base64\n", 1),
        "c2sp.org/tlog-proof@v1\nindex 1\n".to_owned(),
    ] {
        assert!(TlogProof::parse(&bad).is_err(), "{bad:?}");
    }
}
