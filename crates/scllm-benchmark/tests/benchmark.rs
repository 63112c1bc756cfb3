//! End to end on the committed fixtures, few-shot sampling, CI math, and every bad-config error.

use std::path::{Path, PathBuf};

use scllm_benchmark::config::parse_config;
use scllm_benchmark::fewshot::{sample_fraction, sample_shots, t_quantile, MeanCi};
use scllm_benchmark::{
    load_config, render_main_table, run_benchmark, write_report, BenchMethod, MethodRegistry,
    Predictions, RunOptions,
};
use scllm_io::AnnData;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn quiet() -> RunOptions {
    RunOptions {
        progress: false,
        skip_fewshot: false,
    }
}

fn fixture(p: &str) -> String {
    root().join(p).canonicalize().unwrap().display().to_string()
}

/// Write `text` as a config file in a temp dir; returns (dir guard, path).
fn cfg(text: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bench.toml");
    std::fs::write(&p, text).unwrap();
    (d, p)
}

fn kang400() -> String {
    fixture("tests/fixtures/data/kang2018_pbmc_400.h5ad")
}

/// Load + instantiate + split: the error message of a bad config.
fn error_of(text: &str) -> String {
    let (_d, p) = cfg(text);
    let r = load_config(&p).and_then(|lc| {
        run_benchmark(
            &lc,
            &MethodRegistry::with_baselines(),
            &RunOptions {
                progress: false,
                skip_fewshot: true,
            },
        )
    });
    match r {
        Ok(_) => panic!("config should fail:\n{text}"),
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.contains("bench.toml"),
                "message must name the config file: {m}"
            );
            m
        }
    }
}

#[test]
fn tiny_config_end_to_end() {
    let lc = load_config(root().join("configs/tiny_kang_fixture.toml")).unwrap();
    let report = run_benchmark(&lc, &MethodRegistry::with_baselines(), &quiet()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = write_report(&report, dir.path(), None).unwrap();
    assert_eq!(files.len(), 3);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    let methods = json["methods"].as_array().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["logreg", "knn-pca", "correlation"]);
    for m in methods {
        assert_eq!(m["status"], "ok", "{m}");
        let x = &m["metrics"];
        for k in [
            "accuracy",
            "balanced_accuracy",
            "precision_macro",
            "recall_macro",
            "f1_macro",
            "precision_weighted",
            "recall_weighted",
            "f1_weighted",
        ] {
            let v = x[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{k} = {v}");
        }
        // a sane baseline on this split is far above chance
        assert!(x["accuracy"].as_f64().unwrap() > 0.8);
        let cm = x["confusion"].as_array().unwrap();
        let total: u64 = cm
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(total, 500);
        assert!(!x["per_class"].as_array().unwrap().is_empty());
        assert!(m["wall_seconds"].as_f64().unwrap() >= 0.0);
        assert!(m["trainable_params"].as_u64().unwrap() > 0);
    }
    assert_eq!(json["split"]["n_train"], 1050);
    assert_eq!(json["split"]["n_query"], 500);
    // few-shot: 3 settings x 3 seeds x 3 methods, all summarised
    let fs = &json["fewshot"]["settings"];
    assert_eq!(fs.as_array().unwrap().len(), 3);
    for s in fs.as_array().unwrap() {
        assert_eq!(s["runs"].as_array().unwrap().len(), 9);
        for sm in s["summary"].as_array().unwrap() {
            assert_eq!(sm["accuracy"]["n"], 3);
            assert!(sm["accuracy"]["ci95"].as_f64().is_some());
        }
    }
    // markdown: one row per method in the main table
    let md = std::fs::read_to_string(dir.path().join("results.md")).unwrap();
    let table = render_main_table(&report);
    assert!(md.contains(&table));
    for n in names {
        assert_eq!(
            table
                .lines()
                .filter(|l| l.starts_with(&format!("| {n} |")))
                .count(),
            1,
            "{table}"
        );
    }
    assert_eq!(table.lines().count(), 2 + 3);
    assert!(md.contains("Rare cell types"));
    assert!(md.contains("Megakaryocytes (n=5)"));
    assert!(md.contains("## Few-shot"));
    assert!(md.contains(" ± "));
    let tsv = std::fs::read_to_string(dir.path().join("predictions.tsv")).unwrap();
    let mut lines = tsv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "cell_id\ttruth\tlogreg\tknn-pca\tcorrelation"
    );
    assert_eq!(lines.count(), 500);
    // no temporary files left behind
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn labels(spec: &[(&str, usize)]) -> Vec<String> {
    spec.iter()
        .flat_map(|(l, n)| std::iter::repeat_n(l.to_string(), *n))
        .collect()
}

fn count(l: &[String], idx: &[usize], c: &str) -> usize {
    idx.iter().filter(|&&i| l[i] == c).count()
}

#[test]
fn shots_are_exact_and_small_classes_keep_all() {
    let l = labels(&[("a", 30), ("b", 5), ("c", 1), ("d", 16)]);
    for seed in 0..5 {
        let idx = sample_shots(&l, 8, seed);
        assert_eq!(count(&l, &idx, "a"), 8);
        assert_eq!(count(&l, &idx, "b"), 5);
        assert_eq!(count(&l, &idx, "c"), 1);
        assert_eq!(count(&l, &idx, "d"), 8);
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
    }
    assert_eq!(sample_shots(&l, 1, 3).len(), 4);
}

#[test]
fn fractions_are_stratified_and_seeded() {
    let l = labels(&[("a", 100), ("b", 40), ("c", 3)]);
    let idx = sample_fraction(&l, 0.25, 7);
    assert_eq!(count(&l, &idx, "a"), 25);
    assert_eq!(count(&l, &idx, "b"), 10);
    assert_eq!(count(&l, &idx, "c"), 1); // round(0.75) = 1
    let tiny = sample_fraction(&l, 0.01, 7);
    assert_eq!(
        count(&l, &tiny, "c"),
        1,
        "every class keeps at least one cell"
    );
    assert_eq!(sample_fraction(&l, 1.0, 7).len(), l.len());
    // determinism: same seed, same cells; another seed, other cells
    assert_eq!(sample_fraction(&l, 0.25, 7), sample_fraction(&l, 0.25, 7));
    assert_eq!(sample_shots(&l, 4, 11), sample_shots(&l, 4, 11));
    assert_ne!(sample_fraction(&l, 0.25, 7), sample_fraction(&l, 0.25, 8));
    assert_ne!(sample_shots(&l, 4, 11), sample_shots(&l, 4, 12));
}

#[test]
fn t_quantiles_and_ci() {
    // scipy.stats.t.ppf(0.975, df)
    for (df, want) in [
        (1.0, 12.706_204_736_174_694),
        (2.0, 4.302_652_729_749_462),
        (4.0, 2.776_445_105_197_793_4),
        (10.0, 2.228_138_851_986_274),
        (30.0, 2.042_272_456_301_237_8),
    ] {
        let got = t_quantile(0.975, df);
        assert!((got - want).abs() < 1e-8, "df {df}: {got} vs {want}");
    }
    assert!((t_quantile(0.025, 2.0) + 4.302_652_729_749_462).abs() < 1e-8);
    let m = MeanCi::of(&[1.0, 2.0, 3.0]);
    assert_eq!(m.n, 3);
    assert!((m.mean - 2.0).abs() < 1e-12);
    assert!((m.sd - 1.0).abs() < 1e-12);
    let want = 4.302_652_729_749_462 / 3f64.sqrt();
    assert!((m.ci95.unwrap() - want).abs() < 1e-8);
    assert_eq!(m.display(3), "2.000 ± 2.484");
    assert_eq!(MeanCi::of(&[0.5]).ci95, None);
}

#[test]
fn error_unknown_method_lists_known_ones() {
    let m = error_of(&format!(
        "methods = [\"logreg\", \"svm\"]\n[data]\nfile = \"{}\"\n[split]\nholdout = {{ column = \"donor\", value = \"101\" }}\n",
        kang400()
    ));
    assert!(m.contains("methods[1]") && m.contains("`svm`"), "{m}");
    for k in [
        "logreg",
        "knn-pca",
        "correlation",
        "scgpt-knn",
        "finetune:<strategy>",
    ] {
        assert!(m.contains(k), "{m}");
    }
}

#[test]
fn error_model_method_without_implementation() {
    let m = error_of(&format!(
        "methods = [\"logreg\", \"finetune:lora\"]\nmodel = \"{}\"\n[data]\nfile = \"{}\"\n[split]\nholdout = {{ column = \"donor\", value = \"101\" }}\n",
        root().display(),
        kang400()
    ));
    assert!(
        m.contains("methods[1]") && m.contains("finetune:lora"),
        "{m}"
    );
    assert!(m.contains("no implementation"), "{m}");
    // and one without a model directory (the engine leaves the default to the registering CLI)
    let m = error_of(&format!(
        "methods = [\"scgpt-knn\"]\n[data]\nfile = \"{}\"\n[split]\nholdout = {{ column = \"donor\", value = \"101\" }}\n",
        kang400()
    ));
    assert!(m.contains("scgpt-knn"), "{m}");
}

#[test]
fn error_missing_label_column_lists_obs_columns() {
    let m = error_of(&format!(
        "methods = [\"logreg\"]\nlabel = \"celltype\"\n[data]\nfile = \"{}\"\n[split]\nholdout = {{ column = \"donor\", value = \"101\" }}\n",
        kang400()
    ));
    assert!(m.contains("field `label`") && m.contains("celltype"), "{m}");
    assert!(m.contains("cell_type, donor, condition"), "{m}");
}

#[test]
fn error_missing_split_column_lists_obs_columns() {
    let m = error_of(&format!(
        "methods = [\"logreg\"]\n[data]\nfile = \"{}\"\n[split]\nholdout = {{ column = \"patient\", value = \"101\" }}\n",
        kang400()
    ));
    assert!(
        m.contains("split.holdout.column") && m.contains("patient"),
        "{m}"
    );
    assert!(m.contains("cell_type, donor, condition"), "{m}");
}

#[test]
fn error_holdout_value_absent_lists_values() {
    let m = error_of(&format!(
        "methods = [\"logreg\"]\n[data]\nfile = \"{}\"\n[split]\nholdout = {{ column = \"donor\", value = 9999 }}\n",
        kang400()
    ));
    assert!(
        m.contains("split.holdout.value") && m.contains("9999"),
        "{m}"
    );
    assert!(m.contains("101 (50)") && m.contains("1488 (50)"), "{m}");
}

#[test]
fn error_empty_train_and_query() {
    let m = error_of(&format!(
        "methods = [\"logreg\"]\n[data]\nfile = \"{}\"\ninclude = [{{ column = \"donor\", values = [101] }}]\n[split]\nholdout = {{ column = \"donor\", value = \"101\" }}\n",
        kang400()
    ));
    assert!(m.contains("training set is empty"), "{m}");
    assert!(m.contains("field `split`"), "{m}");
    let m = error_of(&format!(
        "methods = [\"logreg\"]\n[data]\nfile = \"{}\"\nexclude = [{{ column = \"donor\", values = [\"101\"] }}]\n[split]\nholdout = {{ column = \"donor\", value = \"101\" }}\n",
        kang400()
    ));
    assert!(m.contains("query set is empty"), "{m}");
}

#[test]
fn error_missing_files() {
    let m = error_of(
        "methods = [\"logreg\"]\n[data]\nfile = \"nope/missing.h5ad\"\n[split]\nholdout = { column = \"donor\", value = \"101\" }\n",
    );
    assert!(
        m.contains("data.file") && m.contains("file not found") && m.contains("missing.h5ad"),
        "{m}"
    );
    let m = error_of(&format!(
        "methods = [\"logreg\"]\n[data]\ntrain = \"{}\"\nquery = \"q.h5ad\"\n",
        kang400()
    ));
    assert!(
        m.contains("data.query") && m.contains("file not found"),
        "{m}"
    );
    let m = error_of(&format!(
        "methods = [\"logreg\"]\n[data]\nfile = \"{}\"\n[split]\nfraction = 0.2\n[label_map]\nfile = \"none.tsv\"\n",
        kang400()
    ));
    assert!(
        m.contains("label_map.file") && m.contains("none.tsv"),
        "{m}"
    );
}

#[test]
fn error_unknown_fields_and_bad_values() {
    let m = error_of(&format!(
        "methods = [\"logreg\"]\nlabels = \"x\"\n[data]\nfile = \"{}\"\n[split]\nfraction = 0.2\n",
        kang400()
    ));
    assert!(m.contains("labels"), "{m}");
    let m = error_of(&format!(
        "methods = [\"logreg\"]\n[data]\nfile = \"{}\"\n[split]\nfraction = 1.5\n",
        kang400()
    ));
    assert!(m.contains("split.fraction"), "{m}");
    let m = error_of(&format!(
        "methods = [\"logreg\"]\n[data]\nfile = \"{}\"\n[split]\nfraction = 0.2\n[options.knn-pca]\nk = 5\n",
        kang400()
    ));
    assert!(m.contains("options.knn-pca"), "{m}");
    let m = error_of(&format!(
        "methods = [\"logreg\"]\n[data]\nfile = \"{}\"\n[split]\nfraction = 0.2\n[options.logreg]\ncc = 5\n",
        kang400()
    ));
    assert!(m.contains("options.logreg") && m.contains("cc"), "{m}");
    let m = error_of(&format!(
        "methods = [\"logreg\"]\n[data]\nfile = \"{}\"\n",
        kang400()
    ));
    assert!(m.contains("field `split`"), "{m}");
    let m = error_of(&format!(
        "methods = [\"logreg\"]\n[data]\nfile = \"{}\"\n[split]\nfraction = 0.2\n[fewshot]\nshots = [0]\n",
        kang400()
    ));
    assert!(m.contains("fewshot.shots"), "{m}");
}

#[test]
fn label_map_and_fraction_split() {
    let map = fixture("tests/fixtures/benchmark/kang_coarse_small.tsv");
    let (_d, p) = cfg(&format!(
        "methods = [\"correlation\"]\n[data]\nfile = \"{}\"\ndrop_labels = [\"Other\"]\n[split]\nfraction = 0.3\nseed = 1\n[label_map]\nfile = \"{map}\"\n",
        kang400()
    ));
    let lc = load_config(&p).unwrap();
    let rep = run_benchmark(
        &lc,
        &MethodRegistry::with_baselines(),
        &RunOptions {
            progress: false,
            skip_fewshot: true,
        },
    )
    .unwrap();
    let classes: Vec<&String> = rep.split.train_classes.keys().collect();
    assert_eq!(classes, ["B", "Mono", "NK", "T"]);
    assert_eq!(
        rep.split.removed.get("label `Other` in data.drop_labels"),
        Some(&1)
    );
    // stratified: round(0.3 n) query cells per class
    assert_eq!(
        rep.split.query_classes["T"],
        (0.3f64 * 205.0).round() as usize
    );
    assert_eq!(rep.split.n_train + rep.split.n_query, 399);
    // a label missing from the map is an error listing it
    std::fs::write(
        p.parent().unwrap().join("map.tsv"),
        "label\tcoarse\nB cells\tB\n",
    )
    .unwrap();
    let m = error_of(&format!(
        "methods = [\"logreg\"]\n[data]\nfile = \"{}\"\n[split]\nfraction = 0.2\n[label_map]\nfile = \"{}\"\n",
        kang400(),
        p.parent().unwrap().join("map.tsv").display()
    ));
    assert!(
        m.contains("label_map") && m.contains("CD4 T cells (173)"),
        "{m}"
    );
}

/// A model method registered by the caller: predicts the most frequent training label.
struct Majority(String);
impl BenchMethod for Majority {
    fn name(&self) -> String {
        self.0.clone()
    }
    fn trainable_params(&self) -> Option<usize> {
        Some(42)
    }
    fn run(
        &self,
        train: &AnnData,
        query: &AnnData,
        label: &str,
        _seed: u64,
    ) -> scllm_benchmark::Result<Predictions> {
        let l = train.obs.column(label).unwrap().to_strings();
        let mut c = std::collections::BTreeMap::new();
        for x in l.into_iter().flatten() {
            *c.entry(x).or_insert(0) += 1;
        }
        let top = c.into_iter().max_by_key(|(_, n)| *n).unwrap().0;
        Ok(Predictions {
            labels: vec![top; query.n_obs()],
            ..Default::default()
        })
    }
}

#[test]
fn registered_model_methods_run() {
    let mut reg = MethodRegistry::with_baselines();
    reg.register_prefix("finetune:", |spec| {
        assert_eq!(spec.strategy.as_deref(), Some("lora"));
        assert_eq!(
            spec.options.get("rank").and_then(|v| v.as_integer()),
            Some(8)
        );
        Ok(Box::new(Majority(spec.name.clone())) as Box<dyn BenchMethod>)
    });
    let text = format!(
        "methods = [\"finetune:lora\"]\nmodel = \"{}\"\n[data]\ntrain = \"{}\"\nquery = \"{}\"\n[options.\"finetune:lora\"]\nrank = 8\n",
        root().display(),
        fixture("tests/fixtures/eval/kang_ref.h5ad"),
        fixture("tests/fixtures/eval/kang_query.h5ad"),
    );
    let lc = parse_config(&text, Path::new("/tmp/inline.toml")).unwrap();
    let rep = run_benchmark(&lc, &reg, &quiet()).unwrap();
    assert_eq!(rep.methods[0].name, "finetune:lora");
    assert_eq!(rep.methods[0].trainable_params, Some(42));
    let acc = rep.methods[0].metrics.as_ref().unwrap().accuracy;
    assert!((acc - 173.0 / 500.0).abs() < 1e-12, "{acc}");
}

#[test]
fn per_class_caps_subsample_train_and_query() {
    let text = |extra: &str| {
        format!(
            "methods = [\"correlation\"]\n[data]\nfile = \"{}\"\n{extra}[split]\nholdout = {{ column = \"donor\", value = \"1015\" }}\n",
            kang400()
        )
    };
    let run = |t: &str| {
        let (_d, p) = cfg(t);
        let lc = load_config(&p).unwrap();
        run_benchmark(
            &lc,
            &MethodRegistry::with_baselines(),
            &RunOptions {
                progress: false,
                skip_fewshot: true,
            },
        )
        .unwrap()
        .split
    };
    let full = run(&text(""));
    let capped = run(&text("max_train_per_class = 10\nmax_query_per_class = 5\n"));
    for (c, &n) in &full.train_classes {
        assert_eq!(capped.train_classes[c], n.min(10), "train {c}");
    }
    for (c, &n) in &full.query_classes {
        assert_eq!(capped.query_classes[c], n.min(5), "query {c}");
    }
    assert!(capped
        .notes
        .iter()
        .any(|n| n.contains("at most 10 cells per class")));
    let m = error_of(&text("max_train_per_class = 0\n"));
    assert!(m.contains("data.max_train_per_class"), "{m}");
}
