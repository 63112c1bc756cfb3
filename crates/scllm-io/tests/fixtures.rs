//! Files written by Python anndata/scanpy (tools/make_fixtures.py) read back with the same values,
//! survive a round trip, and bad input fails with a message that names the problem.

use std::path::PathBuf;

use scllm_io::{
    read_10x_dir, read_csv, read_h5ad, write_h5ad, AnnData, Column, Compression, IoError, Matrix,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn strip(mut a: AnnData) -> AnnData {
    a.source = None;
    a.skipped.clear();
    a
}

#[test]
fn every_fixture_round_trips_in_every_compression() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(fixtures().join("data")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|e| e != "h5ad") {
            continue;
        }
        let a = read_h5ad(&p).unwrap_or_else(|e| panic!("{e}"));
        for comp in [Compression::None, Compression::Gzip(4), Compression::Lzf] {
            let out = tmp.path().join("rt.h5ad");
            write_h5ad(&a, &out, comp).unwrap();
            let b = read_h5ad(&out).unwrap();
            assert!(
                strip(a.clone()) == strip(b),
                "{} changed in a round trip with {comp:?}",
                p.display()
            );
        }
        n += 1;
    }
    assert!(n >= 10, "expected the committed fixtures, found {n}");
}

fn json() -> serde_json::Value {
    let s = std::fs::read_to_string(fixtures().join("data/anndata_features.json")).unwrap();
    serde_json::from_str(&s).unwrap()
}

fn f64s(v: &serde_json::Value) -> Vec<Option<f64>> {
    v.as_array().unwrap().iter().map(|x| x.as_f64()).collect()
}

#[test]
fn anndata_written_features_read_exactly() {
    let exp = json();
    for name in [
        "anndata_features.h5ad",
        "anndata_features_gzip.h5ad",
        "anndata_features_lzf.h5ad",
    ] {
        let a = read_h5ad(fixtures().join("data").join(name)).unwrap();
        let x = a.x().unwrap();
        assert_eq!(x.kind(), "dense");
        assert_eq!(x.values().dtype(), "float64");
        let want: Vec<f64> = f64s(&exp["X"]).into_iter().map(Option::unwrap).collect();
        assert_eq!(x.to_dense_f64(), want, "{name}");
        assert_eq!(
            a.obs.index,
            exp["obs_index"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect::<Vec<_>>()
        );
        let col = |c: &str| {
            a.obs
                .column(c)
                .unwrap_or_else(|| panic!("obs[{c}] missing in {name}"))
        };
        assert!(matches!(col("i64"), Column::I64(_)));
        assert!(matches!(col("i32"), Column::I32(_)));
        assert!(matches!(col("b"), Column::Bool(_)));
        for c in ["f64", "f32", "i64", "i32"] {
            let got: Vec<Option<f64>> = (0..a.n_obs()).map(|i| col(c).get_f64(i)).collect();
            assert_eq!(got, f64s(&exp[c]), "obs[{c}] in {name}");
        }
        for c in ["s", "cat", "ordcat"] {
            let got = col(c).to_strings();
            let want: Vec<Option<String>> = exp[c]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().map(String::from))
                .collect();
            assert_eq!(got, want, "obs[{c}] in {name}");
        }
        assert!(matches!(
            col("ordcat"),
            Column::Categorical { ordered: true, .. }
        ));
        let nint: Vec<Option<f64>> = (0..a.n_obs()).map(|i| col("nint").get_f64(i)).collect();
        assert_eq!(nint, f64s(&exp["nint"]));
        let nbool: Vec<Option<bool>> = (0..a.n_obs())
            .map(|i| col("nbool").get_f64(i).map(|v| v == 1.0))
            .collect();
        let want: Vec<Option<bool>> = exp["nbool"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool())
            .collect();
        assert_eq!(nbool, want);
        let counts: Vec<f64> = f64s(&exp["counts"])
            .into_iter()
            .map(Option::unwrap)
            .collect();
        for layer in ["counts_csc", "counts_i32", "counts_i64_csr"] {
            assert_eq!(
                a.layer(layer).unwrap().to_dense_f64(),
                counts,
                "layer {layer} in {name}"
            );
        }
        assert_eq!(a.layer("counts_csc").unwrap().kind(), "csc");
        assert_eq!(a.layer("counts_i32").unwrap().values().dtype(), "int32");
        assert_eq!(a.layer("counts_i64_csr").unwrap().values().dtype(), "int64");
        assert_eq!(a.raw.as_ref().unwrap().x.to_dense_f64(), counts);
        let pca: Vec<f64> = f64s(&exp["X_pca"])
            .into_iter()
            .map(Option::unwrap)
            .collect();
        assert_eq!(a.obsm_get("X_pca").unwrap().to_dense_f64(), pca);
        assert_eq!(
            a.uns_get("title").and_then(|v| v.as_str()),
            Some("fixture ü")
        );
        assert_eq!(a.uns_get("n_int"), Some(&scllm_io::UnsValue::I64(42)));
        assert_eq!(a.uns_get("flag"), Some(&scllm_io::UnsValue::Bool(true)));
        assert!(matches!(a.uns_get("nested"), Some(scllm_io::UnsValue::Dict(d)) if d.len() == 2));
    }
}

#[test]
fn ten_x_folder_and_csv_read_as_scanpy_reads_them() {
    let d = fixtures().join("data");
    let ours = read_10x_dir(d.join("pbmc3k_10x")).unwrap();
    let theirs = read_h5ad(d.join("pbmc3k_10x_scanpy.h5ad")).unwrap();
    assert_eq!(ours.obs.index, theirs.obs.index);
    assert_eq!(
        ours.var.index, theirs.var.index,
        "gene symbols, made unique as scanpy does"
    );
    assert_eq!(ours.var.column("gene_ids"), theirs.var.column("gene_ids"));
    assert_eq!(
        ours.x().unwrap().to_dense_f64(),
        theirs.x().unwrap().to_dense_f64()
    );
    let ours = read_csv(d.join("pbmc3k_40.csv")).unwrap();
    let theirs = read_h5ad(d.join("pbmc3k_40_csv_scanpy.h5ad")).unwrap();
    assert_eq!(ours.obs.index, theirs.obs.index);
    assert_eq!(ours.var.index, theirs.var.index);
    assert_eq!(
        ours.x().unwrap().to_dense_f64(),
        theirs.x().unwrap().to_dense_f64()
    );
}

#[test]
fn backed_blocks_equal_the_in_memory_matrix() {
    let p = fixtures().join("data/pbmc3k_300.h5ad");
    let a = read_h5ad(&p).unwrap();
    let b = scllm_io::BackedAnnData::open(&p, "X").unwrap();
    assert_eq!(b.shape(), (a.n_obs(), a.n_vars()));
    let full = a.x().unwrap().to_csr();
    let mut rows = 0;
    for blk in b.blocks(64) {
        let (start, block) = blk.unwrap();
        let want =
            Matrix::Csr(full.select_major(&(start..start + block.nrows).collect::<Vec<_>>(), true));
        assert_eq!(Matrix::Csr(block.clone()), want, "block at {start}");
        rows += block.nrows;
    }
    assert_eq!(rows, a.n_obs());
    // dense X (pbmc68k_reduced) streams too
    let p = fixtures().join("data/pbmc68k_reduced.h5ad");
    let a = read_h5ad(&p).unwrap();
    let b = scllm_io::BackedAnnData::open(&p, "X").unwrap();
    let blk = b.rows(10, 20).unwrap();
    assert_eq!(
        Matrix::Csr(blk).to_dense_f64(),
        a.x()
            .unwrap()
            .select_rows(&(10..20).collect::<Vec<_>>())
            .to_dense_f64()
    );
}

#[test]
fn one_matrix_reads_as_the_whole_file_holds_it() {
    // X CSR, a CSC layer, a dense layer and a CSC raw/X, written by scllm
    let p = fixtures().join("data/pbmc3k_300.h5ad");
    let mut a = read_h5ad(&p).unwrap();
    let x = a.x().unwrap().clone();
    let dense = Matrix::Dense {
        nrows: x.shape().0,
        ncols: x.shape().1,
        data: scllm_io::Values::F64(x.to_dense_f64()),
    };
    a.layers = vec![
        ("csc".into(), Matrix::Csc(x.to_csc())),
        ("dense".into(), dense),
    ];
    a.raw = Some(scllm_io::Raw {
        x: Matrix::Csc(x.to_csc()),
        var: a.var.clone(),
        varm: Vec::new(),
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("layers.h5ad");
    write_h5ad(&a, &out, Compression::None).unwrap();
    let whole = read_h5ad(&out).unwrap();
    let (r, c) = (a.n_obs(), a.n_vars());
    assert_eq!(
        scllm_io::h5ad::read_matrix(&out, "X", r, c).unwrap(),
        *whole.x().unwrap()
    );
    let raw = whole.raw.as_ref().unwrap();
    assert_eq!(
        scllm_io::h5ad::read_matrix(&out, "raw/X", r, c).unwrap(),
        raw.x
    );
    assert_eq!(whole.layers.len(), 2);
    for (name, m) in &whole.layers {
        let got = scllm_io::h5ad::read_matrix(&out, &format!("layers/{name}"), r, c).unwrap();
        assert_eq!(&got, m, "layers/{name}");
    }
    // a shape other than the caller's, a missing element: errors naming the file and element
    let e = scllm_io::h5ad::read_matrix(&out, "X", r + 1, c)
        .unwrap_err()
        .to_string();
    assert!(e.contains("layers.h5ad") && e.contains("X"), "{e}");
    let e = scllm_io::h5ad::read_matrix(&out, "layers/none", r, c)
        .unwrap_err()
        .to_string();
    assert!(e.contains("layers/none"), "{e}");
    let e = scllm_io::h5ad::read_matrix(&out, "nothing/X", r, c)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nothing/X") && e.contains("no such element"),
        "{e}"
    );
}

#[test]
fn stream_writer_writes_a_file_anndata_layout_reads() {
    let p = fixtures().join("data/kang2018_pbmc_400.h5ad");
    let a = read_h5ad(&p).unwrap();
    let b = scllm_io::BackedAnnData::open(&p, "X").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("streamed.h5ad");
    let mut w =
        scllm_io::backed::CsrStreamWriter::create(&out, b.shape().1, Compression::Gzip(4)).unwrap();
    for blk in b.blocks(37) {
        w.append(&blk.unwrap().1).unwrap();
    }
    let n = a.n_obs();
    let emb = scllm_io::Matrix::Dense {
        nrows: n,
        ncols: 3,
        data: scllm_io::Values::F32((0..n * 3).map(|i| i as f32 * 0.5).collect()),
    };
    let obsm = vec![("X_test".to_string(), emb.clone())];
    w.finish(&a.obs, &a.var, &obsm, &a.uns).unwrap();
    let c = read_h5ad(&out).unwrap();
    assert_eq!(c.obsm_get("X_test"), Some(&emb));
    assert_eq!(c.x, a.x);
    assert_eq!(c.obs, a.obs);
    // an unfinished writer leaves nothing behind
    let out2 = tmp.path().join("unfinished.h5ad");
    {
        let _w = scllm_io::backed::CsrStreamWriter::create(&out2, 3, Compression::None).unwrap();
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "only the finished file remains"
    );
}

fn err(name: &str) -> String {
    read_h5ad(fixtures().join("bad").join(name))
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_files_say_what_is_wrong() {
    let m = read_h5ad("/definitely/not/here.h5ad").unwrap_err();
    assert!(matches!(m, IoError::NotFound { .. }), "{m}");
    assert!(
        m.to_string().contains("not/here.h5ad: file not found"),
        "{m}"
    );
    let e = err("not_hdf5.h5ad");
    assert!(e.contains("not an HDF5 file"), "{e}");
    let e = err("hdf5_not_anndata.h5ad");
    assert!(e.contains("not AnnData") && e.contains("weights"), "{e}");
    // a file without X reads, but asking for X says so
    let a = read_h5ad(fixtures().join("bad/no_x.h5ad")).unwrap();
    let e = a.x().unwrap_err().to_string();
    assert!(
        e.contains("no_x.h5ad") && e.contains("`X`") && e.contains("missing"),
        "{e}"
    );
    let e = a.obs_column("celltype").unwrap_err().to_string();
    assert!(
        e.contains("obs['celltype']") && e.contains("cell_type"),
        "names the columns there are: {e}"
    );
}

#[test]
fn writing_into_a_missing_folder_fails_without_leaving_files() {
    let a = read_h5ad(fixtures().join("bad/negative.h5ad")).unwrap();
    let e = write_h5ad(&a, "/nonexistent-dir/out.h5ad", Compression::None).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}
