//! berth.v1.Networks over berth-containers' networks: each call is the library's with its error
//! mapped to a gRPC status.

use berth_api::v1::networks_server;
use berth_api::v1::{CreateNetworkRequest, ListNetworksRequest, ListNetworksResponse, Network, NetworkRef};
use berth_containers::{Containers, NetworkInfo, NetworkRequest};
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct NetworksService {
    pub containers: Containers,
}

fn message(info: NetworkInfo, containers: Vec<String>) -> Network {
    Network {
        name: info.name,
        bridge: info.bridge,
        subnet: info.subnet,
        gateway: info.gateway,
        subnet6: info.subnet6,
        gateway6: info.gateway6,
        config_path: info.config.display().to_string(),
        containers,
    }
}

#[tonic::async_trait]
impl networks_server::Networks for NetworksService {
    async fn create(&self, request: Request<CreateNetworkRequest>) -> Result<Response<Network>, Status> {
        let request = request.into_inner();
        let given = |s: String| (!s.is_empty()).then_some(s);
        let wanted = NetworkRequest { subnet: given(request.subnet), subnet6: given(request.subnet6), ipv6: request.ipv6 };
        let info = self.containers.create_network(&request.name, wanted).await.map_err(berth_errdefs::status)?;
        Ok(Response::new(message(info, Vec::new())))
    }

    async fn list(&self, _: Request<ListNetworksRequest>) -> Result<Response<ListNetworksResponse>, Status> {
        let networks = self.containers.list_networks().map_err(berth_errdefs::status)?;
        Ok(Response::new(ListNetworksResponse { networks: networks.into_iter().map(|(info, members)| message(info, members)).collect() }))
    }

    async fn inspect(&self, request: Request<NetworkRef>) -> Result<Response<Network>, Status> {
        let (info, members) = self.containers.inspect_network(&request.into_inner().network).map_err(berth_errdefs::status)?;
        Ok(Response::new(message(info, members)))
    }

    async fn remove(&self, request: Request<NetworkRef>) -> Result<Response<Network>, Status> {
        let info = self.containers.remove_network(&request.into_inner().network).await.map_err(berth_errdefs::status)?;
        Ok(Response::new(message(info, Vec::new())))
    }
}
