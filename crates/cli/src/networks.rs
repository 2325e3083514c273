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
        /// Letters, digits, _ . - (not host, none, bridge, default or container).
        name: String,
        /// A subnet in CIDR form, IPv4 (the next free /24 of 10.210.0.0/16 by default) or IPv6
        /// (which gives the network IPv6 too); once per family.
        #[arg(long)]
        subnet: Vec<String>,
        /// IPv6 as well as IPv4: a free /64 of fd62:6572:7468::/48 unless --subnet gives one.
        #[arg(long)]
        ipv6: bool,
    },
    /// List networks.
    #[command(visible_alias = "list")]
    Ls {
        /// table or json.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show networks as JSON.
    Inspect {
        /// Networks by name.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks no container is on (and their bridges).
    #[command(visible_alias = "remove")]
    Rm {
        /// Networks by name.
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

fn json(n: &Network) -> serde_json::Value {
    let mut json = serde_json::json!({"name": n.name, "bridge": n.bridge, "subnet": n.subnet, "gateway": n.gateway, "config": n.config_path, "containers": n.containers});
    if !n.subnet6.is_empty() {
        json["subnet6"] = n.subnet6.clone().into();
        json["gateway6"] = n.gateway6.clone().into();
    }
    json
}

pub async fn run(channel: Channel, command: NetworkCommand) -> anyhow::Result<i32> {
    let mut client = NetworksClient::new(channel);
    match command {
        NetworkCommand::Create { name, subnet, ipv6 } => {
            let (v6, v4): (Vec<String>, Vec<String>) = subnet.into_iter().partition(|s| s.contains(':'));
            if v4.len() > 1 || v6.len() > 1 {
                anyhow::bail!("--subnet: one IPv4 and one IPv6 subnet at most");
            }
            let (subnet, subnet6) = (v4.into_iter().next().unwrap_or_default(), v6.into_iter().next().unwrap_or_default());
            let network = client.create(CreateNetworkRequest { name, subnet, subnet6, ipv6 }).await.map_err(status)?.into_inner();
            println!("{}", network.name);
        }
        NetworkCommand::Ls { format } => {
            let networks = client.list(ListNetworksRequest {}).await.map_err(status)?.into_inner().networks;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&networks.iter().map(json).collect::<Vec<_>>())?),
                Format::Table => {
                    println!("{:<20}  {:<16}  {:<18}  {:<24}  CONTAINERS", "NAME", "BRIDGE", "SUBNET", "IPV6 SUBNET");
                    for n in networks {
                        println!("{:<20}  {:<16}  {:<18}  {:<24}  {}", n.name, n.bridge, n.subnet, n.subnet6, n.containers.len());
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
            return Ok(crate::each(networks, async |network| client.remove(NetworkRef { network: network.clone() }).await.map(|_| network)).await);
        }
    }
    Ok(0)
}
