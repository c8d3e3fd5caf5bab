//! The studies of a batch: from a manifest (CSV with `id` and `path`) or from every NIfTI file
//! and DICOM series under a folder, in a fixed order, each with a name safe for a file.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use radbridge_volume::{self as volume, OpenOptions};
use serde::{Deserialize, Serialize};

use super::BatchError;

/// Where the studies come from.
///
/// A manifest path may also be `pacs://<SERVER>/<STUDY_UID>[/<SERIES_UID>]`: the study is
/// retrieved from that named server when its turn comes (see [`super::pacs`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A CSV with a header holding at least `id` and `path`; relative paths are relative to
    /// the manifest's folder; other columns are ignored.
    Manifest(PathBuf),
    /// Every NIfTI file and every DICOM series under the folder; the id is the path relative
    /// to it (plus `#<series number>` when a folder holds several series).
    Input(PathBuf),
}

/// One study of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Study {
    /// Position in the manifest (0-based): study k belongs to shard k mod N.
    pub index: usize,
    pub id: String,
    /// A DICOM folder or file, or a NIfTI file.
    pub path: PathBuf,
    /// The series to load (SeriesInstanceUID) when the folder holds several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    /// The id made safe for a file name (unique in the batch, also ignoring case).
    pub safe: String,
}

/// The studies of a source, in order.
pub fn plan(source: &Source) -> Result<Vec<Study>, BatchError> {
    let rows = match source {
        Source::Manifest(p) => read_manifest(p)?,
        Source::Input(d) => discover(d)?,
    };
    let ids: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let safe = safe_names(&ids);
    Ok(rows.into_iter().zip(safe).enumerate().map(|(index, ((id, path, series), safe))| Study { index, id, path, series, safe }).collect())
}

type Row = (String, PathBuf, Option<String>);

fn read_manifest(path: &Path) -> Result<Vec<Row>, BatchError> {
    let bad = |reason: String| BatchError::Manifest { path: path.to_path_buf(), reason };
    let file = std::fs::File::open(path).map_err(BatchError::io(path, "read the manifest"))?;
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(false).trim(csv::Trim::All).from_reader(file);
    let headers = rdr.headers().map_err(|e| bad(format!("not a CSV file: {e}")))?.clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(id_col), Some(path_col)) = (col("id"), col("path")) else {
        return Err(bad(format!(
            "the header must name the columns 'id' and 'path' (it has: {})",
            headers.iter().collect::<Vec<_>>().join(", ")
        )));
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| bad(format!("not a CSV file: {e}")))?;
        let line = rec.position().map_or(0, |p| p.line());
        let id = rec.get(id_col).unwrap_or("").to_string();
        let p = rec.get(path_col).unwrap_or("").to_string();
        if id.is_empty() {
            return Err(bad(format!("line {line}: empty id")));
        }
        if p.is_empty() {
            return Err(bad(format!("line {line}: empty path for '{id}'")));
        }
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(bad(format!("line {line}: the id '{id}' is already on line {first}")));
        }
        if p.starts_with(super::pacs::SCHEME) {
            // A study in a PACS: fetched when its turn comes (see batch::pacs).
            super::pacs::PacsRef::parse(&p).map_err(|e| bad(format!("line {line}: {e}")))?;
            rows.push((id, PathBuf::from(p), None));
            continue;
        }
        let p = PathBuf::from(p);
        rows.push((id, if p.is_absolute() { p } else { base.join(p) }, None));
    }
    if rows.is_empty() {
        return Err(bad("no studies (a header and no rows)".into()));
    }
    Ok(rows)
}

/// NIfTI files under `dir`, sorted, skipping hidden names.
fn nifti_files(dir: &Path, out: &mut Vec<PathBuf>, seen: &mut HashSet<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&p) else { continue };
        if meta.is_dir() {
            // A link back into a folder already walked is not walked twice.
            if seen.insert(std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone())) {
                nifti_files(&p, out, seen)?;
            }
        } else if meta.is_file() && volume::is_nifti_path(&p) {
            out.push(p);
        }
    }
    Ok(())
}

fn relative(path: &Path, root: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let s = rel.to_string_lossy().replace('\\', "/");
    if s.is_empty() {
        root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| ".".into())
    } else {
        s
    }
}

fn discover(dir: &Path) -> Result<Vec<Row>, BatchError> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    seen.insert(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()));
    nifti_files(dir, &mut files, &mut seen)
        .map_err(|e| BatchError::Input { path: dir.to_path_buf(), source: volume::VolumeError::io(dir, e) })?;
    let mut rows: Vec<Row> = files.iter().map(|f| (relative(f, dir), f.clone(), None)).collect();
    // Every DICOM series, grouped by the folder holding its files.
    let scan =
        volume::series::scan(dir, &OpenOptions::default()).map_err(|source| BatchError::Input { path: dir.to_path_buf(), source })?;
    let mut by_folder: BTreeMap<PathBuf, Vec<&volume::series::Series>> = BTreeMap::new();
    for s in &scan.series {
        let folder = common_folder(s.slices.iter().map(|h| h.path.as_path())).unwrap_or_else(|| dir.to_path_buf());
        by_folder.entry(folder).or_default().push(s);
    }
    for (folder, series) in by_folder {
        let rel = relative(&folder, dir);
        let several = series.len() > 1;
        for (k, s) in series.iter().enumerate() {
            let uid = (!s.info.uid.is_empty()).then(|| s.info.uid.clone());
            let id = if several {
                let n = s.slices.first().and_then(|h| h.series_number).map_or_else(|| format!("{}", k + 1), |n| n.to_string());
                format!("{rel}#{n}")
            } else {
                rel.clone()
            };
            rows.push((id, folder.clone(), uid));
        }
    }
    if rows.is_empty() {
        return Err(BatchError::NoStudies(dir.to_path_buf()));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    // Two series with one number in one folder: keep the ids distinct.
    let ids: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for (i, (id, p, s)) in rows.iter().enumerate() {
        let n = count.entry(ids[i].as_str()).or_insert(0);
        *n += 1;
        out.push((if *n > 1 { format!("{id}~{n}") } else { id.clone() }, p.clone(), s.clone()));
    }
    Ok(out)
}

/// The deepest folder holding every path.
fn common_folder<'a>(mut paths: impl Iterator<Item = &'a Path>) -> Option<PathBuf> {
    let mut common: PathBuf = paths.next()?.parent()?.to_path_buf();
    for p in paths {
        while !p.starts_with(&common) {
            common = common.parent()?.to_path_buf();
        }
    }
    Some(common)
}

/// File-safe names for ids, in order: characters other than ASCII letters, digits, `.`, `_`
/// and `-` become `_`, a leading `.` too, at most 120 characters; a name already taken
/// (ignoring case, as some file systems do) gets `~2`, `~3`, ...
pub fn safe_names(ids: &[String]) -> Vec<String> {
    let mut used: HashSet<String> = HashSet::new();
    ids.iter()
        .map(|id| {
            let mut s: String =
                id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
            if s.starts_with('.') {
                s.replace_range(0..1, "_");
            }
            s.truncate(120);
            if s.is_empty() {
                s = "study".into();
            }
            let mut name = s.clone();
            let mut k = 2;
            while !used.insert(name.to_ascii_lowercase()) {
                name = format!("{s}~{k}");
                k += 1;
            }
            name
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_are_unique_ignoring_case() {
        let ids: Vec<String> = ["a/b", "a_b", "A_B", ".hidden", "", "ok-1.nii.gz", "é"].iter().map(|s| s.to_string()).collect();
        assert_eq!(safe_names(&ids), vec!["a_b", "a_b~2", "A_B~3", "_hidden", "study", "ok-1.nii.gz", "_"]);
    }

    #[test]
    fn manifest_errors_name_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.csv");
        let cases = [
            ("name,file\na,b\n", "must name the columns 'id' and 'path'"),
            ("id,path\n", "no studies"),
            ("id,path\na,x\na,y\n", "line 3: the id 'a' is already on line 2"),
            ("id,path\n,x\n", "line 2: empty id"),
            ("id,path\na,\n", "line 2: empty path"),
            ("id,path\na,x,extra\n", "not a CSV file"),
        ];
        for (text, want) in cases {
            std::fs::write(&p, text).unwrap();
            let e = plan(&Source::Manifest(p.clone())).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("m.csv"), "{text:?}: {e}");
        }
        let e = plan(&Source::Manifest(d.path().join("missing.csv"))).unwrap_err().to_string();
        assert!(e.contains("missing.csv: cannot read the manifest"), "{e}");
    }

    #[test]
    fn manifest_paths_are_relative_to_its_folder_and_other_columns_ignored() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.csv");
        std::fs::write(&p, "site,ID,Path\nx, s1 ,ct/one.nii.gz\ny,s2,/abs/two\n").unwrap();
        let s = plan(&Source::Manifest(p)).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].index, s[0].id.as_str()), (0, "s1"));
        assert_eq!(s[0].path, d.path().join("ct/one.nii.gz"));
        assert_eq!(s[1].path, PathBuf::from("/abs/two"));
    }

    #[test]
    fn common_folder_of_paths() {
        let p = [Path::new("/a/b/c/1.dcm"), Path::new("/a/b/c/2.dcm"), Path::new("/a/b/d/3.dcm")];
        assert_eq!(common_folder(p.into_iter()), Some(PathBuf::from("/a/b")));
    }
}
