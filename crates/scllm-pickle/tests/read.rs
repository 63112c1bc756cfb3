//! The reader on hand-written pickles (the opcodes Python emits, written out byte by byte) and on
//! real CellTypist models (tests/fixtures/celltypist, made by tools/make_celltypist_fixture.py).

use std::path::PathBuf;

use scllm_pickle::{
    read_pickle, read_pickle_allowing, read_pickle_file, ArrayData, DictKey, PyValue,
};

fn s(p: &mut Vec<u8>, t: &str) {
    p.push(0x8c);
    p.push(t.len() as u8);
    p.extend_from_slice(t.as_bytes());
}

/// `pickle.dumps({"<pad>": 0, "A": np.int16(2), "m": np.float64(0.25)}, protocol=4)`, written
/// out by hand with the opcodes Python uses (MEMOIZE omitted where unused).
fn scalars() -> Vec<u8> {
    let mut p = vec![0x80, 4, b'}', b'('];
    s(&mut p, "<pad>");
    p.extend([b'K', 0]);
    s(&mut p, "A");
    s(&mut p, "numpy.core.multiarray");
    s(&mut p, "scalar");
    p.push(0x93);
    s(&mut p, "numpy");
    s(&mut p, "dtype");
    p.push(0x93);
    s(&mut p, "i2");
    p.extend([0x89, 0x88, 0x87, b'R']); // dtype('i2', False, True)
    p.push(0x94); // memoised dtype (memo 0)
    p.extend([b'(', b'K', 3]);
    s(&mut p, "<");
    p.extend([b'N', b'N', b'N', b'J']);
    p.extend((-1i32).to_le_bytes());
    p.push(b'J');
    p.extend((-1i32).to_le_bytes());
    p.extend([b'K', 0, b't', b'b']);
    p.extend([b'C', 2, 2, 0, 0x86, b'R']); // scalar(dtype, b'\x02\x00')
    s(&mut p, "m");
    s(&mut p, "numpy.core.multiarray");
    s(&mut p, "scalar");
    p.push(0x93);
    s(&mut p, "numpy");
    s(&mut p, "dtype");
    p.push(0x93);
    s(&mut p, "f8");
    p.extend([0x89, 0x88, 0x87, b'R']);
    p.push(b'C');
    p.push(8);
    p.extend(0.25f64.to_le_bytes());
    p.extend([0x86, b'R', b'u', b'.']);
    p
}

/// A dtype `code` with byte order `order`: REDUCE then BUILD, memoised as `memo`.
fn dtype(p: &mut Vec<u8>, code: &str, order: &str) {
    s(p, "numpy");
    s(p, "dtype");
    p.push(0x93);
    s(p, code);
    p.extend([0x89, 0x88, 0x87, b'R', 0x94, b'(', b'K', 3]);
    s(p, order);
    p.extend([b'N', b'N', b'N', b'J']);
    p.extend((-1i32).to_le_bytes());
    p.push(b'J');
    p.extend((-1i32).to_le_bytes());
    p.extend([b'K', 0, b't', b'b']);
}

/// `_reconstruct(ndarray, (0,), b'b')` then BUILD `(1, shape, dtype, fortran, data)`.
fn array(p: &mut Vec<u8>, shape: &[u8], code: &str, order: &str, fortran: bool, data: &[u8]) {
    s(p, "numpy.core.multiarray");
    s(p, "_reconstruct");
    p.push(0x93);
    s(p, "numpy");
    s(p, "ndarray");
    p.push(0x93);
    p.extend([b'K', 0, 0x85, b'C', 1, b'b', 0x87, b'R']);
    p.extend([b'(', b'K', 1, b'(']);
    for &d in shape {
        p.extend([b'K', d]);
    }
    p.push(b't');
    dtype(p, code, order);
    p.push(if fortran { 0x88 } else { 0x89 });
    p.push(b'B');
    p.extend((data.len() as u32).to_le_bytes());
    p.extend_from_slice(data);
    p.extend([b't', b'b']);
}

#[test]
fn dict_of_numpy_scalars_reads_with_values() {
    let v = read_pickle(&scalars()).unwrap();
    let PyValue::Dict(d) = v else { panic!("{v:?}") };
    assert_eq!(d[&DictKey::Str("<pad>".into())], PyValue::Int(0));
    assert_eq!(d[&DictKey::Str("A".into())], PyValue::Int(2));
    assert_eq!(d[&DictKey::Str("m".into())], PyValue::Float(0.25));
}

#[test]
fn arrays_read_in_c_order_whatever_their_storage() {
    // np.array([[1., 2., 3.], [4., 5., 6.]]) stored C-order, F-order and big-endian
    let c: Vec<u8> = [1f64, 2., 3., 4., 5., 6.]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let f: Vec<u8> = [1f64, 4., 2., 5., 3., 6.]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let be: Vec<u8> = [1f32, 2., 3., 4., 5., 6.]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    for (code, order, fortran, data) in [
        ("f8", "<", false, c),
        ("f8", "<", true, f),
        ("f4", ">", false, be),
    ] {
        let mut p = vec![0x80, 4];
        array(&mut p, &[2, 3], code, order, fortran, &data);
        p.push(b'.');
        let v = read_pickle(&p).unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(
            a.to_f64().unwrap(),
            vec![1., 2., 3., 4., 5., 6.],
            "{code} {order} {fortran}"
        );
    }
    // fixed-width unicode: np.array(['ab', 'c'])
    let mut u = Vec::new();
    for t in ["ab", "c"] {
        let mut cs: Vec<u32> = t.chars().map(|c| c as u32).collect();
        cs.resize(2, 0);
        u.extend(cs.iter().flat_map(|c| c.to_le_bytes()));
    }
    let mut p = vec![0x80, 4];
    array(&mut p, &[2], "U2", "<", false, &u);
    p.push(b'.');
    let v = read_pickle(&p).unwrap();
    assert_eq!(v.as_array().unwrap().to_strings().unwrap(), vec!["ab", "c"]);
}

#[test]
fn a_wrong_data_length_is_refused() {
    let mut p = vec![0x80, 4];
    array(&mut p, &[2, 3], "f8", "<", false, &[0u8; 40]);
    p.push(b'.');
    let e = read_pickle(&p).unwrap_err();
    assert!(e.message.contains("needs 48 bytes but holds 40"), "{e}");
}

#[test]
fn allowed_classes_become_inert_objects_with_their_state() {
    // Est.__reduce_ex__(2): copyreg.__newobj__ → NEWOBJ (cls, ()), then BUILD with __dict__;
    // the object is memoised before BUILD and fetched again from the memo afterwards
    let mut p = vec![0x80, 4];
    s(&mut p, "sklearn.preprocessing._data");
    s(&mut p, "StandardScaler");
    p.push(0x93);
    p.extend([b')', 0x81, 0x94, b'}', b'(']); // memo 0: the object
    s(&mut p, "with_mean");
    p.push(0x88);
    s(&mut p, "n_samples_seen_");
    p.extend([b'K', 7, b'u', b'b']);
    p.push(b'0'); // POP the built object, then fetch it from the memo
    p.extend([b'h', 0, b'.']);
    let allowed = ["sklearn.preprocessing._data.StandardScaler"];
    let v = read_pickle_allowing(&p, &allowed).unwrap();
    let o = v.as_object().unwrap();
    assert_eq!(o.class, "sklearn.preprocessing._data.StandardScaler");
    assert_eq!(o.attr("with_mean"), Some(&PyValue::Bool(true)));
    assert_eq!(o.attr("n_samples_seen_"), Some(&PyValue::Int(7)));
    // the same pickle without the class allowed
    let e = read_pickle(&p).unwrap_err();
    assert!(
        e.message
            .contains("`sklearn.preprocessing._data.StandardScaler`"),
        "{e}"
    );
}

#[test]
fn lists_filled_after_memoisation_are_shared() {
    // x = []; pickle.dumps([x, x]) with x appended to after both references exist is impossible
    // in Python, but APPENDS after MEMOIZE is how every list is written: the memo must see it
    let mut p = vec![0x80, 4, b']', 0x94, b'(', b'K', 1, b'K', 2, b'e']; // memo 0 = [1, 2]
    p.extend([b'h', 0, 0x86, b'.']); // ([1, 2], memo 0)
    let v = read_pickle(&p).unwrap();
    let l = PyValue::List(vec![PyValue::Int(1), PyValue::Int(2)]);
    assert_eq!(v, PyValue::Tuple(vec![l.clone(), l]));
}

#[test]
fn other_globals_are_refused_by_name_and_nothing_runs() {
    // pickle.dumps of os.system("true") as a REDUCE
    let mut p = vec![0x80, 4];
    s(&mut p, "os");
    s(&mut p, "system");
    p.push(0x93);
    s(&mut p, "true");
    p.extend([0x85, b'R', b'.']);
    let e = read_pickle(&p).unwrap_err();
    assert!(e.message.contains("os.system"), "{e}");
    // and protocol 0-2's GLOBAL opcode
    let mut p = b"cposix\nsystem\n".to_vec();
    p.extend([b'.']);
    let e = read_pickle(&p).unwrap_err();
    assert!(e.message.contains("posix.system"), "{e}");
}

#[test]
fn truncated_input_is_an_error_not_a_panic() {
    let p = scalars();
    for n in 0..p.len() {
        assert!(read_pickle(&p[..n]).is_err(), "prefix of {n} bytes");
    }
}

#[test]
fn self_referencing_pickles_end_in_an_error() {
    // l = []; l.append(l): a list holding itself
    let p = vec![0x80, 4, b']', 0x94, b'h', 0, b'a', b'.'];
    let e = read_pickle(&p).unwrap_err();
    assert!(e.message.contains("nested deeper"), "{e}");
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/celltypist/models")
        .join(name)
}

#[test]
fn a_real_celltypist_model_reads_to_its_arrays() {
    // STCAT's cd8.pkl (scikit-learn SGDClassifier + StandardScaler, protocol 4)
    let allowed = [
        "sklearn.linear_model._stochastic_gradient.SGDClassifier",
        "sklearn.linear_model._sgd_fast.Log",
        "sklearn.preprocessing._data.StandardScaler",
    ];
    let v = read_pickle_file(&fixture("cd8.pkl"), &allowed).unwrap();
    let m = v.get("Model").and_then(|m| m.as_object()).unwrap();
    let coef = m.attr("coef_").and_then(|c| c.as_array()).unwrap();
    assert_eq!(coef.shape, vec![21, 2213]);
    assert_eq!(coef.dtype.code, "f4");
    let features = m.attr("features").and_then(|c| c.as_array()).unwrap();
    assert!(matches!(features.data, ArrayData::Objects(_)));
    assert_eq!(features.to_strings().unwrap()[..2], ["MCM2", "CALM2"]);
    let classes = m
        .attr("classes_")
        .unwrap()
        .as_array()
        .unwrap()
        .to_strings()
        .unwrap();
    assert_eq!(classes[0], "CD8 NKT-like");
    let scaler = v.get("Scaler_").and_then(|m| m.as_object()).unwrap();
    assert_eq!(
        scaler
            .attr("n_samples_seen_")
            .and_then(|x| x.as_i64())
            .map(|n| n > 0),
        Some(true)
    );
    assert_eq!(
        scaler.attr("mean_").unwrap().as_array().unwrap().len(),
        2213
    );
    // without the allow-list the first class is refused by name
    let e = read_pickle_file(&fixture("cd8.pkl"), &[]).unwrap_err();
    assert!(e.to_string().contains("cd8.pkl"), "{e}");
    assert!(e.message.contains("SGDClassifier"), "{e}");
}
