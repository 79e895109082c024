//! Proxies crossing process boundaries as serde values (each carrying its manager's
//! address and authkey), held alive in transit, and objects registered by name.

mod common;

use common::{LONG, wait_for, with_deadline};
use flotilla_core::codec;
use flotilla_manager::{
    Address, AuthKey, DictProxy, ListProxy, Manager, QueueProxy, RemoteErrorKind, Server, connect,
};
use flotilla_process::{Pool, Process};

fn change((d, l): (DictProxy<String, i64>, ListProxy<u32>)) -> usize {
    d.set(&"child".into(), &i64::from(std::process::id()))
        .unwrap();
    l.reverse().unwrap();
    l.len().unwrap()
}

#[test]
fn proxies_passed_to_a_child_and_a_pool_task_reach_their_objects() {
    with_deadline(LONG, "proxies to children", || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<String, i64>().unwrap();
        let l = manager.list::<u32>().unwrap();
        l.extend(&[1, 2, 3]).unwrap();
        let child = Process::new(change, (d.clone(), l.clone()))
            .start()
            .unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), 3);
        assert_eq!(l.to_vec().unwrap(), [3, 2, 1]);
        let pool = Pool::new(1).unwrap();
        assert_eq!(pool.apply(change, (d.clone(), l.clone())).unwrap(), 3);
        assert_eq!(l.to_vec().unwrap(), [1, 2, 3]);
        assert!(d.get(&"child".into()).unwrap().is_some());
        pool.close();
        pool.join().unwrap();
        // Every token was claimed and every child's reference released.
        assert_eq!(manager.number_of_objects().unwrap(), 2);
    });
}

#[test]
fn a_proxy_in_transit_keeps_its_object_alive_until_claimed() {
    with_deadline(LONG, "in transit", || {
        let manager = Manager::start().unwrap();
        let l = manager.list::<u32>().unwrap();
        l.append(&7).unwrap();
        let bytes = codec::encode(&l).unwrap();
        drop(l);
        // Only the token in transit holds it now.
        assert_eq!(manager.number_of_objects().unwrap(), 1);
        let back: ListProxy<u32> = codec::decode(&bytes).unwrap();
        assert_eq!(back.to_vec().unwrap(), [7]);
        // A token is claimed once.
        let again = codec::decode::<ListProxy<u32>>(&bytes).unwrap_err();
        assert!(again.to_string().contains("BadTicket"), "{again}");
        drop(back);
        assert_eq!(manager.number_of_objects().unwrap(), 0);
    });
}

#[test]
fn a_received_proxy_of_another_type_is_refused() {
    with_deadline(LONG, "wrong type", || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<u8, u8>().unwrap();
        let bytes = codec::encode(&d).unwrap();
        let err = codec::decode::<ListProxy<u8>>(&bytes).unwrap_err();
        assert!(err.to_string().contains("`dict`"), "{err}");
    });
}

fn read_both((a, b): (ListProxy<String>, ListProxy<String>)) -> (Vec<String>, Vec<String>) {
    (a.to_vec().unwrap(), b.to_vec().unwrap())
}

/// Two managers with different keys: a child that knows neither key reaches both, each
/// with the key its proxy carries.
#[test]
fn each_proxy_carries_its_own_managers_address_and_key() {
    with_deadline(LONG, "two managers", || {
        let m1 = Manager::builder()
            .authkey(AuthKey::new(b"one".to_vec()))
            .start()
            .unwrap();
        let m2 = Manager::builder()
            .authkey(AuthKey::new(b"two".to_vec()))
            .start()
            .unwrap();
        let a = m1.list::<String>().unwrap();
        let b = m2.list::<String>().unwrap();
        a.append(&"from one".into()).unwrap();
        b.append(&"from two".into()).unwrap();
        let child = Process::new(read_both, (a, b)).start().unwrap();
        assert_eq!(
            child.join_timeout(LONG).unwrap(),
            (vec!["from one".to_owned()], vec!["from two".to_owned()])
        );
    });
}

fn send_a_list(q: QueueProxy<ListProxy<u32>>) {
    let client = q.object().client().clone();
    let l = client.list::<u32>().unwrap();
    l.extend(&[4, 5]).unwrap();
    q.put(&l).unwrap();
    // The child exits, dropping its reference: the proxy in the queue holds the list.
}

#[test]
fn a_proxy_put_on_a_queue_by_a_child_that_exits_stays_usable() {
    with_deadline(LONG, "proxy through a queue", || {
        let manager = Manager::start().unwrap();
        let q = manager.queue::<ListProxy<u32>>(0).unwrap();
        Process::new(send_a_list, q.clone())
            .start()
            .unwrap()
            .join_timeout(LONG)
            .unwrap();
        let l = q.get_timeout(LONG).unwrap().unwrap();
        assert_eq!(l.to_vec().unwrap(), [4, 5]);
    });
}

#[test]
fn objects_registered_by_name_are_one_object_for_every_client() {
    with_deadline(LONG, "named objects", || {
        let key = AuthKey::new(b"k".to_vec());
        let server = Server::builder("127.0.0.1:0".parse::<Address>().unwrap())
            .authkey(key.clone())
            .register_object("get_queue", "Queue", &0u64)
            .register_object("get_counts", "dict", &Vec::<(Vec<u8>, Vec<u8>)>::new())
            .bind()
            .unwrap()
            .spawn();
        let a = connect(server.address(), Some(&key)).unwrap();
        let b = connect(server.address(), Some(&key)).unwrap();
        let qa: QueueProxy<u32> = a.get("get_queue").unwrap();
        let qb: QueueProxy<u32> = b.get("get_queue").unwrap();
        qa.put(&1).unwrap();
        assert_eq!(qb.get_timeout(LONG).unwrap(), Some(1));
        // Dropping every proxy does not free it: the server holds what it registered.
        drop((qa, qb));
        let again: QueueProxy<u32> = b.get("get_queue").unwrap();
        again.put(&2).unwrap();
        assert_eq!(again.try_get().unwrap(), Some(2));
        let counts: DictProxy<String, i64> = a.get("get_counts").unwrap();
        assert_eq!(counts.add(&"n".into(), 2).unwrap(), 2);

        let missing = a.get::<QueueProxy<u32>>("get_nothing").unwrap_err();
        assert_eq!(missing.remote_kind(), Some(RemoteErrorKind::NoSuchName));
        let wrong = a.get::<ListProxy<u32>>("get_queue").unwrap_err();
        assert_eq!(wrong.remote_kind(), Some(RemoteErrorKind::BadArguments));
        assert!(matches!(
            Server::builder("127.0.0.1:0".parse::<Address>().unwrap())
                .register_object("get_x", "NoSuchType", &())
                .bind(),
            Err(flotilla_manager::BindError::Object { .. })
        ));
    });
}

/// A child: reads the list proxy stored in `d["inner"]` and appends `x` to it.
fn append_to_stored((d, x): (DictProxy<String, ListProxy<i32>>, i32)) -> usize {
    let inner = d.get(&"inner".into()).unwrap().expect("the stored proxy");
    inner.append(&x).unwrap();
    inner.len().unwrap()
}

#[test]
fn a_proxy_stored_in_a_dict_keeps_working_for_every_reader_until_removed() {
    with_deadline(LONG, "stored proxies", || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<String, ListProxy<i32>>().unwrap();
        {
            let inner = manager.list::<i32>().unwrap();
            d.set(&"inner".into(), &inner).unwrap();
        }
        // Our own proxy is gone: the stored value holds the list.
        assert_eq!(manager.number_of_objects().unwrap(), 2);
        let children: Vec<_> = [1, 2]
            .into_iter()
            .map(|x| {
                Process::new(append_to_stored, (d.clone(), x))
                    .start()
                    .unwrap()
            })
            .collect();
        for child in children {
            child.join_timeout(LONG).unwrap();
        }
        // Every reader gets a reference of its own, here too, and again.
        for _ in 0..2 {
            let inner = d.get(&"inner".into()).unwrap().unwrap();
            let mut items = inner.to_vec().unwrap();
            items.sort();
            assert_eq!(items, [1, 2]);
        }
        assert_eq!(d.values().unwrap().len(), 1);
        assert_eq!(manager.number_of_objects().unwrap(), 2);

        // Overwriting the value lets the old list go (the new one is held instead), once
        // the server has also released the children's references to it, which it does
        // when it reads the end of their connections, on its own time: a child's join
        // can return first.
        d.set(&"inner".into(), &manager.list::<i32>().unwrap())
            .unwrap();
        wait_for("the old list freed", || {
            manager.number_of_objects().unwrap() == 2
        });
        // Deleting it lets the new one go.
        d.del(&"inner".into()).unwrap();
        assert_eq!(manager.number_of_objects().unwrap(), 1);

        // A popped value's proxy is the taker's: claimed once, and freed with it.
        let l = manager.list::<i32>().unwrap();
        l.append(&5).unwrap();
        d.set(&"p".into(), &l).unwrap();
        drop(l);
        let popped = d.pop(&"p".into()).unwrap().unwrap();
        assert_eq!(popped.to_vec().unwrap(), [5]);
        drop(popped);
        assert_eq!(manager.number_of_objects().unwrap(), 1);
    });
}

#[test]
fn proxies_stored_in_a_list_and_a_namespace_are_read_many_times_and_freed_with_them() {
    with_deadline(LONG, "stored in list and namespace", || {
        let manager = Manager::start().unwrap();
        let other = connect(manager.address(), Some(manager.authkey())).unwrap();
        let l = manager.list::<DictProxy<u8, u8>>().unwrap();
        let ns = manager.namespace().unwrap();
        {
            let d = manager.dict::<u8, u8>().unwrap();
            l.append(&d).unwrap();
            ns.set("d", &d).unwrap();
        }
        l.get(0).unwrap().set(&1, &1).unwrap();
        ns.get::<DictProxy<u8, u8>>("d")
            .unwrap()
            .set(&2, &2)
            .unwrap();
        // From another connection, twice.
        let l2 = ListProxy::<DictProxy<u8, u8>>::from_token(&other, &l.share().unwrap()).unwrap();
        for _ in 0..2 {
            assert_eq!(l2.get(0).unwrap().len().unwrap(), 2);
        }
        assert_eq!(l.to_vec().unwrap().len(), 1);
        assert_eq!(manager.number_of_objects().unwrap(), 3);
        // The list and the namespace both hold the dict: it goes with the last of them.
        l.clear().unwrap();
        assert_eq!(manager.number_of_objects().unwrap(), 3);
        drop(ns);
        assert_eq!(manager.number_of_objects().unwrap(), 1);
    });
}

#[test]
fn a_proxy_in_a_failed_update_with_attempt_is_released() {
    with_deadline(LONG, "update_with retry", || {
        let manager = Manager::start().unwrap();
        let before = manager.number_of_objects().unwrap();
        let d = manager
            .dict::<u32, (u32, Option<ListProxy<u32>>)>()
            .unwrap();
        let l = manager.list::<u32>().unwrap();
        d.set(&1, &(0, None)).unwrap();
        let mut attempts = 0;
        d.update_with(&1, |_| {
            attempts += 1;
            if attempts == 1 {
                // Another writer between the read and the write: this attempt's
                // compare-and-swap fails, and the proxy serialized for it is thrown away.
                d.set(&1, &(1, None)).unwrap();
            }
            (9, Some(l.clone()))
        })
        .unwrap();
        assert!(attempts >= 2, "the first attempt did not fail ({attempts})");
        drop(d);
        drop(l);
        assert_eq!(
            manager.number_of_objects().unwrap(),
            before,
            "an object is still held by a ticket of the failed attempt"
        );
    });
}
