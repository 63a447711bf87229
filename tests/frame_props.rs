//! Property tests of the stream codec: any list of payloads, cut into any pieces, decodes to the same
//! list; any bytes at all decode without panicking and within the decoder's memory bound.

use proptest::prelude::*;
use ringwire::transport::codec::{decode_datagram, encode_into, FrameDecoder, FrameError};
use ringwire::wire::{Kind, HEADER_LEN};

/// Feeds `wire` to a decoder in pieces of the given sizes (cycled), collecting payloads.
fn decode_chunked(dec: &mut FrameDecoder, wire: &[u8], cuts: &[usize]) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut out = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = cuts[i % cuts.len()].clamp(1, rest.len());
        i += 1;
        let mut piece = &rest[..n];
        rest = &rest[n..];
        while !piece.is_empty() {
            let took = dec.push(piece);
            piece = &piece[took..];
            assert!(dec.allocated() <= dec.max_buffer(), "{} > {}", dec.allocated(), dec.max_buffer());
            while let Some(f) = dec.next_frame()? {
                assert_eq!(f.kind, Kind::Data);
                out.push(f.payload.to_vec());
            }
        }
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip_any_chunking(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..40),
        cuts in prop::collection::vec(1usize..64, 1..10),
    ) {
        let mut wire = Vec::new();
        for p in &payloads {
            encode_into(&mut wire, Kind::Data, p).unwrap();
        }
        let mut dec = FrameDecoder::new(300);
        let got = decode_chunked(&mut dec, &wire, &cuts).unwrap();
        prop_assert_eq!(got, payloads.clone());
        prop_assert!(dec.finish().is_ok());
        // One byte at a time too.
        let mut dec = FrameDecoder::new(300);
        prop_assert_eq!(decode_chunked(&mut dec, &wire, &[1]).unwrap(), payloads);
    }

    #[test]
    fn cut_short_is_truncated(payload in prop::collection::vec(any::<u8>(), 1..200), keep in 1usize..1000) {
        let mut wire = Vec::new();
        encode_into(&mut wire, Kind::Data, &payload).unwrap();
        let keep = 1 + keep % (wire.len() - 1);
        let mut dec = FrameDecoder::new(1000);
        prop_assert_eq!(decode_chunked(&mut dec, &wire[..keep], &[7]).unwrap(), Vec::<Vec<u8>>::new());
        // Before the header is whole, only the header's missing bytes are known.
        let missing = if keep < HEADER_LEN { HEADER_LEN - keep } else { wire.len() - keep };
        prop_assert_eq!(dec.finish(), Err(FrameError::Truncated { missing }));
    }

    #[test]
    fn garbage_never_panics_and_stays_bounded(
        garbage in prop::collection::vec(any::<u8>(), 0..4096),
        cuts in prop::collection::vec(1usize..512, 1..5),
        max in 0usize..2048,
    ) {
        let mut dec = FrameDecoder::new(max);
        // Whatever happens (frames, oversize skips, a bad header), no panic and the bound holds.
        let mut rest: &[u8] = &garbage;
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            i += 1;
            let took = dec.push(&rest[..n]);
            prop_assert!(dec.allocated() <= dec.max_buffer());
            loop {
                match dec.next_frame() {
                    Ok(Some(f)) => prop_assert!(f.payload.len() <= max),
                    Ok(None) => break,
                    Err(FrameError::Oversize { len, max: m }) => prop_assert!(len > m),
                    Err(_) => break,
                }
            }
            if took == 0 && dec.finish().is_err() && dec.next_frame().is_err() {
                break; // out of sync: the decoder refuses everything from now on
            }
            rest = &rest[took..];
        }
        let _ = dec.finish();
        let _ = decode_datagram(&garbage, max);
    }

    #[test]
    fn huge_claims_allocate_nothing_extra(len in (1u32 << 20)..u32::MAX, tail in prop::collection::vec(any::<u8>(), 0..5000)) {
        let mut wire = ringwire::wire::FrameHeader::data(len).to_bytes().to_vec();
        wire.extend_from_slice(&tail);
        let mut dec = FrameDecoder::new(1024);
        prop_assert_eq!(dec.push(&wire), wire.len());
        prop_assert_eq!(dec.next_frame().unwrap_err(), FrameError::Oversize { len: len as usize, max: 1024 });
        prop_assert!(dec.allocated() <= dec.max_buffer());
        prop_assert_eq!(dec.buffered(), 0, "an oversize payload is skipped, not stored");
    }
}

#[test]
fn oversize_frame_is_skipped_and_the_next_one_decodes() {
    let mut wire = Vec::new();
    encode_into(&mut wire, Kind::Data, &[1; 100]).unwrap();
    encode_into(&mut wire, Kind::Data, b"after").unwrap();
    let mut dec = FrameDecoder::new(10);
    for b in wire.chunks(3) {
        assert_eq!(dec.push(b), b.len());
        match dec.next_frame() {
            Err(FrameError::Oversize { len: 100, max: 10 }) | Ok(None) => {}
            Ok(Some(f)) => assert_eq!(f.payload, b"after"),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(dec.finish().is_ok());
}

#[test]
fn pad_and_bad_headers_stop_a_stream() {
    let mut wire = Vec::new();
    encode_into(&mut wire, Kind::Pad, b"").unwrap();
    let mut dec = FrameDecoder::new(10);
    dec.push(&wire);
    assert_eq!(dec.next_frame().unwrap_err(), FrameError::UnexpectedKind(Kind::Pad));
    assert_eq!(dec.next_frame().unwrap_err(), FrameError::UnexpectedKind(Kind::Pad), "stays failed");
    let mut dec = FrameDecoder::new(10);
    dec.push(&[0; HEADER_LEN]);
    assert!(matches!(dec.next_frame(), Err(FrameError::BadHeader(_))));
}

#[test]
fn datagrams_must_match_their_header() {
    let mut d = Vec::new();
    encode_into(&mut d, Kind::Data, b"abc").unwrap();
    assert_eq!(decode_datagram(&d, 10).unwrap().payload, b"abc");
    assert_eq!(decode_datagram(&d[..5], 10), Err(FrameError::Truncated { missing: 3 }));
    assert_eq!(decode_datagram(&d[..10], 10), Err(FrameError::Truncated { missing: 1 }));
    d.push(0);
    assert_eq!(decode_datagram(&d, 10), Err(FrameError::TrailingBytes { extra: 1 }));
    assert_eq!(decode_datagram(&d[..11], 2), Err(FrameError::Oversize { len: 3, max: 2 }));
}

#[test]
fn ext_is_carried_and_checked_against_len() {
    use ringwire::transport::codec::encode_parts_into;
    use ringwire::wire::{FrameHeader, HeaderDecodeError};
    let mut wire = Vec::new();
    encode_parts_into(&mut wire, Kind::Data, 4, &[b"chat", b" msg"]).unwrap();
    assert_eq!(&wire[6..8], &4u16.to_le_bytes(), "ext is bytes 6..8, little-endian");
    let mut dec = FrameDecoder::new(100);
    dec.push(&wire);
    let f = dec.next_frame().unwrap().unwrap();
    assert_eq!((f.ext, f.payload), (4, &b"chat msg"[..]));
    assert_eq!(decode_datagram(&wire, 100).unwrap().ext, 4);
    // Encoding refuses ext > len.
    assert!(matches!(
        encode_parts_into(&mut Vec::new(), Kind::Data, 9, &[b"abc"]),
        Err(FrameError::BadHeader(HeaderDecodeError::ExtTooLong { ext: 9, len: 3 }))
    ));
    // A header with ext > len: a bad datagram, and a broken stream (nothing after it can be trusted).
    let bad = FrameHeader { len: 2, kind: Kind::Data, ext: 3 }.to_word().to_le_bytes();
    let mut d = bad.to_vec();
    d.extend_from_slice(b"ab");
    let e = FrameError::BadHeader(HeaderDecodeError::ExtTooLong { ext: 3, len: 2 });
    assert_eq!(decode_datagram(&d, 100), Err(e));
    let mut dec = FrameDecoder::new(100);
    dec.push(&d);
    assert_eq!(dec.next_frame().unwrap_err(), e);
    assert_eq!(dec.next_frame().unwrap_err(), e, "stays failed");
}
