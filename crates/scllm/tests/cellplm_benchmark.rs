//! `scllm benchmark`'s model methods on a CellPLM folder (a small random-init CellPLM written in
//! the released layout) over the committed kang2018 PBMC fixtures: `embed-knn` (set-wise
//! latent means, all cells one attention set: the fixtures have no `obs['batch']`) and
//! `finetune:full` (transductive training with donors as attention sets via the `group_by`
//! option) both report; the fine-tuned model beats the query's majority class clearly; an
//! option that does not apply to the model's family is refused by name.

mod common;

use common::{fixtures, random_cellplm, s, scllm};

#[test]
fn benchmark_runs_the_model_methods_on_a_random_cellplm() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("cellplm");
    let train = fixtures().join("eval/kang_ref.h5ad");
    let query = fixtures().join("eval/kang_query.h5ad");
    let a = scllm_io::read_h5ad(&train).unwrap();
    random_cellplm(&model, &a.var.index);
    let q = scllm_io::read_h5ad(&query).unwrap();
    let truth = q.obs.column("cell_type").unwrap().to_strings();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for t in truth.iter().flatten() {
        *counts.entry(t.clone()).or_default() += 1;
    }
    let majority = *counts.values().max().unwrap() as f64 / truth.len() as f64;

    let config = |methods: &str, extra: &str| {
        format!(
            "name = \"cellplm_kang\"\nlabel = \"cell_type\"\nmethods = {methods}\nseed = 0\n\
             model = {model:?}\n\n[data]\ntrain = {train:?}\nquery = {query:?}\n\n\
             [options.\"finetune:full\"]\nepochs = 40\nval_fraction = 0.2\nn_hvg = 0\n\
             group_by = \"donor\"\n{extra}",
            model = s(&model),
            train = s(&train),
            query = s(&query),
        )
    };
    let cfg = tmp.path().join("cellplm.toml");
    std::fs::write(&cfg, config(r#"["embed-knn", "finetune:full"]"#, "")).unwrap();
    let out = tmp.path().join("report");
    let (code, stdout, err) = scllm(&["benchmark", s(&cfg), "-o", s(&out), "--no-fewshot"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("embed-knn") && stdout.contains("finetune:full"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let row = |name: &str| {
        v["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no row {name}: {v}"))
            .clone()
    };
    let knn = row("embed-knn");
    let ft = row("finetune:full");
    for m in [&knn, &ft] {
        assert_eq!(m["status"], "ok", "{m}");
        let acc = m["metrics"]["accuracy"].as_f64().unwrap();
        let f1 = m["metrics"]["f1_macro"].as_f64().unwrap();
        eprintln!(
            "{}: query accuracy {acc:.4}, macro-F1 {f1:.4}, {:.1} s (majority {majority:.4})",
            m["name"], m["wall_seconds"]
        );
        assert!(
            (0.0..=1.0).contains(&acc) && (0.0..=1.0).contains(&f1),
            "{m}"
        );
    }
    assert_eq!(knn["trainable_params"], 0);
    let knn_sets = knn["details"]["cellplm"]["train"].as_str().unwrap();
    assert!(
        knn_sets.contains("1 attention sets: all cells one group"),
        "{knn_sets}"
    );
    assert_eq!(ft["details"]["family"], "cellplm");
    assert_eq!(ft["details"]["sets"], 7, "one attention set per donor");
    let q_sets = ft["details"]["query_sets"].as_str().unwrap();
    assert!(q_sets.contains("obs['donor'] (1 groups)"), "{q_sets}");
    assert!(ft["trainable_params"].as_u64().unwrap() > 0);
    let acc = ft["metrics"]["accuracy"].as_f64().unwrap();
    assert!(
        acc > majority + 0.3,
        "finetune:full query accuracy {acc} vs majority {majority}"
    );
    assert!(out.join("confusion_finetune_full.png").is_file());

    // max_len means nothing to CellPLM (cells are the tokens): the row fails, named
    std::fs::write(&cfg, config(r#"["finetune:full"]"#, "max_len = 100\n")).unwrap();
    let out2 = tmp.path().join("report2");
    let (code, _, err) = scllm(&["benchmark", s(&cfg), "-o", s(&out2), "--no-fewshot"]);
    assert_ne!(code, 0, "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out2.join("results.json")).unwrap())
            .unwrap_or_else(|e| panic!("{e}: {err}"));
    let ft = v["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "finetune:full")
        .unwrap();
    assert_eq!(ft["status"], "failed", "{ft}");
    let e = ft["error"].as_str().unwrap_or_default();
    assert!(e.contains("max_len") && e.contains("CellPLM"), "{ft}");

    // and group_by means nothing to a token family (the committed small scGPT)
    let scgpt = fixtures().join("scgpt/small");
    let t = format!(
        "name = \"scgpt_kang\"\nlabel = \"cell_type\"\nmethods = [\"embed-knn\"]\nseed = 0\n\
         model = {:?}\n\n[data]\ntrain = {:?}\nquery = {:?}\n\n[options.\"embed-knn\"]\n\
         group_by = \"donor\"\n",
        s(&scgpt),
        s(&train),
        s(&query)
    );
    std::fs::write(&cfg, t).unwrap();
    let out3 = tmp.path().join("report3");
    let (code, _, err) = scllm(&["benchmark", s(&cfg), "-o", s(&out3), "--no-fewshot"]);
    assert_ne!(code, 0, "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out3.join("results.json")).expect(&err))
            .unwrap_or_else(|e| panic!("{e}: {err}"));
    let e = v["methods"][0]["error"].as_str().unwrap_or_default();
    assert!(e.contains("group_by") && e.contains("CellPLM"), "{v}");
}
