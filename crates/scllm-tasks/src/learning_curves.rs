//! The learning-curve picture of a fine-tuning run, from its `train_log.jsonl`.

use std::path::Path;

/// `out/learning_curves.png` from `out/train_log.jsonl`; the pictures written.
pub fn learning_curves(out: &Path, title: &str) -> Vec<String> {
    let mut pictures = Vec::new();
    if let Ok(recs) = scllm_train::read_train_log(out.join("train_log.jsonl")) {
        let recs: Vec<_> = recs.iter().map(|r| r.to_record()).collect();
        let p = out.join("learning_curves.png");
        if scllm_eval::plot::plot_learning_curves(&p, &recs, title).is_ok() {
            pictures.push(p.display().to_string());
        }
    }
    pictures
}
