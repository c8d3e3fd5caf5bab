//! Named servers: `pacs-servers.json` in the data folder holds each server's name, kind,
//! address, user and AE settings; the secrets (passwords, tokens) are kept apart in
//! `pacs-secrets.json`, created owner-only (0600), and never appear in settings, logs or the
//! audit log. (An OS secret store is not used yet: on a headless Linux machine there is none.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::server::{parse_address, DEFAULT_AET};
use crate::{Auth, ErrorKind, PacsError, Result, Server};

pub const SERVERS_FILE: &str = "pacs-servers.json";
pub const SECRETS_FILE: &str = "pacs-secrets.json";

/// How a server authenticates (the secret itself lives elsewhere).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    #[default]
    None,
    Basic,
    Bearer,
}

/// One named server as settings keep it: no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct ServerEntry {
    pub name: String,
    /// `dicomweb` or `dimse` (derived from the address).
    #[serde(default)]
    pub kind: String,
    /// `http(s)://host:port/dicom-web` or `dimse://AET@host:port`.
    pub address: String,
    #[serde(default)]
    pub auth: AuthKind,
    #[serde(default)]
    pub user: Option<String>,
    /// Our AE title (DIMSE); default RADBRIDGE.
    #[serde(default)]
    pub calling_aet: Option<String>,
    /// Our Storage SCP port for C-MOVE (DIMSE); default 11112.
    #[serde(default)]
    pub scp_port: Option<u16>,
    /// A PEM file of the CA certificates to trust for HTTPS (default: the platform's store).
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// The named servers of one data folder.
pub struct Registry {
    dir: PathBuf,
}

fn cfg(msg: String) -> PacsError {
    PacsError::new("settings", ErrorKind::Config(msg))
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<T> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| cfg(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(PacsError::new("settings", ErrorKind::Io { path: path.to_path_buf(), source })),
    }
}

impl Registry {
    pub fn new(data_dir: &Path) -> Registry {
        Registry { dir: data_dir.to_path_buf() }
    }

    fn servers_path(&self) -> PathBuf {
        self.dir.join(SERVERS_FILE)
    }
    fn secrets_path(&self) -> PathBuf {
        self.dir.join(SECRETS_FILE)
    }

    pub fn list(&self) -> Result<Vec<ServerEntry>> {
        read_json(&self.servers_path())
    }

    fn secrets(&self) -> Result<BTreeMap<String, String>> {
        read_json(&self.secrets_path())
    }

    fn write(&self, servers: &[ServerEntry], secrets: &BTreeMap<String, String>) -> Result<()> {
        let io = |path: PathBuf| move |source| PacsError::new("settings", ErrorKind::Io { path, source });
        radbridge_volume::atomic::create_private_dir_all(&self.dir).map_err(io(self.dir.clone()))?;
        let json = serde_json::to_vec_pretty(servers).map_err(|e| cfg(e.to_string()))?;
        radbridge_volume::atomic::write(&self.servers_path(), json).map_err(io(self.servers_path()))?;
        let json = serde_json::to_vec_pretty(secrets).map_err(|e| cfg(e.to_string()))?;
        radbridge_volume::atomic::write_private(&self.secrets_path(), json).map_err(io(self.secrets_path()))?;
        Ok(())
    }

    /// Add or replace `entry`; `secret` is its password or token (kept only in the secrets file).
    pub fn put(&self, mut entry: ServerEntry, secret: Option<&str>) -> Result<ServerEntry> {
        if entry.name.trim().is_empty() || entry.name.contains("://") || entry.name.len() > 64 {
            return Err(cfg(format!("invalid server name {:?}: 1 to 64 characters, not an address", entry.name)));
        }
        let endpoint = parse_address(&entry.address).map_err(|k| PacsError::new(entry.name.clone(), k))?;
        entry.kind = match endpoint {
            crate::Endpoint::DicomWeb { .. } => "dicomweb".into(),
            crate::Endpoint::Dimse { .. } => "dimse".into(),
        };
        if entry.auth == AuthKind::Basic && entry.user.as_deref().unwrap_or("").is_empty() {
            return Err(cfg(format!("server {}: basic authentication needs a user", entry.name)));
        }
        let mut servers = self.list()?;
        let mut secrets = self.secrets()?;
        servers.retain(|s| s.name != entry.name);
        servers.push(entry.clone());
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        match (entry.auth, secret) {
            (AuthKind::None, _) => {
                secrets.remove(&entry.name);
            }
            (_, Some(s)) => {
                secrets.insert(entry.name.clone(), s.to_string());
            }
            (_, None) => {} // keep the stored secret (editing other fields)
        }
        self.write(&servers, &secrets)?;
        Ok(entry)
    }

    pub fn remove(&self, name: &str) -> Result<bool> {
        let mut servers = self.list()?;
        let mut secrets = self.secrets()?;
        let before = servers.len();
        servers.retain(|s| s.name != name);
        secrets.remove(name);
        let removed = servers.len() != before;
        if removed {
            self.write(&servers, &secrets)?;
        }
        Ok(removed)
    }

    /// The server named `name`, with its secret.
    pub fn get(&self, name: &str) -> Result<Server> {
        let entry = self
            .list()?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| PacsError::new(name, ErrorKind::UnknownServer(name.to_string())))?;
        let secret = self.secrets()?.remove(name);
        let mut server = Server::from_address(&entry.address).map_err(|e| PacsError::new(name, e.kind))?;
        server.name = entry.name.clone();
        server.auth = match (entry.auth, secret) {
            (AuthKind::None, _) => Auth::None,
            (AuthKind::Basic, Some(password)) => Auth::Basic { user: entry.user.clone().unwrap_or_default(), password },
            (AuthKind::Bearer, Some(token)) => Auth::Bearer { token },
            (_, None) => return Err(PacsError::new(name, ErrorKind::Config(format!("no stored secret for server {name}")))),
        };
        server.calling_aet = entry.calling_aet.clone().unwrap_or_else(|| DEFAULT_AET.to_string());
        if let Some(p) = entry.scp_port {
            server.scp_port = p;
        }
        server.ca_file = entry.ca_file.as_ref().filter(|f| !f.is_empty()).map(std::path::PathBuf::from);
        Ok(server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_the_settings_file() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path());
        let entry = ServerEntry {
            name: "main".into(),
            kind: String::new(),
            address: "http://127.0.0.1:8042/dicom-web".into(),
            auth: AuthKind::Basic,
            user: Some("radbridge".into()),
            calling_aet: None,
            scp_port: None,
            ca_file: None,
        };
        reg.put(entry.clone(), Some("hunter2")).unwrap();
        let settings = std::fs::read_to_string(dir.path().join(SERVERS_FILE)).unwrap();
        assert!(!settings.contains("hunter2") && settings.contains("dicomweb"), "{settings}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRETS_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let s = reg.get("main").unwrap();
        assert_eq!(s.auth, Auth::Basic { user: "radbridge".into(), password: "hunter2".into() });
        // Editing without a new secret keeps the old one.
        reg.put(ServerEntry { calling_aet: Some("RB2".into()), ..entry }, None).unwrap();
        let s = reg.get("main").unwrap();
        assert_eq!(s.calling_aet, "RB2");
        assert!(matches!(s.auth, Auth::Basic { .. }));
        assert!(reg.remove("main").unwrap());
        assert!(matches!(reg.get("main").unwrap_err().kind, ErrorKind::UnknownServer(_)));
        assert!(!std::fs::read_to_string(dir.path().join(SECRETS_FILE)).unwrap().contains("hunter2"));
    }
}
