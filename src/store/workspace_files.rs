//! The manifest of each workspace: path, size and checksum of every file.

use rusqlite::{Connection, params};

use super::{StoreResult, db_err};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

pub fn list(conn: &Connection, conversation_id: &str) -> StoreResult<Vec<WorkspaceFile>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT path, size, sha256 FROM workspace_files WHERE conversation_id = ?1 ORDER BY path",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([conversation_id], |row| {
            Ok(WorkspaceFile {
                path: row.get(0)?,
                size: row.get::<_, i64>(1)?.max(0) as u64,
                sha256: row.get(2)?,
            })
        })
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

/// Records files now in place (replacing rows for the same paths).
pub fn upsert(
    conn: &Connection,
    conversation_id: &str,
    files: &[WorkspaceFile],
    now: &str,
) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO workspace_files (conversation_id, path, size, sha256, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (conversation_id, path) DO UPDATE SET
                 size = excluded.size, sha256 = excluded.sha256, updated_at = excluded.updated_at",
        )
        .map_err(db_err)?;
    for file in files {
        stmt.execute(params![
            conversation_id,
            file.path,
            i64::try_from(file.size).unwrap_or(i64::MAX),
            file.sha256,
            now
        ])
        .map_err(db_err)?;
    }
    Ok(())
}

pub fn clear(conn: &Connection, conversation_id: &str) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM workspace_files WHERE conversation_id = ?1")
        .and_then(|mut stmt| stmt.execute([conversation_id]))
        .map_err(db_err)?;
    Ok(())
}

/// Every workspace's paths, by conversation, for the sweeper's orphan check.
pub fn all_paths(
    conn: &Connection,
) -> StoreResult<std::collections::HashMap<String, std::collections::HashSet<String>>> {
    let mut stmt = conn
        .prepare("SELECT conversation_id, path FROM workspace_files")
        .map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    let mut all: std::collections::HashMap<String, std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        let id: String = row.get(0).map_err(db_err)?;
        let path: String = row.get(1).map_err(db_err)?;
        all.entry(id).or_default().insert(path);
    }
    Ok(all)
}
