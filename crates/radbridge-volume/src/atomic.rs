//! Atomic file writes, used for every file Radbridge writes (volumes, reports, settings, model
//! files, caches, trainer state, exports): the bytes go to a temporary file in the same folder,
//! are flushed to disk, and the file is renamed over the target, then the folder itself is
//! synced. A crash or a full disk leaves either the old file or the new one, never half of one.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` atomically.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes.as_ref())?;
    f.commit()
}

/// Mode of private files (the feedback database, the de-identification key, settings,
/// caches): owner read/write only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of folders created for private files: owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Write `bytes` to `path` atomically as a private file: on Unix mode 0600 (the file replaced
/// gets the new mode too, whatever it had).
pub fn write_private(path: &Path, bytes: impl AsRef<[u8]>) -> io::Result<()> {
    let mut f = AtomicFile::create_with_mode(path, Some(PRIVATE_FILE_MODE))?;
    f.write_all(bytes.as_ref())?;
    f.commit()
}

/// Create `dir` and any missing parent, those created with mode 0700 on Unix; folders that
/// exist keep theirs.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(PRIVATE_DIR_MODE);
    }
    b.create(dir)
}

/// Create a new, empty private file (mode 0600 on Unix); an error when it exists.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(PRIVATE_FILE_MODE);
    }
    o.open(path)
}

/// Write `lines`, each followed by a newline, to `path` atomically.
pub fn write_lines<S: AsRef<str>>(path: &Path, lines: &[S]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    for l in lines {
        f.write_all(l.as_ref().as_bytes())?;
        f.write_all(b"\n")?;
    }
    f.commit()
}

/// For writers that only take a path (safetensors): `write(tmp)` writes a temporary sibling of
/// `path`, which is then synced and renamed over `path`; on an error the temporary is removed.
pub fn write_via<E: From<io::Error>>(path: &Path, write: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), E> {
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let tmp = parent_of(path).join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let res = write(&tmp).and_then(|()| {
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(parent_of(path));
        Ok(())
    });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// A file being written: a buffered temporary sibling of the target that becomes the target on
/// [`AtomicFile::commit`]; dropped without a commit, it is removed and the target is untouched.
pub struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Start writing `path` (its folder must exist).
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        Self::create_with_mode(path, None)
    }

    /// Start writing `path` with the Unix permission bits `mode` (e.g. 0o600; None: the
    /// default, 0666 less the umask). Elsewhere the mode is ignored.
    pub fn create_with_mode(path: &Path, mode: Option<u32>) -> io::Result<AtomicFile> {
        let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
        let tmp = parent_of(path).join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if let Some(m) = mode {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(m);
            // A temporary left by a crash keeps its old mode: start from a fresh file.
            let _ = std::fs::remove_file(&tmp);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let file = o.open(&tmp)?;
        Ok(AtomicFile { target: path.to_path_buf(), tmp, file: Some(BufWriter::new(file)) })
    }

    /// Flush, sync, rename over the target, and sync the folder.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().expect("file present until commit");
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target)?;
        sync_dir(parent_of(&self.target));
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("file present until commit").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("file present until commit").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Make a rename durable (POSIX: sync the directory entry); best effort elsewhere.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("radbridge-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn write_replaces_the_file_and_leaves_no_temporary() {
        let d = scratch("replace");
        let p = d.join("a.json");
        std::fs::write(&p, "old").unwrap();
        write(&p, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        write_lines(&p, &["x", "y"]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "x\ny\n");
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_uncommitted_file_leaves_the_old_one_untouched() {
        let d = scratch("abort");
        let p = d.join("b.bin");
        std::fs::write(&p, "keep").unwrap();
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"half of a new fi").unwrap();
            // dropped without commit: a failed writer
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "keep");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn private_files_and_folders_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let d = scratch("private");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let sub = d.join("a").join("b");
        create_private_dir_all(&sub).unwrap();
        assert_eq!(mode(&d.join("a")), 0o700);
        assert_eq!(mode(&sub), 0o700);
        // An existing world-readable file is replaced by a private one.
        let p = sub.join("settings.json");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(mode(&p), 0o600);
        let k = sub.join("key");
        create_private_file(&k).unwrap();
        assert_eq!(mode(&k), 0o600);
        assert_eq!(create_private_file(&k).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_missing_folder_is_an_error_not_a_panic() {
        let e = write(Path::new("/nonexistent-radbridge-dir/x.json"), "x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
