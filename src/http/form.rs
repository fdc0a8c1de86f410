//! Multipart forms for `/chat` and `/conversation/upload`, read as they
//! arrive: files go straight to a staging folder on disk, with every size
//! limit checked while reading, so nothing is ever held whole in memory.

use std::marker::PhantomData;

use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaRequest, Registry};
use poem_openapi::types::multipart::Upload;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use super::error::ApiError;
use crate::state::AppState;
use crate::workspace::{Limits, Staging, WorkspaceError};

/// A form's text fields and its staged files.
pub struct Form {
    /// In the order sent; a name sent twice counts as its last value. A form
    /// has a handful of fields, which a list finds faster than a hash map.
    fields: Vec<(String, String)>,
    pub staging: Staging,
    pub uploaded_bytes: u64,
}

impl Form {
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }

    /// An optional integer field; present but not a number is a 400.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.text(name).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(value) => value.parse().map(Some).map_err(|_| {
                ApiError::bad_request(
                    "bad_request",
                    format!("The field {name} must be a whole number."),
                )
            }),
        }
    }
}

/// Text fields larger than this are refused; `message` may be larger.
const MAX_FIELD_BYTES: u64 = 4 * 1024;
const MAX_MESSAGE_BYTES: u64 = 1024 * 1024;
const WRITE_BATCH: usize = 256 * 1024;

/// More parts than any real form has.
const MAX_FIELDS: usize = 1000;

/// A form at most this large is read under one deadline instead of one per
/// wait: each deadline is a timer to set and clear, a tenth of the cost of
/// reading a chat message's form.
const SMALL_FORM_BYTES: u64 = 64 * 1024;

/// Waits for the client at most `limit`; `None`: a deadline around the whole
/// form bounds this wait already.
async fn within<T>(
    limit: Option<std::time::Duration>,
    work: impl std::future::Future<Output = T>,
) -> Result<T, ApiError> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .map_err(|_| super::error::too_slow()),
        None => Ok(work.await),
    }
}

fn is_file_field(name: &str) -> bool {
    name == "files[]" || name == "files"
}

async fn read_form(req: &Request, body: &mut RequestBody) -> Result<Form, ApiError> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::internal("state missing"))?
        .clone();
    let settings = &state.settings;
    let is_multipart = req
        .content_type()
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(ApiError::bad_request(
            "multipart_required",
            "This route takes multipart/form-data (even without files), not JSON or another body.",
        ));
    }
    let limits = Limits {
        max_file_bytes: settings.max_upload_bytes,
        max_request_bytes: settings.max_request_bytes,
        max_workspace_bytes: settings.max_workspace_bytes,
    };
    let length = req
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = length
        && length > limits.max_request_bytes + 64 * 1024
    {
        return Err(ApiError::too_large(format!(
            "The upload is larger than the limit of {} MiB per request.",
            limits.max_request_bytes / crate::config::MIB
        )));
    }

    // multer itself, on the body's own chunks: poem's wrapper parsed the
    // content type a second time and copied the body through two adapters.
    let unreadable =
        || ApiError::bad_request("bad_request", "The multipart form could not be read.");
    let boundary = req
        .content_type()
        .and_then(|content_type| multer::parse_boundary(content_type).ok())
        .ok_or_else(unreadable)?;
    let stream = body.take().map_err(|_| unreadable())?.into_bytes_stream();
    let multipart = multer::Multipart::new(stream, boundary);
    let staging = Staging::new(&settings.data_dir, limits);
    // Every wait on the client is bounded, so a trickled body cannot hold a
    // task (and a staging folder) forever.
    let patience = settings.body_timeout;
    if length.is_some_and(|length| length <= SMALL_FORM_BYTES) {
        within(Some(patience), read_parts(multipart, staging, None)).await?
    } else {
        read_parts(multipart, staging, Some(patience)).await
    }
}

/// A field's next piece of data; `None` once it has all arrived.
async fn next_chunk(
    field: &mut multer::Field<'static>,
    patience: Option<std::time::Duration>,
) -> Result<Option<bytes::Bytes>, ApiError> {
    within(patience, field.chunk()).await?.map_err(|_| broken())
}

fn broken() -> ApiError {
    ApiError::bad_request(
        "bad_request",
        "The multipart form is malformed or was cut off.",
    )
}

/// Reads the form's parts: text fields into memory, files into `staging`.
async fn read_parts(
    mut multipart: multer::Multipart<'static>,
    mut staging: Staging,
    patience: Option<std::time::Duration>,
) -> Result<Form, ApiError> {
    let mut fields = Vec::new();
    let mut uploaded = 0u64;

    let mut fields_seen = 0usize;
    while let Some(mut field) = within(patience, multipart.next_field())
        .await?
        .map_err(|_| broken())?
    {
        fields_seen += 1;
        if fields_seen > MAX_FIELDS {
            return Err(ApiError::bad_request(
                "bad_request",
                "The form has too many fields.",
            ));
        }
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        if is_file_field(&name) {
            let Some(file_name) = file_name.filter(|n: &String| !n.trim().is_empty()) else {
                // An empty file input sends a part with no name and no bytes.
                while let Some(chunk) = next_chunk(&mut field, patience).await? {
                    if !chunk.is_empty() {
                        return Err(ApiError::bad_request(
                            "invalid_upload",
                            "Every file needs a file name.",
                        ));
                    }
                }
                continue;
            };
            let (tmp, mut writer) = staging.begin_file()?;
            let mut buffer = Vec::with_capacity(WRITE_BATCH);
            // The chunks as they come, gathered into batches for the disk.
            loop {
                let chunk = next_chunk(&mut field, patience).await?;
                let finished = chunk.is_none();
                buffer.extend_from_slice(chunk.as_deref().unwrap_or_default());
                if buffer.len() < WRITE_BATCH && !finished {
                    continue;
                }
                if !buffer.is_empty() {
                    let n = buffer.len();
                    let batch = std::mem::take(&mut buffer);
                    let (returned_writer, mut returned_batch, outcome) =
                        crate::blocking::run(move || {
                            let outcome = writer.write_chunk(&batch);
                            (writer, batch, outcome)
                        })
                        .await;
                    writer = returned_writer;
                    returned_batch.clear();
                    buffer = returned_batch;
                    match outcome {
                        Ok(()) => uploaded += n as u64,
                        Err(WorkspaceError::TooLarge(_)) => {
                            return Err(staging.too_large_message(&file_name).into());
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
                if finished {
                    break;
                }
            }
            staging = crate::blocking::run(move || {
                let outcome = staging.finish_file(&file_name, tmp, writer);
                outcome.map(|()| staging)
            })
            .await?;
        } else {
            let cap = if name == "message" {
                MAX_MESSAGE_BYTES
            } else {
                MAX_FIELD_BYTES
            };
            let mut value = Vec::new();
            while let Some(chunk) = next_chunk(&mut field, patience).await? {
                if (value.len() + chunk.len()) as u64 > cap {
                    return Err(ApiError::too_large(format!(
                        "The field {name} is longer than {cap} bytes."
                    )));
                }
                value.extend_from_slice(&chunk);
            }
            let value = String::from_utf8(value).map_err(|_| {
                ApiError::bad_request(
                    "bad_request",
                    format!("The field {name} is not UTF-8 text."),
                )
            })?;
            fields.push((name, value));
        }
    }
    Ok(Form {
        fields,
        staging,
        uploaded_bytes: uploaded,
    })
}

/// Documents the `/chat` form in the OpenAPI spec; the form is read by hand.
#[derive(poem_openapi::Multipart)]
#[allow(dead_code, reason = "only describes the form in the OpenAPI document")]
pub struct ChatFormDoc {
    /// Optional: the token says who you are. If given, it must be yours.
    user_id: Option<i64>,
    /// The conversation's category.
    category: String,
    /// What you say to the agent.
    message: String,
    /// The conversation (a UUID).
    conversation_id: String,
    /// Use this model for this turn only.
    llm_model: Option<String>,
    /// Files to put into the workspace first; a `.zip` is unpacked. `files` works too.
    #[oai(rename = "files[]")]
    files: Vec<Upload>,
}

/// Documents the `/conversation/upload` form in the OpenAPI spec.
#[derive(poem_openapi::Multipart)]
#[allow(dead_code, reason = "only describes the form in the OpenAPI document")]
pub struct UploadFormDoc {
    /// Optional: the token says who you are. If given, it must be yours.
    user_id: Option<i64>,
    /// The conversation (a UUID).
    conversation_id: String,
    /// Files to put into the workspace; a `.zip` is unpacked. `files` works too.
    #[oai(rename = "files[]")]
    files: Vec<Upload>,
}

/// A form read by hand, documented in the spec as `D` describes it.
pub struct FormOf<D>(pub Form, PhantomData<D>);

impl<'a, D: ApiExtractor<'a>> ApiExtractor<'a> for FormOf<D> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        D::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        D::request_meta()
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match read_form(request, body).await {
            Ok(form) => Ok(Self(form, PhantomData)),
            Err(err) => Err(err.into()),
        }
    }
}

pub type ChatForm = FormOf<ChatFormDoc>;
pub type UploadForm = FormOf<UploadFormDoc>;
