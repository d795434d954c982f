//! The record format of the storage crash harness, shared by the writer
//! (`src/bin/storage-crash-writer/main.rs`) and the checker (`tests/crash_harness.rs`, which
//! includes this file with `#[path]`), so that both agree on it byte for byte.
//!
//! One tree, [`TREE`], holds:
//! - data entries: key `b'd'` + seq as a big-endian u64 (seqs from 1, so keys sort by seq);
//!   value = seq (u64 BE) | payload length (u32 BE) | payload | FNV-1a 64 of seq bytes and
//!   payload (u64 BE). The payload is a pure function of the seq, so the checker can also tell
//!   a value that checksums fine but belongs to another seq.
//! - [`MARKER_KEY`]: the highest seq written, as a u64 BE, updated in the same atomic batch as
//!   the entries it covers; after any crash it must equal the highest data seq present.

/// The tree the harness writes.
pub const TREE: &str = "crash";

/// Key of the "written up to" marker (never starts with `b'd'`).
pub const MARKER_KEY: &[u8] = b"meta/flushed_upto";

/// First byte of every data key.
const DATA_TAG: u8 = b'd';

/// Key of data entry `seq`.
pub fn data_key(seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(DATA_TAG);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The seq of a data key; `None` for any other key.
pub fn key_seq(key: &[u8]) -> Option<u64> {
    match key.split_first() {
        Some((&DATA_TAG, rest)) => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// The marker value for `seq`.
pub fn marker_value(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

/// Reads a marker value.
///
/// # Errors
/// The value is not 8 bytes.
pub fn read_marker(value: &[u8]) -> Result<u64, String> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| format!("marker of {} bytes, want 8", value.len()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// splitmix64: the payload generator.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The payload of `seq`: mostly 16..=1039 bytes, every 199th one 48 KiB (large values take
/// other paths in the engine).
fn payload(seq: u64) -> Vec<u8> {
    let len = if seq % 199 == 0 {
        48 * 1024
    } else {
        16 + (mix(seq) % 1024) as usize
    };
    let mut out = Vec::with_capacity(len + 8);
    let mut state = seq;
    while out.len() < len {
        state = mix(state);
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// FNV-1a, 64 bit, over `parts` in order.
fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    hash
}

/// The value stored for data entry `seq`.
pub fn encode(seq: u64) -> Vec<u8> {
    let payload = payload(seq);
    let seq_bytes = seq.to_be_bytes();
    let mut value = Vec::with_capacity(8 + 4 + payload.len() + 8);
    value.extend_from_slice(&seq_bytes);
    value.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    value.extend_from_slice(&payload);
    value.extend_from_slice(&fnv1a64(&[&seq_bytes, &payload]).to_be_bytes());
    value
}

/// Checks the value found under the data key of `seq`: framing, checksum, the seq it names,
/// and that it is exactly what the writer wrote for that seq.
///
/// # Errors
/// What is wrong with it.
pub fn check(seq: u64, value: &[u8]) -> Result<(), String> {
    if value.len() < 8 + 4 + 8 {
        return Err(format!(
            "seq {seq}: value of {} bytes is truncated",
            value.len()
        ));
    }
    let (seq_bytes, rest) = value.split_at(8);
    let (len_bytes, rest) = rest.split_at(4);
    let len = u32::from_be_bytes(len_bytes.try_into().map_err(|_| "length field")?) as usize;
    if rest.len() != len + 8 {
        return Err(format!(
            "seq {seq}: payload length {len} but {} bytes follow",
            rest.len()
        ));
    }
    let (payload, sum) = rest.split_at(len);
    let want = fnv1a64(&[seq_bytes, payload]).to_be_bytes();
    if sum != want {
        return Err(format!("seq {seq}: bad checksum"));
    }
    let named = u64::from_be_bytes(seq_bytes.try_into().map_err(|_| "seq field")?);
    if named != seq {
        return Err(format!("key seq {seq} holds the value of seq {named}"));
    }
    if value != encode(seq).as_slice() {
        return Err(format!("seq {seq}: checksum fine but content differs"));
    }
    Ok(())
}
