//! ListImages: one entry per image id (config digest) with every name it has, filtered by an
//! image name or id when given.

use crate::convert::image;
use crate::proto::{ListImagesRequest, ListImagesResponse};
use crate::{status, Cri, Result};
use berth_image::meta::ImageRecord;
use std::collections::BTreeMap;

pub(crate) async fn handle(cri: &Cri, request: ListImagesRequest) -> Result<ListImagesResponse> {
    let wanted = request.filter.and_then(|f| f.image).map(|i| i.image).filter(|i| !i.is_empty());
    let cri = cri.clone();
    tokio::task::spawn_blocking(move || {
        let only = match &wanted {
            Some(key) => match cri.store().images.find(key).map_err(status)? {
                Some(found) => Some(found.config),
                None => return Ok(ListImagesResponse { images: Vec::new() }),
            },
            None => None,
        };
        let mut by_id: BTreeMap<String, Vec<ImageRecord>> = BTreeMap::new();
        for record in cri.store().images.list().map_err(status)? {
            if only.as_ref().is_none_or(|id| *id == record.config) {
                by_id.entry(record.config.to_string()).or_default().push(record);
            }
        }
        let images = by_id.into_values().map(|records| describe(&cri, &records)).collect();
        Ok(ListImagesResponse { images })
    })
    .await
    .map_err(|e| tonic::Status::internal(e.to_string()))?
}

/// The CRI image for the records of one id (its config read for the user).
pub(crate) fn describe(cri: &crate::Cri, records: &[ImageRecord]) -> crate::proto::Image {
    let user = berth_containers::image_config::RunConfig::load(cri.store(), &records[0].config).ok().and_then(|c| c.user);
    let pinned =
        records.iter().any(|r| cri.config().pinned_images.iter().any(|p| berth_image::Reference::parse(p).is_ok_and(|p| p.to_string() == r.name)));
    image(records, user.as_deref(), pinned)
}
