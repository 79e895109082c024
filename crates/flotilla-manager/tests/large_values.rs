//! Large values through a manager's objects arrive whole, as plain `Vec<u8>` and as
//! `ByteBuf`, on both sides of the sizes where their length prefix changes form and
//! across the connection's read-ahead.

mod common;

use common::{LONG, with_deadline};
use flotilla_core::codec::ByteBuf;
use flotilla_manager::Manager;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn large_values_through_a_dict_and_a_list_arrive_whole() {
    with_deadline(LONG, "large values", || {
        let manager = Manager::start().unwrap();
        let plain = manager.dict::<u32, Vec<u8>>().unwrap();
        let bytes = manager.dict::<u32, ByteBuf>().unwrap();
        let list = manager.list::<ByteBuf>().unwrap();
        for (i, len) in [0, 250, 251, 65_535, 65_536, 65_537, 4 << 20]
            .into_iter()
            .enumerate()
        {
            let value = pattern(len);
            let key = i as u32;
            plain.set(&key, &value).unwrap();
            bytes.set(&key, &ByteBuf::from(value.clone())).unwrap();
            list.append(&ByteBuf::from(value.clone())).unwrap();
            assert_eq!(
                plain.get(&key).unwrap().as_deref(),
                Some(&value[..]),
                "{len}"
            );
            assert_eq!(bytes.get(&key).unwrap().as_deref(), Some(&value), "{len}");
            assert_eq!(*list.get(i as i64).unwrap(), value, "{len}");
        }
    });
}
