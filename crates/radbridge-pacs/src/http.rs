//! HTTP for DICOMweb: one blocking agent per server with bounded waits, authentication, and
//! errors that say what the server said.

use std::time::Duration;

use base64::Engine as _;
use ureq::http::Response;
use ureq::Body;

use crate::{Auth, ErrorKind, PacsError, Server};

/// A server answering nothing for this long in the middle of a transfer counts as dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct Http<'a> {
    pub server: &'a Server,
    agent: ureq::Agent,
    auth: Option<String>,
}

impl<'a> Http<'a> {
    pub fn new(server: &'a Server) -> Result<Http<'a>, PacsError> {
        let roots = match &server.ca_file {
            None => ureq::tls::RootCerts::PlatformVerifier,
            Some(path) => ureq::tls::RootCerts::new_with_certs(&read_ca_file(server, path)?),
        };
        let tls = ureq::tls::TlsConfig::builder().root_certs(roots).build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_resolve(Some(server.timeout))
            .timeout_connect(Some(server.timeout))
            .timeout_recv_response(Some(READ_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .max_redirects(0)
            .tls_config(tls)
            .user_agent(concat!("radbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let auth = match &server.auth {
            Auth::None => None,
            Auth::Basic { user, password } => {
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))))
            }
            Auth::Bearer { token } => Some(format!("Bearer {token}")),
        };
        Ok(Http { server, agent, auth })
    }

    fn err(&self, kind: ErrorKind) -> PacsError {
        self.server.err(kind)
    }

    /// Map a transport error before a response: the server is unreachable (named by its
    /// address, not the request's URL).
    pub fn transport(&self, _url: &str, e: ureq::Error) -> PacsError {
        let url = self.server.address();
        let url = url.as_str();
        match e {
            ureq::Error::Timeout(t) => {
                self.err(ErrorKind::Unreachable { addr: url.to_string(), detail: format!("no answer within the time limit ({t})") })
            }
            ureq::Error::Io(io) => self.err(ErrorKind::Unreachable { addr: url.to_string(), detail: io.to_string() }),
            ureq::Error::HostNotFound => self.err(ErrorKind::Unreachable { addr: url.to_string(), detail: "host not found".to_string() }),
            ureq::Error::ConnectionFailed => {
                self.err(ErrorKind::Unreachable { addr: url.to_string(), detail: "connection failed".to_string() })
            }
            other => self.err(ErrorKind::Unreachable { addr: url.to_string(), detail: other.to_string() }),
        }
    }

    /// Turn a non-2xx response into an error (reading at most 4 KiB of its body).
    pub fn check(&self, url: &str, mut resp: Response<Body>) -> Result<Response<Body>, PacsError> {
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = resp.body_mut().with_config().limit(4096).read_to_string().unwrap_or_default();
        Err(match status {
            401 | 403 => self.err(ErrorKind::Unauthorized { status, body }),
            _ => self.err(ErrorKind::Http { status, url: url.to_string(), body }),
        })
    }

    pub fn get(&self, url: &str, accept: &str) -> Result<Response<Body>, PacsError> {
        let mut req = self.agent.get(url).header("Accept", accept);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        tracing::debug!(url, "GET");
        let resp = req.call().map_err(|e| self.transport(url, e))?;
        self.check(url, resp)
    }

    pub fn post(&self, url: &str, content_type: &str, accept: &str, body: &[u8]) -> Result<Response<Body>, PacsError> {
        let mut req = self.agent.post(url).header("Content-Type", content_type).header("Accept", accept);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        tracing::debug!(url, bytes = body.len(), "POST");
        let resp = req.send(body).map_err(|e| self.transport(url, e))?;
        self.check(url, resp)
    }

    /// GET a DICOM JSON array (QIDO-RS), at most 64 MiB.
    pub fn get_json(&self, url: &str) -> Result<Vec<serde_json::Value>, PacsError> {
        let mut resp = self.get(url, "application/dicom+json")?;
        if resp.status().as_u16() == 204 {
            return Ok(Vec::new());
        }
        let text = resp.body_mut().with_config().limit(64 << 20).read_to_string().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => {
                self.err(ErrorKind::Json { url: url.to_string(), msg: "response larger than 64 MiB".into() })
            }
            other => self.err(ErrorKind::Dropped { url: url.to_string(), detail: other.to_string() }),
        })?;
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Array(v)) => Ok(v),
            Ok(_) => Err(self.err(ErrorKind::Json { url: url.to_string(), msg: "expected an array".into() })),
            Err(e) => Err(self.err(ErrorKind::Json { url: url.to_string(), msg: e.to_string() })),
        }
    }
}

/// The certificates of a PEM file (a hospital's own CA), at most 1 MiB; at least one.
fn read_ca_file(server: &Server, path: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>, PacsError> {
    let file_err = |msg: String| server.err(ErrorKind::File { path: path.to_path_buf(), msg });
    let len = std::fs::metadata(path).map_err(|source| server.err(ErrorKind::Io { path: path.to_path_buf(), source }))?.len();
    if len > 1 << 20 {
        return Err(file_err(format!("{len} bytes: too large for a CA certificate file")));
    }
    let pem = std::fs::read(path).map_err(|source| server.err(ErrorKind::Io { path: path.to_path_buf(), source }))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(file_err(format!("not a PEM file: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(file_err("no certificate in the PEM file".into()));
    }
    Ok(certs)
}

/// Percent-encode a query value (RFC 3986 unreserved kept; `*` kept for wildcards).
pub(crate) fn encode(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~*".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// A UID as a path segment ([`crate::is_uid`]: anything else could change the URL).
pub(crate) fn uid_segment(server: &Server, uid: &str) -> Result<String, PacsError> {
    if !crate::is_uid(uid) {
        return Err(server.err(ErrorKind::Config(format!("not a DICOM UID: {uid:?}"))));
    }
    Ok(uid.to_string())
}
