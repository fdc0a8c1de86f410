//! `/api/download`: an artifact, streamed from disk to its owner.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use poem::Body;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Binary;
use poem_openapi::{ApiResponse, OpenApi};
use tokio_util::io::ReaderStream;

use super::ApiTags;
use super::auth::BearerAuth;
use super::error::ApiError;
use crate::artifacts::{artifact_path, is_valid_zip_id};
use crate::state::AppState;
use crate::store::{self, StoreError};

pub struct ArtifactsApi;

#[derive(ApiResponse)]
pub enum DownloadResponse {
    /// The ZIP.
    #[oai(status = 200, content_type = "application/zip")]
    Zip(
        Binary<Body>,
        #[oai(header = "Content-Disposition")] String,
        #[oai(header = "Content-Length")] u64,
    ),
}

/// Streams a file and runs `on_complete` once every byte has been handed
/// over. The check runs when the body is dropped, because with a known length
/// the server stops polling after the last byte. If the client goes away
/// first, fewer bytes were sent and nothing runs.
struct CompletionStream<F: FnOnce() + Send + Unpin> {
    inner: ReaderStream<tokio::fs::File>,
    sent: u64,
    size: u64,
    on_complete: Option<F>,
}

impl<F: FnOnce() + Send + Unpin> Stream for CompletionStream<F> {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            self.sent += chunk.len() as u64;
        }
        polled
    }
}

impl<F: FnOnce() + Send + Unpin> Drop for CompletionStream<F> {
    fn drop(&mut self) {
        if self.sent >= self.size
            && let Some(done) = self.on_complete.take()
        {
            done();
        }
    }
}

/// Releases a disposable artifact's download slot when the download ends,
/// however it ends.
struct DisposableClaim {
    state: AppState,
    zip_id: String,
}

impl Drop for DisposableClaim {
    fn drop(&mut self) {
        self.state.disposable_downloads.lock().remove(&self.zip_id);
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("artifact_not_found", "There is no such artifact.")
}

#[OpenApi(tag = "ApiTags::Artifacts")]
impl ArtifactsApi {
    /// Download an artifact (a ZIP of a conversation's workspace).
    ///
    /// Only the conversation's owner may download it. With `disposable=1` the
    /// artifact is deleted once it has been sent completely.
    #[oai(path = "/api/download", method = "get", operation_id = "download")]
    async fn download(
        &self,
        req: &poem::Request,
        auth: BearerAuth,
        state: Data<&AppState>,
        /// The artifact's id, from a chat answer or a conversation.
        zip_id: Query<Option<String>>,
        /// `1` (or `true`) deletes the artifact once it has been sent completely.
        disposable: Query<Option<String>>,
        /// Optional: must be your own id.
        user_id: Query<Option<i64>>,
    ) -> Result<DownloadResponse, ApiError> {
        auth.check_user_id(user_id.0)?;
        let zip_id = zip_id
            .0
            .map(|z| z.trim().to_owned())
            .filter(|z| !z.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request("bad_request", "The query parameter zip_id is required.")
            })?;
        let disposable = match disposable.0.as_deref().map(str::trim) {
            None | Some("" | "0" | "false") => false,
            Some("1" | "true") => true,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "bad_request",
                    "disposable must be 1 or 0.",
                ));
            }
        };
        if !is_valid_zip_id(&zip_id) {
            return Err(not_found());
        }
        let user_id = auth.0.user.id;
        let id = zip_id.clone();
        let found = match state
            .store
            .read(move |conn| store::artifacts::owned(conn, &id, user_id))
            .await
        {
            Ok(found) => found,
            Err(StoreError::NotFound) => return Err(not_found()),
            Err(err) => return Err(err.into()),
        };
        // HEAD sends no body: nothing to delete after it, and no reason to
        // make the artifact disposable.
        let sends_body = req.data::<super::HeadOnly>().is_none();
        if disposable && sends_body && !found.artifact.disposable {
            let id = zip_id.clone();
            state
                .store
                .write(move |conn| store::artifacts::mark_disposable(conn, &id))
                .await?;
        }
        let path = artifact_path(&state.settings.data_dir, &zip_id);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(_) => {
                tracing::warn!(zip_id = %zip_id, "an artifact row has no file; removing the row");
                let id = zip_id.clone();
                let _ = state
                    .store
                    .write(move |conn| store::artifacts::delete(conn, &id))
                    .await;
                return Err(not_found());
            }
        };
        let size = file.metadata().await.map_err(ApiError::internal)?.len();

        let delete_after = sends_body && (disposable || found.artifact.disposable);
        // A disposable artifact is sent to one download at a time; while one
        // runs, it is as good as gone for everyone else.
        let claim = if delete_after {
            if !state.disposable_downloads.lock().insert(zip_id.clone()) {
                return Err(not_found());
            }
            Some(DisposableClaim {
                state: state.0.clone(),
                zip_id: zip_id.clone(),
            })
        } else {
            None
        };
        let finished_state = state.0.clone();
        let finished_id = zip_id.clone();
        let on_complete = move || {
            finished_state.metrics.artifact_downloads.inc();
            if !delete_after {
                return;
            }
            tokio::spawn(async move {
                let id = finished_id.clone();
                match finished_state
                    .store
                    .write(move |conn| store::artifacts::delete(conn, &id))
                    .await
                {
                    Ok(_) => {
                        let _ = tokio::fs::remove_file(artifact_path(
                            &finished_state.settings.data_dir,
                            &finished_id,
                        ))
                        .await;
                    }
                    Err(err) => tracing::error!(error = %err, "removing a disposable artifact"),
                }
                // Only now may another download try; it will find nothing.
                drop(claim);
            });
        };
        let stream = CompletionStream {
            inner: ReaderStream::with_capacity(file, 256 * 1024),
            sent: 0,
            size,
            on_complete: Some(on_complete),
        };

        let short_id: String = found.artifact.conversation_id.chars().take(8).collect();
        let agent: String = found
            .agent_name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let filename = format!(
            "{}-{short_id}-{}.zip",
            agent.to_lowercase(),
            found.artifact.seq
        );
        Ok(DownloadResponse::Zip(
            Binary(Body::from_bytes_stream(stream)),
            format!("attachment; filename=\"{filename}\""),
            size,
        ))
    }
}
