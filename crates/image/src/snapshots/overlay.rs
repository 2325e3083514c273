//! Snapshots on disk for overlayfs. A committed snapshot is `<root>/<chain id hex>/fs`, in
//! overlayfs lower-dir format, holding its own layer only (the chain id names the whole stack up
//! to it, so layers unpack in parallel without mounting the ones below). A layer is unpacked into
//! a temporary directory beside them and renamed into place only after its diff_id checked out.
//! An active snapshot is `<root>/active/<key>/` with `fs` (the overlay's upper dir), `work`, and
//! `chain` (the committed snapshots it stands on, bottom first, one hex id per line).

use super::{check_key, Budget, Mount, Snapshotter};
use crate::unpack::{apply_layer, Applied};
use crate::{Digest, Error, Result};
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Past one page the kernel cuts mount options; deeper images would need the new mount API's
/// per-layer `lowerdir+` (a later change).
const MAX_OPTIONS: usize = 4095;

pub struct OverlaySnapshots {
    root: PathBuf,
}

impl OverlaySnapshots {
    pub fn open(root: &Path) -> Result<OverlaySnapshots> {
        let active = root.join("active");
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&active).map_err(|e| Error::io("create snapshot store", active, e))?;
        Ok(OverlaySnapshots { root: root.to_path_buf() })
    }

    /// The committed snapshot's own file tree (an overlayfs lower dir); for tests and tools that
    /// look at the disk.
    pub fn layer_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex()).join("fs")
    }

    fn active_dir(&self, key: &str) -> PathBuf {
        self.root.join("active").join(key)
    }

    fn unpack_into(&self, temp: &Path, chain_id: &Digest, diff_id: &Digest, layer: &mut dyn Read, budget: &Budget) -> Result<Applied> {
        let fs = temp.join("fs");
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(&fs).map_err(|e| Error::io("create snapshot", &fs, e))?;
        let applied = apply_layer(layer, &fs, budget)?;
        if &applied.diff_id != diff_id {
            return Err(Error::Invalid {
                what: format!("layer {chain_id}"),
                reason: format!("uncompressed digest {} is not the diff_id {diff_id}", applied.diff_id),
            });
        }
        let target = self.root.join(chain_id.hex());
        match std::fs::rename(temp, &target) {
            // Another pull of the same layer got there first: theirs is as good as ours.
            Err(e) if self.exists(chain_id) && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => Ok(applied),
            other => other.map(|_| applied).map_err(|e| Error::io("commit snapshot", target, e)),
        }
    }
}

impl Snapshotter for OverlaySnapshots {
    fn exists(&self, chain_id: &Digest) -> bool {
        self.layer_dir(chain_id).is_dir()
    }

    fn unpack(&self, chain_id: &Digest, diff_id: &Digest, layer: &mut dyn Read, budget: &Budget) -> Result<Option<Applied>> {
        if self.exists(chain_id) {
            return Ok(None);
        }
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let temp = self.root.join(format!(".tmp-{}-{}-{}", chain_id.hex(), std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let result = self.unpack_into(&temp, chain_id, diff_id, layer, budget);
        if result.is_err() || self.exists(chain_id) {
            let _ = std::fs::remove_dir_all(&temp);
        }
        result.map(Some)
    }

    fn usage(&self, chain_id: &Digest) -> Result<u64> {
        if !self.exists(chain_id) {
            return Err(Error::Missing(format!("snapshot {chain_id}")));
        }
        Ok(tree_bytes(&self.layer_dir(chain_id)))
    }

    /// Names that are not chain ids (`active`, temporary dirs) are skipped.
    fn list(&self) -> Result<Vec<Digest>> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| Error::io("list snapshots", &self.root, e))?;
        Ok(entries.flatten().filter_map(|e| Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())).ok()).collect())
    }

    fn remove(&self, chain_id: &Digest) -> Result<()> {
        remove_tree(&self.root.join(chain_id.hex()))
    }

    fn prepare(&self, key: &str, chain: &[Digest]) -> Result<Vec<Mount>> {
        check_key(key)?;
        if let Some(missing) = chain.iter().find(|c| !self.exists(c)) {
            return Err(Error::Missing(format!("snapshot {missing}")));
        }
        let dir = self.active_dir(key);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Error::Exists(format!("snapshot {key}"))),
            other => other.map_err(|e| Error::io("create snapshot", &dir, e))?,
        }
        let prepared = (|| {
            for sub in ["fs", "work"] {
                std::fs::DirBuilder::new().mode(0o755).create(dir.join(sub)).map_err(|e| Error::io("create snapshot", dir.join(sub), e))?;
            }
            let lines: String = chain.iter().map(|c| format!("{}\n", c.hex())).collect();
            std::fs::write(dir.join("chain"), lines).map_err(|e| Error::io("write snapshot chain", dir.join("chain"), e))?;
            self.mounts(key)
        })();
        if prepared.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        prepared
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        check_key(key)?;
        let dir = self.active_dir(key);
        let chain_file = dir.join("chain");
        let text = match std::fs::File::open(&chain_file) {
            Ok(file) => crate::content::read_bounded(file, &chain_file.display().to_string(), 1 << 20)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::Missing(format!("snapshot {key}"))),
            Err(e) => return Err(Error::io("read snapshot chain", chain_file, e)),
        };
        let chain = String::from_utf8_lossy(&text)
            .lines()
            .map(|hex| Digest::parse(&format!("sha256:{hex}")))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| Error::Invalid { what: chain_file.display().to_string(), reason: e.to_string() })?;
        let upper = plain(&dir.join("fs"))?;
        if chain.is_empty() {
            return Ok(vec![Mount { kind: "bind".into(), source: upper, options: vec!["rbind".into(), "rw".into()] }]);
        }
        // overlayfs wants the top layer first.
        let lower = chain.iter().rev().map(|c| plain(&self.layer_dir(c))).collect::<Result<Vec<_>>>()?.join(":");
        let options = vec![format!("lowerdir={lower}"), format!("upperdir={upper}"), format!("workdir={}", plain(&dir.join("work"))?)];
        if options.iter().map(|o| o.len() + 1).sum::<usize>() > MAX_OPTIONS {
            return Err(Error::Invalid {
                what: format!("snapshot {key}"),
                reason: format!("{} layers are too many for one overlay mount here", chain.len()),
            });
        }
        Ok(vec![Mount { kind: "overlay".into(), source: "overlay".into(), options }])
    }

    fn remove_active(&self, key: &str) -> Result<()> {
        check_key(key)?;
        remove_tree(&self.active_dir(key))
    }

    fn active(&self) -> Result<Vec<String>> {
        let dir = self.root.join("active");
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("list snapshots", &dir, e))?;
        Ok(entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
    }

    fn clean_temp(&self) -> Result<()> {
        for entry in std::fs::read_dir(&self.root).map_err(|e| Error::io("list snapshots", &self.root, e))?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }
}

fn remove_tree(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove snapshot", dir, e)),
        _ => Ok(()),
    }
}

/// overlayfs splits its options at `,` and `:`: paths carrying them (or `\\`) are refused. Ours
/// are `<root>/<hex>/fs` and `<root>/active/<key>/…`, so only an odd root can hit this.
fn plain(path: &Path) -> Result<String> {
    let text = path.to_str().ok_or_else(|| Error::Invalid { what: path.display().to_string(), reason: "not UTF-8".into() })?;
    if text.contains([',', ':', '\\']) {
        return Err(Error::Invalid { what: text.into(), reason: "overlay paths cannot contain ',', ':' or '\\'".into() });
    }
    Ok(text.to_string())
}

/// Bytes of the regular files under `dir`, not following symlinks (each hardlinked inode once).
fn tree_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).into_iter().flatten().flatten().map(|e| e.path()));
        } else if meta.is_file() && seen.insert(meta.ino()) {
            total += meta.len();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = super::super::chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert!(super::super::chain_ids(&[]).is_empty());
    }

    #[test]
    fn conformance() {
        let dir = std::env::temp_dir().join(format!("berth-snapshots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let snapshots = OverlaySnapshots::open(&dir).unwrap();
        super::super::conformance(&snapshots);
        // The overlay's layers, top first, with the container's own upper and work dirs.
        let (layer, diff_id) = super::super::layer(&[("a", b"a")], false);
        snapshots.unpack(&diff_id, &diff_id, &mut &layer[..], &crate::snapshots::Budget::unlimited()).unwrap();
        let mounts = snapshots.prepare("c", std::slice::from_ref(&diff_id)).unwrap();
        let active = dir.join("active/c");
        let expected = vec![
            format!("lowerdir={}", snapshots.layer_dir(&diff_id).display()),
            format!("upperdir={}", active.join("fs").display()),
            format!("workdir={}", active.join("work").display()),
        ];
        assert_eq!(mounts, vec![Mount { kind: "overlay".into(), source: "overlay".into(), options: expected }]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
