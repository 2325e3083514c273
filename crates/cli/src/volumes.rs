//! `berth volume`: create, ls, inspect, rm and prune of named and anonymous volumes
//! (berth.v1.Volumes).

use crate::{status, Format};
use berth_api::v1::volumes_client::VolumesClient;
use berth_api::v1::{ListVolumesRequest, PruneVolumesRequest, VolumeInfo, VolumeRef};
use clap::Subcommand;
use tonic::transport::Channel;

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given); print its name.
    Create {
        /// Letters, digits, _ . - (a random name when left out).
        name: Option<String>,
    },
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls {
        /// Only the names, one per line.
        #[arg(short, long)]
        quiet: bool,
        /// table or json.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show volumes as JSON.
    Inspect {
        /// Volumes by name.
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove volumes no container uses.
    #[command(visible_alias = "remove")]
    Rm {
        /// Volumes by name.
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove the volumes no container uses: anonymous ones, or all with --all.
    Prune {
        /// Named volumes too, not only anonymous ones no container uses.
        #[arg(short, long)]
        all: bool,
        /// Accepted for docker's habit: berth does not ask.
        #[arg(short, long)]
        force: bool,
    },
}

fn json(v: &VolumeInfo) -> serde_json::Value {
    let created = crate::format::json_time(v.created.saturating_mul(1_000_000_000));
    serde_json::json!({"name": v.name, "mountpoint": v.mountpoint, "created": created, "anonymous": v.anonymous, "containers": v.containers})
}

/// Returns the exit status: 1 when a name of several failed (each said on stderr).
pub async fn run(channel: Channel, command: VolumeCommand) -> anyhow::Result<i32> {
    let mut client = VolumesClient::new(channel);
    match command {
        VolumeCommand::Create { name } => {
            let volume = client.create(VolumeRef { volume: name.unwrap_or_default() }).await.map_err(status)?.into_inner();
            println!("{}", volume.name);
        }
        VolumeCommand::Ls { quiet, format } => {
            let volumes = client.list(ListVolumesRequest {}).await.map_err(status)?.into_inner().volumes;
            match (quiet, format) {
                (true, _) => volumes.iter().for_each(|v| println!("{}", v.name)),
                (false, Format::Json) => println!("{}", serde_json::to_string_pretty(&volumes.iter().map(json).collect::<Vec<_>>())?),
                (false, Format::Table) => {
                    let width = volumes.iter().map(|v| v.name.len()).max().unwrap_or(0).max("VOLUME NAME".len());
                    println!("{:<width$}  CONTAINERS", "VOLUME NAME");
                    for v in volumes {
                        println!("{:<width$}  {}", v.name, v.containers.join(","));
                    }
                }
            }
        }
        VolumeCommand::Inspect { volumes } => {
            let mut shown = Vec::new();
            for volume in volumes {
                shown.push(json(&client.inspect(VolumeRef { volume }).await.map_err(status)?.into_inner()));
            }
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        VolumeCommand::Rm { volumes } => {
            return Ok(crate::each(volumes, async |volume| client.remove(VolumeRef { volume: volume.clone() }).await.map(|_| volume)).await);
        }
        VolumeCommand::Prune { all, force: _ } => {
            for name in client.prune(PruneVolumesRequest { all }).await.map_err(status)?.into_inner().removed {
                println!("{name}");
            }
        }
    }
    Ok(0)
}
