//! Encode once, share with every subscriber: a bounded cache of encoded
//! events keyed by (seq, format).
//!
//! Subscribers near the head of the log ask for the same events at about
//! the same time; the first encodes, the rest clone an `Arc`. The cache is
//! a fixed ring indexed by seq, so its memory does not depend on the
//! number of subscribers or on how far behind any of them is. A slow
//! subscriber whose events have left the ring encodes them itself.

use std::sync::Mutex;

use tidefeed_engine::Seq;

use crate::encode::{EncodedEvent, Format};

const SHARDS: usize = 64;

type Slot = Option<(Seq, Format, EncodedEvent)>;

pub struct SharedEncodings {
    shards: Vec<Mutex<Vec<Slot>>>,
    slots_per_shard: usize,
}

impl SharedEncodings {
    /// A cache of `capacity` encoded events (at least one per shard).
    pub fn new(capacity: usize) -> SharedEncodings {
        let slots_per_shard = capacity.div_ceil(SHARDS).max(1);
        SharedEncodings {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(vec![None; slots_per_shard]))
                .collect(),
            slots_per_shard,
        }
    }

    fn place(&self, seq: Seq) -> (&Mutex<Vec<Slot>>, usize) {
        let shard = (seq % SHARDS as u64) as usize;
        let slot = ((seq / SHARDS as u64) % self.slots_per_shard as u64) as usize;
        (&self.shards[shard], slot)
    }

    /// The cached encoding of `seq` in `format`, or `encode()`'s, cached
    /// if it succeeds.
    pub fn get_or_encode<E>(
        &self,
        seq: Seq,
        format: Format,
        encode: impl FnOnce() -> Result<EncodedEvent, E>,
    ) -> Result<EncodedEvent, E> {
        let (shard, slot) = self.place(seq);
        if let Some((s, f, bytes)) = &shard.lock().expect("encodings lock poisoned")[slot] {
            if *s == seq && *f == format {
                return Ok(bytes.clone());
            }
        }
        // Encoded outside the lock: two racing subscribers may both encode
        // the same event once; neither waits on the other.
        let bytes = encode()?;
        shard.lock().expect("encodings lock poisoned")[slot] = Some((seq, format, bytes.clone()));
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn an_event_is_encoded_once_while_it_is_in_the_ring() {
        let cache = SharedEncodings::new(128);
        let mut encodings = 0;
        for _ in 0..3 {
            let bytes = cache
                .get_or_encode(7, Format::Native, || {
                    encodings += 1;
                    Ok::<_, ()>(Arc::from(&b"seven"[..]))
                })
                .unwrap();
            assert_eq!(&*bytes, b"seven");
        }
        assert_eq!(encodings, 1);
        // Another format is another entry; a seq that maps to the same
        // slot replaces it.
        cache
            .get_or_encode(7, Format::Debezium, || Ok::<_, ()>(Arc::from(&b"dbz"[..])))
            .unwrap();
        let again = cache
            .get_or_encode(7, Format::Native, || Ok::<_, ()>(Arc::from(&b"again"[..])))
            .unwrap();
        assert_eq!(&*again, b"again");
        // A failed encoding is not cached.
        assert_eq!(
            cache.get_or_encode(9, Format::Native, || Err("bad")),
            Err("bad")
        );
        let later = cache
            .get_or_encode(9, Format::Native, || Ok::<_, ()>(Arc::from(&b"nine"[..])))
            .unwrap();
        assert_eq!(&*later, b"nine");
    }
}
