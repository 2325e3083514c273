//! berth.v1.Volumes over berth-containers' volumes: each call is the library's with its error
//! mapped to a gRPC status.

use berth_api::v1::volumes_server;
use berth_api::v1::{ListVolumesRequest, ListVolumesResponse, PruneVolumesRequest, PruneVolumesResponse, VolumeRef};
use berth_containers::Containers;

type Volume = berth_api::v1::VolumeInfo;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct VolumesService {
    pub containers: Containers,
}

fn message(info: berth_containers::VolumeInfo, containers: Vec<String>) -> Volume {
    Volume { name: info.name, mountpoint: info.mountpoint.display().to_string(), created: info.created, anonymous: info.anonymous, containers }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> berth_containers::Result<T> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Status::internal(e.to_string()))?.map_err(berth_errdefs::status)
}

#[tonic::async_trait]
impl volumes_server::Volumes for VolumesService {
    async fn create(&self, request: Request<VolumeRef>) -> Result<Response<Volume>, Status> {
        let info = self.containers.create_volume(&request.into_inner().volume).map_err(berth_errdefs::status)?;
        Ok(Response::new(message(info, Vec::new())))
    }

    async fn list(&self, _: Request<ListVolumesRequest>) -> Result<Response<ListVolumesResponse>, Status> {
        let volumes = self.containers.list_volumes().map_err(berth_errdefs::status)?;
        Ok(Response::new(ListVolumesResponse { volumes: volumes.into_iter().map(|(info, users)| message(info, users)).collect() }))
    }

    async fn inspect(&self, request: Request<VolumeRef>) -> Result<Response<Volume>, Status> {
        let (info, users) = self.containers.inspect_volume(&request.into_inner().volume).map_err(berth_errdefs::status)?;
        Ok(Response::new(message(info, users)))
    }

    async fn remove(&self, request: Request<VolumeRef>) -> Result<Response<Volume>, Status> {
        let containers = self.containers.clone();
        let name = request.into_inner().volume;
        // remove_dir_all of a volume's data: off the async workers.
        let info = blocking(move || containers.remove_volume(&name)).await?;
        Ok(Response::new(message(info, Vec::new())))
    }

    async fn prune(&self, request: Request<PruneVolumesRequest>) -> Result<Response<PruneVolumesResponse>, Status> {
        let (containers, all) = (self.containers.clone(), request.into_inner().all);
        let removed = blocking(move || containers.prune_volumes(all)).await?;
        Ok(Response::new(PruneVolumesResponse { removed }))
    }
}
