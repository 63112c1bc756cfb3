//! The one kNN every graph metric reads, as scib-metrics' `NeighborsResults` holds it: exact
//! euclidean neighbours, each cell itself first, computed once at the largest k (90, for LISI)
//! and cut to 50 (kBET) and 15 (graph connectivity, Leiden), as its `Benchmarker.prepare` does.

use scllm_eval::umap::{exact_knn, fuzzy_connectivities};

use crate::graph::Graph;

/// `k` nearest neighbours of `n` cells, row-major `n × k`, each row's own cell first.
#[derive(Clone, Debug)]
pub struct Neighbors {
    pub n: usize,
    pub k: usize,
    pub indices: Vec<u32>,
    /// Euclidean distances, ascending in a row.
    pub distances: Vec<f32>,
}

impl Neighbors {
    /// Exact euclidean neighbours of the row-major `n × d` matrix (O(n²·d), blocked GEMM).
    pub fn exact(data: &[f32], n: usize, d: usize, k: usize, progress: bool) -> Neighbors {
        let k = k.min(n);
        let (indices, distances) = exact_knn(data, n, d, k, progress);
        Neighbors {
            n,
            k,
            indices,
            distances,
        }
    }

    /// The first `k` neighbours of each cell (`subset_neighbors`).
    pub fn subset(&self, k: usize) -> Neighbors {
        let k = k.min(self.k);
        let mut indices = Vec::with_capacity(self.n * k);
        let mut distances = Vec::with_capacity(self.n * k);
        for i in 0..self.n {
            indices.extend_from_slice(&self.indices[i * self.k..i * self.k + k]);
            distances.extend_from_slice(&self.distances[i * self.k..i * self.k + k]);
        }
        Neighbors {
            n: self.n,
            k,
            indices,
            distances,
        }
    }

    /// The directed kNN graph weighted by distance (`knn_graph_distances`).
    pub fn distance_graph(&self) -> Graph {
        Graph::from_knn(self.n, self.k, &self.indices, &self.distances)
    }

    /// UMAP connectivities of this kNN (`knn_graph_connectivities`: umap-learn's fuzzy
    /// simplicial set, as scanpy's `neighbors`), symmetric.
    pub fn connectivities(&self) -> Graph {
        let t = fuzzy_connectivities(&self.indices, &self.distances, self.n, self.k);
        Graph::from_sorted_triples(self.n, &t)
    }
}
