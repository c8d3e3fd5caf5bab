//! Training and evaluation of the models: the synthetic corpus (`synth`), the report
//! summariser (`summarize`), the BrgSA objective and trainer (`config`, `data`, `loss`, `optim`,
//! `init`, `mae`, `trainer`, `vocab`) and the official evaluation protocol
//! (`eval` for the metrics, `eval_run` for a model over a corpus, `external` for scores made
//! elsewhere against a hospital's labels, `eval_report` for its ROC plot and HTML page).

pub mod batch;
pub mod config;
pub mod data;
pub mod eval;
pub mod eval_report;
pub mod eval_run;
pub mod external;
pub mod init;
pub mod loss;
pub mod mae;
pub mod optim;
pub mod summarize;
pub mod synth;
pub mod trainer;
pub mod vocab;
