//! Summaries from an OpenAI-compatible chat endpoint (a local llama.cpp `llama-server` or vLLM),
//! used only when the user gives its URL (`--endpoint`, or `RADBRIDGE_SUMMARY_ENDPOINT`).
//!
//! The request (POST `<base>/v1/chat/completions`, JSON):
//! ```text
//! {"model": <name>, "temperature": 0, "messages": [
//!   {"role": "system", "content": SYSTEM_PROMPT},
//!   {"role": "user", "content": "Labels:\n<one label per line>\n\nReport:\n<report text>"}]}
//! ```
//! The model must answer with one JSON object (code fences and text around it are tolerated):
//! `{"sentences": ["There is ...", ...], "findings": [{"label": "...", "status": "present" |
//! "absent" | "uncertain", "evidence": "<report words>"}]}`. Labels it leaves out are absent;
//! labels outside the list are dropped; an unknown status is read as uncertain.

use std::time::Duration;

use serde_json::{json, Value};

use super::{default_labels, LabelFinding, Status, SummarizeError, Summarizer, Summary};

/// The instructions sent as the system message (documented contract; tests check it is sent).
pub const SYSTEM_PROMPT: &str = "You summarise chest CT radiology reports. \
Rewrite the report as short finding sentences, one finding per sentence, each starting with \"There is\" or \"There are\" \
for findings present (\"There is a small right pleural effusion.\") and \"There is no\" for findings the report rules out \
(\"There is no pneumothorax.\"); keep size, side and location words; drop technique, normal organs and recommendations. \
Then, for every label in the given list, decide its status in the report: \"present\" (stated, including stable or \
regressed findings from a comparison), \"absent\" (negated, resolved or not mentioned) or \"uncertain\" (suspected, \
possible, cannot be excluded), and quote the report words it rests on as evidence (\"\" when not mentioned). \
Answer with ONE JSON object and nothing else: \
{\"sentences\": [\"...\"], \"findings\": [{\"label\": \"<label exactly as listed>\", \"status\": \"present|absent|uncertain\", \"evidence\": \"...\"}]}";

/// An OpenAI-compatible chat endpoint.
#[derive(Debug, Clone)]
pub struct ChatEndpoint {
    /// Full URL of the chat completions route.
    pub url: String,
    /// Model name sent with each request (servers serving one model ignore it).
    pub model: String,
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    pub labels: Vec<String>,
}

/// `http://host:8080` / `http://host:8080/v1` / a full `.../chat/completions` URL → the route.
pub fn completions_url(base: &str) -> String {
    let b = base.trim().trim_end_matches('/');
    if b.ends_with("/chat/completions") {
        b.to_string()
    } else if b.ends_with("/v1") {
        format!("{b}/chat/completions")
    } else {
        format!("{b}/v1/chat/completions")
    }
}

impl ChatEndpoint {
    /// An endpoint at `base` (see [`completions_url`]) with the default labels and a 120 s timeout.
    pub fn new(base: &str, model: Option<&str>) -> ChatEndpoint {
        ChatEndpoint {
            url: completions_url(base),
            model: model.unwrap_or("default").to_string(),
            timeout: Duration::from_secs(120),
            api_key: None,
            labels: default_labels(),
        }
    }

    /// The endpoint configured in the environment (`RADBRIDGE_SUMMARY_ENDPOINT`,
    /// `RADBRIDGE_SUMMARY_MODEL`, `RADBRIDGE_SUMMARY_API_KEY`), if any.
    pub fn from_env() -> Option<ChatEndpoint> {
        let url = std::env::var("RADBRIDGE_SUMMARY_ENDPOINT").ok().filter(|s| !s.trim().is_empty())?;
        let model = std::env::var("RADBRIDGE_SUMMARY_MODEL").ok();
        let mut e = ChatEndpoint::new(&url, model.as_deref());
        e.api_key = std::env::var("RADBRIDGE_SUMMARY_API_KEY").ok().filter(|s| !s.is_empty());
        Some(e)
    }

    /// The request body for a report.
    pub fn request_body(&self, report: &str) -> Value {
        let user = format!("Labels:\n{}\n\nReport:\n{}", self.labels.join("\n"), report.trim());
        json!({
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user},
            ],
        })
    }

    fn err(&self, message: impl std::fmt::Display) -> SummarizeError {
        SummarizeError::Endpoint { url: self.url.clone(), message: message.to_string() }
    }

    fn bad(&self, message: impl std::fmt::Display) -> SummarizeError {
        SummarizeError::BadAnswer { url: self.url.clone(), message: message.to_string() }
    }

    /// Read a chat completion response body into a summary.
    pub fn parse_response(&self, body: &str) -> Result<Summary, SummarizeError> {
        let v: Value = serde_json::from_str(body).map_err(|e| self.bad(format!("not JSON: {e}")))?;
        let content =
            v.pointer("/choices/0/message/content").and_then(Value::as_str).ok_or_else(|| self.bad("no choices[0].message.content"))?;
        let (a, b) = (content.find('{'), content.rfind('}'));
        let obj: Value = match (a, b) {
            (Some(a), Some(b)) if a < b => {
                serde_json::from_str(&content[a..=b]).map_err(|e| self.bad(format!("the answer holds no valid JSON object: {e}")))?
            }
            _ => return Err(self.bad("the answer holds no JSON object")),
        };
        let sentences = obj
            .get("sentences")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let answered: Vec<&Value> = obj.get("findings").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
        let findings = self
            .labels
            .iter()
            .map(|label| {
                let hit =
                    answered.iter().find(|f| f.get("label").and_then(Value::as_str).is_some_and(|l| l.trim().eq_ignore_ascii_case(label)));
                let (status, evidence) = match hit {
                    Some(f) => {
                        let status = match f.get("status").and_then(Value::as_str).map(|s| s.trim().to_ascii_lowercase()).as_deref() {
                            Some("present") => Status::Present,
                            Some("absent") => Status::Absent,
                            _ => Status::Uncertain,
                        };
                        (status, f.get("evidence").and_then(Value::as_str).unwrap_or("").to_string())
                    }
                    None => (Status::Absent, String::new()),
                };
                LabelFinding { label: label.clone(), status, evidence }
            })
            .collect();
        Ok(Summary { id: None, sentences, findings, sentence_status: Vec::new() })
    }
}

impl Summarizer for ChatEndpoint {
    fn summarize(&self, report: &str) -> Result<Summary, SummarizeError> {
        if report.trim().is_empty() {
            return Err(SummarizeError::Empty);
        }
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(self.timeout)).http_status_as_error(false).build().into();
        let body = self.request_body(report).to_string();
        let mut req = agent.post(&self.url).header("Content-Type", "application/json");
        if let Some(k) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        tracing::debug!(url = %self.url, bytes = body.len(), "summary request");
        let mut resp = req.send(body.as_str()).map_err(|e| self.err(e))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(|e| self.err(e))?;
        if !(200..300).contains(&status) {
            let snippet: String = text.chars().take(200).collect();
            return Err(self.err(format!("HTTP {status}: {snippet}")));
        }
        self.parse_response(&text)
    }
}
