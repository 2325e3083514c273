//! berth.v1.Images over the image library: each call is a thin mapping to `berth_image`, errors
//! become gRPC statuses with the library's message.

use berth_api::v1::images_server::Images;
use berth_api::v1::{
    pull_event, BlobProgress, DiskUsageRequest, DiskUsageResponse, ExportRequest, ExportResponse, Image, ImportRequest, ImportResponse,
    InspectImageRequest, InspectImageResponse, ListImagesRequest, ListImagesResponse, PruneRequest, PruneResponse, PullEvent, PullProgress,
    PullRequest, PushRequest, PushResponse, RemoveImageRequest, RemoveImageResponse, TagImageRequest,
};
use berth_image::meta::ImageRecord;
use berth_image::pull::pull;
use berth_image::registries::SharedRegistries;
use berth_image::{Reference, Store};
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub struct ImagesService {
    pub store: Arc<Store>,
    pub registries: SharedRegistries,
    /// An image a container was made from is not removed under it.
    pub containers: berth_containers::Containers,
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

/// What people type ("busybox") as the recorded name ("docker.io/library/busybox:latest").
fn normalized(given: &str) -> String {
    Reference::parse(given).map(|r| r.to_string()).unwrap_or_else(|_| given.to_string())
}

/// A path the client sent: it must be absolute (berthd's working directory is nobody's).
fn absolute(path: &str) -> Result<std::path::PathBuf, Status> {
    let path = std::path::PathBuf::from(path);
    if !path.is_absolute() {
        return Err(Status::invalid_argument(format!("{} is not an absolute path", path.display())));
    }
    Ok(path)
}

/// Runs blocking store work (archives: whole files) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Status::internal(e.to_string()))?
}

#[tonic::async_trait]
impl Images for ImagesService {
    type PullStream = ReceiverStream<Result<PullEvent, Status>>;

    async fn pull(&self, request: Request<PullRequest>) -> Result<Response<Self::PullStream>, Status> {
        let reference = Reference::parse(&request.into_inner().reference).map_err(berth_errdefs::status)?;
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let mut options = self.registries.current().pull_options(&reference).map_err(berth_errdefs::status)?;
        let store = self.store.clone();
        tokio::spawn(async move {
            tracing::info!(reference = %reference, "pull");
            let _ = sender.send(Ok(PullEvent { event: Some(pull_event::Event::Status(format!("pulling {reference}"))) })).await;
            let progress = Arc::new(berth_image::pull::Progress::default());
            options.progress = Some(progress.clone());
            let pulling = pull(store.clone(), &reference, &options);
            tokio::pin!(pulling);
            let mut ticks = tokio::time::interval(std::time::Duration::from_millis(200));
            let pulled = loop {
                tokio::select! {
                    pulled = &mut pulling => break pulled,
                    // Nobody waits for it: dropped, which stops its downloads and releases its
                    // lease (blobs it committed stay until a GC; a later pull reuses them).
                    _ = sender.closed() => {
                        tracing::info!(reference = %reference, "pull abandoned by its client");
                        return;
                    }
                    _ = ticks.tick() => {
                        let blobs = progress.snapshot().into_iter().map(|(digest, done, total)| BlobProgress { digest, done, total }).collect();
                        let _ = sender.send(Ok(PullEvent { event: Some(pull_event::Event::Progress(PullProgress { blobs })) })).await;
                    }
                }
            };
            let outcome = match pulled {
                Ok(pulled) => match store.images.get(&reference.to_string()) {
                    Ok(Some(record)) => Ok(PullEvent { event: Some(pull_event::Event::Done(image(record, pulled.downloaded))) }),
                    Ok(None) => Err(Status::internal("the pulled image was not recorded")),
                    Err(e) => Err(berth_errdefs::status(e)),
                },
                Err(e) => {
                    tracing::warn!(reference = %reference, error = %e, "pull failed");
                    Err(berth_errdefs::status(e))
                }
            };
            let _ = sender.send(outcome).await;
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let reference = Reference::parse(&request.into_inner().name).map_err(berth_errdefs::status)?;
        let options = self.registries.current().push_options(&reference).map_err(berth_errdefs::status)?;
        tracing::info!(reference = %reference, "push");
        let manifest = berth_image::push::push(self.store.clone(), &reference, &options).await.map_err(berth_errdefs::status)?;
        Ok(Response::new(PushResponse { manifest: manifest.to_string() }))
    }

    async fn list(&self, _: Request<ListImagesRequest>) -> Result<Response<ListImagesResponse>, Status> {
        let images = self.store.images.list().map_err(berth_errdefs::status)?.into_iter().map(|r| image(r, 0)).collect();
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn remove(&self, request: Request<RemoveImageRequest>) -> Result<Response<RemoveImageResponse>, Status> {
        let name = normalized(&request.into_inner().name);
        self.containers.remove_image(&name).await.map_err(berth_errdefs::status)?;
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn prune(&self, _: Request<PruneRequest>) -> Result<Response<PruneResponse>, Status> {
        let collected = self.store.gc().map_err(berth_errdefs::status)?;
        Ok(Response::new(PruneResponse { blobs: collected.blobs as u64, snapshots: collected.snapshots as u64, bytes: collected.bytes }))
    }

    async fn inspect(&self, request: Request<InspectImageRequest>) -> Result<Response<InspectImageResponse>, Status> {
        let name = normalized(&request.into_inner().name);
        let record = self.store.images.get(&name).map_err(berth_errdefs::status)?.ok_or_else(|| Status::not_found(format!("no image {name}")))?;
        let config: serde_json::Value =
            self.store.content.read_json(&record.config, berth_image::content::MAX_JSON).map_err(berth_errdefs::status)?;
        Ok(Response::new(InspectImageResponse { image: Some(image(record, 0)), config: config.to_string() }))
    }

    async fn tag(&self, request: Request<TagImageRequest>) -> Result<Response<Image>, Status> {
        let request = request.into_inner();
        let target = Reference::parse(&request.target).map_err(berth_errdefs::status)?;
        let source = normalized(&request.source);
        if self.store.images.get(&source).map_err(berth_errdefs::status)?.is_none() {
            return Err(Status::not_found(format!("no image {source}")));
        }
        Ok(Response::new(image(self.store.tag(&source, &target.to_string()).map_err(berth_errdefs::status)?, 0)))
    }

    async fn import(&self, request: Request<ImportRequest>) -> Result<Response<ImportResponse>, Status> {
        let request = request.into_inner();
        let path = absolute(&request.path)?;
        let name = (!request.name.is_empty()).then(|| Reference::parse(&request.name)).transpose().map_err(berth_errdefs::status)?;
        let store = self.store.clone();
        let records = blocking(move || {
            let file = std::fs::File::open(&path).map_err(|e| Status::not_found(format!("{}: {e}", path.display())))?;
            if request.rootfs {
                let name = name.ok_or_else(|| Status::invalid_argument("a rootfs import needs a name"))?;
                berth_image::archive::import_rootfs(&store, file, &name).map(|r| vec![r]).map_err(|e| Status::invalid_argument(e.to_string()))
            } else {
                berth_image::archive::import_archive(&store, file, name.as_ref()).map_err(|e| Status::invalid_argument(e.to_string()))
            }
        })
        .await?;
        Ok(Response::new(ImportResponse { images: records.into_iter().map(|r| image(r, 0)).collect() }))
    }

    async fn export(&self, request: Request<ExportRequest>) -> Result<Response<ExportResponse>, Status> {
        let request = request.into_inner();
        let path = absolute(&request.path)?;
        let names: Vec<String> = request.names.iter().map(|n| normalized(n)).collect();
        let store = self.store.clone();
        type Export = fn(&Store, &[String], std::fs::File) -> berth_image::Result<()>;
        let export: Export = match request.format.as_str() {
            "" | "oci" => |store, names, file| berth_image::archive::export_oci_layout(store, names, file),
            "docker-archive" => |store, names, file| berth_image::archive::export_docker_archive(store, names, file),
            other => return Err(Status::invalid_argument(format!("format {other:?}: use oci or docker-archive"))),
        };
        blocking(move || {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| Status::already_exists(format!("{}: {e}", path.display())))?;
            export(&store, &names, file).map_err(|e| {
                let _ = std::fs::remove_file(&path);
                Status::not_found(e.to_string())
            })
        })
        .await?;
        Ok(Response::new(ExportResponse {}))
    }

    async fn disk_usage(&self, _: Request<DiskUsageRequest>) -> Result<Response<DiskUsageResponse>, Status> {
        let store = self.store.clone();
        let usage = blocking(move || store.disk_usage().map_err(berth_errdefs::status)).await?;
        Ok(Response::new(DiskUsageResponse {
            images: usage.images as u64,
            blobs: usage.blobs as u64,
            blob_bytes: usage.blob_bytes,
            snapshots: usage.snapshots as u64,
            snapshot_bytes: usage.snapshot_bytes,
        }))
    }
}
