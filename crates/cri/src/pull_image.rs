//! PullImage: with the request's credentials when it has them (username and password, or docker's
//! base64 `auth`), else berthd's, through berthd's mirrors; answered with the image's id. A client
//! that gives up (its deadline) drops the call, and with it the pull.

use crate::proto::{AuthConfig, PullImageRequest, PullImageResponse};
use crate::{status, Cri, Result};
use berth_image::Reference;
use tonic::Status;

pub(crate) async fn handle(cri: &Cri, request: PullImageRequest) -> Result<PullImageResponse> {
    let name = request.image.map(|i| i.image).unwrap_or_default();
    let reference = Reference::parse(&name).map_err(status)?;
    let mut options = cri.inner.registries.current().pull_options(&reference).map_err(status)?;
    if let Some(credentials) = request.auth.as_ref().map(credentials).transpose()?.flatten() {
        options.credentials = Some(credentials);
    }
    tracing::info!(reference = %reference, "CRI pull");
    let pulled = berth_image::pull::pull(cri.store().clone(), &reference, &options).await.map_err(status)?;
    Ok(PullImageResponse { image_ref: pulled.config.to_string() })
}

fn credentials(auth: &AuthConfig) -> Result<Option<(String, String)>> {
    if !auth.username.is_empty() {
        return Ok(Some((auth.username.clone(), auth.password.clone())));
    }
    if !auth.auth.is_empty() {
        use base64::Engine;
        let decoded =
            base64::engine::general_purpose::STANDARD.decode(auth.auth.trim()).map_err(|_| Status::invalid_argument("auth is not base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| Status::invalid_argument("auth is not user:password"))?;
        let (user, password) = text.split_once(':').ok_or_else(|| Status::invalid_argument("auth is not user:password"))?;
        return Ok(Some((user.to_string(), password.to_string())));
    }
    if !auth.identity_token.is_empty() || !auth.registry_token.is_empty() {
        return Err(Status::unimplemented("identity and registry tokens are not supported by berth yet; use a username and password"));
    }
    Ok(None)
}
