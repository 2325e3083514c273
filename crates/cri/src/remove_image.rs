//! RemoveImage: every name of the image (the request's name, id or digest finds it), unless a
//! container uses it; an image that is not there is fine.

use crate::proto::{RemoveImageRequest, RemoveImageResponse};
use crate::{status, Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: RemoveImageRequest) -> Result<RemoveImageResponse> {
    let key = request.image.map(|i| i.image).unwrap_or_default();
    let store = cri.store().clone();
    let names = tokio::task::spawn_blocking(move || -> Result<Vec<String>> {
        let Some(found) = store.images.find(&key).map_err(status)? else { return Ok(Vec::new()) };
        Ok(store.images.list().map_err(status)?.into_iter().filter(|r| r.config == found.config).map(|r| r.name).collect())
    })
    .await
    .map_err(|e| tonic::Status::internal(e.to_string()))??;
    for name in names {
        match cri.containers().remove_image(&name).await {
            Ok(()) | Err(berth_containers::Error::NoImage(_)) => {}
            Err(e) => return Err(status(e)),
        }
    }
    Ok(RemoveImageResponse {})
}
