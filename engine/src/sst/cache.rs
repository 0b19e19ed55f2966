//! A shared cache of verified data blocks, bounded in bytes.
//!
//! Sharded CLOCK: each shard keeps its blocks in a ring with a referenced
//! bit; a hit sets the bit, eviction sweeps the ring clearing bits and
//! evicts the first block found unreferenced. Cached blocks have passed
//! their checksum, so a hit skips both the read and the verification.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

const SHARDS: usize = 16;

/// (table file id, block offset)
pub(crate) type BlockKey = (u64, u64);

struct Slot {
    key: BlockKey,
    block: Bytes,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    slots: Vec<Slot>,
    index: HashMap<BlockKey, usize>,
    hand: usize,
    bytes: usize,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("shard_capacity", &self.shard_capacity)
            .finish()
    }
}

pub(crate) struct BlockCache {
    shards: Vec<Mutex<Shard>>,
    shard_capacity: usize,
}

impl BlockCache {
    pub(crate) fn new(capacity_bytes: usize) -> BlockCache {
        BlockCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_capacity: capacity_bytes / SHARDS,
        }
    }

    fn shard(&self, key: BlockKey) -> &Mutex<Shard> {
        let mix =
            key.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ key.1.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        &self.shards[(mix >> 59) as usize % SHARDS]
    }

    /// Bytes of blocks held.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("block cache lock poisoned").bytes)
            .sum()
    }

    pub(crate) fn get(&self, key: BlockKey) -> Option<Bytes> {
        let mut shard = self.shard(key).lock().expect("block cache lock poisoned");
        let index = *shard.index.get(&key)?;
        let slot = &mut shard.slots[index];
        slot.referenced = true;
        Some(slot.block.clone())
    }

    pub(crate) fn insert(&self, key: BlockKey, block: Bytes) {
        if block.len() > self.shard_capacity {
            return;
        }
        let mut guard = self.shard(key).lock().expect("block cache lock poisoned");
        let shard = &mut *guard;
        if shard.index.contains_key(&key) {
            return;
        }
        while shard.bytes + block.len() > self.shard_capacity && !shard.slots.is_empty() {
            let hand = shard.hand % shard.slots.len();
            if std::mem::take(&mut shard.slots[hand].referenced) {
                shard.hand = hand + 1;
                continue;
            }
            let evicted = shard.slots.swap_remove(hand);
            shard.index.remove(&evicted.key);
            shard.bytes -= evicted.block.len();
            if let Some(moved) = shard.slots.get(hand) {
                shard.index.insert(moved.key, hand);
            }
            shard.hand = hand;
        }
        shard.bytes += block.len();
        shard.index.insert(key, shard.slots.len());
        shard.slots.push(Slot {
            key,
            block,
            referenced: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_within_capacity_and_keeps_what_is_used() {
        let cache = BlockCache::new(SHARDS * 1000);
        let block = || Bytes::from(vec![0u8; 100]);
        for i in 0..1000u64 {
            cache.insert((1, i), block());
            // Block (1, 0) is used all the time.
            assert!(
                cache.get((1, 0)).is_some(),
                "a hot block was evicted at {i}"
            );
        }
        let total: usize = cache.shards.iter().map(|s| s.lock().unwrap().bytes).sum();
        assert!(total <= SHARDS * 1000);
        let cached = (0..1000u64)
            .filter(|i| cache.get((1, *i)).is_some())
            .count();
        assert!(cached < 1000 && cached > 100, "{cached} blocks cached");
        cache.insert((2, 0), Bytes::from(vec![0u8; 5000]));
        assert!(
            cache.get((2, 0)).is_none(),
            "a block larger than a shard is not cached"
        );
    }
}
