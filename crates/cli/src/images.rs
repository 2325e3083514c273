//! The image verbs: one berth.v1.Images call each.

use crate::format::Output;
use crate::status;
use anyhow::Context;
use berth_api::v1::images_client::ImagesClient;
use berth_api::v1::{
    pull_event, DiskUsageRequest, ExportRequest, Image, ImportRequest, InspectImageRequest, ListImagesRequest, PruneRequest, PullRequest,
    PushRequest, RemoveImageRequest, TagImageRequest,
};
use clap::Subcommand;
use std::path::PathBuf;
use tonic::transport::Channel;

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Pull an image from a registry.
    Pull {
        /// [REGISTRY/]REPOSITORY[:TAG][@DIGEST] (docker.io and :latest when left out).
        reference: String,
    },
    /// Push an image to the registry its name says (tag it first to push it elsewhere).
    Push {
        /// The image's name: its registry is where it goes.
        name: String,
    },
    /// List images.
    Images {
        /// table, json, or a Go template of docker's fields: {{.Repository}} {{.Tag}} {{.ID}}
        /// {{.Digest}} {{.CreatedAt}} {{.CreatedSince}} {{.Size}}; `table TEMPLATE` adds a header.
        #[arg(long, default_value = "table", value_parser = crate::format::output)]
        format: Output,
    },
    /// Remove an image (its blobs go at the next prune).
    Rmi {
        /// Images by name, id or digest.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every blob and snapshot no image needs.
    Prune,
    /// Give an image one more name.
    Tag {
        /// An image by name, id or digest.
        source: String,
        /// The new name.
        target: String,
    },
    /// Import an OCI layout or docker-archive tarball (or, with --rootfs, a root filesystem tarball).
    #[command(alias = "load")]
    Import {
        /// The tarball.
        file: PathBuf,
        /// The image's name (needed for --rootfs, and for an archive that names its image by tag only).
        name: Option<String>,
        /// The tarball is a root filesystem: one layer, no config.
        #[arg(long)]
        rootfs: bool,
    },
    /// Write images as an OCI layout tarball (or a docker archive).
    #[command(alias = "save")]
    Export {
        /// Images by name, id or digest.
        #[arg(required = true)]
        names: Vec<String>,
        /// The tarball to write.
        #[arg(short, long)]
        output: PathBuf,
        /// oci or docker-archive.
        #[arg(long, default_value = "oci")]
        format: String,
    },
    /// How much the image store holds.
    Df,
}

pub async fn run(channel: Channel, command: ImageCommand) -> anyhow::Result<i32> {
    let mut images = ImagesClient::new(channel);
    match command {
        ImageCommand::Pull { reference } => pull(&mut images, reference, &mut std::io::stdout()).await?,
        ImageCommand::Push { name } => {
            let pushed = images.push(PushRequest { name: name.clone() }).await.map_err(status)?.into_inner();
            println!("{name} {}", pushed.manifest);
        }
        ImageCommand::Images { format } => {
            let list = images.list(ListImagesRequest {}).await.map_err(status)?.into_inner().images;
            match format {
                Output::Json => println!("{}", serde_json::to_string_pretty(&list.iter().map(image_json).collect::<Vec<_>>())?),
                Output::Template { text, header } => {
                    crate::format::print_template(&text, header, &list.iter().map(image_fields).collect::<Vec<_>>())?
                }
                Output::Table => {
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(image_fields)
                        .map(|f| ["Repository", "Tag", "ID", "CreatedSince", "Size"].map(|k| f[k].as_str().unwrap_or_default().to_string()).to_vec())
                        .collect();
                    crate::format::print_table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows);
                }
            }
        }
        ImageCommand::Rmi { names } => {
            return Ok(crate::each(names, async |name| {
                images.remove(RemoveImageRequest { name: name.clone() }).await.map(|_| format!("Untagged: {name}"))
            })
            .await);
        }
        ImageCommand::Prune => {
            let pruned = images.prune(PruneRequest {}).await.map_err(status)?.into_inner();
            println!("removed {} blobs and {} snapshots, {} bytes", pruned.blobs, pruned.snapshots, pruned.bytes);
        }
        ImageCommand::Tag { source, target } => {
            images.tag(TagImageRequest { source, target }).await.map_err(status)?;
        }
        ImageCommand::Import { file, name, rootfs } => {
            // berthd opens the file itself: it runs on this host, as root.
            let path = std::path::absolute(&file).with_context(|| format!("{}", file.display()))?;
            let request = ImportRequest { path: path.to_string_lossy().into_owned(), name: name.unwrap_or_default(), rootfs };
            for image in images.import(request).await.map_err(status)?.into_inner().images {
                println!("{} {}", image.name, image.manifest);
            }
        }
        ImageCommand::Export { names, output, format } => {
            let path = std::path::absolute(&output).with_context(|| format!("{}", output.display()))?;
            images.export(ExportRequest { names, path: path.to_string_lossy().into_owned(), format }).await.map_err(status)?;
        }
        ImageCommand::Df => {
            let usage = images.disk_usage(DiskUsageRequest {}).await.map_err(status)?.into_inner();
            println!(
                "images {}\nblobs {} ({} bytes)\nsnapshots {} ({} bytes)",
                usage.images, usage.blobs, usage.blob_bytes, usage.snapshots, usage.snapshot_bytes
            );
        }
    }
    Ok(0)
}

/// Pulls `reference`, its status lines to `out` and its progress bars to stderr.
pub async fn pull(images: &mut ImagesClient<Channel>, reference: String, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let mut events = images.pull(PullRequest { reference }).await.map_err(status)?.into_inner();
    let mut bars = ProgressBars::default();
    while let Some(event) = events.message().await.map_err(status)? {
        match event.event {
            Some(pull_event::Event::Status(text)) => writeln!(out, "{text}")?,
            Some(pull_event::Event::Progress(progress)) => bars.update(&progress),
            Some(pull_event::Event::Done(image)) => {
                bars.finish();
                writeln!(out, "{} {} ({} bytes downloaded)", image.name, image.manifest, image.downloaded)?;
            }
            None => {}
        }
    }
    Ok(())
}

/// A bar per blob being downloaded, on stderr (drawn only when it is a terminal).
#[derive(Default)]
struct ProgressBars {
    all: indicatif::MultiProgress,
    bars: std::collections::BTreeMap<String, indicatif::ProgressBar>,
}

impl ProgressBars {
    fn update(&mut self, progress: &berth_api::v1::PullProgress) {
        for blob in &progress.blobs {
            let bar = self.bars.entry(blob.digest.clone()).or_insert_with(|| {
                let bar = self.all.add(indicatif::ProgressBar::new(blob.total));
                let style = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                bar.set_style(style.progress_chars("=> "));
                bar.set_prefix(blob.digest.trim_start_matches("sha256:").chars().take(12).collect::<String>());
                bar
            });
            bar.set_position(blob.done);
        }
    }

    fn finish(&mut self) {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
    }
}

/// An image as `inspect` shows it: its record and its config.
pub async fn inspect(channel: Channel, name: String) -> anyhow::Result<serde_json::Value> {
    let mut images = ImagesClient::new(channel);
    let inspected = images.inspect(InspectImageRequest { name }).await.map_err(status)?.into_inner();
    let config: serde_json::Value = serde_json::from_str(&inspected.config)?;
    let mut json = inspected.image.as_ref().map(image_json).unwrap_or_default();
    json["config"] = config;
    Ok(json)
}

/// An image as docker's `images` templates see it; its name split into repository and tag, its
/// id the short config digest (which `run` takes as a reference too).
fn image_fields(image: &Image) -> serde_json::Value {
    let (repository, tag) = match image.name.split_once('@') {
        Some((repository, _)) => (repository.to_string(), "<none>".to_string()),
        None => match image.name.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')) {
            Some((repository, tag)) => (repository.to_string(), tag.to_string()),
            None => (image.name.clone(), "latest".to_string()),
        },
    };
    let hex = image.config.trim_start_matches("sha256:");
    let created_ns = image.created.saturating_mul(1_000_000_000);
    serde_json::json!({
        "Repository": repository,
        "Tag": tag,
        "ID": &hex[..12.min(hex.len())],
        "Digest": image.manifest,
        "CreatedAt": crate::format::rfc3339(created_ns),
        "CreatedSince": match image.created { 0 => "N/A".to_string(), _ => format!("{} ago", crate::format::human_duration(crate::format::seconds_since(created_ns))) },
        "Size": crate::format::human_size(image.size),
    })
}

fn image_json(image: &Image) -> serde_json::Value {
    let created = crate::format::json_time(image.created.saturating_mul(1_000_000_000));
    serde_json::json!({"name": image.name, "manifest": image.manifest, "config": image.config, "size": image.size, "created": created, "layers": image.layers})
}
