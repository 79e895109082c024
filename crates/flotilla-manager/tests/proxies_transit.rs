//! Proxies crossing process boundaries as serde values (each carrying its manager's
//! address and authkey), held alive in transit, and objects registered by name.

mod common;

use common::{LONG, with_deadline};
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
