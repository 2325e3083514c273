//! ImageStatus: by name, id or repo digest; an image that is not there is an empty answer, not an
//! error. With `verbose`, its records as JSON under `info`.

use crate::list_images::describe;
use crate::proto::{ImageStatusRequest, ImageStatusResponse};
use crate::{status, Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: ImageStatusRequest) -> Result<ImageStatusResponse> {
    let key = request.image.map(|i| i.image).unwrap_or_default();
    if key.is_empty() {
        return Err(tonic::Status::invalid_argument("ImageStatus needs an image"));
    }
    let cri = cri.clone();
    tokio::task::spawn_blocking(move || {
        let Some(found) = cri.store().images.find(&key).map_err(status)? else {
            return Ok(ImageStatusResponse::default());
        };
        let records: Vec<_> = cri.store().images.list().map_err(status)?.into_iter().filter(|r| r.config == found.config).collect();
        let mut info = std::collections::HashMap::new();
        if request.verbose {
            let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
            let json = serde_json::json!({"names": names, "manifest": found.manifest.to_string(), "layers": found.layers.iter().map(|l| l.to_string()).collect::<Vec<_>>()});
            info.insert("info".to_string(), json.to_string());
        }
        Ok(ImageStatusResponse { image: Some(describe(&cri, &records)), info })
    })
    .await
    .map_err(|e| tonic::Status::internal(e.to_string()))?
}
