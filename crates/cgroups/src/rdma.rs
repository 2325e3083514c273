//! `linux.resources.rdma` as the lines of `rdma.max`, which v1 and v2 share: one line per device,
//! "<device> hca_handle=<n|max> hca_object=<n|max>".

use crate::{Error, Result};
use oci_spec::runtime::LinuxResources;

pub(crate) fn max_lines(resources: &LinuxResources) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for (device, limits) in resources.rdma().iter().flatten() {
        // The name is a word of the line the kernel parses: nothing that could start another field.
        if device.is_empty() || device.contains(|c: char| c.is_whitespace() || c == '/' || c == '=') {
            return Err(Error::InvalidResource("rdma device", device.clone()));
        }
        let limit = |value: Option<u32>| value.map_or_else(|| "max".to_string(), |v| v.to_string());
        lines.push(format!("{device} hca_handle={} hca_object={}", limit(limits.hca_handles()), limit(limits.hca_objects())));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(json: &str) -> Result<Vec<String>> {
        max_lines(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn limits_and_max() {
        assert_eq!(lines(r#"{"rdma": {"mlx5_1": {"hcaHandles": 3}}}"#).unwrap(), ["mlx5_1 hca_handle=3 hca_object=max"]);
        assert_eq!(lines(r#"{"rdma": {"mlx4_0": {"hcaHandles": 2, "hcaObjects": 2000}}}"#).unwrap(), ["mlx4_0 hca_handle=2 hca_object=2000"]);
    }

    #[test]
    fn device_names_cannot_inject_fields() {
        for name in ["", "a b", "a\nb", "../x", "a=1"] {
            let resources = serde_json::json!({"rdma": {name: {"hcaHandles": 1}}});
            assert!(lines(&resources.to_string()).is_err(), "{name:?}");
        }
    }
}
