//! `berth network`: create, ls, inspect and rm of berth's bridge networks (berth.v1.Networks).

use crate::{status, Format};
use berth_api::v1::networks_client::NetworksClient;
use berth_api::v1::{CreateNetworkRequest, ListNetworksRequest, Network, NetworkRef};
use clap::Subcommand;
use tonic::transport::Channel;

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a bridge network; print its name.
    Create {
        name: String,
        /// IPv4 CIDR (the next free /24 of 10.210.0.0/16 by default).
        #[arg(long)]
        subnet: Option<String>,
    },
    /// List networks.
    #[command(visible_alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show networks as JSON.
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks no container is on (and their bridges).
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

fn json(n: &Network) -> serde_json::Value {
    serde_json::json!({"name": n.name, "bridge": n.bridge, "subnet": n.subnet, "gateway": n.gateway, "config": n.config_path, "containers": n.containers})
}

pub async fn run(channel: Channel, command: NetworkCommand) -> anyhow::Result<()> {
    let mut client = NetworksClient::new(channel);
    match command {
        NetworkCommand::Create { name, subnet } => {
            let network = client.create(CreateNetworkRequest { name, subnet: subnet.unwrap_or_default() }).await.map_err(status)?.into_inner();
            println!("{}", network.name);
        }
        NetworkCommand::Ls { format } => {
            let networks = client.list(ListNetworksRequest {}).await.map_err(status)?.into_inner().networks;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&networks.iter().map(json).collect::<Vec<_>>())?),
                Format::Table => {
                    println!("{:<20}  {:<16}  {:<18}  CONTAINERS", "NAME", "BRIDGE", "SUBNET");
                    for n in networks {
                        println!("{:<20}  {:<16}  {:<18}  {}", n.name, n.bridge, n.subnet, n.containers.len());
                    }
                }
            }
        }
        NetworkCommand::Inspect { networks } => {
            let mut shown = Vec::new();
            for network in networks {
                shown.push(json(&client.inspect(NetworkRef { network }).await.map_err(status)?.into_inner()));
            }
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        NetworkCommand::Rm { networks } => {
            // Every name is tried (docker's habit); each failure is printed, the last returned.
            let mut failed: Option<tonic::Status> = None;
            for network in networks {
                match client.remove(NetworkRef { network: network.clone() }).await {
                    Ok(_) => println!("{network}"),
                    Err(e) => {
                        if let Some(earlier) = failed.replace(e) {
                            eprintln!("berth: {}", earlier.message());
                        }
                    }
                }
            }
            if let Some(e) = failed {
                return Err(status(e));
            }
        }
    }
    Ok(())
}
