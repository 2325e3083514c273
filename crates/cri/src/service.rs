//! The two gRPC services, dispatching each RPC to its own file's `handle`.

use crate::proto;
use crate::proto::image_service_server::ImageService;
use crate::proto::runtime_service_server::RuntimeService;
use crate::*;
use tonic::{Request, Response, Status};

/// `method(Request) -> Response: module;` for each unary RPC, then any other items as they are.
macro_rules! dispatch {
    ($service:ident { $($method:ident($request:ident) -> $response:ident: $module:ident;)* } $($extra:tt)*) => {
        #[tonic::async_trait]
        impl $service for Cri {
            $(
                async fn $method(&self, request: Request<proto::$request>) -> std::result::Result<Response<proto::$response>, Status> {
                    $module::handle(self, request.into_inner()).await.map(Response::new)
                }
            )*
            $($extra)*
        }
    };
}

dispatch! {
    RuntimeService {
        version(VersionRequest) -> VersionResponse: version;
        run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse: run_pod_sandbox;
        stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse: stop_pod_sandbox;
        remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse: remove_pod_sandbox;
        pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse: pod_sandbox_status;
        list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse: list_pod_sandbox;
        create_container(CreateContainerRequest) -> CreateContainerResponse: create_container;
        start_container(StartContainerRequest) -> StartContainerResponse: start_container;
        stop_container(StopContainerRequest) -> StopContainerResponse: stop_container;
        remove_container(RemoveContainerRequest) -> RemoveContainerResponse: remove_container;
        list_containers(ListContainersRequest) -> ListContainersResponse: list_containers;
        container_status(ContainerStatusRequest) -> ContainerStatusResponse: container_status;
        update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse: update_container_resources;
        reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse: reopen_container_log;
        exec_sync(ExecSyncRequest) -> ExecSyncResponse: exec_sync;
        exec(ExecRequest) -> ExecResponse: exec;
        attach(AttachRequest) -> AttachResponse: attach;
        port_forward(PortForwardRequest) -> PortForwardResponse: port_forward;
        container_stats(ContainerStatsRequest) -> ContainerStatsResponse: container_stats;
        list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse: list_container_stats;
        pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse: pod_sandbox_stats;
        list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse: list_pod_sandbox_stats;
        update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse: update_runtime_config;
        status(StatusRequest) -> StatusResponse: status;
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse: unimplemented;
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse: unimplemented;
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse: unimplemented;
        runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse: runtime_config;
    }

    type GetContainerEventsStream = get_container_events::Events;

    async fn get_container_events(
        &self,
        request: Request<proto::GetEventsRequest>,
    ) -> std::result::Result<Response<Self::GetContainerEventsStream>, Status> {
        get_container_events::handle(self, request.into_inner()).await.map(Response::new)
    }
}

dispatch! {
    ImageService {
        list_images(ListImagesRequest) -> ListImagesResponse: list_images;
        image_status(ImageStatusRequest) -> ImageStatusResponse: image_status;
        pull_image(PullImageRequest) -> PullImageResponse: pull_image;
        remove_image(RemoveImageRequest) -> RemoveImageResponse: remove_image;
        image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse: image_fs_info;
    }
}
