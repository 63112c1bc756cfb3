//! CellPLM's pretraining loss against the reference (tests/fixtures/cellplm/pretrain.safetensors,
//! made by tools/make_cellplm_pretrain_fixture.py with PyPI `cellplm` 0.1.0.post2's own
//! `OmicsFormer`): the decoder's NB mean and dispersion, the GMVAE loss with and without its
//! floor, and the NB reconstruction loss with its denoising term, per `obs['batch']` set, the
//! input mask given and the noise at zero.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::*;
use scllm_models::cellplm::objective::PretrainInput;
use scllm_models::cellplm::{CellPlmFolder, GroupBy, SetInput, SetOptions, Sets};
use scllm_tokenize::cellplm::match_gene_list;

fn dir() -> PathBuf {
    fixtures().join("cellplm")
}

fn scalar(t: burn::tensor::Tensor<1>) -> f64 {
    host(t)[0] as f64
}

#[test]
fn pretraining_loss_matches_the_reference() {
    let dev = Device::flex();
    let f = CellPlmFolder::open(&dir()).unwrap();
    let (mut m, report) = f.load_pretrain(&dev).unwrap();
    assert!(report.missing.is_empty(), "{:?}", report.missing);
    let a = scllm_io::read_h5ad(dir().join("cells.h5ad")).unwrap();
    let g = f.config.gene_list.len();
    let genes = match_gene_list(&a.var, &f.config.gene_list, Path::new("cells.h5ad")).unwrap();
    let x = a.x().unwrap().to_csr();
    let data = x.data.to_f32();
    let n = x.nrows;
    let mut counts = vec![0f32; n * g];
    for i in 0..n {
        for k in x.range(i) {
            if let Some(id) = genes.ids[x.indices[k] as usize] {
                counts[i * g + id as usize] += data[k];
            }
        }
    }
    let want = read_safetensors(&dir().join("pretrain.safetensors"));
    let mask: Vec<f32> = want["mask"].data.iter().map(|&v| v as f32).collect();
    // what the embedder reads: every stored entry of the gene list, masked ones at zero
    let cells: Vec<(Vec<u32>, Vec<f32>)> = (0..n)
        .map(|i| {
            (0..g)
                .filter(|&j| counts[i * g + j] > 0.0)
                .map(|j| {
                    let v = if mask[i * g + j] > 0.0 {
                        0.0
                    } else {
                        counts[i * g + j].ln_1p()
                    };
                    (j as u32, v)
                })
                .unzip()
        })
        .collect();
    let sets = Sets::build(
        &a.obs,
        n,
        &SetOptions {
            group_by: GroupBy::Default,
            batch_size: None,
        },
        Path::new("cells.h5ad"),
    )
    .unwrap();
    let gather = |rows: &[usize], v: &[f32]| -> Vec<f32> {
        rows.iter()
            .flat_map(|&r| v[r * g..(r + 1) * g].iter().copied())
            .collect()
    };
    for (s, rows) in sets.sets.iter().enumerate() {
        let c = gather(rows, &counts);
        let mk = gather(rows, &mask);
        let input = PretrainInput {
            input: SetInput {
                genes: rows.iter().map(|&r| cells[r].0.as_slice()).collect(),
                values: rows.iter().map(|&r| cells[r].1.as_slice()).collect(),
            },
            counts: &c,
            mask: Some(&mk),
        };
        let out = m.pretrain_loss(&input, &dev).unwrap();
        let mean = host(out.mean);
        let disp = host(out.disp);
        for (k, &r) in rows.iter().enumerate() {
            for j in 0..g {
                let wm = want["dec_mean"].data[r * g + j];
                let got = mean[k * g + j] as f64;
                assert!(
                    (got - wm).abs() <= 1e-4 * wm.abs().max(1.0),
                    "mean {r},{j}: {got} vs {wm}"
                );
                let wd = want["dec_disp"].data[r * g + j];
                assert!((disp[j] as f64 - wd).abs() <= 1e-4 * wd.abs().max(1.0));
            }
        }
        let nb = scalar(out.nb_loss);
        let wnb = want[&format!("nb_loss_{s}")].data[0];
        assert!(
            (nb - wnb).abs() <= 1e-4 * wnb.abs(),
            "set {s}: NB loss {nb} vs {wnb}"
        );
        let lat = scalar(out.latent_loss);
        let wl = want[&format!("latent_loss_{s}")].data[0];
        assert!(
            (lat - wl).abs() <= 1e-4 * wl.abs(),
            "set {s}: latent loss {lat} vs {wl}"
        );
    }
    // the GMVAE's terms themselves, below the config's floor of 5
    m.gmvae_prior.as_mut().unwrap().lamda = f64::NEG_INFINITY;
    for (s, rows) in sets.sets.iter().enumerate() {
        let c = gather(rows, &counts);
        let mk = gather(rows, &mask);
        let input = PretrainInput {
            input: SetInput {
                genes: rows.iter().map(|&r| cells[r].0.as_slice()).collect(),
                values: rows.iter().map(|&r| cells[r].1.as_slice()).collect(),
            },
            counts: &c,
            mask: Some(&mk),
        };
        let lat = scalar(m.pretrain_loss(&input, &dev).unwrap().latent_loss);
        let wl = want[&format!("latent_raw_{s}")].data[0];
        assert!(
            (lat - wl).abs() <= 1e-4 * wl.abs(),
            "set {s}: raw latent loss {lat} vs {wl}"
        );
    }
}
