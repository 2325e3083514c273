//! GetContainerEvents: the library's event bus as the kubelet's evented PLEG reads it — created,
//! started, stopped (the init exited) and deleted, for pod containers, each with the pod's status
//! and the container's. A client that falls behind loses the oldest events (the kubelet then
//! relists); one that goes away ends its task.

use crate::convert::{container_status, now, pod_status};
use crate::proto::{ContainerEventResponse, ContainerEventType, GetEventsRequest};
use crate::{Cri, Result};
use berth_containers::Action;
use tokio::sync::broadcast::error::RecvError;

pub(crate) type Events = tokio_stream::wrappers::ReceiverStream<Result<ContainerEventResponse>>;

pub(crate) async fn handle(cri: &Cri, _: GetEventsRequest) -> Result<Events> {
    let mut bus = cri.containers().subscribe();
    let (sender, receiver) = tokio::sync::mpsc::channel(256);
    let cri = cri.clone();
    tokio::spawn(async move {
        loop {
            let event = match bus.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a CRI event subscriber fell behind");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let kind = match event.action {
                Action::Create => ContainerEventType::ContainerCreatedEvent,
                Action::Start => ContainerEventType::ContainerStartedEvent,
                Action::Die => ContainerEventType::ContainerStoppedEvent,
                Action::Destroy => ContainerEventType::ContainerDeletedEvent,
                Action::Oom | Action::Health(_) => continue,
            };
            let Some(pod) = &event.sandbox else { continue };
            let pod_sandbox_status = cri.containers().find_sandbox(pod).ok().map(|s| pod_status(&s));
            let containers_statuses = match cri.containers().find(&event.id) {
                Ok(record) => {
                    let spec = cri.containers().spec(&record.id).await.unwrap_or_default();
                    let log = record.log_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
                    vec![container_status(&record, &spec, log)]
                }
                Err(_) => Vec::new(),
            };
            let response = ContainerEventResponse {
                container_id: event.id,
                container_event_type: kind as i32,
                created_at: now(),
                pod_sandbox_status,
                containers_statuses,
            };
            if sender.send(Ok(response)).await.is_err() {
                return;
            }
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(receiver))
}
