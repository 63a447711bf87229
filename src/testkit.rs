//! Deterministic test messages shared by the test suite and the `ringwire __peer` test modes: message
//! `seq` has a length and content derived from `seq` alone, so a receiver in another process can check
//! every byte (and notice a torn, duplicated, reordered or lost message) without being told anything.

/// Length of message `seq` in a stream whose messages are at most `max` bytes.
pub fn len_for(seq: u64, max: usize) -> usize {
    let h = seq.wrapping_mul(0x2545_F491_4F6C_DD1D).rotate_left(29);
    // Mostly small, sometimes up to the maximum: both the common case and the wrap paths get traffic.
    match h % 8 {
        0 => (h >> 8) as usize % (max + 1),
        _ => (h >> 8) as usize % (max.min(256) + 1),
    }
}

/// Writes message `seq` into `buf` (whose length is the message length): the sequence number in the
/// first 8 bytes (as many as fit), then a xorshift stream seeded by `seq` and the length.
pub fn fill(buf: &mut [u8], seq: u64) {
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
    let mut x = seq ^ (buf.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in &mut buf[n..] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// Message `seq` as a vector.
pub fn message(seq: u64, max: usize) -> Vec<u8> {
    let mut v = vec![0; len_for(seq, max)];
    fill(&mut v, seq);
    v
}

/// The sequence number a message claims to be (from its first bytes), if it is long enough to say.
pub fn seq_of(msg: &[u8]) -> Option<u64> {
    (msg.len() >= 8).then(|| u64::from_le_bytes(msg[..8].try_into().expect("8 bytes")))
}

/// Whether `msg` is exactly message `seq` of a stream with maximum `max`.
pub fn check(msg: &[u8], seq: u64, max: usize) -> bool {
    if msg.len() != len_for(seq, max) {
        return false;
    }
    let mut want = vec![0; msg.len()];
    fill(&mut want, seq);
    want == msg
}
