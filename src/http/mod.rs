//! The HTTP edge: one poem-openapi API per area, the JSON error shape on every
//! answer, metrics and logs per request, security headers, and the web UI.

mod accounts;
mod agents;
mod artifacts;
mod auth;
mod conversations;
pub mod error;
mod form;
mod json_body;
pub mod slow_clients;
mod system;
mod ui;
mod usage;

use std::borrow::Cow;
use std::time::Instant;

use poem::http::{HeaderValue, Method};
use poem::middleware::Cors;
use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Request, Response, Route};
use poem_openapi::{OpenApiService, Tags};

use crate::metrics::{HttpLabels, RouteLabels};
use crate::state::AppState;

#[derive(Tags)]
pub enum ApiTags {
    /// Accounts and sign-in.
    Accounts,
    /// Agent categories and agents.
    Agents,
    /// Conversations, uploads and chat.
    Conversations,
    /// Downloading what agents produced.
    Artifacts,
    /// Token usage and the daily allowance.
    Usage,
    /// Version, health and metrics.
    System,
}

type Apis = (
    accounts::AccountsApi,
    agents::AgentsApi,
    conversations::ConversationsApi,
    artifacts::ArtifactsApi,
    usage::UsageApi,
    system::SystemApi,
);

fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            accounts::AccountsApi,
            agents::AgentsApi,
            conversations::ConversationsApi,
            artifacts::ArtifactsApi,
            usage::UsageApi,
            system::SystemApi,
        ),
        "Magdi",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Magdi is a self-hosted backend for AI QA agents. Sign up, pick an agent, upload your \
         project, chat with the agent, and download what it produced as a ZIP. Every error is \
         JSON: {\"error\": code, \"message\": sentence}.",
    )
    .server("/")
}

/// The OpenAPI document, as `magdi openapi` prints and `/openapi.json` serves.
pub fn openapi_document(yaml: bool) -> String {
    let service = service();
    if yaml {
        service.spec_yaml()
    } else {
        service.spec()
    }
}

/// Swagger UI. Its page carries the whole UI script inline (1.6 MB), so it is
/// made for each visit instead of being held for the server's whole life.
fn docs() -> impl Endpoint {
    let service = service();
    Route::new().at(
        "/",
        poem::get(poem::endpoint::make_sync(move |_| {
            poem::web::Html(service.swagger_ui_html())
        })),
    )
}

/// The whole application as one endpoint.
pub fn app(state: AppState) -> impl Endpoint {
    let api = service();
    let spec = api.spec_endpoint();
    let cors_origins = state.settings.cors_origins.clone();
    let route = Route::new()
        .nest("/", api)
        .at("/openapi.json", poem::get(spec))
        .nest("/docs", docs());

    let cors = (!cors_origins.is_empty()).then(|| {
        cors_origins
            .iter()
            .fold(Cors::new(), |cors, origin| {
                cors.allow_origin(origin.as_str())
            })
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(["authorization", "content-type", "accept"])
    });

    route
        .with_if(cors.is_some(), cors.unwrap_or_default())
        .around(limit_body)
        .around(ui::files_first)
        .catch_all_error(|err| async move { error::to_json(err) })
        .around(observe)
        .data(state)
        .into_endpoint()
}

/// JSON routes take at most this much; uploads and chat have their own limits.
const MAX_JSON_BODY: u64 = 1024 * 1024;

async fn limit_body<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let path = req.uri().path();
    let is_form = path == "/chat" || path == "/conversation/upload";
    if !is_form {
        let too_large = || error::ApiError::too_large("The request body is larger than 1 MiB.");
        let length = req
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        if length.is_some_and(|n| n > MAX_JSON_BODY) {
            return Err(too_large().into());
        }
        // A chunked body has no length up front: read it here, within the
        // limits of size and time.
        let patience = req
            .data::<AppState>()
            .map_or(std::time::Duration::from_secs(30), |s| {
                s.settings.body_timeout
            });
        let read = req.take_body().into_bytes_limit(MAX_JSON_BODY as usize);
        let body = match tokio::time::timeout(patience, read).await {
            Err(_) => return Err(error::too_slow().into()),
            Ok(Ok(body)) => body,
            Ok(Err(poem::error::ReadBodyError::PayloadTooLarge)) => return Err(too_large().into()),
            Ok(Err(_)) => {
                let unreadable = "The request body could not be read.";
                return Err(error::ApiError::bad_request("bad_request", unreadable).into());
            }
        };
        req.set_body(body);
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// A path of the API as the OpenAPI document names it
/// (`/conversations/{conversation_id}`), with the methods it takes as a 405's
/// `Allow` header lists them: HEAD wherever GET is, since the router answers
/// HEAD for those.
struct DocumentedPath {
    template: String,
    allow: HeaderValue,
}

/// The API's paths, then the pages beside it, which take GET only.
fn documented_paths() -> &'static [DocumentedPath] {
    static PATHS: std::sync::OnceLock<Vec<DocumentedPath>> = std::sync::OnceLock::new();
    PATHS.get_or_init(|| {
        let spec: serde_json::Value = serde_json::from_str(&service().spec()).unwrap_or_default();
        let api = spec["paths"].as_object().into_iter().flatten();
        let api = api.filter_map(|(template, operations)| {
            let mut methods: Vec<String> = operations
                .as_object()?
                .keys()
                .map(|method| method.to_ascii_uppercase())
                .collect();
            if methods.iter().any(|m| m == "GET") && !methods.iter().any(|m| m == "HEAD") {
                methods.push("HEAD".into());
            }
            Some(DocumentedPath {
                template: template.clone(),
                allow: HeaderValue::from_str(&methods.join(", ")).ok()?,
            })
        });
        let pages = ["/openapi.json", "/docs", ui::FILE_ROUTE].map(|page| DocumentedPath {
            template: page.to_owned(),
            allow: HeaderValue::from_static("GET, HEAD"),
        });
        api.chain(pages).collect()
    })
}

/// The `Allow` header of a 405 on the path `template`.
fn allowed_methods(template: &str) -> Option<&'static HeaderValue> {
    documented_paths()
        .iter()
        .find(|path| path.template == template)
        .map(|path| &path.allow)
}

/// The route template of a matched request, as the API documents it
/// (`/conversations/{conversation_id}`): bounded labels, never raw ids.
fn route_label(response: &Response) -> Cow<'static, str> {
    let Some(pattern) = response
        .data::<poem::PathPattern>()
        .filter(|p| !p.0.is_empty())
    else {
        return Cow::Borrowed("unmatched");
    };
    let mut templates = documented_paths().iter().map(|path| path.template.as_str());
    let segments: Vec<&str> = pattern.0.split('/').collect();
    let is_param =
        |part: &str| part.starts_with(':') || part.starts_with('{') || part.starts_with('*');
    if !segments.iter().any(|part| is_param(part)) {
        return match templates.find(|template| *template == &*pattern.0) {
            Some(template) => Cow::Borrowed(template),
            None => Cow::Owned(pattern.0.to_string()),
        };
    }
    // The router names parameters by position; the spec has their names.
    let named = templates.find(|template| {
        let parts: Vec<&str> = template.split('/').collect();
        parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(t, p)| t == p || (t.starts_with('{') && is_param(p)))
    });
    Cow::Borrowed(named.unwrap_or("unmatched"))
}

/// Marks a HEAD request: the router hands it to the GET handler as a GET, and
/// a handler that acts on sending its body must know that nothing is sent.
#[derive(Clone, Copy)]
pub(crate) struct HeadOnly;

/// Metrics, one log line per request, and the headers every answer carries.
async fn observe<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    if req.method() == Method::HEAD {
        req.set_data(HeadOnly);
    }
    // Any token is a valid HTTP method: name only the standard ones, so that
    // made-up methods cannot grow the metrics' label sets.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let uri = req.uri().clone();
    let state = req.data::<AppState>().cloned();
    let mut response = match next.call(req).await {
        Ok(response) => response.into_response(),
        Err(err) => error::to_json(err),
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let path = uri.path();
    let mut route = route_label(&response);
    if route == "unmatched" && (path == "/" || ui::is_ui_file(path)) {
        route = Cow::Borrowed(ui::FILE_ROUTE);
    } else if path.starts_with("/docs") {
        route = Cow::Borrowed("/docs");
    }

    if let Some(state) = state {
        state
            .metrics
            .http_requests
            .get_or_create(&HttpLabels {
                method,
                route: route.clone(),
                status,
            })
            .inc();
        state
            .metrics
            .http_duration
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(elapsed.as_secs_f64());
    }
    let quiet = route == "/healthz" || route.starts_with("/metrics");
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::error!(http.method = %method, http.route = %route, status, latency_ms, "request failed");
    } else if quiet {
        tracing::debug!(http.method = %method, http.route = %route, status, latency_ms, "request");
    } else {
        tracing::info!(http.method = %method, http.route = %route, status, latency_ms, "request");
    }

    let headers = response.headers_mut();
    if status == 405
        && let Some(allow) = allowed_methods(&route)
    {
        headers.insert(poem::http::header::ALLOW, allow.clone());
    }
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers
        .entry("x-frame-options")
        .or_insert(HeaderValue::from_static("DENY"));
    Ok(response)
}

/// Recomputes the gauges that come from the database.
pub async fn refresh_gauges(state: &AppState) {
    let today = crate::quota::utc_day(state.quota.clock.now());
    let counts = state
        .store
        .read(move |conn| {
            Ok((
                crate::store::conversations::count_active(conn)?,
                crate::store::usage::total_on(conn, &today)?,
            ))
        })
        .await;
    match counts {
        Ok((active, tokens)) => {
            state.metrics.active_conversations.set(active);
            state
                .metrics
                .tokens_today
                .set(i64::try_from(tokens).unwrap_or(i64::MAX));
        }
        Err(err) => tracing::warn!(error = %err, "refreshing gauges"),
    }
}
