//! The one LEB128 varint codec of the store's binary records (raw results, rollup buckets and
//! hour blocks): seven bits per byte, low bits first, the high bit set on every byte but the
//! last; at most ten bytes for a `u64`.

/// Why a varint does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The bytes end inside it.
    Truncated,
    /// More than ten bytes, or bits beyond 64.
    TooLong,
}

/// Appends `n` as an unsigned LEB128 varint.
pub fn put(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        // Truncation intended: the low seven bits with the continuation bit.
        #[allow(clippy::cast_possible_truncation)]
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    #[allow(clippy::cast_possible_truncation)]
    out.push(n as u8);
}

/// Reads a varint at the front of `bytes`, advancing it past the varint.
///
/// # Errors
/// The bytes end inside it, or it is longer than ten bytes.
pub fn take(bytes: &mut &[u8]) -> Result<u64, VarintError> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first().ok_or(VarintError::Truncated)?;
        *bytes = rest;
        n |= u64::from(b & 0x7f)
            .checked_shl(shift)
            .ok_or(VarintError::TooLong)?;
        if b & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err(VarintError::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_refuse_truncated_or_overlong_input() {
        for n in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put(&mut out, n);
            let mut bytes = out.as_slice();
            assert_eq!(take(&mut bytes), Ok(n));
            assert!(bytes.is_empty());
        }
        let mut max = Vec::new();
        put(&mut max, u64::MAX);
        assert_eq!(max.len(), 10);
        assert_eq!(take(&mut &[0x80u8][..]), Err(VarintError::Truncated));
        assert_eq!(take(&mut &[0xffu8; 11][..]), Err(VarintError::TooLong));
    }
}
