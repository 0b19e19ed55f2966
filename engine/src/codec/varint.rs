//! LEB128 unsigned varints and a bounds-checked reader for decoders of bytes
//! that come from disk.

pub(crate) fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An optional byte run: varint `len + 1` then the bytes, or a single 0
/// for none. Used for before- and after-images on disk.
pub(crate) fn put_opt_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(bytes) => {
            put_u64(out, bytes.len() as u64 + 1);
            out.extend_from_slice(bytes);
        }
    }
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over untrusted bytes. Every read is bounds-checked and reports
/// a static description of what was being read when input ran out.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

pub(crate) type DecodeResult<T> = Result<T, &'static str>;

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> DecodeResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(what)?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> DecodeResult<u8> {
        Ok(self.bytes(1, what)?[0])
    }

    pub(crate) fn u64_le(&mut self, what: &'static str) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(
            self.bytes(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> DecodeResult<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8(what)?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(what);
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(what)
    }

    /// The inverse of [`put_opt_bytes`].
    pub(crate) fn opt_bytes(&mut self, what: &'static str) -> DecodeResult<Option<&'a [u8]>> {
        match self.varint(what)? {
            0 => Ok(None),
            n => Ok(Some(
                self.bytes(usize::try_from(n - 1).map_err(|_| what)?, what)?,
            )),
        }
    }

    /// A varint length followed by that many bytes.
    pub(crate) fn len_prefixed(&mut self, what: &'static str) -> DecodeResult<&'a [u8]> {
        let len = usize::try_from(self.varint(what)?).map_err(|_| what)?;
        self.bytes(len, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_overlong_input() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            put_u64(&mut buf, v);
            let mut r = Reader::new(&buf);
            assert_eq!(r.varint("v"), Ok(v));
            assert!(r.is_empty());
        }
        assert_eq!(Reader::new(&[0xff; 11]).varint("v"), Err("v"));
        assert_eq!(Reader::new(&[0x80]).varint("v"), Err("v"));
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
