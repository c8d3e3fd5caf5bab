//! Which part of a batch this process runs: study k belongs to shard k mod N.
//!
//! From the flags (`--shard-index I --shard-count N`), else from the scheduler's environment:
//! a Slurm job array (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN`, of
//! `SLURM_ARRAY_TASK_COUNT`), or a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, with
//! `--shard-count`). Without any of these, the whole batch is one shard.

use serde::{Deserialize, Serialize};

use super::BatchError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

fn number(name: &str, v: &str) -> Result<usize, BatchError> {
    v.trim().parse().map_err(|_| BatchError::Shard(format!("{name}={v:?} is not a non-negative whole number")))
}

impl Shard {
    /// The shard from the flags, else from `env` (the process environment in use).
    pub fn resolve(index: Option<usize>, count: Option<usize>, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, BatchError> {
        let var = |name: &str| -> Result<Option<usize>, BatchError> { env(name).map(|v| number(name, &v)).transpose() };
        let (index, count, from) = match (index, count) {
            (Some(i), Some(n)) => (i, n, "--shard-index/--shard-count"),
            (Some(_), None) => return Err(BatchError::Shard("--shard-index needs --shard-count".into())),
            (None, count) => {
                if let (Some(id), Some(n)) = (var("SLURM_ARRAY_TASK_ID")?, var("SLURM_ARRAY_TASK_COUNT")?) {
                    let min = var("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
                    let i = id
                        .checked_sub(min)
                        .ok_or_else(|| BatchError::Shard(format!("SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}")))?;
                    if count.is_some_and(|c| c != n) {
                        return Err(BatchError::Shard(format!(
                            "--shard-count {} differs from SLURM_ARRAY_TASK_COUNT={n}",
                            count.unwrap_or(0)
                        )));
                    }
                    (i, n, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")
                } else if let Some(i) = var("JOB_COMPLETION_INDEX")? {
                    let Some(n) = count else {
                        return Err(BatchError::Shard("JOB_COMPLETION_INDEX is set: give the number of shards with --shard-count".into()));
                    };
                    (i, n, "JOB_COMPLETION_INDEX/--shard-count")
                } else if let Some(n) = count {
                    return Err(BatchError::Shard(format!(
                        "--shard-count {n} needs --shard-index (or SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)"
                    )));
                } else {
                    return Ok(Shard::default());
                }
            }
        };
        if count == 0 || index >= count {
            return Err(BatchError::Shard(format!("shard index {index} of {count} shards (from {from}): needs 0 ≤ index < count")));
        }
        Ok(Shard { index, count })
    }

    /// Does study `k` (its position in the manifest) belong to this shard?
    pub fn owns(&self, k: usize) -> bool {
        k % self.count == self.index
    }

    /// The shard's record file name: `shard-<I>-of-<N>.json`.
    pub fn file_name(&self) -> String {
        format!("shard-{}-of-{}.json", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn flags_win_and_are_checked() {
        let e = env(&[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert_eq!(Shard::resolve(Some(2), Some(4), &e).unwrap(), Shard { index: 2, count: 4 });
        assert!(Shard::resolve(Some(4), Some(4), &e).unwrap_err().to_string().contains("index 4 of 4"));
        assert!(Shard::resolve(Some(0), Some(0), &e).is_err());
        assert!(Shard::resolve(Some(0), None, &e).unwrap_err().to_string().contains("needs --shard-count"));
    }

    #[test]
    fn slurm_array_from_the_environment() {
        let e = env(&[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert_eq!(Shard::resolve(None, None, &e).unwrap(), Shard { index: 2, count: 3 });
        // --array=1-3: ids start at the array's minimum.
        let e = env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "3"), ("SLURM_ARRAY_TASK_MIN", "1")]);
        assert_eq!(Shard::resolve(None, None, &e).unwrap(), Shard { index: 2, count: 3 });
        let e = env(&[("SLURM_ARRAY_TASK_ID", "x"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert!(Shard::resolve(None, None, &e).unwrap_err().to_string().contains("SLURM_ARRAY_TASK_ID=\"x\""));
    }

    #[test]
    fn kubernetes_indexed_job_selects_its_shard() {
        let e = env(&[("JOB_COMPLETION_INDEX", "4")]);
        let s = Shard::resolve(None, Some(5), &e).unwrap();
        assert_eq!(s, Shard { index: 4, count: 5 });
        let owned: Vec<usize> = (0..12).filter(|&k| s.owns(k)).collect();
        assert_eq!(owned, vec![4, 9]);
        assert!(Shard::resolve(None, None, &e).unwrap_err().to_string().contains("--shard-count"));
        assert!(Shard::resolve(None, Some(4), &e).is_err());
    }

    #[test]
    fn nothing_set_is_one_shard() {
        let e = env(&[]);
        assert_eq!(Shard::resolve(None, None, &e).unwrap(), Shard::default());
        assert!(Shard::resolve(None, Some(3), &e).is_err());
    }
}
