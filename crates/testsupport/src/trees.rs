//! Comparing file trees: what an image test unpacked against the tree that went in.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Asserts that `actual` holds what `expected` holds: per path the type, permissions, owner,
/// size, mtime, link count, content and link target.
/// The directory a committed snapshot's own layer was unpacked into, in the image store at
/// `store_root` (berth-image's overlay snapshotter).
pub fn layer_dir(store_root: &Path, chain_id: &berth_image::Digest) -> PathBuf {
    berth_image::snapshots::OverlaySnapshots::open(&store_root.join("snapshots")).expect("open snapshots").layer_dir(chain_id)
}

pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let mut stack = vec![PathBuf::new()];
    let mut compared = 0;
    while let Some(relative) = stack.pop() {
        let (a, b) = (expected.join(&relative), actual.join(&relative));
        let (ma, mb) = (std::fs::symlink_metadata(&a).unwrap(), std::fs::symlink_metadata(&b).unwrap_or_else(|e| panic!("{}: {e}", b.display())));
        let shown = relative.display();
        assert_eq!(ma.file_type(), mb.file_type(), "{shown}");
        assert_eq!((ma.mode(), ma.uid(), ma.gid()), (mb.mode(), mb.uid(), mb.gid()), "{shown}");
        if ma.is_file() {
            assert_eq!((ma.len(), ma.mtime(), ma.nlink()), (mb.len(), mb.mtime(), mb.nlink()), "{shown}");
            assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "{shown}: content");
        } else if ma.file_type().is_symlink() {
            assert_eq!(std::fs::read_link(&a).unwrap(), std::fs::read_link(&b).unwrap(), "{shown}");
        } else if ma.is_dir() {
            let names = |dir: &Path| {
                let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
                names.sort();
                names
            };
            assert_eq!(names(&a), names(&b), "{shown}: entries");
            stack.extend(names(&a).into_iter().map(|n| relative.join(n)));
        }
        compared += 1;
    }
    assert!(compared > 1, "nothing compared under {}", expected.display());
}
