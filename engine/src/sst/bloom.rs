//! A bloom filter over user keys, with a stable hash (crc32c, widened by
//! the splitmix64 finaliser) so filters written by one build are read
//! correctly by another. Two seeded crc32c values would not do: CRC is
//! linear, so they differ by a constant and the probes correlate.

pub(crate) struct BloomBuilder {
    hashes: Vec<(u32, u32)>,
    bits_per_key: usize,
}

fn hash_pair(key: &[u8]) -> (u32, u32) {
    let mut z = u64::from(crc32c::crc32c(key)) ^ ((key.len() as u64) << 32);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z as u32, (z >> 32) as u32 | 1)
}

impl BloomBuilder {
    pub(crate) fn new(bits_per_key: usize) -> BloomBuilder {
        BloomBuilder {
            hashes: Vec::new(),
            bits_per_key,
        }
    }

    pub(crate) fn add(&mut self, key: &[u8]) {
        self.hashes.push(hash_pair(key));
    }

    /// Serialised filter: u8 probe count, then the bit array.
    pub(crate) fn finish(self) -> Vec<u8> {
        let bits = (self.hashes.len() * self.bits_per_key).max(64);
        let bytes = bits.div_ceil(8);
        let bits = bytes * 8;
        // ln(2) * bits per key probes minimise the false-positive rate.
        let probes = ((self.bits_per_key as f64 * 0.69) as u8).clamp(1, 30);
        let mut out = vec![0u8; 1 + bytes];
        out[0] = probes;
        for (h1, h2) in self.hashes {
            let mut h = h1;
            for _ in 0..probes {
                let bit = h as usize % bits;
                out[1 + bit / 8] |= 1 << (bit % 8);
                h = h.wrapping_add(h2);
            }
        }
        out
    }
}

/// A serialised filter, checked without copying.
pub(crate) fn may_contain(filter: &[u8], key: &[u8]) -> bool {
    let Some((&probes, bitmap)) = filter.split_first() else {
        return true;
    };
    if bitmap.is_empty() {
        return true;
    }
    let bits = bitmap.len() * 8;
    let (mut h, h2) = hash_pair(key);
    for _ in 0..probes {
        let bit = h as usize % bits;
        if bitmap[bit / 8] & (1 << (bit % 8)) == 0 {
            return false;
        }
        h = h.wrapping_add(h2);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut builder = BloomBuilder::new(10);
        for i in 0..10_000u32 {
            builder.add(&i.to_be_bytes());
        }
        let filter = builder.finish();
        assert!((0..10_000u32).all(|i| may_contain(&filter, &i.to_be_bytes())));
        let false_positives = (10_000..110_000u32)
            .filter(|i| may_contain(&filter, &i.to_be_bytes()))
            .count();
        assert!(
            false_positives < 2_000,
            "{false_positives} false positives in 100k (expected ~1%)"
        );
    }
}
