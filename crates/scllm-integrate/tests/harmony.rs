//! Harmony against harmonypy 2.1.0 on the committed Kang 2018 cells (fixture from
//! tools/harmony_fixture.py), on a toy two-batch set, and on bad input.

use scllm_integrate::harmony::{harmony, HarmonyOptions, HarmonyResult};
use scllm_integrate::IntegrateError;
use serde_json::Value;
use std::path::PathBuf;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/integration")
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture_dir().join(name)).expect("fixture file");
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

struct Fixture {
    n: usize,
    d: usize,
    pcs: Vec<f32>,
    batches: Vec<u32>,
    n_batches: usize,
    cell_type: Vec<String>,
    runs: serde_json::Map<String, Value>,
}

fn fixture() -> Fixture {
    let text = std::fs::read_to_string(fixture_dir().join("harmony_kang400.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let n = v["n"].as_u64().unwrap() as usize;
    let d = v["d"].as_u64().unwrap() as usize;
    let pcs = read_f32(v["pcs_file"].as_str().unwrap());
    assert_eq!(pcs.len(), n * d);
    let batches: Vec<u32> = v["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u32)
        .collect();
    let cell_type = v["cell_type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    Fixture {
        n,
        d,
        pcs,
        batches,
        n_batches: v["batch_labels"].as_array().unwrap().len(),
        cell_type,
        runs: v["runs"].as_object().unwrap().clone(),
    }
}

/// harmonypy's keyword arguments as our options.
fn options(run: &Value) -> HarmonyOptions {
    let o = &run["options"];
    let f = |key: &str| o.get(key).and_then(Value::as_f64);
    let u = |key: &str| o.get(key).and_then(Value::as_u64).map(|v| v as usize);
    let def = HarmonyOptions::default();
    HarmonyOptions {
        theta: f("theta").map_or(def.theta, |v| v as f32),
        lambda: f("lamb").map(|v| v as f32),
        sigma: f("sigma").map_or(def.sigma, |v| v as f32),
        nclust: u("nclust"),
        tau: f("tau").map_or(def.tau, |v| v as f32),
        block_size: f("block_size").map_or(def.block_size, |v| v as f32),
        max_iter_harmony: u("max_iter_harmony").unwrap_or(def.max_iter_harmony),
        max_iter_kmeans: u("max_iter_kmeans").unwrap_or(def.max_iter_kmeans),
        epsilon_cluster: f("epsilon_cluster").map_or(def.epsilon_cluster, |v| v as f32),
        epsilon_harmony: f("epsilon_harmony").map_or(def.epsilon_harmony, |v| v as f32),
        random_state: u("random_state").map_or(0, |v| v as u32),
        ..def
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Our run against harmonypy's: Z_corr within 1e-4, the same number of rounds, the same
/// objective to float rounding.
fn check_against_reference(out: &HarmonyResult, run: &Value, name: &str, what: &str) -> f32 {
    let expected = read_f32(run["zcorr_file"].as_str().unwrap());
    let diff = max_abs_diff(&out.corrected, &expected);
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!(
        "{name} ({what}): max |Z_corr - harmonypy| = {diff:.3e} (values up to {scale:.1}), {} rounds, objective {:?}",
        out.iterations, out.objective
    );
    assert!(diff < 1e-4, "{name} ({what}): max abs diff {diff}");
    let objective = f32s(&run["objective_harmony"]);
    assert_eq!(out.objective.len(), objective.len(), "{name}: rounds");
    for (a, b) in out.objective.iter().zip(&objective) {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs(),
            "{name}: objective {a} vs {b}"
        );
    }
    let rounds: Vec<usize> = run["kmeans_rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(out.kmeans_rounds, rounds, "{name}: k-means rounds");
    assert_eq!(out.nclust, run["k"].as_u64().unwrap() as usize);
    diff
}

#[test]
fn matches_harmonypy_with_its_initial_centroids() {
    let fx = fixture();
    for (name, run) in &fx.runs {
        let opts = HarmonyOptions {
            init_centroids: Some(f32s(&run["init_centroids"])),
            ..options(run)
        };
        let t = std::time::Instant::now();
        let out = harmony(&fx.pcs, fx.n, fx.d, &fx.batches, fx.n_batches, &opts).unwrap();
        eprintln!(
            "{name}: harmony on {} × {} in {:?}",
            fx.n,
            fx.d,
            t.elapsed()
        );
        check_against_reference(&out, run, name, "injected start");
    }
}

#[test]
fn seeded_start_matches_harmonypy_too() {
    // The seeded k-means start draws what harmonypy draws, so no injection is needed.
    let fx = fixture();
    for (name, run) in &fx.runs {
        let opts = options(run);
        let out = harmony(&fx.pcs, fx.n, fx.d, &fx.batches, fx.n_batches, &opts).unwrap();
        check_against_reference(&out, run, name, "seeded start");
    }
}

#[test]
fn kang_cells_keep_their_cell_type_neighbours() {
    let fx = fixture();
    let out = harmony(
        &fx.pcs,
        fx.n,
        fx.d,
        &fx.batches,
        fx.n_batches,
        &HarmonyOptions::default(),
    )
    .unwrap();
    let types: Vec<u32> = {
        let mut names: Vec<&String> = fx.cell_type.iter().collect();
        names.sort();
        names.dedup();
        fx.cell_type
            .iter()
            .map(|t| names.binary_search(&t).unwrap() as u32)
            .collect()
    };
    let before = same_label_fraction(&fx.pcs, fx.d, &types, 10);
    let after = same_label_fraction(&out.corrected, fx.d, &types, 10);
    let donors_before = 1.0 - same_label_fraction(&fx.pcs, fx.d, &fx.batches, 10);
    let donors_after = 1.0 - same_label_fraction(&out.corrected, fx.d, &fx.batches, 10);
    eprintln!(
        "kang: same cell type among 10 NN {before:.3} -> {after:.3}; other donors {donors_before:.3} -> {donors_after:.3}"
    );
    assert!(
        after > before - 0.05,
        "cell types lost: {before} -> {after}"
    );
}

/// Brute-force k nearest neighbours (euclidean, self excluded) of each row.
fn knn(x: &[f32], d: usize, k: usize) -> Vec<Vec<usize>> {
    let n = x.len() / d;
    (0..n)
        .map(|i| {
            let xi = &x[i * d..(i + 1) * d];
            let mut dist: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let s: f32 = xi
                        .iter()
                        .zip(&x[j * d..(j + 1) * d])
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum();
                    (s, j)
                })
                .collect();
            dist.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            dist.into_iter().take(k).map(|(_, j)| j).collect()
        })
        .collect()
}

/// Mean over cells of the fraction of their k nearest neighbours with the same label.
fn same_label_fraction(x: &[f32], d: usize, labels: &[u32], k: usize) -> f64 {
    let nn = knn(x, d, k);
    let total: usize = nn
        .iter()
        .enumerate()
        .map(|(i, js)| js.iter().filter(|&&j| labels[j] == labels[i]).count())
        .sum();
    total as f64 / (nn.len() * k) as f64
}

/// splitmix64, for reproducible toy data without a dependency.
struct Toy(u64);
impl Toy {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u = self.next().max(1e-300);
        let v = self.next();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Three cell types × two batches, 100 cells each, in 10 dimensions; batch 1 is shifted by
/// a large offset, so before correction every cell's neighbours are from its own batch.
fn toy() -> (Vec<f32>, Vec<u32>, Vec<u32>, usize) {
    let d = 10;
    let mut rng = Toy(42);
    let (mut x, mut batches, mut types) = (Vec::new(), Vec::new(), Vec::new());
    for t in 0..3u32 {
        for b in 0..2u32 {
            for _ in 0..100 {
                for a in 0..d {
                    let centre = if a == t as usize { 8.0 } else { 0.0 };
                    let offset = if b == 1 && (5..9).contains(&a) {
                        3.0
                    } else {
                        0.0
                    };
                    x.push((centre + offset + 0.5 * rng.normal()) as f32);
                }
                batches.push(b);
                types.push(t);
            }
        }
    }
    (x, batches, types, d)
}

#[test]
fn toy_batches_go_from_separated_to_mixed() {
    let (x, batches, types, d) = toy();
    let n = batches.len();
    let out = harmony(&x, n, d, &batches, 2, &HarmonyOptions::default()).unwrap();
    let other = |emb: &[f32]| 1.0 - same_label_fraction(emb, d, &batches, 10);
    let (before, after) = (other(&x), other(&out.corrected));
    let (types_before, types_after) = (
        same_label_fraction(&x, d, &types, 10),
        same_label_fraction(&out.corrected, d, &types, 10),
    );
    eprintln!(
        "toy: other-batch share of 10 NN {before:.3} -> {after:.3}; same type {types_before:.3} -> {types_after:.3}; {} rounds, converged {}",
        out.iterations, out.converged
    );
    assert!(
        before < 0.05,
        "toy batches should start separated: {before}"
    );
    // harmonypy 2.1.0 on the same cells: 0.000 -> 0.318 as well.
    assert!(
        after > 0.25,
        "toy batches should mix (0.5 is perfect): {after}"
    );
    assert!(
        types_after > 0.95,
        "cell types should stay apart: {types_after}"
    );
}

#[test]
fn same_seed_same_bits_for_any_thread_count() {
    let (x, batches, _, d) = toy();
    let n = batches.len();
    let opts = HarmonyOptions {
        random_state: 3,
        ..Default::default()
    };
    let bits = |r: &HarmonyResult| r.corrected.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let a = harmony(&x, n, d, &batches, 2, &opts).unwrap();
    let b = harmony(&x, n, d, &batches, 2, &opts).unwrap();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| harmony(&x, n, d, &batches, 2, &opts).unwrap());
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(bits(&a), bits(&one));
    // And the seed matters: another one starts from other centroids.
    let other = harmony(
        &x,
        n,
        d,
        &batches,
        2,
        &HarmonyOptions {
            random_state: 4,
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(bits(&a), bits(&other));
}

fn invalid_message(r: Result<HarmonyResult, IntegrateError>) -> String {
    match r {
        Err(IntegrateError::Invalid(m)) => m,
        Err(e) => panic!("expected Invalid, got {e}"),
        Ok(_) => panic!("expected Invalid, got a result"),
    }
}

#[test]
fn bad_input_is_invalid_and_names_the_field() {
    let (x, batches, _, d) = toy();
    let n = batches.len();
    let opts = HarmonyOptions::default();
    let check = |r, field: &str| {
        let m = invalid_message(r);
        assert!(m.starts_with(field), "message should name {field}: {m}");
        assert!(!m.contains('\n'), "one line: {m}");
    };
    check(harmony(&x, n, d, &vec![1; n], 2, &opts), "batches");
    check(harmony(&x, n, d, &batches[..n - 1], 2, &opts), "batches");
    check(harmony(&x, n, d, &batches, 1, &opts), "batches");
    let mut nan = x.clone();
    nan[17] = f32::NAN;
    check(harmony(&nan, n, d, &batches, 2, &opts), "pcs");
    let mut inf = x.clone();
    inf[3] = f32::INFINITY;
    check(harmony(&inf, n, d, &batches, 2, &opts), "pcs");
    check(harmony(&[], n, 0, &batches, 2, &opts), "pcs");
    check(harmony(&x[..n * d - 1], n, d, &batches, 2, &opts), "pcs");
    let few = HarmonyOptions {
        nclust: Some(n + 1),
        ..Default::default()
    };
    check(harmony(&x, n, d, &batches, 2, &few), "nclust");
    // 10 cells of both batches: the default min(round(10 / 30), 100) is 0 clusters.
    check(
        harmony(&x[95 * d..105 * d], 10, d, &batches[95..105], 2, &opts),
        "nclust",
    );
    let bad_init = HarmonyOptions {
        init_centroids: Some(vec![0.0; 3]),
        ..Default::default()
    };
    check(harmony(&x, n, d, &batches, 2, &bad_init), "init_centroids");
    let bad_sigma = HarmonyOptions {
        sigma: 0.0,
        ..Default::default()
    };
    check(harmony(&x, n, d, &batches, 2, &bad_sigma), "sigma");
    let bad_block = HarmonyOptions {
        block_size: 0.0,
        ..Default::default()
    };
    check(harmony(&x, n, d, &batches, 2, &bad_block), "block_size");
}
