//! Timing of the baselines on a real split, for bench/baselines.sh:
//!   bench_baselines logreg REF_AND_QUERY.h5ad DONOR_COLUMN TEST_DONOR C
//!   bench_baselines knn REF.h5ad QUERY.h5ad OBSM_KEY
use std::time::Instant;

use scllm_eval::anndata_input::log_normalized;
use scllm_eval::encode_labels;
use scllm_eval::knn::{kneighbors, vote, Vote};
use scllm_eval::logreg::{fit, Design, SolverOptions};
use scllm_eval::metrics::Distance;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a[1].as_str() {
        "logreg" => {
            let ad = scllm_io::read_h5ad(&a[2]).unwrap();
            let donors = ad.obs.column(&a[3]).unwrap().to_strings();
            let labels = ad.obs.column("cell_type").unwrap().to_strings();
            let c: f64 = a[5].parse().unwrap();
            let t0 = Instant::now();
            let l = log_normalized(&ad, None).unwrap();
            let tr: Vec<usize> = (0..ad.n_obs())
                .filter(|&i| labels[i].is_some() && donors[i].as_deref() != Some(&a[4]))
                .collect();
            let te: Vec<usize> = (0..ad.n_obs())
                .filter(|&i| labels[i].is_some() && donors[i].as_deref() == Some(&a[4]))
                .collect();
            let ytr: Vec<&str> = tr.iter().map(|&i| labels[i].as_deref().unwrap()).collect();
            let (classes, codes) = encode_labels(&ytr);
            let xtr = l.x.select_major(&tr, true);
            let xte = l.x.select_major(&te, true);
            let prep = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let d = Design::new(&xtr);
            let m = fit(
                &d,
                &codes,
                classes.len(),
                &vec![true; tr.len()],
                c,
                None,
                &SolverOptions::default(),
            );
            let train = t1.elapsed().as_secs_f64();
            let (p, _) = m.predict(&xte, classes.len());
            let acc = te
                .iter()
                .zip(&p)
                .filter(|(&i, &k)| labels[i].as_deref() == Some(classes[k as usize].as_str()))
                .count() as f64
                / te.len() as f64;
            println!(
                "{{\"impl\": \"scllm\", \"threads\": {}, \"C\": {c}, \"n_train\": {}, \"n_test\": {}, \"prep_seconds\": {prep:.3}, \"fit_seconds\": {train:.3}, \"accuracy\": {acc:.4}, \"nonzero_genes\": {}}}",
                rayon::current_num_threads(), tr.len(), te.len(), m.nonzero_genes()
            );
        }
        "knn" => {
            let r = scllm_io::read_h5ad(&a[2]).unwrap();
            let q = scllm_io::read_h5ad(&a[3]).unwrap();
            let er = scllm_eval::anndata_input::obsm_dense(r.obsm_get(&a[4]).unwrap());
            let eq = scllm_eval::anndata_input::obsm_dense(q.obsm_get(&a[4]).unwrap());
            let d = r.obsm_get(&a[4]).unwrap().shape().1;
            let yr: Vec<String> = r
                .obs
                .column("cell_type")
                .unwrap()
                .to_strings()
                .into_iter()
                .map(|s| s.unwrap())
                .collect();
            let yq: Vec<String> = q
                .obs
                .column("cell_type")
                .unwrap()
                .to_strings()
                .into_iter()
                .map(|s| s.unwrap())
                .collect();
            let (classes, codes) = encode_labels(&yr);
            let t0 = Instant::now();
            let (idx, dist) = kneighbors(&er, &eq, d, 15, Distance::Cosine, &|_| {});
            let (p, _) = vote(&idx, &dist, 15, &codes, classes.len(), Vote::Majority);
            let secs = t0.elapsed().as_secs_f64();
            let acc = p
                .iter()
                .zip(&yq)
                .filter(|(&k, t)| classes[k as usize] == **t)
                .count() as f64
                / yq.len() as f64;
            println!(
                "{{\"impl\": \"scllm\", \"threads\": {}, \"n_ref\": {}, \"n_query\": {}, \"dims\": {d}, \"seconds\": {secs:.3}, \"accuracy\": {acc:.4}}}",
                rayon::current_num_threads(), yr.len(), yq.len()
            );
        }
        o => panic!("unknown mode {o}"),
    }
}
