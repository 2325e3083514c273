//! The containers' event bus: what happened to which container, for every API that reports events
//! (berth.v1's Events, the CRI's GetContainerEvents). Published by the library as things happen,
//! whoever caused them (a call, a shim's exit, an auto-remove); a subscriber that falls behind
//! loses the oldest events, never slows the library down.

use crate::record::ContainerRecord;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Start,
    /// The container's init exited.
    Die,
    /// The kernel's OOM killer killed one of its processes (as it happens, the init or another).
    Oom,
    /// Its healthcheck's verdict changed.
    Health(crate::health::Health),
    Destroy,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Start => "start",
            Action::Die => "die",
            Action::Oom => "oom",
            Action::Health(crate::health::Health::Starting) => "health_status: starting",
            Action::Health(crate::health::Health::Healthy) => "health_status: healthy",
            Action::Health(crate::health::Health::Unhealthy) => "health_status: unhealthy",
            Action::Destroy => "destroy",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub action: Action,
    pub id: String,
    pub name: String,
    /// The pod it belongs to.
    pub sandbox: Option<String>,
    pub exit_code: Option<i32>,
    /// Nanoseconds since the epoch.
    pub at: u64,
}

#[derive(Clone)]
pub struct Bus(broadcast::Sender<Event>);

impl Default for Bus {
    fn default() -> Bus {
        Bus(broadcast::channel(1024).0)
    }
}

impl Bus {
    pub fn publish(&self, action: Action, record: &ContainerRecord) {
        let event = Event {
            action,
            id: record.id.clone(),
            name: record.name.clone(),
            sandbox: record.sandbox.clone(),
            exit_code: record.exit_code,
            at: crate::now_ns(),
        };
        let _ = self.0.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.subscribe()
    }
}
