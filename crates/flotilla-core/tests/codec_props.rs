//! The codec round-trips every value and never panics on arbitrary input.

use std::collections::BTreeMap;

use flotilla_core::codec::{self, ByteBuf};
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
        let _ = codec::decode::<(ByteBuf, String)>(&bytes);
    }

    /// `ByteBuf` and `#[serde(with = "codec::bytes")]` are a speed-up only: the wire bytes
    /// are a plain `Vec<u8>`'s, so each form decodes what the other encoded.
    #[test]
    fn byte_strings_encode_as_a_plain_vec_does(data in proptest::collection::vec(any::<u8>(), 0..2048),
                                               tag in any::<u32>()) {
        let plain = codec::encode(&(tag, &data)).unwrap();
        let buf = codec::encode(&(tag, ByteBuf::from(data.clone()))).unwrap();
        let field = codec::encode(&Tagged { tag, data: data.clone() }).unwrap();
        prop_assert_eq!(&buf, &plain);
        prop_assert_eq!(&field, &plain);
        let (t, back): (u32, ByteBuf) = codec::decode(&plain).unwrap();
        prop_assert_eq!((t, back.into_vec()), (tag, data.clone()));
        let back: Tagged = codec::decode(&plain).unwrap();
        prop_assert_eq!(back.data, data);
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Tagged {
    tag: u32,
    #[serde(with = "codec::bytes")]
    data: Vec<u8>,
}

#[test]
fn byte_strings_of_every_length_class_round_trip() {
    // The length prefix is a varint: one byte below 251, then 2, 4 and 8 byte forms.
    for len in [0, 1, 250, 251, 252, 65_535, 65_536, 65_537, (1 << 20) + 3] {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let bytes = codec::encode(&ByteBuf::from(data.clone())).unwrap();
        assert_eq!(bytes, codec::encode(&data).unwrap(), "length {len}");
        let back: ByteBuf = codec::decode(&bytes).unwrap();
        assert_eq!(*back, data, "length {len}");
        // Cut short by one byte: an error, not a panic or a short value.
        assert!(
            codec::decode::<ByteBuf>(&bytes[..bytes.len() - 1]).is_err(),
            "length {len}"
        );
    }
}

#[test]
fn a_byte_string_declaring_more_than_it_holds_is_refused_without_allocating() {
    let mut bytes = vec![0xfb];
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    bytes.extend_from_slice(&[1, 2, 3]);
    assert!(codec::decode::<ByteBuf>(&bytes).is_err());
    assert!(codec::decode::<Tagged>(&[&[5u8][..], &bytes].concat()).is_err());
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
