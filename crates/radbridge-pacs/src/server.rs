//! A PACS peer: where it is, how we authenticate, and who we are to it.

use std::time::Duration;

use crate::{ErrorKind, PacsError, Result};

/// Our calling AE title when none is given.
pub const DEFAULT_AET: &str = "RADBRIDGE";
/// Connecting to an unreachable server fails within this time.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server is and which protocol it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A DICOMweb root such as `https://pacs.example.org/dicom-web` (no trailing slash).
    DicomWeb { root: String },
    /// A DIMSE peer: its AE title, host and port.
    Dimse { called_aet: String, host: String, port: u16 },
}

/// Credentials (DICOMweb). Never logged, never written to settings.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    #[default]
    None,
    Basic {
        user: String,
        password: String,
    },
    Bearer {
        token: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
            Auth::Bearer { .. } => f.write_str("Bearer(***)"),
        }
    }
}

/// A server to talk to.
#[derive(Debug, Clone)]
pub struct Server {
    /// How errors and the audit log name it: the configured name, or the address.
    pub name: String,
    pub endpoint: Endpoint,
    pub auth: Auth,
    /// Our AE title (DIMSE).
    pub calling_aet: String,
    /// The port of our Storage SCP that receives C-MOVE (DIMSE); 0 picks the default 11112.
    pub scp_port: u16,
    pub timeout: Duration,
    /// Trust only the certificates of this PEM file for HTTPS (a hospital's own CA), instead of
    /// the platform's trust store.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Server {
    /// A server from an address: `http(s)://…` (DICOMweb) or `dimse://AET@host:port`.
    pub fn from_address(address: &str) -> Result<Server> {
        let endpoint = parse_address(address).map_err(|kind| PacsError::new(redact(address), kind))?;
        Ok(Server {
            name: address.trim_end_matches('/').to_string(),
            endpoint,
            auth: Auth::None,
            calling_aet: DEFAULT_AET.into(),
            scp_port: 11112,
            timeout: CONNECT_TIMEOUT,
            ca_file: None,
        })
    }

    pub(crate) fn err(&self, kind: ErrorKind) -> PacsError {
        PacsError::new(self.name.clone(), kind)
    }

    /// The address without credentials, as settings and the audit log show it.
    pub fn address(&self) -> String {
        match &self.endpoint {
            Endpoint::DicomWeb { root } => root.clone(),
            Endpoint::Dimse { called_aet, host, port } => format!("dimse://{called_aet}@{host}:{port}"),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.endpoint {
            Endpoint::DicomWeb { .. } => "dicomweb",
            Endpoint::Dimse { .. } => "dimse",
        }
    }

    pub(crate) fn dimse_peer(&self) -> Option<crate::dimse::DimsePeer> {
        match &self.endpoint {
            Endpoint::Dimse { called_aet, host, port } => Some(crate::dimse::DimsePeer {
                called_aet: called_aet.clone(),
                host: host.clone(),
                port: *port,
                calling_aet: self.calling_aet.clone(),
                timeout: self.timeout,
            }),
            Endpoint::DicomWeb { .. } => None,
        }
    }
}

/// Parse `http(s)://host[:port]/path` or `dimse://AET@host:port`.
pub fn parse_address(address: &str) -> std::result::Result<Endpoint, ErrorKind> {
    let bad = || ErrorKind::BadAddress(address.to_string());
    let a = address.trim();
    if let Some(rest) = a.strip_prefix("dimse://") {
        let (aet, hostport) = rest.split_once('@').ok_or_else(bad)?;
        let (host, port) = hostport.trim_end_matches('/').rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if aet.is_empty() || aet.len() > 16 || !aet.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\') {
            return Err(ErrorKind::BadAddress(format!("{address}: an AE title is 1 to 16 printable ASCII characters")));
        }
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        return Ok(Endpoint::Dimse { called_aet: aet.to_string(), host: host.to_string(), port });
    }
    let lower = a.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(bad());
    }
    let after = &a[a.find("://").map(|i| i + 3).ok_or_else(bad)?..];
    let host = after.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(bad());
    }
    if host.contains('@') {
        // Credentials in the URL would end up in logs and settings: refuse them.
        return Err(ErrorKind::CredentialsInAddress(redact(address)));
    }
    if a.contains(['?', '#']) {
        return Err(bad());
    }
    Ok(Endpoint::DicomWeb { root: a.trim_end_matches('/').to_string() })
}

/// An address with any `user:password@` removed.
pub fn redact(address: &str) -> String {
    match (address.find("://"), address.find('@')) {
        (Some(i), Some(j)) if j > i => format!("{}***@{}", &address[..i + 3], &address[j + 1..]),
        _ => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("http://127.0.0.1:8042/dicom-web/").unwrap(),
            Endpoint::DicomWeb { root: "http://127.0.0.1:8042/dicom-web".into() }
        );
        assert_eq!(
            parse_address("dimse://ORTHANC@pacs.local:4242").unwrap(),
            Endpoint::Dimse { called_aet: "ORTHANC".into(), host: "pacs.local".into(), port: 4242 }
        );
        for bad in ["ftp://x", "dimse://host:4242", "dimse://A@host", "dimse://A@host:0", "dimse://ABCDEFGHIJKLMNOPQ@h:1", "http://"] {
            assert!(matches!(parse_address(bad), Err(ErrorKind::BadAddress(_))), "{bad}");
        }
        let e = parse_address("https://bob:hunter2@pacs/dicom-web").unwrap_err().to_string();
        assert!(!e.contains("hunter2") && e.contains("not in the URL"), "{e}");
    }

    #[test]
    fn auth_debug_hides_secrets() {
        let a = Auth::Basic { user: "u".into(), password: "hunter2".into() };
        assert!(!format!("{a:?}").contains("hunter2"));
        assert!(!format!("{:?}", Auth::Bearer { token: "tok123".into() }).contains("tok123"));
    }
}
