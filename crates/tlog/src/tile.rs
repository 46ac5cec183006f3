//! C2SP tlog-tiles: the stored hashes grouped into tiles of height 8 (256 hashes).
//!
//! A tile at tile-level `L`, index `n`, holds the hashes of nodes `(8L, n*256 + i)` for
//! `i < width`; full tiles have width 256, the right-most tile of each level is partial.
//! Every other node of levels `8L..8L+7` is the hash of a run of tile entries, so a
//! proof for a tree of 10 million leaves touches at most two tiles per tile-level
//! (the leaf's ancestors and the right border): six tiles of at most 8 KiB.
//!
//! Tiles are an alternative to a `(level, index)` table, with 1/256th of the rows, and
//! the form a log publishes for offline verifiers (`<prefix>/tile/<L>/<N>[.p/<W>]`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::hash::Hash;
use crate::node::NodeId;
use crate::store::HashReader;
use crate::Error;

/// Levels of the tree per tile.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: u16 = 1 << TILE_HEIGHT;

/// A tile as it is at some tree size: `width` hashes of tile-level `level`, tile `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    pub level: u8,
    pub index: u64,
    /// 1..=256; 256 is a full tile.
    pub width: u16,
}

impl TileId {
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// The tile (level, index) key, without the width: where a store keeps it.
    pub fn key(&self) -> (u8, u64) {
        (self.level, self.index)
    }

    /// The tile holding `node` in the tree of `size` leaves, with the width it has at
    /// that size, and the entries `[from, to)` of the tile whose fold is the node.
    pub fn for_node(node: NodeId, size: u64) -> Result<(TileId, u16, u16), Error> {
        if node.level >= 64 || node.end() > size {
            return Err(Error::MissingNode(node));
        }
        let level = node.level / TILE_HEIGHT;
        let sub = node.level % TILE_HEIGHT;
        let first = node.index << sub; // first entry at level 8*level
        let index = first >> TILE_HEIGHT;
        let entries_at_size = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
        let width = (entries_at_size - (index << TILE_HEIGHT)).min(u64::from(TILE_WIDTH)) as u16;
        let from = (first - (index << TILE_HEIGHT)) as u16;
        let to = from + (1u16 << sub);
        Ok((TileId { level, index, width }, from, to))
    }

    /// `tile/<L>/<N>[.p/<W>]`, with `<N>` in zero-padded 3-digit path elements.
    pub fn path(&self) -> String {
        let mut n = self.index;
        let mut parts = vec![format!("{:03}", n % 1000)];
        n /= 1000;
        while n > 0 {
            parts.push(format!("x{:03}", n % 1000));
            n /= 1000;
        }
        parts.reverse();
        let mut p = format!("tile/{}/{}", self.level, parts.join("/"));
        if !self.is_full() {
            p.push_str(&format!(".p/{}", self.width));
        }
        p
    }

    /// Parses a tile path; refuses anything `path` would not have written.
    pub fn parse_path(path: &str) -> Result<TileId, Error> {
        let bad = || Error::TilePath(path.to_owned());
        let rest = path.strip_prefix("tile/").ok_or_else(bad)?;
        let (level_s, rest) = rest.split_once('/').ok_or_else(bad)?;
        let level: u8 = parse_decimal(level_s).ok_or_else(bad)?;
        if level > 63 {
            return Err(bad());
        }
        let (index_s, width) = match rest.split_once(".p/") {
            Some((i, w)) => {
                let w: u16 = parse_decimal(w).ok_or_else(bad)?;
                if w == 0 || w >= TILE_WIDTH {
                    return Err(bad());
                }
                (i, w)
            }
            None => (rest, TILE_WIDTH),
        };
        let elems: Vec<&str> = index_s.split('/').collect();
        let mut index: u64 = 0;
        for (i, e) in elems.iter().enumerate() {
            let digits = if i + 1 < elems.len() {
                e.strip_prefix('x').ok_or_else(bad)?
            } else {
                e
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let d: u64 = digits.parse().map_err(|_| bad())?;
            index = index.checked_mul(1000).and_then(|x| x.checked_add(d)).ok_or_else(bad)?;
        }
        let t = TileId { level, index, width };
        if t.path() != path {
            return Err(bad()); // e.g. a leading "x000/" element
        }
        Ok(t)
    }
}

fn parse_decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// The tiles that the tree of `new_size` has and the tree of `old_size` did not (new
/// tiles and wider versions of partial ones): what to publish after growing.
pub fn new_tiles(old_size: u64, new_size: u64) -> Vec<TileId> {
    let mut out = Vec::new();
    for level in 0..=(63 / TILE_HEIGHT) {
        let shift = u32::from(level) * u32::from(TILE_HEIGHT);
        let new_entries = new_size >> shift;
        if new_entries == 0 {
            break;
        }
        let old_entries = if old_size > new_size { 0 } else { old_size >> shift };
        for index in (old_entries >> TILE_HEIGHT)..=((new_entries - 1) >> TILE_HEIGHT) {
            let start = index << TILE_HEIGHT;
            let width = (new_entries - start).min(u64::from(TILE_WIDTH));
            if start + width <= old_entries {
                continue;
            }
            out.push(TileId {
                level,
                index,
                width: width as u16,
            });
        }
    }
    out
}

/// Tile bytes from a node store: the concatenated hashes of the tile's entries.
pub fn tile_data<R: HashReader>(reader: &R, tile: TileId) -> Result<Vec<u8>, R::Error> {
    let level = tile.level * TILE_HEIGHT;
    let first = tile.index << TILE_HEIGHT;
    let ids: Vec<NodeId> = (0..u64::from(tile.width))
        .map(|i| NodeId::new(level, first + i))
        .collect();
    let hashes = reader.read_hashes(&ids)?;
    Ok(hashes.iter().flat_map(|h| h.0).collect())
}

/// Hashes to add to the end of tiles, from the nodes a [`crate::Frontier`] append
/// created: only nodes at levels 0, 8, 16… are tile entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileAppend {
    pub level: u8,
    pub index: u64,
    /// Entry offset in the tile where `data` starts: the tile must hold exactly this many
    /// hashes before the append (a store can check it to catch lost updates).
    pub offset: u16,
    /// Whole hashes, 32 bytes each.
    pub data: Vec<u8>,
}

/// Groups created nodes into per-tile appends, in tile order.
pub fn tile_appends(created: &[(NodeId, Hash)]) -> Vec<TileAppend> {
    let mut out: Vec<TileAppend> = Vec::new();
    let mut entries: Vec<&(NodeId, Hash)> = created.iter().filter(|(id, _)| id.level % TILE_HEIGHT == 0).collect();
    entries.sort_by_key(|(id, _)| (id.level, id.index));
    for (id, h) in entries {
        let level = id.level / TILE_HEIGHT;
        let index = id.index >> TILE_HEIGHT;
        let offset = (id.index % u64::from(TILE_WIDTH)) as u16;
        match out.last_mut() {
            Some(a)
                if a.level == level && a.index == index && a.offset as usize + a.data.len() / 32 == offset as usize =>
            {
                a.data.extend_from_slice(&h.0)
            }
            _ => out.push(TileAppend {
                level,
                index,
                offset,
                data: h.0.to_vec(),
            }),
        }
    }
    out
}

/// Reads tiles; returns each tile's bytes. A store may return a wider (later) version
/// of a partial tile than asked: only the prefix is used.
pub trait TileReader {
    type Error: From<Error>;
    fn read_tiles(&self, tiles: &[TileId]) -> Result<Vec<Vec<u8>>, Self::Error>;
}

/// The distinct tiles needed to produce `nodes` in the tree of `size` leaves.
pub fn tiles_for_nodes(size: u64, nodes: &[NodeId]) -> Result<Vec<TileId>, Error> {
    let mut out: Vec<TileId> = Vec::new();
    for &n in nodes {
        let (t, _, _) = TileId::for_node(n, size)?;
        if !out.iter().any(|o| o.key() == t.key()) {
            out.push(t);
        }
    }
    Ok(out)
}

/// The hashes of `nodes` from the tiles of [`tiles_for_nodes`] and their bytes.
pub fn hashes_from_tiles(size: u64, nodes: &[NodeId], tiles: &[(TileId, &[u8])]) -> Result<Vec<Hash>, Error> {
    let by_key: HashMap<(u8, u64), &[u8]> = tiles.iter().map(|(t, d)| (t.key(), *d)).collect();
    nodes
        .iter()
        .map(|&n| {
            let (t, from, to) = TileId::for_node(n, size)?;
            let data = by_key.get(&t.key()).ok_or(Error::MissingNode(n))?;
            let want = usize::from(to) * 32;
            if data.len() < want || data.len() % 32 != 0 {
                return Err(Error::ShortTile {
                    tile: t,
                    len: data.len(),
                });
            }
            let entries: Vec<Hash> = data[usize::from(from) * 32..want]
                .chunks_exact(32)
                .map(Hash::from_slice)
                .collect::<Result<_, _>>()?;
            // A run of 2^sub entries is a perfect subtree: fold it pairwise.
            perfect_root(&entries).ok_or(Error::MissingNode(n))
        })
        .collect()
}

/// Root of a power-of-two run of hashes (`None` if empty).
fn perfect_root(hashes: &[Hash]) -> Option<Hash> {
    match hashes.len() {
        0 => None,
        1 => Some(hashes[0]),
        n => {
            let (l, r) = hashes.split_at(n / 2);
            Some(crate::hash::node_hash(&perfect_root(l)?, &perfect_root(r)?))
        }
    }
}

/// A [`HashReader`] over tiles, for the tree of `size` leaves.
pub struct TileHashReader<'a, T: TileReader> {
    size: u64,
    tiles: &'a T,
}

impl<'a, T: TileReader> TileHashReader<'a, T> {
    pub fn new(size: u64, tiles: &'a T) -> Self {
        TileHashReader { size, tiles }
    }
}

impl<T: TileReader> HashReader for TileHashReader<'_, T> {
    type Error = T::Error;

    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, T::Error> {
        let ids = tiles_for_nodes(self.size, nodes)?;
        let data = self.tiles.read_tiles(&ids)?;
        let pairs: Vec<(TileId, &[u8])> = ids.iter().copied().zip(data.iter().map(Vec::as_slice)).collect();
        Ok(hashes_from_tiles(self.size, nodes, &pairs)?)
    }
}

/// In-memory tiles, appended to as a table of `(level, index) -> bytes` would be.
/// Counts tiles read, for tests of the O(log n) claim.
#[derive(Debug, Default)]
pub struct MemoryTiles {
    tiles: HashMap<(u8, u64), Vec<u8>>,
    reads: AtomicU64,
}

impl MemoryTiles {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies appends; refuses one whose offset does not match the tile's length.
    pub fn apply(&mut self, appends: &[TileAppend]) -> Result<(), Error> {
        for a in appends {
            let t = self.tiles.entry((a.level, a.index)).or_default();
            if t.len() != usize::from(a.offset) * 32 || t.len() + a.data.len() > usize::from(TILE_WIDTH) * 32 {
                return Err(Error::TileAppendOffset {
                    level: a.level,
                    index: a.index,
                    offset: a.offset,
                });
            }
            t.extend_from_slice(&a.data);
        }
        Ok(())
    }

    pub fn tiles_read(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The stored bytes of a tile, if any.
    pub fn get(&self, level: u8, index: u64) -> Option<&[u8]> {
        self.tiles.get(&(level, index)).map(Vec::as_slice)
    }
}

impl TileReader for MemoryTiles {
    type Error = Error;

    fn read_tiles(&self, tiles: &[TileId]) -> Result<Vec<Vec<u8>>, Error> {
        self.reads.fetch_add(tiles.len() as u64, Ordering::Relaxed);
        tiles
            .iter()
            .map(|t| self.tiles.get(&t.key()).cloned().ok_or(Error::MissingTile(*t)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths_follow_the_spec_examples() {
        let t = TileId {
            level: 0,
            index: 1_234_067,
            width: 256,
        };
        assert_eq!(t.path(), "tile/0/x001/x234/067");
        assert_eq!(
            TileId {
                level: 2,
                index: 5,
                width: 17
            }
            .path(),
            "tile/2/005.p/17"
        );
        for p in ["tile/0/x001/x234/067", "tile/2/005.p/17", "tile/63/000"] {
            assert_eq!(TileId::parse_path(p).unwrap().path(), p);
        }
        for bad in [
            "tile/0/x000/067",
            "tile/0/67",
            "tile/01/000",
            "tile/64/000",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/07",
            "tile/0/001/002",
            "tile/0/x001",
            "tiles/0/000",
        ] {
            assert!(TileId::parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tree_of_70000_has_the_tiles_the_spec_lists() {
        // tlog-tiles: 273 full level-0 tiles, a partial of width 112, one full level-1
        // tile, a partial level-1 tile of width 17, a partial level-2 tile of width 1.
        let tiles = new_tiles(0, 70_000);
        let l0: Vec<_> = tiles.iter().filter(|t| t.level == 0).collect();
        assert_eq!(l0.iter().filter(|t| t.is_full()).count(), 273);
        assert_eq!(l0.last().unwrap().width, 112);
        let l1: Vec<_> = tiles.iter().filter(|t| t.level == 1).collect();
        assert_eq!(l1.len(), 2);
        assert!(l1[0].is_full());
        assert_eq!(l1[1].width, 17);
        let l2: Vec<_> = tiles.iter().filter(|t| t.level == 2).collect();
        assert_eq!(l2.len(), 1);
        assert_eq!(l2[0].width, 1);
        assert_eq!(tiles.len(), 273 + 1 + 2 + 1);
        // A tree of 256 leaves: one full level-0 tile and a level-1 tile of width 1.
        assert_eq!(
            new_tiles(0, 256),
            vec![
                TileId {
                    level: 0,
                    index: 0,
                    width: 256
                },
                TileId {
                    level: 1,
                    index: 0,
                    width: 1
                }
            ]
        );
    }

    #[test]
    fn growing_lists_only_changed_tiles() {
        assert_eq!(new_tiles(256, 256), vec![]);
        assert_eq!(
            new_tiles(256, 257),
            vec![TileId {
                level: 0,
                index: 1,
                width: 1
            }]
        );
        assert_eq!(
            new_tiles(255, 256),
            vec![
                TileId {
                    level: 0,
                    index: 0,
                    width: 256
                },
                TileId {
                    level: 1,
                    index: 0,
                    width: 1
                }
            ]
        );
    }
}
