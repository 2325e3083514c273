//! Image references the docker way: `busybox` means `docker.io/library/busybox:latest`; a first
//! component with a `.` or `:`, or `localhost`, is a registry; `name:tag`, `name@sha256:…` and both.
//! Parsed by hand against the distribution grammar (no regex engine for a few dozen lines): every
//! component is checked, so a reference can become a URL path and a store key without escaping.

use crate::{Digest, Error, Result};
use std::fmt;

pub const DOCKER_HUB: &str = "docker.io";
const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference> {
        let bad = |reason| Error::Reference(text.into(), reason);
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest).map_err(|_| bad("the digest is not sha256:<64 hex>"))?)),
            None => (text, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a registry's port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let mut chars = tag.chars();
            let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if !first_ok || tag.len() > MAX_TAG || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
                return Err(bad("a tag is 1-128 of [A-Za-z0-9_.-], not starting with . or -"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => (first, path),
            _ => (DOCKER_HUB, name),
        };
        let registry = if registry == "index.docker.io" { DOCKER_HUB } else { registry };
        if registry != DOCKER_HUB && !valid_registry(registry) {
            return Err(bad("the registry is not host[:port]"));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path.to_string() };
        if repository.len() > MAX_NAME || !repository.split('/').all(valid_component) {
            return Err(bad("repository components are lowercase [a-z0-9] joined by '.', '_', '__' or dashes"));
        }
        let tag = tag.map(str::to_string).or_else(|| digest.is_none().then(|| "latest".to_string()));
        Ok(Reference { registry: registry.into(), repository, tag, digest })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The name without tag or digest: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `[a-z0-9]+` runs joined by one separator: `.`, `_`, `__` or any number of `-`.
fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_digit() || b.is_ascii_lowercase() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i].is_ascii_lowercase()) {
            i += 1;
        }
        let separator = &component[start..i];
        if !(separator == "." || separator == "_" || separator == "__" || separator.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

/// `host[:port]` with DNS-style labels (letters, digits, inner dashes) or an IPv4 address.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u32>().is_ok_and(|n| n <= 65535));
    host.split('.').all(label_ok) && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(text: &str) -> String {
        Reference::parse(text).unwrap().to_string()
    }

    #[test]
    fn docker_normalisation() {
        assert_eq!(normal("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normal("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(normal("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normal("index.docker.io/foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(normal("localhost/x"), "localhost/x:latest");
        assert_eq!(normal("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000/a/b:v1");
        assert_eq!(normal("quay.io/my_org/app-x__y.z"), "quay.io/my_org/app-x__y.z:latest");
        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let by_digest = Reference::parse(&format!("busybox@{digest}")).unwrap();
        assert_eq!(by_digest.tag(), None);
        assert_eq!(by_digest.to_string(), format!("docker.io/library/busybox@{digest}"));
        assert_eq!(normal(&format!("r.example:443/x:t@{digest}")), format!("r.example:443/x:t@{digest}"));
    }

    #[test]
    fn hostile_references_are_refused() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "a/../b",
            "../x",
            "x/",
            "/x",
            "a b",
            "busybox@sha256:12",
            "reg.io:99999/x",
            "reg..io/x",
            "-reg.io/x",
            "x:tag/with/slash",
            "a/.b",
            "a__-b",
            "a___b",
            &"x".repeat(300),
            &format!("x:{}", "t".repeat(129)),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
