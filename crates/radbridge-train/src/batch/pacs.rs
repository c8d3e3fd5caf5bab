//! Studies a manifest names in a PACS: `pacs://<SERVER>/<STUDY_UID>[/<SERIES_UID>]`, where
//! SERVER is a named server (`radbridge pacs server add`). When its turn comes the loader
//! retrieves the study (or the one series) into `<batch output>/pacs/<STUDY_UID>/`, resumably
//! (a re-run only checks what is there), and opens it like any DICOM folder.

use std::path::{Path, PathBuf};

use radbridge_pacs::is_uid;
use radbridge_pacs::servers::Registry;
use radbridge_pacs::RetrieveRequest;
use radbridge_volume::CancelToken;

pub const SCHEME: &str = "pacs://";

/// A study in a PACS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacsRef {
    pub server: String,
    pub study_uid: String,
    pub series_uid: Option<String>,
}

impl PacsRef {
    /// Parse `pacs://SERVER/STUDY[/SERIES]`.
    pub fn parse(s: &str) -> Result<PacsRef, String> {
        let rest = s.strip_prefix(SCHEME).ok_or_else(|| format!("not a pacs:// path: {s}"))?;
        let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let bad = || format!("expected pacs://<SERVER>/<STUDY_UID>[/<SERIES_UID>], got {s}");
        match parts.as_slice() {
            [server, study] | [server, study, _] if !server.is_empty() && is_uid(study) => {
                let series = parts.get(2).map(|x| x.to_string());
                if series.as_deref().is_some_and(|x| !is_uid(x)) {
                    return Err(bad());
                }
                Ok(PacsRef { server: server.to_string(), study_uid: study.to_string(), series_uid: series })
            }
            _ => Err(bad()),
        }
    }

    /// `Some` when `path` is a pacs:// path.
    pub fn of(path: &Path) -> Option<Result<PacsRef, String>> {
        let s = path.to_str()?;
        s.starts_with(SCHEME).then(|| PacsRef::parse(s))
    }
}

/// Retrieve `r` under `<out>/pacs/` and return the study's folder.
pub fn fetch(r: &PacsRef, out: &Path, servers_dir: Option<&Path>, cancel: &CancelToken) -> Result<PathBuf, String> {
    let dir = servers_dir.ok_or_else(|| format!("pacs {}: no settings folder with named servers", r.server))?;
    let server = Registry::new(dir).get(&r.server).map_err(|e| e.to_string())?;
    let dest = out.join("pacs").join(&r.study_uid);
    let req = RetrieveRequest { study_uid: r.study_uid.clone(), series_uid: r.series_uid.clone(), output: dest.clone() };
    radbridge_pacs::retrieve::retrieve(&server, &req, &mut |_| {}, cancel).map_err(|e| e.to_string())?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacs_paths() {
        assert_eq!(
            PacsRef::parse("pacs://main/1.2.3/1.2.3.4").unwrap(),
            PacsRef { server: "main".into(), study_uid: "1.2.3".into(), series_uid: Some("1.2.3.4".into()) }
        );
        assert_eq!(PacsRef::parse("pacs://main/1.2.3").unwrap().series_uid, None);
        for bad in ["pacs://", "pacs://main", "pacs:///1.2", "pacs://main/../x", "pacs://main/1.2/x/y", "pacs://main/1.2/../../etc"] {
            assert!(PacsRef::parse(bad).is_err(), "{bad}");
        }
        assert!(PacsRef::of(Path::new("/data/ct.nii.gz")).is_none());
    }
}
