//! The server's dict and list against a model (Python's semantics, written with std
//! collections), over random operation sequences; and the public types' Send + Sync.

mod common;

use common::TempDir;
use flotilla_manager::{
    AuthKey, CallError, Client, DictProxy, ListProxy, LockProxy, Manager, NamespaceProxy,
    QueueProxy, Server, Token, connect,
};
use proptest::prelude::*;

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Manager>();
    check::<Client>();
    check::<DictProxy<String, Vec<u8>>>();
    check::<ListProxy<f64>>();
    check::<NamespaceProxy>();
    check::<LockProxy>();
    check::<QueueProxy<String>>();
    check::<Token>();
    check::<CallError>();
    check::<flotilla_manager::ConnectError>();
    check::<flotilla_manager::StartError>();
    check::<flotilla_manager::AuthError>();
    check::<flotilla_manager::BindError>();
}

#[derive(Debug, Clone)]
enum DictOp {
    Set(u8, u16),
    Del(u8),
    Pop(u8),
    SetDefault(u8, u16),
    Add(u8, i8),
}

fn dict_op() -> impl Strategy<Value = DictOp> {
    prop_oneof![
        (0u8..8, any::<u16>()).prop_map(|(k, v)| DictOp::Set(k, v)),
        (0u8..8).prop_map(DictOp::Del),
        (0u8..8).prop_map(DictOp::Pop),
        (0u8..8, any::<u16>()).prop_map(|(k, v)| DictOp::SetDefault(k, v)),
        (0u8..8, any::<i8>()).prop_map(|(k, d)| DictOp::Add(k, d)),
    ]
}

/// Python's dict: insertion-ordered; re-setting a key keeps its place.
fn model_set(model: &mut Vec<(u8, i64)>, k: u8, v: i64) {
    match model.iter_mut().find(|e| e.0 == k) {
        Some(e) => e.1 = v,
        None => model.push((k, v)),
    }
}

fn model_remove(model: &mut Vec<(u8, i64)>, k: u8) -> Option<i64> {
    let pos = model.iter().position(|e| e.0 == k)?;
    Some(model.remove(pos).1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn dict_matches_pythons(ops in proptest::collection::vec(dict_op(), 0..40)) {
        let dir = TempDir::new("model-dict");
        let server = Server::builder(dir.sock("m.sock")).bind().unwrap().spawn();
        let c = connect(server.address(), None).unwrap();
        let d: DictProxy<u8, i64> = c.dict().unwrap();
        let mut model: Vec<(u8, i64)> = Vec::new();
        for op in ops {
            match op {
                DictOp::Set(k, v) => {
                    d.set(&k, &i64::from(v)).unwrap();
                    model_set(&mut model, k, i64::from(v));
                }
                DictOp::Del(k) => {
                    let found = model_remove(&mut model, k).is_some();
                    prop_assert_eq!(d.del(&k).is_ok(), found);
                }
                DictOp::Pop(k) => prop_assert_eq!(d.pop(&k).unwrap(), model_remove(&mut model, k)),
                DictOp::SetDefault(k, v) => {
                    let expect = match model.iter().find(|e| e.0 == k) {
                        Some(e) => e.1,
                        None => {
                            model.push((k, i64::from(v)));
                            i64::from(v)
                        }
                    };
                    prop_assert_eq!(d.setdefault(&k, &i64::from(v)).unwrap(), expect);
                }
                DictOp::Add(k, delta) => {
                    let now = model.iter().find(|e| e.0 == k).map_or(0, |e| e.1) + i64::from(delta);
                    model_set(&mut model, k, now);
                    prop_assert_eq!(d.add(&k, i64::from(delta)).unwrap(), now);
                }
            }
            prop_assert_eq!(d.items().unwrap(), model.clone());
        }
        drop(server);
    }

    #[test]
    fn list_matches_pythons(ops in proptest::collection::vec((0u8..5, -6i64..6, any::<u8>()), 0..40)) {
        let dir = TempDir::new("model-list");
        let server = Server::builder(dir.sock("m.sock")).bind().unwrap().spawn();
        let c = connect(server.address(), None).unwrap();
        let l: ListProxy<u8> = c.list().unwrap();
        let mut model: Vec<u8> = Vec::new();
        let index = |model: &Vec<u8>, i: i64| {
            let len = model.len() as i64;
            let j = if i < 0 { i + len } else { i };
            (0..len).contains(&j).then_some(j as usize)
        };
        for (op, i, x) in ops {
            match op {
                0 => {
                    l.append(&x).unwrap();
                    model.push(x);
                }
                1 => match index(&model, i) {
                    Some(j) => prop_assert_eq!(l.get(i).unwrap(), model[j]),
                    None => prop_assert!(l.get(i).is_err()),
                },
                2 => match index(&model, i) {
                    Some(j) => {
                        l.set(i, &x).unwrap();
                        model[j] = x;
                    }
                    None => prop_assert!(l.set(i, &x).is_err()),
                },
                3 => match index(&model, i) {
                    Some(j) => prop_assert_eq!(l.pop(Some(i)).unwrap(), model.remove(j)),
                    None => prop_assert!(l.pop(Some(i)).is_err()),
                },
                _ => {
                    let len = model.len() as i64;
                    let j = if i < 0 { (i + len).max(0) } else { i.min(len) };
                    l.insert(i, &x).unwrap();
                    model.insert(j as usize, x);
                }
            }
            prop_assert_eq!(l.to_vec().unwrap(), model.clone());
        }
        drop(server);
    }
}

#[test]
fn an_authkey_round_trips_through_serde_and_hides_in_debug() {
    let key = AuthKey::new(b"hidden".to_vec());
    assert!(!format!("{key:?}").contains("hidden"));
    let bytes = flotilla_core::codec::encode(&key).unwrap();
    assert_eq!(
        flotilla_core::codec::decode::<AuthKey>(&bytes).unwrap(),
        key
    );
}
