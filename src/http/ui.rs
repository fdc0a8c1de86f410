//! The web UI: files from `static/`, embedded in the binary, served with
//! ETags and a Content-Security-Policy that allows only this server.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use include_dir::{Dir, include_dir};
use poem::http::{Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::state::AppState;

static STATIC: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/static");

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'; form-action 'self'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "webmanifest" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// ETags of the embedded files, computed once.
fn embedded_etags() -> &'static HashMap<&'static str, String> {
    static ETAGS: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        let mut etags = HashMap::new();
        let mut stack = vec![&STATIC];
        while let Some(dir) = stack.pop() {
            for file in dir.files() {
                if let Some(path) = file.path().to_str() {
                    etags.insert(path, etag_of(file.contents()));
                }
            }
            stack.extend(dir.dirs());
        }
        etags
    })
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..32])
}

fn load(state: &AppState, path: &str) -> Option<(Cow<'static, [u8]>, String)> {
    if path
        .split('/')
        .any(|part| part.is_empty() || part == ".." || part.starts_with('.'))
    {
        return None;
    }
    match &state.settings.ui_dir {
        Some(dir) => {
            let bytes = std::fs::read(dir.join(path)).ok()?;
            let etag = etag_of(&bytes);
            Some((Cow::Owned(bytes), etag))
        }
        None => {
            let file = STATIC.get_file(path)?;
            let etag = embedded_etags()
                .get(path)
                .cloned()
                .unwrap_or_else(|| etag_of(file.contents()));
            Some((Cow::Borrowed(file.contents()), etag))
        }
    }
}

fn serve(state: &AppState, req: &Request, path: &str) -> Response {
    let Some((bytes, etag)) = load(state, path) else {
        return ApiError::not_found("not_found", "There is nothing at this address.")
            .into_response();
    };
    let not_modified = req
        .header(header::IF_NONE_MATCH)
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag));
    let builder = Response::builder()
        .header(header::ETAG, etag)
        // Revalidate every time: an upgrade of Magdi changes the files, and a
        // 304 costs one small round trip.
        .header(header::CACHE_CONTROL, "no-cache")
        .header("content-security-policy", CSP)
        .header(header::CONTENT_TYPE, content_type(path));
    if not_modified {
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    builder.body(bytes.into_owned())
}

/// How the UI's files are named in metrics and logs.
pub const FILE_ROUTE: &str = "/{ui_file}";

/// Serves the UI's files before routing, so that they need no route of their
/// own next to the API's; everything else goes on to the API.
pub async fn files_first<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let path = req.uri().path();
    let is_read = req.method() == Method::GET || req.method() == Method::HEAD;
    if !is_read && (path == "/" || is_ui_file(path)) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "This address does not take that method.",
        )
        .into());
    }
    if is_read && let Some(state) = req.data::<AppState>().cloned() {
        let file = if path == "/" {
            "index.html"
        } else {
            path.trim_start_matches('/')
        };
        let exists = match &state.settings.ui_dir {
            Some(_) => load(&state, file).is_some(),
            None => is_ui_file(file),
        };
        if exists {
            let file = file.to_owned();
            return Ok(serve(&state, &req, &file));
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// Whether a request path names a file of the web UI.
pub fn is_ui_file(path: &str) -> bool {
    // One hash lookup: every request that is not a GET asks this, and walking
    // the embedded tree took 2% of a chat turn's instructions.
    embedded_etags().contains_key(path.trim_start_matches('/'))
}
