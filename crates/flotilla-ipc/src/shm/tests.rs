//! The volatile copies at every alignment and length, and name checking.

use proptest::prelude::*;

use super::{SharedMemory, shm_path};

proptest! {
    #[test]
    fn copies_round_trip_at_any_offset(offset in 0usize..64, data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let shm = SharedMemory::new(300).unwrap();
        shm.write_at(offset, &data).unwrap();
        let mut back = vec![0; data.len()];
        shm.read_at(offset, &mut back).unwrap();
        prop_assert_eq!(&back, &data);
        let all = shm.to_vec();
        prop_assert!(all[..offset].iter().all(|&b| b == 0));
        prop_assert_eq!(&all[offset..offset + data.len()], &data[..]);
        prop_assert!(all[offset + data.len()..].iter().all(|&b| b == 0));
    }
}

#[test]
fn names_are_checked() {
    assert_eq!(shm_path("/a").unwrap(), ("a".to_owned(), "/a".to_owned()));
    assert_eq!(shm_path("a").unwrap(), ("a".to_owned(), "/a".to_owned()));
    for bad in ["", "/", "a/b", "//a", "a\0b", ".", ".."] {
        assert!(shm_path(bad).is_err(), "{bad:?}");
    }
    assert!(shm_path(&"x".repeat(255)).is_ok());
    assert!(shm_path(&"x".repeat(256)).is_err());
}

#[test]
fn ranges_past_the_end_are_errors() {
    let shm = SharedMemory::new(8).unwrap();
    assert!(shm.write_at(8, &[]).is_ok());
    assert!(shm.write_at(9, &[]).is_err());
    assert!(shm.write_at(usize::MAX, &[1]).is_err());
    assert!(shm.read_at(4, &mut [0; 5]).is_err());
    assert!(SharedMemory::new(0).is_err());
}
