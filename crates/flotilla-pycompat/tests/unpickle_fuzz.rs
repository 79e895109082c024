//! The pickle reader against hostile input: arbitrary bytes, mutated real pickles and
//! random opcode sequences never panic, hang or run anything; names off the allow-list
//! are always refused; serde values round-trip.

use std::collections::BTreeMap;

use flotilla_pycompat::pickle::{PyValue, UnpickleError, decode, from_pickle, to_pickle};
use proptest::prelude::*;

type RoundTrip = (Vec<(i64, String, Option<f64>)>, BTreeMap<String, Vec<bool>>);

const CORPUS: &[&[u8]] = include!("corpus.in");

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Whether a value holds an object (only allow-listed classes can be there).
fn classes(v: &PyValue, out: &mut Vec<String>) {
    match v {
        PyValue::List(v) | PyValue::Tuple(v) | PyValue::Set(v) | PyValue::FrozenSet(v) => {
            v.iter().for_each(|x| classes(x, out))
        }
        PyValue::Dict(items) => items.iter().for_each(|(k, v)| {
            classes(k, out);
            classes(v, out);
        }),
        PyValue::Object(o) => {
            out.push(o.class.to_string());
            o.args.iter().for_each(|x| classes(x, out));
            if let Some(s) = &o.state {
                classes(s, out);
            }
        }
        _ => {}
    }
}

const ALLOWED: &[&str] = &[
    "builtins.KeyError",
    "queue.Empty",
    "multiprocessing.managers.Token",
];

#[test]
fn every_pickle_cpython_wrote_decodes_except_protocol_0_1_objects() {
    let mut refused = 0;
    for (i, p) in CORPUS.iter().enumerate() {
        match decode(p) {
            Ok(v) => {
                let mut found = Vec::new();
                classes(&v, &mut found);
                assert!(
                    found.iter().all(|c| ALLOWED.contains(&c.as_str())),
                    "{found:?}"
                );
            }
            // Protocols 0 and 1 spell slotted objects through copyreg._reconstructor,
            // which is not on the allow-list (managers always send protocol 4+).
            Err(UnpickleError::Refused { module, name })
                if (module == "copyreg" || module == "copy_reg") && name == "_reconstructor" =>
            {
                refused += 1
            }
            Err(e) => panic!("corpus entry {i} failed: {e}"),
        }
    }
    assert!(refused <= 2, "{refused}");
}

/// Applies `edits` (position, kind, byte) to `base`.
fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(at, kind, byte) in edits {
        let at = if v.is_empty() { 0 } else { at % (v.len() + 1) };
        match kind % 4 {
            0 if at < v.len() => v[at] = byte,
            1 => v.insert(at, byte),
            2 if at < v.len() => {
                v.remove(at);
            }
            3 => v.truncate(at),
            _ => {}
        }
    }
    v
}

/// Opcodes with small arguments, to build pickles that get past the first byte.
fn opcode() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // No argument.
        prop::sample::select(
            &b"(.0012N\x88\x89)t\x85\x86\x87]lae}dsu\x8f\x90\x91\x94\x93\x81\x92RbR"[..]
        )
        .prop_map(|b| vec![b]),
        // One-byte argument.
        (prop::sample::select(&b"KhqCU\x8a\x80"[..]), any::<u8>()).prop_map(|(o, a)| vec![o, a]),
        // Short strings, some of them module and class names.
        prop::sample::select(vec![
            &b"\x8c\x08builtins"[..],
            b"\x8c\x08KeyError",
            b"\x8c\x05posix",
            b"\x8c\x06system",
            b"\x8c\x18multiprocessing.managers",
            b"\x8c\x05Token",
            b"\x8c\x03set",
            b"\x8c\x04list",
            b"cbuiltins\nValueError\n",
            b"c_codecs\nencode\n",
            b"cos\nsystem\n",
            b"C\x02ab",
            b"X\x01\x00\x00\x00z",
            b"J\xff\xff\xff\xff",
            b"M\x01\x02",
            b"G?\xf8\x00\x00\x00\x00\x00\x00",
            b"I42\n",
            b"L-7L\n",
            b"F1.5\n",
            b"S'a\\x41'\n",
            b"V\\u00e9\n",
            b"p0\n",
            b"g0\n",
            b"r\x00\x00\x00\x00",
            b"j\x00\x00\x00\x00",
            b"\x95\x10\x00\x00\x00\x00\x00\x00\x00",
            b"\x8b\x02\x00\x00\x00\x01\x80",
        ])
        .prop_map(|s| s.to_vec()),
        // Anything.
        prop::collection::vec(any::<u8>(), 1..4),
    ]
}

// 40k + 40k + 10k here and 5k + 5k below: 100k cases in all.
proptest! {
    #![proptest_config(config(40_000))]

    #[test]
    fn arbitrary_bytes_never_panic(proto in any::<bool>(), bytes in prop::collection::vec(any::<u8>(), 0..48)) {
        let mut p = if proto { b"\x80\x04".to_vec() } else { Vec::new() };
        p.extend(bytes);
        let _ = decode(&p);
    }

    #[test]
    fn mutated_real_pickles_never_panic(
        which in 0..CORPUS.len(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..5),
    ) {
        let p = mutate(CORPUS[which], &edits);
        if let Ok(v) = decode(&p) {
            let mut found = Vec::new();
            classes(&v, &mut found);
            // Only names on the allow-list ever become objects.
            prop_assert!(found.iter().all(|c| !c.starts_with("posix") && !c.starts_with("os.")));
        }
    }

}

proptest! {
    // Each case builds up to 24 opcodes: costlier to generate than the others.
    #![proptest_config(config(10_000))]

    #[test]
    fn opcode_soup_never_panics(ops in prop::collection::vec(opcode(), 1..24)) {
        let mut p = b"\x80\x04".to_vec();
        p.extend(ops.concat());
        p.push(b'.');
        if let Ok(v) = decode(&p) {
            let mut found = Vec::new();
            classes(&v, &mut found);
            prop_assert!(found.iter().all(|c| c.starts_with("builtins.") || c.starts_with("multiprocessing.")));
        }
    }
}

proptest! {
    #![proptest_config(config(5_000))]

    #[test]
    fn any_global_off_the_allow_list_is_refused(module in "[a-z_][a-z0-9_.]{0,12}", name in "[A-Za-z_][A-Za-z0-9_]{0,12}") {
        prop_assume!(!matches!(module.as_str(), "builtins" | "__builtin__" | "exceptions" | "_codecs" | "queue" | "_queue" | "multiprocessing.managers" | "multiprocessing" | "multiprocessing.context"));
        // The global, called with no arguments: `module.name()`.
        let p = format!("c{module}\n{name}\n)R.");
        let refused = matches!(decode(p.as_bytes()), Err(UnpickleError::Refused { .. }));
        prop_assert!(refused);
    }

    #[test]
    fn serde_values_round_trip(
        v in prop::collection::vec((any::<i64>(), ".{0,8}", prop::option::of(any::<f64>().prop_filter("NaN", |f| !f.is_nan()))), 0..8),
        m in prop::collection::btree_map("[a-z]{0,4}", prop::collection::vec(any::<bool>(), 0..4), 0..4),
    ) {
        let value = (v, m);
        let bytes = to_pickle(&value).unwrap();
        let back: RoundTrip = from_pickle(&bytes).unwrap();
        prop_assert_eq!(back, value);
    }
}
