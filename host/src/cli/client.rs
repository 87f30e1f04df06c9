//! The CLI's side of the HTTP API: where the host is, the admin token, JSON or tables.
//!
//! Every client subcommand flattens [`Remote`], calls the API through [`Client`] and prints
//! either the API's JSON (`--json`, for scripts) or a table.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

/// Options of every subcommand that talks to a running host.
#[derive(clap::Args, Clone, Debug)]
pub struct Remote {
    /// The running host's HTTP API.
    #[arg(
        long = "host",
        global = true,
        env = "FACTLINE_HOST",
        default_value = "http://127.0.0.1:7070"
    )]
    pub url: String,
    /// Admin token (sent as `Authorization: Bearer`), when the host has one.
    #[arg(long, global = true, env = "FACTLINE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A blocking client of one host.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(remote: &Remote) -> Self {
        let agent = ureq::Agent::config_builder()
            // API errors carry a JSON body worth showing: read it instead of failing blindly.
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Client {
            agent,
            base: remote.url.trim_end_matches('/').to_owned(),
            token: remote.token.clone(),
        }
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        self.answer("GET", path, req.call())
    }

    /// GETs a binary answer of at most `limit` bytes (an export file).
    pub fn get_bytes(&self, path: &str, limit: u64) -> anyhow::Result<Vec<u8>> {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let sent = req.call();
        let ok = matches!(&sent, Ok(r) if r.status().is_success());
        if !ok {
            // An error's JSON body, reported like any other answer's.
            self.answer("GET", path, sent)?;
            anyhow::bail!("GET {path}: no answer");
        }
        let mut response = sent.expect("checked above");
        response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .with_context(|| format!("reading the answer to GET {path}"))
    }

    pub fn post(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let sent = match body {
            Some(b) => req
                .header("Content-Type", "application/json")
                .send(serde_json::to_vec(b)?),
            None => req.send_empty(),
        };
        self.answer("POST", path, sent)
    }

    /// POSTs raw bytes (a component to deploy).
    pub fn post_bytes(&self, path: &str, bytes: Vec<u8>) -> anyhow::Result<Value> {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let sent = req.header("Content-Type", "application/wasm").send(bytes);
        self.answer("POST", path, sent)
    }

    fn answer(
        &self,
        method: &str,
        path: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut response =
            sent.with_context(|| format!("{method} {}{path}: is the host running?", self.base))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer to {method} {path}"))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(body);
        }
        let message = body["message"].as_str().unwrap_or_default();
        let kind = body["error"].as_str().unwrap_or("error");
        match body["code"].as_str() {
            Some(code) => anyhow::bail!("{status}: {kind} ({code}): {message}"),
            None => anyhow::bail!("{status}: {kind}: {message}"),
        }
    }
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// comfy-table's style string: nothing but a rule under the header (positions 5 and 6).
const HEADER_RULE_ONLY: &str = "     --            ";

/// A table with `header`, no borders beyond a rule under the header.
pub fn table<const N: usize>(header: [&str; N]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(HEADER_RULE_ONLY).set_header(header);
    t
}

/// A JSON value as a table cell: strings without quotes, the rest compact JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Percent-encodes one path segment (stream names and keys may hold anything).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
