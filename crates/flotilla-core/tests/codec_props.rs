//! The codec round-trips every value and never panics on arbitrary input.

use std::collections::BTreeMap;

use flotilla_core::codec;
use proptest::prelude::*;

type Record = (u64, String, Vec<i32>, Option<bool>);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn round_trip(value in any::<Record>(),
                  map in proptest::collection::btree_map(any::<u8>(), any::<f64>(), 0..8)) {
        let bytes = codec::encode(&(&value, &map)).unwrap();
        prop_assert_eq!(codec::encoded_size(&(&value, &map)).unwrap(), bytes.len() as u64);
        let (back, back_map): (Record, BTreeMap<u8, f64>) =
            codec::decode(&bytes).unwrap();
        prop_assert_eq!(back, value);
        prop_assert_eq!(back_map.len(), map.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = codec::decode::<(String, Vec<u64>, BTreeMap<String, Vec<u8>>)>(&bytes);
        let _ = codec::decode_with_limit::<Vec<Vec<u8>>>(&bytes, 1024);
    }
}

#[test]
fn a_huge_declared_length_is_refused_without_allocating() {
    // A length prefix claiming u64::MAX elements, then nothing.
    let mut bytes = vec![0xfb]; // varint marker: a u64 follows
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(codec::decode::<Vec<u8>>(&bytes).is_err());
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = codec::encode(&7u32).unwrap();
    bytes.push(0);
    assert!(codec::decode::<u32>(&bytes).is_err());
}

#[test]
fn encode_into_appends() {
    let mut buf = b"head".to_vec();
    codec::encode_into(&mut buf, &"tail").unwrap();
    assert_eq!(&buf[..4], b"head");
    assert_eq!(codec::decode::<String>(&buf[4..]).unwrap(), "tail");
}
