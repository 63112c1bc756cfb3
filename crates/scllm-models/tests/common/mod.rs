//! Helpers shared by the integration tests: fixture paths and the reference outputs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use scllm_models::BatchInput;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}
pub fn scgpt_dir(name: &str) -> PathBuf {
    fixtures().join("scgpt").join(name)
}

/// A tensor of `outputs.safetensors`: shape and values (integers and u8 widened to f64).
pub struct Ref {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

pub fn read_outputs(dir: &Path) -> HashMap<String, Ref> {
    read_safetensors(&dir.join("outputs.safetensors"))
}

/// Every tensor of a safetensors file (integers and u8 widened to f64).
pub fn read_safetensors(path: &Path) -> HashMap<String, Ref> {
    use safetensors::{Dtype, SafeTensors};
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut m = HashMap::new();
    for (name, v) in st.tensors() {
        let b = v.data();
        let data: Vec<f64> = match v.dtype() {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            Dtype::I64 => b
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            Dtype::U8 => b.iter().map(|&x| x as f64).collect(),
            other => panic!("{name}: unexpected dtype {other:?}"),
        };
        m.insert(
            name,
            Ref {
                shape: v.shape().to_vec(),
                data,
            },
        );
    }
    m
}

pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Max |a - b| over positions whose row of `[B, L, ...]` is not padding (`keep[b*L + l]`).
pub fn max_diff_kept(a: &[f32], b: &[f64], keep: &[bool], inner: usize) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let mut m = 0f64;
    for (p, &k) in keep.iter().enumerate() {
        if !k {
            continue;
        }
        for j in 0..inner {
            let i = p * inner + j;
            m = m.max((a[i] as f64 - b[i]).abs());
        }
    }
    m
}

pub fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
}

/// A fixture's padded batch (`genes`, `values`, `padding` of its outputs.safetensors).
pub struct Batch {
    pub b: usize,
    pub l: usize,
    pub genes: Vec<i64>,
    pub values: Vec<f32>,
    pub padding: Vec<bool>,
}

impl Batch {
    pub fn of(dir: &Path) -> Batch {
        let r = read_outputs(dir);
        Batch {
            b: r["genes"].shape[0],
            l: r["genes"].shape[1],
            genes: r["genes"].data.iter().map(|&x| x as i64).collect(),
            values: r["values"].data.iter().map(|&x| x as f32).collect(),
            padding: r["padding"].data.iter().map(|&x| x != 0.0).collect(),
        }
    }
    pub fn input(&self) -> BatchInput<'_> {
        BatchInput {
            batch: self.b,
            seq_len: self.l,
            genes: &self.genes,
            values: &self.values,
            padding: &self.padding,
        }
    }
    pub fn keep(&self) -> Vec<bool> {
        self.padding.iter().map(|p| !p).collect()
    }
}
