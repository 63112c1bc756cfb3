//! The pretraining corpus over real committed fixtures: file listing, union vocabulary, exclusion
//! filters, epoch iteration (every kept cell once, reproducible, reshuffled per epoch), masking.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rand_mt::Mt64;
use scllm_io::{
    read_h5ad, write_h5ad, AnnData, Compressed, Compression, DataFrame, Matrix, Values,
};
use scllm_tokenize::{list_inputs, mask_values, union_vocab, Corpus, CorpusOptions, ObsFilter};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/data")
        .join(name)
}

const SPECIALS: [&str; 3] = ["<pad>", "<cls>", "<eoc>"];

fn corpus(files: &[PathBuf], opts: CorpusOptions) -> Corpus {
    let vocab = union_vocab(files, None, &SPECIALS).unwrap();
    Corpus::open(files, &vocab, opts, "<cls>", "<pad>", -2.0).unwrap()
}

#[test]
fn folders_expand_to_their_h5ad_files_and_bad_paths_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = list_inputs(&[dir.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no .h5ad files"), "{e}");
    let e = list_inputs(&[dir.path().join("nope.h5ad")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.h5ad") && e.contains("no such file"), "{e}");
    std::fs::copy(data("pbmc3k_300.h5ad"), dir.path().join("b.h5ad")).unwrap();
    std::fs::copy(data("kang2018_pbmc_400.h5ad"), dir.path().join("a.h5ad")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let files = list_inputs(&[dir.path().to_path_buf()]).unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a.h5ad", "b.h5ad"]);
}

#[test]
fn union_vocab_holds_every_files_genes_then_the_specials() {
    let files = [data("kang2018_pbmc_400.h5ad"), data("pbmc3k_300.h5ad")];
    let v = union_vocab(&files, None, &SPECIALS).unwrap();
    let mut expect = HashSet::new();
    for f in &files {
        expect.extend(read_h5ad(f).unwrap().var.index);
    }
    assert_eq!(v.len(), expect.len() + 3);
    for g in &expect {
        assert!(v.get(g).is_some(), "{g} missing");
    }
    assert_eq!(v.get("<pad>"), Some(expect.len() as u32));
}

fn tiny_file(path: &Path, genes: &[&str]) {
    let n = 3;
    let x = Compressed {
        nrows: n,
        ncols: genes.len(),
        indptr: (0..=n as u64).map(|i| i * genes.len() as u64).collect(),
        indices: (0..n).flat_map(|_| 0..genes.len() as u32).collect(),
        data: Values::F32(vec![1.0; n * genes.len()]),
    };
    let obs = DataFrame::new((0..n).map(|i| format!("c{i}")).collect());
    let var = DataFrame::new(genes.iter().map(|s| s.to_string()).collect());
    write_h5ad(
        &AnnData::new(Matrix::Csr(x), obs, var),
        path,
        Compression::None,
    )
    .unwrap();
}

#[test]
fn a_file_sharing_no_gene_with_the_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("mouse_like.h5ad");
    tiny_file(&odd, &["Xkr4", "Gm1992", "Rp1"]);
    let e = union_vocab(&[data("pbmc3k_300.h5ad"), odd], None, &SPECIALS)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mouse_like.h5ad") && e.contains("shares no gene"),
        "{e}"
    );
}

fn donors(path: &Path) -> Vec<String> {
    let a = read_h5ad(path).unwrap();
    let c = a.obs_column("donor").unwrap();
    (0..a.n_obs()).map(|i| c.get_str(i).unwrap()).collect()
}

#[test]
fn an_epoch_yields_each_kept_cell_once_and_never_an_excluded_one() {
    let kang = data("kang2018_pbmc_400.h5ad");
    let files = [kang.clone(), data("pbmc3k_300.h5ad")];
    let d = donors(&kang);
    let held = d[0].clone();
    let opts = CorpusOptions {
        max_len: 64,
        block_cells: 50,
        shuffle_buffer: 128,
        seed: 3,
        min_genes: 1,
        exclude: vec![format!("kang2018_pbmc_400.h5ad:donor={held}")
            .parse()
            .unwrap()],
        ..Default::default()
    };
    let c = corpus(&files, opts);
    let n_held = d.iter().filter(|x| **x == held).count();
    assert!(n_held > 0);
    assert_eq!(c.files[0].n_kept, 400 - n_held);
    assert_eq!(c.files[1].n_kept, 300);
    let cells: Vec<_> = c.epoch(0).map(|r| r.unwrap()).collect();
    let seen: HashSet<(usize, usize)> = cells.iter().map(|(f, r, _)| (*f, *r)).collect();
    assert_eq!(seen.len(), cells.len(), "no cell twice");
    assert_eq!(
        cells.len(),
        700 - n_held,
        "every kept cell (all have ≥1 gene)"
    );
    for (f, r, t) in &cells {
        if *f == 0 {
            assert_ne!(d[*r], held, "held-out donor leaked");
        }
        assert!(t.len() <= 64);
        assert_eq!(t.values[0], -2.0, "<cls> carries pad_value");
        assert!(t.values[1..].iter().all(|&v| (1.0..=50.0).contains(&v)));
    }
    // reproducible for one epoch, reshuffled for the next
    let again: Vec<_> = c.epoch(0).map(|r| r.unwrap()).collect();
    assert_eq!(cells, again);
    let next: Vec<(usize, usize)> = c
        .epoch(1)
        .map(|r| r.unwrap())
        .map(|(f, r, _)| (f, r))
        .collect();
    let order0: Vec<(usize, usize)> = cells.iter().map(|(f, r, _)| (*f, *r)).collect();
    assert_ne!(order0, next);
    assert_eq!(seen, next.into_iter().collect::<HashSet<_>>());
}

#[test]
fn filters_that_match_nothing_are_errors_not_silent() {
    let files = [data("pbmc3k_300.h5ad")];
    let vocab = union_vocab(&files, None, &SPECIALS).unwrap();
    let opts = CorpusOptions {
        exclude: vec!["donor=1015".parse::<ObsFilter>().unwrap()],
        ..Default::default()
    };
    let e = Corpus::open(&files, &vocab, opts, "<cls>", "<pad>", -2.0)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("donor"), "{e}");
    assert!("donor".parse::<ObsFilter>().is_err());
    let f: ObsFilter = "x.h5ad:donor=1,2".parse().unwrap();
    assert_eq!(f.file.as_deref(), Some("x.h5ad"));
    assert_eq!(f.values, ["1", "2"]);
}

#[test]
fn masking_spares_cls_and_padding_and_follows_the_ratio() {
    let mut rng = Mt64::new(1);
    let mut values = vec![-2.0f32];
    values.extend((0..4000).map(|i| (i % 50 + 1) as f32));
    values.extend([-2.0; 100]);
    let (masked, mask) = mask_values(&values, 0.25, -2.0, -1.0, &mut rng);
    assert!(!mask[0]);
    assert!(
        mask[4001..].iter().all(|m| !m),
        "pad positions never masked"
    );
    let n = mask.iter().filter(|m| **m).count();
    assert!((900..1100).contains(&n), "about 25% of 4000, got {n}");
    for i in 0..values.len() {
        assert_eq!(masked[i], if mask[i] { -1.0 } else { values[i] });
    }
}
