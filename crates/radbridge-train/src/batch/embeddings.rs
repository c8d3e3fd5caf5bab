//! Image embeddings on disk: one small safetensors file per study while a batch runs, and the
//! cohort's `embeddings.safetensors` (row i = study i, the ids under the metadata key `ids`),
//! written row by row so that memory does not grow with the cohort.
//!
//! The safetensors crate builds a whole tensor in memory before writing it; the cohort file is
//! therefore written here by hand, in the format the crate reads (8-byte little-endian header
//! length, the JSON header padded with spaces to a multiple of 8, then the data of each tensor
//! in header order). Tests read it back with the crate and with Python's `safetensors`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use radbridge_model::analysis::ImageCode;
use radbridge_volume::atomic::{self, AtomicFile};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::BatchError;

/// The embeddings of an image, by tensor name (BrgSA: `v`, `v_hat`; CT-CLIP: `latent`).
pub fn of_image(image: &ImageCode) -> Vec<(&'static str, Vec<f32>)> {
    image.embeddings()
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Write one study's embeddings (1-D float32 tensors) atomically.
pub fn write_study(path: &Path, tensors: &[(&'static str, Vec<f32>)]) -> Result<(), BatchError> {
    let data: Vec<(String, Vec<u8>, usize)> = tensors.iter().map(|(n, v)| (n.to_string(), bytes(v), v.len())).collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(n, b, len)| TensorView::new(Dtype::F32, vec![*len], b).map(|t| (n.clone(), t)))
        .collect::<Result<_, _>>()
        .map_err(|e| BatchError::Record { path: path.to_path_buf(), reason: format!("cannot encode the embeddings: {e}") })?;
    let buf = safetensors::tensor::serialize(views, None)
        .map_err(|e| BatchError::Record { path: path.to_path_buf(), reason: format!("cannot encode the embeddings: {e}") })?;
    atomic::write(path, buf).map_err(BatchError::io(path, "write"))
}

/// Float32 tensors by name: (shape, values).
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Read a safetensors file of float32 tensors, and its metadata.
pub fn read_embeddings(path: &Path) -> Result<(Tensors, HashMap<String, String>), BatchError> {
    let bad = |reason: String| BatchError::Record { path: path.to_path_buf(), reason };
    let buf = std::fs::read(path).map_err(BatchError::io(path, "read"))?;
    radbridge_model::pickle::check_safetensors_header(path).map_err(|r| bad(format!("not a safetensors file: {r}")))?;
    let (_, meta) = SafeTensors::read_metadata(&buf).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let st = SafeTensors::deserialize(&buf).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, t) in st.tensors() {
        if t.dtype() != Dtype::F32 {
            return Err(bad(format!("tensor '{name}' is {:?}, not F32", t.dtype())));
        }
        let v: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.insert(name, (t.shape().to_vec(), v));
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// Writes a cohort file: declare the tensors (name, row length) and the ids, then push every
/// row of the first tensor, then of the next, ...; [`EmbeddingsWriter::finish`] checks the
/// counts and commits the file.
pub struct EmbeddingsWriter {
    file: AtomicFile,
    path: std::path::PathBuf,
    tensors: Vec<(String, usize)>,
    rows: usize,
    /// Rows written so far, over all tensors.
    written: usize,
}

impl EmbeddingsWriter {
    pub fn create(path: &Path, tensors: &[(String, usize)], ids: &[String]) -> Result<EmbeddingsWriter, BatchError> {
        let rows = ids.len();
        let mut header = serde_json::Map::new();
        let mut offset = 0usize;
        for (name, dim) in tensors {
            let len = rows
                .checked_mul(*dim)
                .and_then(|n| n.checked_mul(4))
                .ok_or_else(|| BatchError::Record { path: path.to_path_buf(), reason: "embeddings too large".into() })?;
            header.insert(name.clone(), serde_json::json!({"dtype": "F32", "shape": [rows, dim], "data_offsets": [offset, offset + len]}));
            offset += len;
        }
        let ids_json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        header.insert("__metadata__".into(), serde_json::json!({ "ids": ids_json }));
        let mut h = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap_or_default();
        while !h.len().is_multiple_of(8) {
            h.push(b' ');
        }
        let mut file = AtomicFile::create(path).map_err(BatchError::io(path, "write"))?;
        file.write_all(&(h.len() as u64).to_le_bytes()).and_then(|()| file.write_all(&h)).map_err(BatchError::io(path, "write"))?;
        Ok(EmbeddingsWriter { file, path: path.to_path_buf(), tensors: tensors.to_vec(), rows, written: 0 })
    }

    /// The tensor the next row belongs to, and its row length.
    pub fn next_tensor(&self) -> Option<&(String, usize)> {
        if self.rows == 0 {
            return None;
        }
        self.tensors.get(self.written / self.rows)
    }

    pub fn push(&mut self, row: &[f32]) -> Result<(), BatchError> {
        let Some((name, dim)) = self.next_tensor().cloned() else {
            return Err(BatchError::Record { path: self.path.clone(), reason: "more rows than studies".into() });
        };
        if row.len() != dim {
            return Err(BatchError::Record {
                path: self.path.clone(),
                reason: format!("row {} of '{name}' has {} values, not {dim}", self.written % self.rows, row.len()),
            });
        }
        self.file.write_all(&bytes(row)).map_err(BatchError::io(&self.path, "write"))?;
        self.written += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<(), BatchError> {
        if self.written != self.rows * self.tensors.len() {
            return Err(BatchError::Record {
                path: self.path.clone(),
                reason: format!("{} rows written of {}", self.written, self.rows * self.tensors.len()),
            });
        }
        self.file.commit().map_err(BatchError::io(&self.path, "write"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cohort_file_reads_back_with_the_crate() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("e.safetensors");
        let ids = vec!["a".to_string(), "b/c".to_string(), "d".to_string()];
        let mut w = EmbeddingsWriter::create(&p, &[("v".into(), 2), ("v_hat".into(), 3)], &ids).unwrap();
        for r in 0..3 {
            w.push(&[r as f32, r as f32 + 0.5]).unwrap();
        }
        assert!(w.push(&[1.0]).is_err(), "wrong row length");
        for r in 0..3 {
            w.push(&[-(r as f32); 3]).unwrap();
        }
        w.finish().unwrap();
        let (t, meta) = read_embeddings(&p).unwrap();
        assert_eq!(t["v"], (vec![3, 2], vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]));
        assert_eq!(t["v_hat"].0, vec![3, 3]);
        assert_eq!(t["v_hat"].1[3..6], [-1.0; 3]);
        let back: Vec<String> = serde_json::from_str(&meta["ids"]).unwrap();
        assert_eq!(back, ids);
    }

    #[test]
    fn an_unfinished_cohort_file_is_never_committed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("e.safetensors");
        let mut w = EmbeddingsWriter::create(&p, &[("latent".into(), 2)], &["a".into(), "b".into()]).unwrap();
        w.push(&[1.0, 2.0]).unwrap();
        assert!(w.finish().unwrap_err().to_string().contains("1 rows written of 2"));
        assert!(!p.exists());
    }

    #[test]
    fn study_file_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.safetensors");
        write_study(&p, &[("v", vec![1.0, 2.0]), ("v_hat", vec![3.0])]).unwrap();
        let (t, _) = read_embeddings(&p).unwrap();
        assert_eq!(t["v"], (vec![2], vec![1.0, 2.0]));
        assert_eq!(t["v_hat"], (vec![1], vec![3.0]));
    }
}
