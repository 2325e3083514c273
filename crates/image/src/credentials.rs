//! Registry credentials as docker keeps them: `auths` in a docker `config.json` (base64
//! `user:password`, or `username`/`password`), and credential helpers (`credHelpers`,
//! `credsStore`: `docker-credential-<name> get` with the registry on stdin). The file is read with
//! a size cap and a helper's answer is bounded too: both are input from outside.

use crate::{Error, Result};
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

const MAX_CONFIG: u64 = 1 << 20;

#[derive(Debug, Default, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl DockerConfig {
    pub fn load(path: &Path) -> Result<DockerConfig> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("open docker config", path, e))?;
        crate::content::read_json_bounded(file, &path.display().to_string(), MAX_CONFIG)
    }

    /// The (user, password) for `registry` (`host[:port]`), if this config has them.
    pub fn credentials(&self, registry: &str) -> Result<Option<(String, String)>> {
        let keys = [registry.to_string(), format!("https://{registry}"), format!("http://{registry}"), format!("https://{registry}/v1/")];
        if let Some(entry) = keys.iter().find_map(|k| self.auths.get(k)) {
            if let (Some(user), Some(password)) = (&entry.username, &entry.password) {
                return Ok(Some((user.clone(), password.clone())));
            }
            if let Some(auth) = &entry.auth {
                let bad = || Error::Invalid { what: format!("docker config auth for {registry}"), reason: "not base64 of user:password".into() };
                let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|_| bad())?;
                let text = String::from_utf8(decoded).map_err(|_| bad())?;
                let (user, password) = text.split_once(':').ok_or_else(bad)?;
                return Ok(Some((user.to_string(), password.to_string())));
            }
        }
        match self.cred_helpers.get(registry).or(self.creds_store.as_ref()) {
            Some(helper) => helper_credentials(helper, registry),
            None => Ok(None),
        }
    }
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Asks `docker-credential-<helper>`; a helper that knows nothing of the registry exits non-zero.
fn helper_credentials(helper: &str, registry: &str) -> Result<Option<(String, String)>> {
    if helper.is_empty() || !helper.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(Error::Invalid { what: "docker config".into(), reason: format!("credential helper name {helper:?}") });
    }
    let program = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| Error::io("run credential helper", &program, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let mut answer = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout.take(MAX_CONFIG).read_to_end(&mut answer);
    }
    let status = child.wait().map_err(|e| Error::io("wait for credential helper", &program, e))?;
    if !status.success() {
        return Ok(None);
    }
    let answer: HelperAnswer = serde_json::from_slice(&answer).map_err(|e| Error::Invalid { what: program, reason: e.to_string() })?;
    Ok(Some((answer.username, answer.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> DockerConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn auths_by_host_with_or_without_scheme() {
        let c = config(r#"{"auths": {"r.example:5000": {"auth": "dXNlcjpwYTpzcw=="}, "https://other.example": {"username": "u", "password": "p"}}}"#);
        assert_eq!(c.credentials("r.example:5000").unwrap(), Some(("user".into(), "pa:ss".into())));
        assert_eq!(c.credentials("other.example").unwrap(), Some(("u".into(), "p".into())));
        assert_eq!(c.credentials("unknown.example").unwrap(), None);
        assert!(config(r#"{"auths": {"x": {"auth": "%%%"}}}"#).credentials("x").is_err());
        assert!(config(r#"{"credHelpers": {"x": "../../bin/sh"}}"#).credentials("x").is_err(), "helper names are plain words");
    }
}
