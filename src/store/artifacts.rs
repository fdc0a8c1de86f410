//! Artifact rows. A row exists only once its ZIP file is complete on disk.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, StoreResult, db_err};

#[derive(Debug, Clone)]
pub struct Artifact {
    pub zip_id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub size: u64,
    pub files_changed: Vec<String>,
    pub disposable: bool,
    pub created_at: String,
}

/// An artifact together with what names its download.
#[derive(Debug, Clone)]
pub struct OwnedArtifact {
    pub artifact: Artifact,
    pub user_id: i64,
    pub agent_name: String,
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Artifact> {
    let files: String = row.get(4)?;
    Ok(Artifact {
        zip_id: row.get(0)?,
        conversation_id: row.get(1)?,
        seq: row.get(2)?,
        size: row.get::<_, i64>(3)?.max(0) as u64,
        files_changed: serde_json::from_str(&files).unwrap_or_default(),
        disposable: row.get(5)?,
        created_at: row.get(6)?,
    })
}

const COLUMNS: &str =
    "a.zip_id, a.conversation_id, a.seq, a.size, a.files_changed, a.disposable, a.created_at";

/// Records a finished ZIP; its `seq` is the next number in the conversation.
pub fn insert(conn: &Connection, artifact: &mut Artifact) -> StoreResult<()> {
    artifact.seq = conn
        .prepare_cached(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM artifacts WHERE conversation_id = ?1",
        )
        .and_then(|mut stmt| stmt.query_row([&artifact.conversation_id], |row| row.get(0)))
        .map_err(db_err)?;
    let files = serde_json::to_string(&artifact.files_changed).unwrap_or_else(|_| "[]".into());
    conn.prepare_cached(
        "INSERT INTO artifacts (zip_id, conversation_id, seq, size, files_changed, disposable, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            artifact.zip_id,
            artifact.conversation_id,
            artifact.seq,
            i64::try_from(artifact.size).unwrap_or(i64::MAX),
            files,
            artifact.disposable,
            artifact.created_at
        ])
    })
    .map_err(db_err)?;
    Ok(())
}

pub fn of_conversation(conn: &Connection, conversation_id: &str) -> StoreResult<Vec<Artifact>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM artifacts a WHERE a.conversation_id = ?1 ORDER BY a.seq"
        ))
        .map_err(db_err)?;
    let rows = stmt
        .query_map([conversation_id], from_row)
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

/// The artifact if it belongs to one of `user_id`'s conversations.
pub fn owned(conn: &Connection, zip_id: &str, user_id: i64) -> StoreResult<OwnedArtifact> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, c.user_id, c.agent_name FROM artifacts a
         JOIN conversations c ON c.id = a.conversation_id
         WHERE a.zip_id = ?1 AND c.user_id = ?2"
    ))
    .and_then(|mut stmt| {
        stmt.query_row(params![zip_id, user_id], |row| {
            Ok(OwnedArtifact {
                artifact: from_row(row)?,
                user_id: row.get(7)?,
                agent_name: row.get(8)?,
            })
        })
        .optional()
    })
    .map_err(db_err)?
    .ok_or(StoreError::NotFound)
}

pub fn mark_disposable(conn: &Connection, zip_id: &str) -> StoreResult<()> {
    conn.prepare_cached("UPDATE artifacts SET disposable = 1 WHERE zip_id = ?1")
        .and_then(|mut stmt| stmt.execute([zip_id]))
        .map_err(db_err)?;
    Ok(())
}

/// Removes the row; returns whether there was one.
pub fn delete(conn: &Connection, zip_id: &str) -> StoreResult<bool> {
    let n = conn
        .prepare_cached("DELETE FROM artifacts WHERE zip_id = ?1")
        .and_then(|mut stmt| stmt.execute([zip_id]))
        .map_err(db_err)?;
    Ok(n > 0)
}

/// Removes the rows older than `cutoff` and returns their ids.
pub fn delete_older_than(conn: &Connection, cutoff: &str) -> StoreResult<Vec<String>> {
    let mut stmt = conn
        .prepare("DELETE FROM artifacts WHERE created_at < ?1 RETURNING zip_id")
        .map_err(db_err)?;
    let rows = stmt.query_map([cutoff], |row| row.get(0)).map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub fn all_ids(conn: &Connection) -> StoreResult<std::collections::HashSet<String>> {
    let mut stmt = conn
        .prepare("SELECT zip_id FROM artifacts")
        .map_err(db_err)?;
    let rows = stmt.query_map([], |row| row.get(0)).map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

pub fn totals(conn: &Connection) -> StoreResult<(u64, u64)> {
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM artifacts",
        [],
        |row| {
            Ok((
                row.get::<_, i64>(0)?.max(0) as u64,
                row.get::<_, i64>(1)?.max(0) as u64,
            ))
        },
    )
    .map_err(db_err)
}
