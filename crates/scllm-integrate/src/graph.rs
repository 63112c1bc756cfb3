//! Sparse cell graphs (CSR) and their strongly connected components, as scipy's
//! `csgraph.connected_components(connection="strong")` finds them.
//!
//! Why not a crate: petgraph (the maintained graph crate, not otherwise in our tree) would need
//! each label's subgraph copied into its own structure; Tarjan's algorithm over the CSR arrays we
//! already hold is a few dozen lines (written iteratively: a recursive one overflows the stack on
//! a 100k-cell chain).

/// A directed graph over `n` nodes in CSR form; every stored entry is an edge (as scipy treats
/// explicitly stored zeros: a kNN graph's zero distances still connect).
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub n: usize,
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub weights: Vec<f32>,
}

impl Graph {
    /// From `(row, col, weight)` triples sorted by row (then column).
    pub fn from_sorted_triples(n: usize, triples: &[(u32, u32, f32)]) -> Graph {
        let mut indptr = vec![0usize; n + 1];
        for &(r, _, _) in triples {
            indptr[r as usize + 1] += 1;
        }
        for i in 0..n {
            indptr[i + 1] += indptr[i];
        }
        Graph {
            n,
            indptr,
            indices: triples.iter().map(|t| t.1).collect(),
            weights: triples.iter().map(|t| t.2).collect(),
        }
    }

    /// The `k` nearest neighbours of each node as edges (row-major `n × k` indices, weights).
    pub fn from_knn(n: usize, k: usize, indices: &[u32], weights: &[f32]) -> Graph {
        Graph {
            n,
            indptr: (0..=n).map(|i| i * k).collect(),
            indices: indices.to_vec(),
            weights: weights.to_vec(),
        }
    }

    /// Edges `(col, weight)` out of node `i`.
    pub fn row(&self, i: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let (a, b) = (self.indptr[i], self.indptr[i + 1]);
        self.indices[a..b]
            .iter()
            .copied()
            .zip(self.weights[a..b].iter().copied())
    }

    /// The subgraph induced by `nodes` (ascending), renumbered 0.. in that order (scipy's
    /// `graph[mask][:, mask]`); columns stay sorted within a row when they were.
    pub fn subgraph(&self, nodes: &[usize]) -> Graph {
        let mut new_id = vec![u32::MAX; self.n];
        for (k, &i) in nodes.iter().enumerate() {
            new_id[i] = k as u32;
        }
        let mut g = Graph {
            n: nodes.len(),
            indptr: Vec::with_capacity(nodes.len() + 1),
            indices: Vec::new(),
            weights: Vec::new(),
        };
        g.indptr.push(0);
        for &i in nodes {
            for (j, w) in self.row(i) {
                let nj = new_id[j as usize];
                if nj != u32::MAX {
                    g.indices.push(nj);
                    g.weights.push(w);
                }
            }
            g.indptr.push(g.indices.len());
        }
        g
    }

    /// Strongly connected components: `(count, component of each node)`, numbered in the order
    /// Tarjan's algorithm closes them.
    pub fn strong_components(&self) -> (usize, Vec<u32>) {
        const NONE: u32 = u32::MAX;
        let n = self.n;
        let mut index = vec![NONE; n];
        let mut low = vec![0u32; n];
        let mut on_stack = vec![false; n];
        let mut comp = vec![NONE; n];
        let mut stack: Vec<u32> = Vec::new();
        // (node, position of the next edge to look at)
        let mut call: Vec<(u32, usize)> = Vec::new();
        let mut next_index = 0u32;
        let mut n_comp = 0u32;
        for root in 0..n {
            if index[root] != NONE {
                continue;
            }
            call.push((root as u32, self.indptr[root]));
            index[root] = next_index;
            low[root] = next_index;
            next_index += 1;
            stack.push(root as u32);
            on_stack[root] = true;
            while let Some(&mut (v, ref mut pos)) = call.last_mut() {
                let v = v as usize;
                if *pos < self.indptr[v + 1] {
                    let w = self.indices[*pos] as usize;
                    *pos += 1;
                    if index[w] == NONE {
                        index[w] = next_index;
                        low[w] = next_index;
                        next_index += 1;
                        stack.push(w as u32);
                        on_stack[w] = true;
                        call.push((w as u32, self.indptr[w]));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                } else {
                    call.pop();
                    if let Some(&(parent, _)) = call.last() {
                        let p = parent as usize;
                        low[p] = low[p].min(low[v]);
                    }
                    if low[v] == index[v] {
                        while let Some(w) = stack.pop() {
                            on_stack[w as usize] = false;
                            comp[w as usize] = n_comp;
                            if w as usize == v {
                                break;
                            }
                        }
                        n_comp += 1;
                    }
                }
            }
        }
        (n_comp as usize, comp)
    }
}

/// Graph connectivity (scib-metrics' `graph_connectivity`): for each label, the share of its
/// cells in the largest strongly connected component of the kNN graph restricted to them; the
/// mean over labels.
pub fn graph_connectivity(knn: &Graph, labels: &[u32], n_labels: usize) -> f64 {
    let mut shares = Vec::new();
    for l in 0..n_labels as u32 {
        let rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == l).collect();
        if rows.is_empty() {
            continue;
        }
        let (n_comp, comp) = knn.subgraph(&rows).strong_components();
        let mut size = vec![0usize; n_comp];
        for &c in &comp {
            size[c as usize] += 1;
        }
        let largest = size.iter().copied().max().unwrap_or(0);
        shares.push(largest as f64 / rows.len() as f64);
    }
    shares.iter().sum::<f64>() / shares.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strong_components_of_a_cycle_and_a_tail() {
        // 0 -> 1 -> 2 -> 0 is one component; 3 -> 0 reaches it but is not reached back; 4 alone
        let t = vec![(0, 1, 1.0), (1, 2, 1.0), (2, 0, 1.0), (3, 0, 1.0)];
        let g = Graph::from_sorted_triples(5, &t);
        let (n, c) = g.strong_components();
        assert_eq!(n, 3);
        assert_eq!(c[0], c[1]);
        assert_eq!(c[1], c[2]);
        assert_ne!(c[3], c[0]);
        assert_ne!(c[4], c[3]);
    }

    #[test]
    fn subgraph_keeps_only_edges_inside() {
        let t = vec![(0, 1, 1.0), (1, 2, 2.0), (2, 0, 3.0)];
        let g = Graph::from_sorted_triples(3, &t).subgraph(&[0, 2]);
        assert_eq!(g.n, 2);
        assert_eq!(g.indptr, vec![0, 0, 1]);
        assert_eq!((g.indices[0], g.weights[0]), (0, 3.0));
        assert_eq!(g.strong_components().0, 2);
    }

    #[test]
    fn graph_connectivity_by_label() {
        // label 0: 0 <-> 1 and 2 alone (largest 2 of 3); label 1: 3 <-> 4 (1.0)
        let t = vec![
            (0, 1, 1.0),
            (1, 0, 1.0),
            (2, 3, 1.0),
            (3, 4, 1.0),
            (4, 3, 1.0),
        ];
        let g = Graph::from_sorted_triples(5, &t);
        let v = graph_connectivity(&g, &[0, 0, 0, 1, 1], 2);
        assert!((v - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn a_long_chain_does_not_overflow() {
        let n = 200_000u32;
        let mut t: Vec<(u32, u32, f32)> = (0..n - 1).map(|i| (i, i + 1, 1.0)).collect();
        t.push((n - 1, 0, 1.0));
        let g = Graph::from_sorted_triples(n as usize, &t);
        assert_eq!(g.strong_components().0, 1);
    }
}
