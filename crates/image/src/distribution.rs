//! The client side of the OCI distribution-spec: manifests, blobs (with ranges), uploads, and
//! the registry's authentication challenges (Basic, and Bearer tokens from the realm it names).
//!
//! Written here rather than taken from oci-client, because a registry is hostile input and
//! oci-client reads manifest, token and error bodies whole before anything can check their
//! size: a registry that streamed an endless body grew berthd by its size (THREAT_MODEL.md, class
//! 1). Here every body is read with a cap (manifests: [`MAX_JSON`], token responses:
//! [`MAX_TOKEN`], error bodies: [`MAX_ERROR_BODY`], of which at most [`MAX_SHOWN`] characters,
//! control characters replaced, reach a message or a log); a blob is bounded by its descriptor's
//! size in the content store's writer. Every request has a connect timeout and an idle timeout
//! (the longest silence while headers or a body arrive), and every exchange but a blob's body a
//! deadline, so a registry that stalls fails the pull instead of hanging it. HTTP and TLS are
//! reqwest's (rustls, the system's roots, the `*_PROXY` variables).

use crate::content::MAX_JSON;
use crate::manifest::ACCEPTED;
use crate::reference::DOCKER_HUB;
use crate::{Error, Result};
use base64::Engine;
use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};
use std::sync::Mutex;
use std::time::Duration;

/// The most of a token response read: a JWT or an opaque string, a few KiB in practice.
pub const MAX_TOKEN: u64 = 256 << 10;
/// The most of an error body read.
pub const MAX_ERROR_BODY: u64 = 16 << 10;
/// The most characters of a registry's own words put into an error.
pub const MAX_SHOWN: usize = 512;

/// How long a registry may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To accept a connection (TCP and TLS).
    pub connect: Duration,
    /// To send the next bytes of an answer (headers or body).
    pub idle: Duration,
    /// To answer whole, for every exchange but a blob's body (manifest, token, error, upload start).
    pub request: Duration,
}

impl Timeouts {
    /// The same bound for all three.
    pub fn uniform(bound: Duration) -> Timeouts {
        Timeouts { connect: bound, idle: bound, request: bound }
    }
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts::uniform(Duration::from_secs(60))
    }
}

/// What a session may do in its repository, as a token scope names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

/// One repository on one registry, with the authorization its challenges were answered with.
pub struct Session {
    http: reqwest::Client,
    /// For blob uploads (push sessions): no idle timeout (see [`Session::push_blob`]).
    upload: Option<reqwest::Client>,
    /// `host[:port]/v2/<repository>`, after the scheme.
    base: String,
    /// `https`, or `http` for a registry listed as plain HTTP (or a loopback one that answered
    /// HTTPS with an error).
    scheme: Mutex<&'static str>,
    /// A loopback registry not listed either way: HTTPS first, then plain HTTP, as docker does
    /// for 127.0.0.0/8 and ::1.
    fallback: bool,
    repository: String,
    credentials: Option<(String, String)>,
    access: Access,
    /// Sent with every request once a challenge has been answered.
    authorization: Mutex<Option<HeaderValue>>,
    /// The image as errors name it.
    shown: String,
    timeouts: Timeouts,
}

/// A blob's body as the registry sends it.
pub struct BlobBody {
    response: Response,
}

impl Session {
    /// `registry` is `host[:port]` (docker.io means Docker Hub's registry); it is spoken to over
    /// plain HTTP when listed in `plain_http`, otherwise over HTTPS.
    pub fn new(
        registry: &str,
        repository: &str,
        plain_http: &[String],
        credentials: Option<(String, String)>,
        access: Access,
        shown: String,
        timeouts: Timeouts,
    ) -> Result<Session> {
        let host = if registry == DOCKER_HUB { "registry-1.docker.io" } else { registry };
        let plain = plain_http.iter().any(|plain| plain == registry || plain == host);
        let scheme = if plain { "http" } else { "https" };
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.idle)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Internal { what: "HTTP client".into(), reason: causes(&e) })?;
        let upload = match access {
            Access::Pull => None,
            Access::Push => Some(
                reqwest::Client::builder()
                    .connect_timeout(timeouts.connect)
                    .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| Error::Internal { what: "HTTP client".into(), reason: causes(&e) })?,
            ),
        };
        Ok(Session {
            http,
            upload,
            base: format!("{host}/v2/{repository}"),
            scheme: Mutex::new(scheme),
            fallback: !plain && is_loopback(host),
            repository: repository.to_string(),
            credentials,
            access,
            authorization: Mutex::new(None),
            shown,
            timeouts,
        })
    }

    /// The manifest (or index) `reference` names, a tag or a digest, read up to [`MAX_JSON`].
    pub async fn manifest(&self, reference: &str) -> Result<Bytes> {
        let what = format!("manifest {reference}");
        let path = format!("/manifests/{reference}");
        let response = self.send(&what, &path, |url| self.http.get(url).header(ACCEPT, ACCEPTED.join(", ")).timeout(self.timeouts.request)).await?;
        let response = self.expect_success(response, &what).await?;
        self.read_capped(response, MAX_JSON, &what).await
    }

    /// The blob `digest` from byte `offset` on (a range request when it is not 0). A registry
    /// that ignores the range is an error, since what it sends would not continue the blob.
    pub async fn blob(&self, digest: &str, offset: u64) -> Result<BlobBody> {
        let what = format!("blob {digest}");
        let response = self
            .send(&what, &format!("/blobs/{digest}"), |url| {
                let request = self.http.get(url);
                if offset > 0 {
                    request.header(RANGE, format!("bytes={offset}-"))
                } else {
                    request
                }
            })
            .await?;
        let response = self.expect_success(response, &what).await?;
        match (offset, response.status()) {
            (0, _) => Ok(BlobBody { response }),
            (_, StatusCode::PARTIAL_CONTENT) => {
                let start = response.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).and_then(content_range_start);
                if start != Some(offset) {
                    return Err(self.error(format!("{what}: asked from byte {offset}, the registry answered a range from {start:?}")));
                }
                Ok(BlobBody { response })
            }
            _ => Err(self.error(format!("{what}: the registry cannot resume (no Range support)"))),
        }
    }

    /// Whether the registry has the blob `digest` in this repository.
    pub async fn blob_exists(&self, digest: &str) -> Result<bool> {
        let what = format!("blob {digest}");
        let response = self.send(&what, &format!("/blobs/{digest}"), |url| self.http.head(url).timeout(self.timeouts.request)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.expect_success(response, &what).await.map(|_| true)
    }

    /// Uploads the blob `digest` of `size` bytes in one request (POST for a location, then PUT).
    pub async fn push_blob(&self, digest: &str, size: u64, body: reqwest::Body) -> Result<()> {
        let what = format!("upload of blob {digest}");
        let response =
            self.send(&what, "/blobs/uploads/", |url| self.http.post(url).header(CONTENT_LENGTH, 0).timeout(self.timeouts.request)).await?;
        let response = self.expect_success(response, &what).await?;
        let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
        let location = location.ok_or_else(|| self.error(format!("{what}: no Location in the answer")))?;
        let mut url = response.url().join(&location).map_err(|e| self.error(format!("{what}: Location {}: {e}", shown(&location))))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.error(format!("{what}: Location {}", shown(&location))));
        }
        // The credentials (Basic ones are the password itself) go to the registry that asked
        // for them, never to another host a Location names.
        let same_origin = response.url().origin() == url.origin();
        url.query_pairs_mut().append_pair("digest", digest);
        // reqwest's idle timeout is not reset while a body uploads: this PUT has none, and a
        // deadline instead that allows the blob at 64 KiB/s at least.
        let deadline = self.timeouts.request + Duration::from_secs(size / (64 << 10));
        // A streamed body cannot be sent twice: the POST above answered any challenge already.
        let mut request = self
            .upload
            .as_ref()
            .unwrap_or(&self.http)
            .put(url)
            .header(CONTENT_LENGTH, size)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .timeout(deadline);
        if let Some(authorization) = self.authorization().filter(|_| same_origin) {
            request = request.header(AUTHORIZATION, authorization);
        }
        let response = request.send().await.map_err(|e| self.transport(&what, &e))?;
        self.expect_success(response, &what).await.map(drop)
    }

    /// Puts `manifest` (of `media_type`) under `tag`.
    pub async fn put_manifest(&self, tag: &str, manifest: Bytes, media_type: &str) -> Result<()> {
        let what = format!("manifest {tag}");
        let response = self
            .send(&what, &format!("/manifests/{tag}"), |url| {
                self.http.put(url).header(CONTENT_TYPE, media_type).body(manifest.clone()).timeout(self.timeouts.request)
            })
            .await?;
        self.expect_success(response, &what).await.map(drop)
    }

    /// Sends what `make` builds for the URL of `path` in the repository; when the registry
    /// answers 401 with a challenge, answers it and sends it once more.
    async fn send(&self, what: &str, path: &str, make: impl Fn(&str) -> reqwest::RequestBuilder) -> Result<Response> {
        let response = self.send_once(what, path, &make).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(str::to_string);
        // Its body is not wanted: dropping the response closes the connection unread.
        drop(response);
        let challenge = challenge.ok_or_else(|| self.error(format!("{what}: 401 Unauthorized, without a challenge")))?;
        let authorization = self.answer(&challenge).await?;
        *self.authorization.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(authorization);
        self.send_once(what, path, &make).await
    }

    async fn send_once(&self, what: &str, path: &str, make: &impl Fn(&str) -> reqwest::RequestBuilder) -> Result<Response> {
        let attempt = |scheme: &str| {
            let mut request = make(&format!("{scheme}://{}{path}", self.base));
            if let Some(authorization) = self.authorization() {
                request = request.header(AUTHORIZATION, authorization);
            }
            request.send()
        };
        let scheme = *self.scheme.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match attempt(scheme).await {
            // A loopback registry that did not take HTTPS (refused the handshake, or answered it in
            // plain HTTP): plain HTTP from now on, if that answers.
            Err(e) if self.fallback && scheme == "https" && !e.is_timeout() => match attempt("http").await {
                Ok(response) => {
                    *self.scheme.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = "http";
                    Ok(response)
                }
                Err(_) => Err(self.transport(what, &e)),
            },
            sent => sent.map_err(|e| self.transport(what, &e)),
        }
    }

    fn authorization(&self) -> Option<HeaderValue> {
        self.authorization.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The Authorization header that answers `challenge` (`Basic …` or `Bearer realm=…`).
    async fn answer(&self, challenge: &str) -> Result<HeaderValue> {
        let (scheme, params) = parse_challenge(challenge);
        let unauthorized = |why: &str| self.error(format!("401 Unauthorized: {why}"));
        let basic = |(user, password): &(String, String)| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| unauthorized("the credentials do not fit in a header"))
        };
        if scheme.eq_ignore_ascii_case("basic") {
            let mut value = basic(self.credentials.as_ref().ok_or_else(|| unauthorized("the registry wants credentials, and none are configured"))?)?;
            value.set_sensitive(true);
            return Ok(value);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthorized(&format!("unknown authentication scheme {}", shown(&scheme))));
        }
        let realm =
            params.iter().find(|(k, _)| k == "realm").map(|(_, v)| v.as_str()).ok_or_else(|| unauthorized("a Bearer challenge without a realm"))?;
        let mut url = Url::parse(realm).map_err(|e| unauthorized(&format!("token realm {}: {e}", shown(realm))))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(unauthorized(&format!("token realm {}", shown(realm))));
        }
        let actions = match self.access {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        };
        {
            let mut query = url.query_pairs_mut();
            if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
                query.append_pair("service", service);
            }
            query.append_pair("scope", &format!("repository:{}:{actions}", self.repository));
        }
        let mut request = self.http.get(url).timeout(self.timeouts.request);
        if let Some(credentials) = &self.credentials {
            request = request.header(AUTHORIZATION, basic(credentials)?);
        }
        let what = format!("token from {}", shown(realm));
        let response = request.send().await.map_err(|e| self.transport(&what, &e))?;
        let response = self.expect_success(response, &what).await?;
        let body = self.read_capped(response, MAX_TOKEN, &what).await?;
        let mut value = parse_token(&body).map_err(|e| self.error(format!("{what}: {e}")))?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// `response` when its status is a success, otherwise an error with its status and the
    /// first of its body.
    async fn expect_success(&self, response: Response, what: &str) -> Result<Response> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        // A registry that trickles its error body does not hold the pull for more than the deadline.
        let body = tokio::time::timeout(self.timeouts.request, read_prefix(response, MAX_ERROR_BODY)).await.unwrap_or_default();
        let detail = describe_error_body(&body);
        Err(self.error(if detail.is_empty() { format!("{what}: {status}") } else { format!("{what}: {status}: {detail}") }))
    }

    /// The body of `response`, refused when it is longer than `limit` (announced or not).
    async fn read_capped(&self, mut response: Response, limit: u64, what: &str) -> Result<Bytes> {
        if response.content_length().is_some_and(|announced| announced > limit) {
            return Err(Error::TooLarge { what: format!("{what} of {}", self.shown), limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(what, &e))? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(Error::TooLarge { what: format!("{what} of {}", self.shown), limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.into())
    }

    fn transport(&self, what: &str, error: &reqwest::Error) -> Error {
        if error.is_timeout() {
            return self.error(format!("{what}: no answer within the registry timeout ({} s)", self.timeouts.idle.as_secs()));
        }
        let mut reason = format!("{what}: {}", causes(error));
        // rustls's words for a TLS handshake answered in plain HTTP; docker names it too.
        if *self.scheme.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) == "https" && reason.contains("InvalidContentType") {
            reason.push_str(" (the registry seems to speak plain HTTP: add it to plain_http)");
        }
        self.error(reason)
    }

    pub(crate) fn error(&self, reason: String) -> Error {
        Error::Registry { reference: self.shown.clone(), reason }
    }
}

impl BlobBody {
    /// The next bytes, `None` at the end.
    pub async fn chunk(&mut self) -> std::result::Result<Option<Bytes>, String> {
        self.response.chunk().await.map_err(|e| if e.is_timeout() { "the registry went silent".to_string() } else { causes(&e) })
    }
}

/// A token response (`{"token": …}` or OAuth's `{"access_token": …}`) as the header that
/// presents it.
pub fn parse_token(body: &[u8]) -> std::result::Result<HeaderValue, String> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
    }
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let token = parsed.token.or(parsed.access_token).filter(|t| !t.is_empty()).ok_or("no token")?;
    // A header may carry bytes above 0x7f, but a Bearer token is token68 (RFC 6750): printable
    // ASCII only, so anything else is refused here rather than sent on as opaque bytes.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token with characters a Bearer token cannot hold".to_string());
    }
    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "a token that is not a header value".to_string())
}

/// `localhost`, 127.0.0.0/8 or ::1, with or without a port.
fn is_loopback(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        return true;
    }
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }),
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Up to `limit` bytes of the body; whatever fails after the first bytes only shortens it.
async fn read_prefix(mut response: Response, limit: u64) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit as usize - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() as u64 >= limit {
            break;
        }
    }
    body
}

/// A registry's error body as a line: the distribution-spec's `errors` (code: message), or the
/// start of the text, shown safely.
pub fn describe_error_body(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(parsed) if !parsed.errors.is_empty() => {
            shown(&parsed.errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect::<Vec<_>>().join("; "))
        }
        _ => shown(String::from_utf8_lossy(body).trim()),
    }
}

/// `text` fit for a message: control characters (newlines, escapes) replaced, at most
/// [`MAX_SHOWN`] characters.
pub fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_SHOWN).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().nth(MAX_SHOWN).is_some() {
        out.push('…');
    }
    out
}

/// An error and its causes on one line (reqwest's own text names only the URL).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// `bytes 100-199/200` → 100.
fn content_range_start(value: &str) -> Option<u64> {
    value.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// `Bearer realm="https://auth",service="registry",scope="…"` → ("Bearer", [(realm, …), …]).
/// Quoted values may hold commas and escaped quotes.
pub fn parse_challenge(challenge: &str) -> (String, Vec<(String, String)>) {
    let challenge = challenge.trim();
    let (scheme, rest) = challenge.split_once(char::is_whitespace).unwrap_or((challenge, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'=').is_some() {
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend(chars.next()),
                        c => value.push(c),
                    }
                }
            } else {
                value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_string();
            }
        }
        params.push((key.trim().to_ascii_lowercase(), value));
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_quoted_commas_and_escapes() {
        let (scheme, params) =
            parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push",error="x\"y""#);
        assert_eq!(scheme, "Bearer");
        let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("realm"), Some("https://auth.example/token"));
        assert_eq!(get("service"), Some("registry.example"));
        assert_eq!(get("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(get("error"), Some("x\"y"));
        assert_eq!(parse_challenge("Basic realm=Registry").1, vec![("realm".to_string(), "Registry".to_string())]);
        assert_eq!(parse_challenge("Bearer").1, Vec::<(String, String)>::new());
        // An unterminated quote ends the value, never the parser.
        assert_eq!(parse_challenge(r#"Bearer realm="open"#).1, vec![("realm".to_string(), "open".to_string())]);
    }

    #[test]
    fn error_bodies_are_shown_short_and_on_one_line() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(describe_error_body(body), "MANIFEST_UNKNOWN: manifest unknown");
        let hostile = format!("line one\nline two\x1b[31m{}", "A".repeat(10_000));
        let described = describe_error_body(hostile.as_bytes());
        assert!(!described.contains('\n') && !described.contains('\x1b'), "{described:?}");
        assert_eq!(described.chars().count(), MAX_SHOWN + 1, "capped, with a mark");
        assert_eq!(describe_error_body(b""), "");
    }

    #[test]
    fn loopback_registries_are_told_apart() {
        for host in ["localhost", "localhost:5000", "127.0.0.1", "127.1.2.3:5000", "[::1]:5000", "::1"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["registry.example", "10.0.0.1:5000", "[fe80::1]:5000", "localhost.example:5000"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn content_ranges_give_their_start() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("items 1-2"), None);
    }

    #[test]
    fn tokens_come_in_either_field_and_must_fit_a_header() {
        assert_eq!(parse_token(br#"{"token":"abc"}"#).unwrap(), "Bearer abc");
        assert_eq!(parse_token(br#"{"access_token":"xyz","expires_in":60}"#).unwrap(), "Bearer xyz");
        assert!(parse_token(br#"{"token":""}"#).is_err());
        assert!(parse_token(b"{\"token\":\"a\\nb\"}").is_err(), "a newline cannot reach a header");
        assert!(parse_token(b"not json").is_err());
        assert!(parse_token("{\"token\":\"{\u{f2}a\"}".as_bytes()).is_err(), "found by the fuzzer: not ASCII");
        assert!(parse_token(br#"{"token":"a b"}"#).is_err(), "a space ends a token68");
    }
}
