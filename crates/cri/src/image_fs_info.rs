//! ImageFsInfo: the bytes the image store's layers and blobs take, on the store's filesystem
//! (which holds the containers' writable layers too).

use crate::convert::now;
use crate::proto::{FilesystemIdentifier, FilesystemUsage, ImageFsInfoRequest, ImageFsInfoResponse, UInt64Value};
use crate::{status, Cri, Result};

pub(crate) async fn handle(cri: &Cri, _: ImageFsInfoRequest) -> Result<ImageFsInfoResponse> {
    let store = cri.store().clone();
    let usage = tokio::task::spawn_blocking(move || store.disk_usage()).await.map_err(|e| tonic::Status::internal(e.to_string()))?.map_err(status)?;
    let filesystem = FilesystemUsage {
        timestamp: now(),
        fs_id: Some(FilesystemIdentifier { mountpoint: cri.store().root().display().to_string() }),
        used_bytes: Some(UInt64Value { value: usage.blob_bytes + usage.snapshot_bytes }),
        inodes_used: None,
    };
    Ok(ImageFsInfoResponse { image_filesystems: vec![filesystem.clone()], container_filesystems: vec![filesystem] })
}
