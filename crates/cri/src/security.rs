//! A ContainerConfig's Linux security context as spec options: capabilities, privileged, the user
//! (run-as user, username, group, supplemental groups and their policy), no_new_privs, masked and
//! read-only paths, seccomp (RuntimeDefault, Unconfined, Localhost). AppArmor is not applied
//! (berth-oci has no AppArmor support): a profile asked for is logged, as the issue allows for
//! hosts without it.

use crate::proto::security_profile::ProfileType;
use crate::proto::{LinuxContainerSecurityContext, SecurityProfile, SupplementalGroupsPolicy};
use berth_containers::passwd::{self, ResolvedUser};
use berth_containers::spec_opts::{self, SpecOpt};
use berth_containers::{Error, Result};
use std::io::Read;
use std::path::Path;

/// A Localhost seccomp profile larger than this is refused.
const MAX_PROFILE: u64 = 1 << 20;

/// The options the security context asks for (the user is resolved apart: [`user`]). The
/// deprecated seccomp and AppArmor fields are still read: older kubelets send only those.
#[allow(deprecated)]
pub(crate) fn options(context: &LinuxContainerSecurityContext) -> Result<Vec<SpecOpt>> {
    let caps = context.capabilities.clone().unwrap_or_default();
    let mut opts =
        vec![spec_opts::with_capabilities(spec_opts::capability_set(context.privileged, &caps.add_capabilities, &caps.drop_capabilities)?)];
    if context.privileged {
        opts.push(spec_opts::with_privileged());
        return Ok(opts);
    }
    // Either way: the template's default (set) would keep setuid binaries from working.
    opts.push(spec_opts::with_no_new_privileges(context.no_new_privs));
    // The kubelet always sends both lists for a non-privileged container (empty ones for an
    // unmasked /proc); other clients send none, and then the template's stay.
    if !context.masked_paths.is_empty() || !context.readonly_paths.is_empty() {
        opts.push(spec_opts::with_masked_and_readonly_paths(context.masked_paths.clone(), context.readonly_paths.clone()));
    }
    // berth's default profile, fitted to the capabilities, came with them.
    match seccomp(context.seccomp.as_ref(), &context.seccomp_profile_path)? {
        Seccomp::RuntimeDefault => {}
        Seccomp::Unconfined => opts.push(spec_opts::with_seccomp(None)),
        Seccomp::Profile(profile) => opts.push(spec_opts::with_seccomp(Some(*profile))),
    }
    if context.apparmor.as_ref().is_some_and(|p| p.profile_type != ProfileType::Unconfined as i32) || !context.apparmor_profile.is_empty() {
        tracing::info!("AppArmor profile asked for and not applied: berth has no AppArmor support");
    }
    Ok(opts)
}

enum Seccomp {
    RuntimeDefault,
    Unconfined,
    Profile(Box<oci_spec::runtime::LinuxSeccomp>),
}

/// The seccomp filter: RuntimeDefault is berth's default profile (fitted to the capabilities),
/// Unconfined none, Localhost the JSON profile at that absolute path. With neither the profile nor
/// the deprecated path set, none (the kubelet's own default is Unconfined).
fn seccomp(profile: Option<&SecurityProfile>, path: &str) -> Result<Seccomp> {
    match profile {
        Some(p) if p.profile_type == ProfileType::RuntimeDefault as i32 => Ok(Seccomp::RuntimeDefault),
        Some(p) if p.profile_type == ProfileType::Unconfined as i32 => Ok(Seccomp::Unconfined),
        Some(p) => localhost(&p.localhost_ref),
        None => match path {
            "" | "unconfined" => Ok(Seccomp::Unconfined),
            "runtime/default" | "docker/default" => Ok(Seccomp::RuntimeDefault),
            other => match other.strip_prefix("localhost/") {
                Some(file) => localhost(file),
                None => Err(Error::Invalid(format!("seccomp profile {other:?}: use runtime/default, unconfined or localhost/<path>"))),
            },
        },
    }
}

fn localhost(path: &str) -> Result<Seccomp> {
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(Error::Invalid(format!("seccomp profile {} is not an absolute path", path.display())));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io("open the seccomp profile", path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_PROFILE + 1).read_to_end(&mut bytes).map_err(|e| Error::io("read the seccomp profile", path, e))?;
    if bytes.len() as u64 > MAX_PROFILE {
        return Err(Error::Invalid(format!("seccomp profile {} is larger than {MAX_PROFILE} bytes", path.display())));
    }
    serde_json::from_slice(&bytes)
        .map(|p| Seccomp::Profile(Box::new(p)))
        .map_err(|e| Error::Invalid(format!("seccomp profile {}: {e}", path.display())))
}

/// The process's user: the run-as username, else uid, else the image's user, resolved against the
/// image's own /etc/passwd and /etc/group; the run-as group replaces the primary group; the
/// supplemental groups are added to the image's (Merge) or are the only ones (Strict).
pub(crate) fn user(context: &LinuxContainerSecurityContext, image_user: Option<&str>, rootfs: &Path) -> Result<ResolvedUser> {
    let named = if !context.run_as_username.is_empty() {
        context.run_as_username.clone()
    } else if let Some(uid) = &context.run_as_user {
        if uid.value < 0 || uid.value > u32::MAX as i64 {
            return Err(Error::Invalid(format!("run-as user {} is not a uid", uid.value)));
        }
        uid.value.to_string()
    } else {
        image_user.unwrap_or_default().to_string()
    };
    if context.run_as_group.is_some() && context.run_as_user.is_none() && context.run_as_username.is_empty() {
        return Err(Error::Invalid("a run-as group needs a run-as user (or username)".into()));
    }
    let named = match &context.run_as_group {
        Some(gid) if gid.value < 0 || gid.value > u32::MAX as i64 => return Err(Error::Invalid(format!("run-as group {} is not a gid", gid.value))),
        Some(gid) => format!("{}:{}", named.split(':').next().unwrap_or_default(), gid.value),
        None => named,
    };
    let mut user = passwd::resolve(rootfs, &named)?;
    let extra = context
        .supplemental_groups
        .iter()
        .map(|g| u32::try_from(*g).map_err(|_| Error::Invalid(format!("supplemental group {g} is not a gid"))))
        .collect::<Result<Vec<u32>>>()?;
    if context.supplemental_groups_policy == SupplementalGroupsPolicy::Strict as i32 {
        user.additional_gids.clear();
    }
    // The primary group heads the list, as containerd reports (and sets) it.
    user.additional_gids.retain(|g| *g != user.gid);
    user.additional_gids.insert(0, user.gid);
    for gid in extra {
        if !user.additional_gids.contains(&gid) {
            user.additional_gids.push(gid);
        }
    }
    Ok(user)
}
