//! The checksummed envelope around every stored value.
//!
//! Layout: `[record format u8][crc32 of payload, u32 BE][payload]`. The format byte lets a
//! later on-disk format change the envelope record by record; the checksum turns silent disk
//! damage into a typed, per-record error instead of a garbled object handed to a client.

/// Envelope format written by this binary.
pub const RECORD_FORMAT: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 5;

/// Why a stored record could not be read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordDamage {
    Short(usize),
    UnknownFormat(u8),
    Checksum { stored: u32, computed: u32 },
}

impl std::fmt::Display for RecordDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordDamage::Short(n) => write!(f, "record too short ({n} bytes)"),
            RecordDamage::UnknownFormat(b) => write!(f, "unknown record format byte {b}"),
            RecordDamage::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
        }
    }
}

/// Wraps a payload in the envelope.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks the envelope and returns the payload.
pub fn open(record: &[u8]) -> Result<&[u8], RecordDamage> {
    if record.len() < HEADER_LEN {
        return Err(RecordDamage::Short(record.len()));
    }
    if record[0] != RECORD_FORMAT {
        return Err(RecordDamage::UnknownFormat(record[0]));
    }
    let stored = u32::from_be_bytes([record[1], record[2], record[3], record[4]]);
    let payload = &record[HEADER_LEN..];
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(RecordDamage::Checksum { stored, computed });
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn damage_is_named() {
        assert_eq!(open(b""), Err(RecordDamage::Short(0)));
        assert_eq!(open(&[1, 0, 0]), Err(RecordDamage::Short(3)));
        let mut r = seal(b"hello");
        r[0] = 9;
        assert_eq!(open(&r), Err(RecordDamage::UnknownFormat(9)));
        let mut r = seal(b"hello");
        r[6] ^= 0x01;
        assert!(matches!(open(&r), Err(RecordDamage::Checksum { .. })));
    }

    #[test]
    fn empty_payload_is_valid() {
        assert_eq!(open(&seal(b"")), Ok(&b""[..]));
    }

    proptest! {
        #[test]
        fn round_trip(p in prop::collection::vec(any::<u8>(), 0..300)) {
            let sealed = seal(&p);
            prop_assert_eq!(open(&sealed), Ok(&p[..]));
        }

        /// Any single flipped bit anywhere in the record is detected.
        #[test]
        fn single_bit_flips_are_caught(p in prop::collection::vec(any::<u8>(), 0..64), bit in any::<prop::sample::Index>()) {
            let mut r = seal(&p);
            let i = bit.index(r.len() * 8);
            r[i / 8] ^= 1 << (i % 8);
            prop_assert!(open(&r).is_err());
        }
    }
}
