use std::path::PathBuf;

use clap::Args;
use scllm_io::{read_any, AnnData, Column};
use scllm_pp::detect_values;
use serde_json::json;

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  scllm inspect tests/fixtures/data/kang2018_pbmc_400.h5ad --label cell_type\n  scllm inspect data.h5ad --json | jq .x.kind"
)]
pub struct InspectArgs {
    /// An .h5ad file, a 10x folder (matrix.mtx + features.tsv + barcodes.tsv) or a CSV table
    pub file: PathBuf,
    /// obs column whose value counts to show (default: cell_type when present)
    #[arg(long)]
    pub label: Option<String>,
    /// Print machine-readable JSON instead of text
    #[arg(long)]
    pub json: bool,
}

fn label_counts(col: &Column) -> Vec<(String, usize)> {
    let mut m: std::collections::BTreeMap<String, usize> = Default::default();
    for v in col.to_strings() {
        *m.entry(v.unwrap_or_else(|| "NaN (unlabeled)".into()))
            .or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn columns_json(cols: &[(String, Column)]) -> serde_json::Value {
    cols.iter()
        .map(|(n, c)| {
            let distinct: std::collections::HashSet<Option<String>> =
                c.to_strings().into_iter().collect();
            json!({"name": n, "kind": c.kind(), "distinct": distinct.len()})
        })
        .collect()
}

pub fn summary(a: &AnnData, label: Option<&str>) -> anyhow::Result<serde_json::Value> {
    let x = a.x()?;
    let report = detect_values(x);
    let label_name = match label {
        Some(l) => {
            a.obs_column(l)?;
            Some(l.to_string())
        }
        None => a.obs.column("cell_type").map(|_| "cell_type".to_string()),
    };
    let labels = label_name.as_ref().map(|l| {
        let c = a.obs.column(l).expect("checked");
        json!({"column": l, "counts": label_counts(c).into_iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>()})
    });
    let mut dup: Vec<&String> = {
        let mut seen = std::collections::HashSet::new();
        a.var.index.iter().filter(|g| !seen.insert(*g)).collect()
    };
    dup.dedup();
    Ok(json!({
        "file": a.source.as_ref().map(|p| p.display().to_string()),
        "n_obs": a.n_obs(),
        "n_vars": a.n_vars(),
        "x": {
            "storage": x.kind(),
            "dtype": x.values().dtype(),
            "stored": x.stored(),
            "density": x.stored() as f64 / (a.n_obs() as f64 * a.n_vars() as f64).max(1.0),
            "kind": report.kind.as_str(),
            "min": report.min,
            "max": report.max,
            "has_nan": report.has_nan,
            "explanation": report.explanation,
        },
        "layers": a.layers.iter().map(|(n, m)| json!({"name": n, "storage": m.kind(), "dtype": m.values().dtype(), "kind": detect_values(m).kind.as_str()})).collect::<Vec<_>>(),
        "obsm": a.obsm.iter().map(|(n, m)| json!({"name": n, "shape": [m.shape().0, m.shape().1]})).collect::<Vec<_>>(),
        "raw": a.raw.as_ref().map(|r| json!({"n_vars": r.var.nrows(), "kind": detect_values(&r.x).kind.as_str()})),
        "obs": columns_json(&a.obs.columns),
        "var": columns_json(&a.var.columns),
        "duplicate_gene_names": dup.len(),
        "uns": a.uns.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        "labels": labels,
        "skipped": a.skipped,
    }))
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let a = read_any(&args.file)?;
    let s = summary(&a, args.label.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("{}", args.file.display());
    println!("  {} cells x {} genes", s["n_obs"], s["n_vars"]);
    let x = &s["x"];
    println!(
        "  X: {} {} ({} stored, density {:.3}) — {}",
        x["storage"].as_str().unwrap_or(""),
        x["dtype"].as_str().unwrap_or(""),
        x["stored"],
        x["density"].as_f64().unwrap_or(0.0),
        x["explanation"].as_str().unwrap_or("")
    );
    if x["has_nan"].as_bool() == Some(true) {
        println!("  warning: X contains NaN values");
    }
    for l in s["layers"].as_array().unwrap() {
        println!(
            "  layer {}: {} {} ({})",
            l["name"].as_str().unwrap(),
            l["storage"].as_str().unwrap(),
            l["dtype"].as_str().unwrap(),
            l["kind"].as_str().unwrap()
        );
    }
    if let Some(r) = s["raw"].as_object() {
        println!(
            "  raw: {} genes ({})",
            r["n_vars"],
            r["kind"].as_str().unwrap_or("")
        );
    }
    for o in s["obsm"].as_array().unwrap() {
        println!(
            "  obsm {}: {}x{}",
            o["name"].as_str().unwrap(),
            o["shape"][0],
            o["shape"][1]
        );
    }
    let cols = |k: &str| -> String {
        s[k].as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} ({}, {} distinct)",
                    c["name"].as_str().unwrap(),
                    c["kind"].as_str().unwrap(),
                    c["distinct"]
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("  obs: {}", cols("obs"));
    println!("  var: {}", cols("var"));
    if s["duplicate_gene_names"].as_u64().unwrap_or(0) > 0 {
        println!(
            "  warning: {} gene names occur more than once in var.index",
            s["duplicate_gene_names"]
        );
    }
    if let Some(l) = s["labels"].as_object() {
        println!("  labels in obs['{}']:", l["column"].as_str().unwrap());
        for p in l["counts"].as_array().unwrap() {
            println!("    {:>7}  {}", p[1], p[0].as_str().unwrap());
        }
    }
    for sk in s["skipped"].as_array().unwrap() {
        println!("  not read: {}", sk.as_str().unwrap());
    }
    Ok(())
}
