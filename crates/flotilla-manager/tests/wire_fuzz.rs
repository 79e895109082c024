//! The framing round-trips, and the server's decoder survives arbitrary bytes: no panic,
//! no unbounded allocation (the frame limit is checked before allocating, and the codec
//! decodes only as much as the input holds).

use flotilla_manager::testing::decode_request;
use flotilla_manager::wire::{FrameError, read_frame_from, write_frame};
use proptest::prelude::*;

/// Cases for each decoder fuzz: issue 14's 100 000 (about 10 s in a debug build).
const FUZZ_CASES: u32 = 100_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(FUZZ_CASES))]

    #[test]
    fn the_request_decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_request(&bytes);
    }

    #[test]
    fn the_frame_reader_never_panics_and_respects_its_limit(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in 0u64..32) {
        match read_frame_from(&mut &bytes[..], max) {
            Ok(frame) => {
                prop_assert!(frame.len() as u64 <= max);
                let _ = decode_request(&frame);
            }
            Err(FrameError::TooLarge { len, max: m }) => prop_assert!(len > m),
            Err(_) => {}
        }
    }

    /// From valid requests of every kind, with bytes changed, cut or added: the decoder
    /// gets past the first byte and into every field.
    #[test]
    fn the_request_decoder_never_panics_on_mangled_requests(
        which in 0usize..8,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut bytes = flotilla_manager::testing::sample_requests()[which].clone();
        prop_assert!(decode_request(&bytes).is_ok());
        for (at, b) in flips {
            let n = bytes.len();
            bytes[at % n] = b;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        bytes.extend(tail);
        let _ = decode_request(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frames_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20_000), 0..5)) {
        let mut buf = Vec::new();
        for p in &payloads {
            write_frame(&mut buf, p).unwrap();
        }
        let mut r = &buf[..];
        for p in &payloads {
            prop_assert_eq!(&read_frame_from(&mut r, 1 << 20).unwrap(), p);
        }
        prop_assert!(matches!(read_frame_from(&mut r, 1 << 20), Err(FrameError::Closed)));
    }
}

#[test]
fn the_header_is_cpythons_big_endian_signed_length() {
    let mut buf = Vec::new();
    write_frame(&mut buf, &[7u8; 300]).unwrap();
    assert_eq!(&buf[..4], &[0, 0, 1, 44]);
    assert_eq!(buf.len(), 304);
}
