//! `--precision bf16|int8` end to end: every kernel this CPU can run (each pinned in its own
//! process through `GEMMKIT_REQUIRE_ISA`, as gemmkit picks once per process) embeds the kang
//! fixture close to f32 and says which kernel ran; `--check` reports the comparison; a
//! fine-tuned model predicts the same labels in bf16 and int8; bad settings are clean errors.

mod common;

use std::path::Path;

use common::*;

fn model() -> std::path::PathBuf {
    fixtures().join("scgpt/small")
}
fn data() -> std::path::PathBuf {
    fixtures().join("data/kang2018_pbmc_400.h5ad")
}

/// The kernels this CPU offers, as `GEMMKIT_REQUIRE_ISA` values, with the words the kernel
/// name must hold for bf16 and for int8.
fn pins() -> Vec<(&'static str, &'static str, &'static str)> {
    let mut v = vec![("scalar", "scalar", "scalar")];
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            v.push(("avx2", "AVX2+FMA", "AVX2+FMA"));
        }
        if has!("avx512f") {
            v.push(("avx512f", "widened on AVX-512F", "widened on AVX-512F"));
        }
        if has!("avx512f") && has!("avx512bf16") {
            v.push(("avx512bf16", "vdpbf16ps", "widened on AVX-512F"));
        }
        if has!("avx512f") && has!("avx512bw") && has!("avx512vnni") {
            v.push(("avx512vnni", "widened on AVX-512F", "vpdpbusd"));
        }
    }
    v
}

/// `scllm embed` of the kang fixture; returns the summary and the embeddings.
fn embed(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> (serde_json::Value, Vec<f32>) {
    let (model, data) = (model(), data());
    let mut args = vec![
        "embed",
        "--model",
        s(&model),
        s(&data),
        "-o",
        s(out),
        "--max-len",
        "128",
        "--json",
    ];
    args.extend_from_slice(extra);
    let (code, stdout, err) = scllm_env(&args, env);
    assert_eq!(code, 0, "{extra:?} {env:?}: {err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let a = scllm_io::read_h5ad(out).unwrap();
    let e = scllm_eval::anndata_input::obsm_dense(a.obsm_get("X_scGPT").unwrap());
    (v, e)
}

fn min_cosine(a: &[f32], b: &[f32], d: usize) -> f64 {
    a.chunks(d)
        .zip(b.chunks(d))
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
            let n = |v: &[f32]| v.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            dot / (n(x) * n(y))
        })
        .fold(1.0, f64::min)
}

#[test]
fn every_kernel_this_cpu_has_embeds_close_to_f32_and_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (v, reference) = embed(&tmp.path().join("f32.h5ad"), &["--precision", "f32"], &[]);
    assert_eq!(v["precision"], "f32");
    assert_eq!(v["precision_default"], false);
    let d = v["dim"].as_u64().unwrap() as usize;
    for (pin, bf16_words, int8_words) in pins() {
        for (p, words, min) in [("bf16", bf16_words, 0.999), ("int8", int8_words, 0.995)] {
            let out = tmp.path().join(format!("{pin}_{p}.h5ad"));
            let (v, e) = embed(&out, &["--precision", p], &[("GEMMKIT_REQUIRE_ISA", pin)]);
            let kernel = v["kernel"].as_str().unwrap();
            assert_eq!(v["precision"], p);
            assert!(
                kernel.starts_with(p) && kernel.contains(words),
                "{pin} {p}: kernel `{kernel}`"
            );
            let c = min_cosine(&reference, &e, d);
            eprintln!("{pin} {p} ({kernel}): min cosine to f32 over 400 cells {c:.6}");
            assert!(c >= min && c < 1.0 - 1e-9, "{pin} {p}: {c}");
        }
    }
}

#[test]
fn check_compares_the_precision_with_f32_on_the_users_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let (v, _) = embed(
        &tmp.path().join("o.h5ad"),
        &[
            "--precision",
            "int8",
            "--check",
            "120",
            "--check-label",
            "cell_type",
        ],
        &[],
    );
    let c = &v["check"];
    assert_eq!(c["cells"], 120);
    assert!(c["cosine"]["min"].as_f64().unwrap() >= 0.995, "{c}");
    assert!(c["cosine"]["median"].as_f64().unwrap() < 1.0, "{c}");
    assert!(c["neighbours_shared"].as_f64().unwrap() > 0.5, "{c}");
    eprintln!("{c}");
    // the fixture is a random model whose cells lie close together (10-NN accuracy ~0.4), so
    // votes are near ties and a few flip under any perturbation: a loose bound, the real
    // numbers are bench/precision_embed.sh's
    let l = &c["labels"];
    assert!(l["same_prediction"].as_f64().unwrap() >= 0.8, "{l}");
    let (a, b) = (
        l["accuracy_reference"].as_f64().unwrap(),
        l["accuracy_other"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 0.05, "{l}");
    // the terminal lines say the same
    let (code, _, err) = scllm(&[
        "embed",
        "--model",
        s(&model()),
        s(&data()),
        "-o",
        s(&tmp.path().join("p.h5ad")),
        "--max-len",
        "128",
        "--precision",
        "bf16",
        "--check",
        "50",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("check: 50 cells, bf16 vs f32: cosine min"),
        "{err}"
    );
    assert!(
        err.contains("; bf16 ") && err.contains("cells/s"),
        "the summary line names the kernel: {err}"
    );
}

#[test]
fn bad_precision_settings_are_clean_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o.h5ad");
    let (model, data) = (model(), data());
    let base = ["embed", "--model", s(&model), s(&data), "-o", s(&out)];
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        scllm_env(&a, env)
    };
    let (code, _, err) = run(&["--precision", "fp8"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("fp8") && err.contains("bf16"), "{err}");
    let (code, _, err) = run(&["--precision", "bf16"], &[("GEMMKIT_REQUIRE_ISA", "sse9")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("GEMMKIT_REQUIRE_ISA=sse9") && !err.contains("panicked"),
        "{err}"
    );
    let (code, _, err) = run(&["--check", "10", "--precision", "f32"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--check") && err.contains("--precision"),
        "{err}"
    );
    assert!(!out.exists(), "no output after an error");
}

#[test]
fn a_fine_tuned_model_predicts_the_same_labels_in_bf16_and_int8() {
    let tmp = tempfile::tempdir().unwrap();
    let ad = tmp.path().join("adapter");
    let (code, _, err) = scllm(&[
        "finetune",
        "--model",
        s(&model()),
        "--train",
        s(&data()),
        "--label",
        "cell_type",
        "--method",
        "full",
        "--val-by",
        "donor=1015",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--max-len",
        "128",
        "--lr",
        "1e-3",
        "-o",
        s(&ad),
        "--min-cells-per-class",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    let (model, data) = (model(), data());
    let annotate = |p: &str| {
        let out = tmp.path().join(format!("annotated_{p}.h5ad"));
        let mut args = vec![
            "annotate",
            "--model",
            s(&model),
            "--adapter",
            s(&ad),
            s(&data),
            "-o",
            s(&out),
            "--max-len",
            "128",
            "--unknown-below",
            "0",
            "--json",
        ];
        // "default": no --precision, this CPU's default
        if p != "default" {
            args.extend(["--precision", p]);
        }
        let (code, stdout, err) = scllm(&args);
        assert_eq!(code, 0, "{p}: {err}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["precision_default"], p == "default");
        let p = if p == "default" { cpu_default() } else { p };
        assert_eq!(v["precision"], p);
        let a = scllm_io::read_h5ad(&out).unwrap();
        let labels = a.obs_column("predicted_cell_type").unwrap().to_strings();
        let uns = format!("{:?}", a.uns_get("scllm_annotate"));
        assert!(uns.contains(p), "uns records the precision: {uns}");
        labels
    };
    let reference = annotate("f32");
    for p in ["bf16", "int8"] {
        let got = annotate(p);
        let same = reference.iter().zip(&got).filter(|(a, b)| a == b).count();
        let share = same as f64 / reference.len() as f64;
        eprintln!("{p}: {same} of {} labels as in f32", reference.len());
        assert!(share >= 0.99, "{p}: {share}");
    }
    let defaulted = annotate("default");
    assert_eq!(defaulted, annotate(cpu_default()));
}

/// The precision `embed` and `annotate` take without `--precision`: bf16 where bf16 runs on
/// AVX-512 BF16, else f32.
fn cpu_default() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bf16") {
            return "bf16";
        }
    }
    "f32"
}

/// Without `--precision`, embed runs this CPU's default (the same embedding as asking for it),
/// says so in the summary and on stderr, and a pin off the AVX-512 BF16 kernel makes it f32.
#[test]
fn the_default_is_bf16_where_the_cpu_has_avx512_bf16_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let want = cpu_default();
    let (v, defaulted) = embed(&tmp.path().join("default.h5ad"), &[], &[]);
    assert_eq!(v["precision"], want);
    assert_eq!(v["precision_default"], true);
    let (v, asked) = embed(&tmp.path().join("asked.h5ad"), &["--precision", want], &[]);
    assert_eq!(v["precision_default"], false);
    assert!(defaulted
        .iter()
        .zip(&asked)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    let out = tmp.path().join("text.h5ad");
    let (model, data) = (model(), data());
    let args = [
        "embed",
        "--model",
        s(&model),
        s(&data),
        "-o",
        s(&out),
        "--max-len",
        "128",
    ];
    let (code, _, err) = scllm(&args);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("precision: {want}")) && err.contains("default"),
        "{err}"
    );
    if want == "bf16" {
        // another kernel pinned: bf16 would not run on scllm's kernel, so f32
        let (v, _) = embed(
            &tmp.path().join("pinned.h5ad"),
            &[],
            &[("GEMMKIT_REQUIRE_ISA", "avx512f")],
        );
        assert_eq!(v["precision"], "f32");
        assert_eq!(v["precision_default"], true);
    }
}

#[test]
fn the_benchmark_model_methods_take_a_precision() {
    let tmp = tempfile::tempdir().unwrap();
    let train = fixtures().join("eval/kang_ref.h5ad");
    let query = fixtures().join("eval/kang_query.h5ad");
    let run = |precision: &str| {
        let cfg = tmp.path().join(format!("{precision}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "name = \"precision\"\nlabel = \"cell_type\"\nseed = 0\n\
                 methods = [\"embed-knn\", \"finetune:head\"]\nmodel = {model:?}\n\n\
                 [data]\ntrain = {train:?}\nquery = {query:?}\n\n\
                 [options.embed-knn]\nmax_len = 128\nprecision = \"{precision}\"\n\n\
                 [options.\"finetune:head\"]\nepochs = 1\nmax_len = 128\nprecision = \"{precision}\"\n",
                model = s(&model()),
                train = s(&train),
                query = s(&query),
            ),
        )
        .unwrap();
        let out = tmp.path().join(format!("report_{precision}"));
        let (code, _, err) = scllm(&["benchmark", s(&cfg), "-o", s(&out), "--no-fewshot"]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap())
                .unwrap();
        v["methods"].as_array().unwrap().clone()
    };
    let f32_rows = run("f32");
    let bf16_rows = run("bf16");
    for (a, b) in f32_rows.iter().zip(&bf16_rows) {
        assert_eq!(a["name"], b["name"]);
        assert_eq!(b["status"], "ok", "{b}");
        assert_eq!(a["details"]["precision"]["precision"], "f32", "{a}");
        let p = &b["details"]["precision"];
        assert_eq!(p["precision"], "bf16", "{b}");
        assert!(p["kernel"].as_str().unwrap().starts_with("bf16"), "{p}");
        let (x, y) = (
            a["metrics"]["accuracy"].as_f64().unwrap(),
            b["metrics"]["accuracy"].as_f64().unwrap(),
        );
        eprintln!("{}: accuracy f32 {x:.4}, bf16 {y:.4}", a["name"]);
        assert!((x - y).abs() <= 0.02, "{}: {x} vs {y}", a["name"]);
    }
}

#[test]
fn convert_saves_bf16_weights_that_embed_exactly_as_converting_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (model(), data());
    let f32_file = tmp.path().join("f32.safetensors");
    let bf16_file = tmp.path().join("bf16.safetensors");
    for (p, f) in [("f32", &f32_file), ("bf16", &bf16_file)] {
        let (code, _, err) = scllm(&[
            "convert",
            "--model",
            s(&model),
            "-o",
            s(f),
            "--precision",
            p,
        ]);
        assert_eq!(code, 0, "{p}: {err}");
    }
    let (a, b) = (
        std::fs::metadata(&f32_file).unwrap().len(),
        std::fs::metadata(&bf16_file).unwrap().len(),
    );
    eprintln!("f32 {a} bytes, bf16 {b} bytes");
    assert!((b as f64) < 0.75 * a as f64, "{a} vs {b}");
    let embed_with = |weights: &Path, name: &str| {
        let out = tmp.path().join(name);
        let (code, _, err) = scllm(&[
            "embed",
            "--model",
            s(&model),
            "--weights",
            s(weights),
            s(&data),
            "-o",
            s(&out),
            "--max-len",
            "128",
            "--precision",
            "bf16",
        ]);
        assert_eq!(code, 0, "{err}");
        let a = scllm_io::read_h5ad(&out).unwrap();
        scllm_eval::anndata_input::obsm_dense(a.obsm_get("X_scGPT").unwrap())
    };
    assert_eq!(
        embed_with(&f32_file, "a.h5ad"),
        embed_with(&bf16_file, "b.h5ad"),
        "bf16 weights on disk convert losslessly"
    );
    let (code, _, err) = scllm(&[
        "convert",
        "--model",
        s(&model),
        "-o",
        s(&tmp.path().join("i8.safetensors")),
        "--precision",
        "int8",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("int8") && err.contains("--precision int8"),
        "{err}"
    );
    assert!(!tmp.path().join("i8.safetensors").exists());
}
