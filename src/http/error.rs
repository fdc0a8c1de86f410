//! The one error type at the HTTP edge. Each error knows its status and its
//! stable `error` code; server-side failures log their cause and answer with
//! an opaque message.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object};

use crate::store::StoreError;
use crate::workspace::WorkspaceError;

/// Every error answer: a stable machine code and one human sentence.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ErrorBody {
    /// A stable snake_case code, such as `invalid_credentials` or `conversation_not_found`.
    pub error: String,
    /// One sentence for people.
    pub message: String,
    /// The form field the error is about, when it is about one (`email`, `password`, `confirmPassword`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `rate_limited`: the daily allowance in tokens.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// With `rate_limited`: tokens used today.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    /// With `rate_limited`: when the allowance resets (RFC 3339, UTC).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Box<ErrorBody>,
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.body.message, self.body.error)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: Box::new(ErrorBody {
                error: code.to_owned(),
                message: message.into(),
                field: None,
                limit: None,
                used: None,
                reset_at: None,
            }),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Sign in first: this needs a valid Bearer token in the Authorization header.",
        )
    }

    pub fn forbidden_user() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "The user_id is not yours; leave it out or send your own.",
        )
    }

    pub fn conversation_not_found() -> Self {
        Self::not_found("conversation_not_found", "There is no such conversation.")
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn with_field(mut self, field: &str) -> Self {
        self.body.field = Some(field.to_owned());
        self
    }

    /// A server-side failure: the cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on the server; it has been logged.",
        )
    }

    fn statuses() -> &'static [(u16, &'static str)] {
        &[
            (400, "The request is not what this route takes."),
            (401, "No valid Bearer token."),
            (403, "The user_id is someone else's."),
            (404, "Not found, or not yours."),
            (408, "The request body arrived too slowly."),
            (413, "Over a size limit."),
            (
                429,
                "Over the daily allowance or too many attempts; see Retry-After.",
            ),
            (500, "A server-side failure."),
            (502, "The model provider failed."),
            (504, "The model provider timed out."),
            (507, "The server's disk is full."),
        ]
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Self::not_found("not_found", "Not found."),
            StoreError::DiskFull => disk_full(),
            other => Self::internal(other),
        }
    }
}

const REFUSED: &str = "The upload was refused.";
const TOO_LARGE: &str = "The upload is larger than this server allows.";

/// A workspace's reason ("the zip entry … is damaged", written to follow a
/// file's name in the log) as an error message: a sentence of its own.
fn sentence(reason: &str, otherwise: &str) -> String {
    let mut chars = reason.trim().chars();
    let mut message: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return otherwise.into(),
    };
    if !message.ends_with(['.', '?', '!', ')']) {
        message.push('.');
    }
    message
}

impl From<WorkspaceError> for ApiError {
    fn from(err: WorkspaceError) -> Self {
        match err {
            WorkspaceError::Refused(message) => {
                Self::bad_request("invalid_upload", sentence(&message, REFUSED))
            }
            WorkspaceError::TooLarge(message) => Self::too_large(sentence(&message, TOO_LARGE)),
            WorkspaceError::DiskFull => disk_full(),
            WorkspaceError::Io(err) => Self::internal(format!("workspace: {err}")),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        if let Some(workspace) = err.downcast_ref::<WorkspaceError>() {
            return match workspace {
                WorkspaceError::Refused(m) => {
                    Self::bad_request("invalid_upload", sentence(m, REFUSED))
                }
                WorkspaceError::TooLarge(m) => Self::too_large(sentence(m, TOO_LARGE)),
                WorkspaceError::DiskFull => disk_full(),
                WorkspaceError::Io(_) => Self::internal(format!("{err:#}")),
            };
        }
        if err.chain().any(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.raw_os_error() == Some(28))
        }) {
            return disk_full();
        }
        Self::internal(format!("{err:#}"))
    }
}

pub fn too_slow() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "The request body arrived too slowly; send it again.",
    )
}

pub fn disk_full() -> ApiError {
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        "disk_full",
        "The server's disk is full; nothing was saved. Try again later or ask the administrator.",
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = poem::web::Json(&*self.body).into_response();
        response.set_status(self.status);
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert("Retry-After", seconds.into());
        }
        response
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        self.clone().into_response()
    }
}

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: Self::statuses()
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json",
                        schema: ErrorBody::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        ErrorBody::register(registry);
    }
}

/// Turns any error that reaches the edge (ours, poem's, poem-openapi's) into
/// the JSON shape, with the status a client expects.
pub fn to_json(err: poem::Error) -> Response {
    let pattern = err.data::<poem::PathPattern>().cloned();
    let mut response = if let Some(api) = err.downcast_ref::<ApiError>() {
        api.clone().into_response()
    } else {
        from_framework(&err).into_response()
    };
    if let Some(pattern) = pattern {
        response.set_data(pattern);
    }
    response
}

fn from_framework(err: &poem::Error) -> ApiError {
    let status = err.status();
    match status {
        StatusCode::NOT_FOUND => {
            ApiError::not_found("not_found", "There is nothing at this address.")
        }
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "method_not_allowed",
            "This address does not take that method.",
        ),
        StatusCode::UNAUTHORIZED => ApiError::unauthorized(),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large("The request body is too large."),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::bad_request(
            "bad_request",
            "The request body must be JSON (Content-Type: application/json).",
        ),
        s if s.is_client_error() => ApiError::bad_request("bad_request", describe(err)),
        _ => ApiError::internal(err),
    }
}

/// A framework's parse error in one sentence, without internals: what could
/// not be read, and the parser's reason (its first line, shortened).
fn describe(err: &poem::Error) -> String {
    use poem_openapi::error::{ParseParamError, ParseRequestPayloadError};
    let (what, reason) = if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        // The parser's own words name Rust types and grammar; a client needs
        // where the JSON broke, or that its shape is wrong.
        let reason = match e.reason.rsplit_once(" at line ") {
            Some((_, at)) => match at.split_once(" column ") {
                Some((line, column)) => {
                    format!("it breaks off or is malformed at line {line}, column {column}")
                }
                None => format!("it is malformed at line {at}"),
            },
            None => "it must be an object with the fields this route documents at /docs".into(),
        };
        ("The request body is not the JSON this route takes", reason)
    } else if let Some(e) = err.downcast_ref::<ParseParamError>() {
        // The parser names its schema types ("integer_int64"): say what the
        // parameter takes in words instead.
        let expected = match e.reason.split('"').nth(1) {
            Some(kind) if kind.starts_with("integer") => "a whole number",
            Some(kind) if kind.starts_with("number") => "a number",
            Some("boolean") => "true or false",
            _ => "",
        };
        return if expected.is_empty() {
            format!("The parameter {} could not be read.", e.name)
        } else {
            format!("The parameter {} must be {expected}.", e.name)
        };
    } else {
        ("The request is not what this route takes", err.to_string())
    };
    let reason = reason.lines().next().unwrap_or("").trim();
    let reason: String = reason.chars().take(300).collect();
    if reason.is_empty() {
        format!("{what}.")
    } else {
        format!("{what} ({reason}).")
    }
}

#[cfg(test)]
mod tests {
    use super::ApiError;
    use crate::workspace::WorkspaceError;

    fn message(err: ApiError) -> String {
        err.body.message.to_string()
    }

    #[test]
    fn a_workspace_reason_becomes_a_sentence() {
        let refused = ApiError::from(WorkspaceError::Refused(
            "the zip file is damaged or not a zip".into(),
        ));
        assert_eq!(message(refused), "The zip file is damaged or not a zip.");
        let bomb = ApiError::from(WorkspaceError::TooLarge(
            "the zip entry \"a\" inflates suspiciously much (a zip bomb?)".into(),
        ));
        assert_eq!(
            message(bomb),
            "The zip entry \"a\" inflates suspiciously much (a zip bomb?)"
        );
        let empty = ApiError::from(WorkspaceError::TooLarge(String::new()));
        assert_eq!(
            message(empty),
            "The upload is larger than this server allows."
        );
    }
}
