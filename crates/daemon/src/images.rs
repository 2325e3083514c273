//! berth.v1.Images over the image library: each call is a thin mapping to `berth_image`, errors
//! become gRPC statuses with the library's message.

use berth_api::v1::images_server::Images;
use berth_api::v1::{pull_event, Image, ListImagesRequest, ListImagesResponse, PruneRequest, PruneResponse, PullEvent, PullRequest, RemoveImageRequest, RemoveImageResponse};
use berth_image::meta::ImageRecord;
use berth_image::pull::{pull, PullOptions};
use berth_image::{Reference, Store};
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub struct ImagesService {
    pub store: Arc<Store>,
    pub options: PullOptions,
}

fn image(record: ImageRecord, downloaded: u64) -> Image {
    Image {
        name: record.name,
        manifest: record.manifest.to_string(),
        config: record.config.to_string(),
        size: record.size,
        created: record.created,
        layers: record.layers.iter().map(ToString::to_string).collect(),
        downloaded,
    }
}

fn internal(e: berth_image::Error) -> Status {
    Status::internal(e.to_string())
}

#[tonic::async_trait]
impl Images for ImagesService {
    type PullStream = ReceiverStream<Result<PullEvent, Status>>;

    async fn pull(&self, request: Request<PullRequest>) -> Result<Response<Self::PullStream>, Status> {
        let reference = Reference::parse(&request.into_inner().reference).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let (store, options) = (self.store.clone(), self.options.clone());
        tokio::spawn(async move {
            tracing::info!(reference = %reference, "pull");
            let _ = sender.send(Ok(PullEvent { event: Some(pull_event::Event::Status(format!("pulling {reference}"))) })).await;
            let outcome = match pull(store.clone(), &reference, &options).await {
                Ok(pulled) => match store.images.get(&reference.to_string()) {
                    Ok(Some(record)) => Ok(PullEvent { event: Some(pull_event::Event::Done(image(record, pulled.downloaded))) }),
                    Ok(None) => Err(Status::internal("the pulled image was not recorded")),
                    Err(e) => Err(internal(e)),
                },
                Err(e) => {
                    tracing::warn!(reference = %reference, error = %e, "pull failed");
                    Err(Status::unavailable(e.to_string()))
                }
            };
            let _ = sender.send(outcome).await;
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn list(&self, _: Request<ListImagesRequest>) -> Result<Response<ListImagesResponse>, Status> {
        let images = self.store.images.list().map_err(internal)?.into_iter().map(|r| image(r, 0)).collect();
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn remove(&self, request: Request<RemoveImageRequest>) -> Result<Response<RemoveImageResponse>, Status> {
        let given = request.into_inner().name;
        // Accept what people type ("busybox") as well as the recorded name.
        let name = Reference::parse(&given).map(|r| r.to_string()).unwrap_or(given);
        if !self.store.images.remove(&name).map_err(internal)? {
            return Err(Status::not_found(format!("no image {name}")));
        }
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn prune(&self, _: Request<PruneRequest>) -> Result<Response<PruneResponse>, Status> {
        let collected = self.store.gc().map_err(internal)?;
        Ok(Response::new(PruneResponse { blobs: collected.blobs as u64, snapshots: collected.snapshots as u64, bytes: collected.bytes }))
    }
}
