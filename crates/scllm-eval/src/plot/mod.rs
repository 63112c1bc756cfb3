//! Pictures of an evaluation, drawn with `plotters`: an embedding (UMAP) coloured by a label, a
//! row-normalised confusion matrix, per-class F1 bars, learning curves of a training run, a
//! reliability diagram of a method's probabilities and a table of scores (scIB's results).
//!
//! Every function takes plain data and an output path; the extension picks the format (`.png`
//! or `.svg`). Files are written atomically (temporary file in the same folder, then renamed).
//! Text is rendered with a bundled DejaVu Sans subset through `ab_glyph`, so pictures render the
//! same on a bare machine without fontconfig or system fonts.
//!
//! One file per kind of figure; `figure` turns any of them into a file, `text` and `colours` are
//! what they share. (The training log is read where it is written: scllm-train's `trainer::log`.)

mod colours;
mod confusion;
mod embedding;
mod figure;
mod learning_curves;
mod line_chart;
mod per_class_f1;
mod reliability;
mod score_table;
mod text;

pub use colours::palette;
pub use confusion::{plot_confusion, plot_confusion_report};
pub use embedding::{plot_embedding, plot_embedding_pair, ScatterOptions};
pub use figure::{file_stem, Format};
pub use learning_curves::{plot_learning_curves, EpochRecord};
pub use line_chart::plot_lines;
pub use per_class_f1::{plot_per_class_f1, plot_per_class_f1_report};
pub use reliability::plot_reliability;
pub use score_table::{plot_score_table, ScoreColumn};
