//! A `Value` or `Array` whose lock holder died mid-update stays "owner died" for every
//! accessor — get, set, to_vec, copy_from_slice, lock — until someone marks it
//! recovered: reading it once does not swallow the notice.

use std::time::Duration;

use flotilla_ipc::{
    AccessError, AcquireError, Array, Connection, CopyError, IndexError, IndexOutOfRange, Value,
    pipe,
};
use flotilla_process::{StartMethod, get_context};

const LONG: Duration = Duration::from_secs(120);

/// Takes both locks, starts a two-element update of the array and is killed holding
/// them.
fn update_until_killed(args: (Value<i64>, Array<i64>, Connection)) {
    let (v, a, conn) = args;
    let value = v.lock_timeout(LONG).or_else(AcquireError::recover).unwrap();
    let array = a.lock_timeout(LONG).or_else(AcquireError::recover).unwrap();
    value.set(-1);
    array.set(0, -1).unwrap(); // element 1 is never written: a torn update
    conn.send(&"holding").unwrap();
    std::thread::sleep(Duration::from_secs(600));
    drop((array, value));
}

fn owner_died<T: std::fmt::Debug>(r: Result<T, AccessError>) -> bool {
    matches!(r, Err(AccessError::OwnerDied))
}

/// An array's indexed access reports it inside its own error type.
fn index_owner_died<T: std::fmt::Debug>(r: Result<T, IndexError>) -> bool {
    matches!(r, Err(IndexError::Access(AccessError::OwnerDied)))
}

#[test]
fn owner_died_is_reported_by_every_accessor_until_marked_recovered() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let v = Value::new(5i64).unwrap();
        let a = Array::from_slice(&[1i64, 2]).unwrap();
        let (ours, theirs) = pipe(true).unwrap();
        let child = get_context(Some(method))
            .process(update_until_killed, (v.clone(), a.clone(), theirs))
            .start()
            .unwrap();
        assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "holding");
        child.kill().unwrap();
        assert!(child.join_timeout(LONG).is_err(), "killed");

        // The value: first seen by get, which must not swallow the notice.
        assert!(owner_died(v.get()), "{method}: get");
        assert!(owner_died(v.get()), "{method}: a second get");
        assert!(owner_died(v.set(7)), "{method}: set");
        match v.lock_timeout(LONG) {
            Err(AcquireError::OwnerDied(guard)) => drop(guard), // not marked recovered
            other => panic!("{method}: lock: {other:?}"),
        }
        assert!(
            owner_died(v.get()),
            "{method}: get after an unrepaired section"
        );
        {
            // Through the lock itself: the accessors inside still report it.
            let _held = v
                .get_lock()
                .unwrap()
                .acquire_timeout(LONG)
                .or_else(AcquireError::recover)
                .unwrap();
            assert!(owner_died(v.get()), "{method}: get under get_lock");
        }
        match v.lock_timeout(LONG) {
            Err(AcquireError::OwnerDied(guard)) => {
                assert_eq!(
                    guard.get(),
                    -1,
                    "{method}: the torn value is there to repair"
                );
                guard.set(5);
                guard.mark_recovered();
            }
            other => panic!("{method}: lock: {other:?}"),
        }
        assert_eq!(v.get().unwrap(), 5, "{method}");
        v.set(6).unwrap();
        assert_eq!(v.lock_timeout(LONG).unwrap().get(), 6, "{method}");

        // The array: first seen through its lock directly (get_lock), then every
        // accessor.
        match a.get_lock().unwrap().acquire_timeout(LONG) {
            Err(AcquireError::OwnerDied(guard)) => drop(guard),
            other => panic!("{method}: get_lock: {other:?}"),
        }
        assert!(index_owner_died(a.get(0)), "{method}: get");
        assert!(index_owner_died(a.get(1)), "{method}: a second get");
        assert!(index_owner_died(a.set(1, 0)), "{method}: set");
        assert!(owner_died(a.to_vec()), "{method}: to_vec");
        assert!(
            matches!(
                a.copy_from_slice(&[0, 0]),
                Err(CopyError::Access(AccessError::OwnerDied))
            ),
            "{method}: copy_from_slice"
        );
        assert!(matches!(
            a.get(2),
            Err(IndexError::OutOfRange(IndexOutOfRange { index: 2, len: 2 }))
        ));
        match a.lock_timeout(LONG) {
            Err(AcquireError::OwnerDied(guard)) => {
                assert_eq!(guard.to_vec(), [-1, 2], "{method}: torn");
                guard.copy_from_slice(&[1, 2]).unwrap();
                guard.mark_recovered();
            }
            other => panic!("{method}: lock: {other:?}"),
        }
        assert_eq!(a.to_vec().unwrap(), [1, 2], "{method}");
        a.set(1, 3).unwrap();
        assert_eq!(a.get(1).unwrap(), 3, "{method}");
        drop(a.lock_timeout(LONG).unwrap());
    }
}
