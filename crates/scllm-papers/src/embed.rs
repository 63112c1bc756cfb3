//! A local, deterministic embedding step so chunks can go into a vector index without any hosted
//! API. It is feature hashing of word unigrams and bigrams (a lexical embedding, not a neural
//! model); its name and dimension travel with every vector so indexes never mix models.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HashingEmbedder {
    pub dim: usize,
}

impl HashingEmbedder {
    pub fn new(dim: usize) -> Self {
        HashingEmbedder {
            dim: dim.clamp(8, 4096),
        }
    }

    /// `hash-bow-<dim>`, stored as `embed_model` beside the vector.
    pub fn model_name(&self) -> String {
        format!("hash-bow-{}", self.dim)
    }

    /// L2-normalised vector; an empty text gives the zero vector.
    pub fn embed(&self, text: &str) -> Vec<f32> {
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() > 1)
            .map(str::to_lowercase)
            .collect();
        let mut v = vec![0f32; self.dim];
        let mut add = |s: &str, w: f32| {
            let h = fnv(s);
            let idx = (h % self.dim as u64) as usize;
            let sign = if (h >> 63) == 1 { -1.0 } else { 1.0 };
            v[idx] += sign * w;
        };
        for w in &words {
            add(w, 1.0);
        }
        for pair in words.windows(2) {
            add(&format!("{} {}", pair[0], pair[1]), 0.5);
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_texts_are_closer_than_unrelated_ones() {
        let e = HashingEmbedder::new(256);
        let a = e.embed("scGPT annotates T cells in PBMC data");
        let b = e.embed("T cells in PBMC data annotated by scGPT");
        let c = e.embed("Mass spectrometry of plant cell walls");
        assert!(cosine(&a, &b) > cosine(&a, &c) + 0.3);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        assert_eq!(e.embed("same"), e.embed("same"));
    }
}
