//! Conversations and their messages.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, StoreResult, db_err};

#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: String,
    pub user_id: i64,
    pub category: String,
    pub assistant_id: String,
    pub agent_name: String,
    pub llm_model: String,
    pub status: String,
    pub title: Option<String>,
    pub created_at: String,
    pub ended_at: Option<String>,
}

impl Conversation {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

const COLUMNS: &str = "id, user_id, category, assistant_id, agent_name, llm_model, status, title, \
                       created_at, ended_at";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: row.get(0)?,
        user_id: row.get(1)?,
        category: row.get(2)?,
        assistant_id: row.get(3)?,
        agent_name: row.get(4)?,
        llm_model: row.get(5)?,
        status: row.get(6)?,
        title: row.get(7)?,
        created_at: row.get(8)?,
        ended_at: row.get(9)?,
    })
}

pub fn insert(conn: &Connection, c: &Conversation) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO conversations (id, user_id, category, assistant_id, agent_name, llm_model,
                                    status, title, created_at, updated_at, ended_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            c.id,
            c.user_id,
            c.category,
            c.assistant_id,
            c.agent_name,
            c.llm_model,
            c.status,
            c.title,
            c.created_at,
            c.ended_at
        ])
    })
    .map_err(db_err)?;
    Ok(())
}

/// The conversation if it exists and belongs to `user_id`; another user's
/// conversation is `NotFound`, exactly like a missing one.
pub fn owned(conn: &Connection, id: &str, user_id: i64) -> StoreResult<Conversation> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM conversations WHERE id = ?1 AND user_id = ?2"
    ))
    .and_then(|mut stmt| stmt.query_row(params![id, user_id], from_row).optional())
    .map_err(db_err)?
    .ok_or(StoreError::NotFound)
}

/// Whether a conversation exists (whoever's it is).
pub fn exists(conn: &Connection, id: &str) -> StoreResult<bool> {
    conn.prepare_cached("SELECT 1 FROM conversations WHERE id = ?1")
        .and_then(|mut stmt| stmt.exists([id]))
        .map_err(db_err)
}

/// Ends a conversation (once); returns it as it is afterwards.
pub fn end(conn: &Connection, id: &str, user_id: i64, now: &str) -> StoreResult<Conversation> {
    conn.prepare_cached(
        "UPDATE conversations SET status = 'ended', ended_at = ?3, updated_at = ?3
         WHERE id = ?1 AND user_id = ?2 AND status = 'active'",
    )
    .and_then(|mut stmt| stmt.execute(params![id, user_id, now]))
    .map_err(db_err)?;
    owned(conn, id, user_id)
}

/// A page of the user's conversations, newest first, created before `before`.
pub fn list(
    conn: &Connection,
    user_id: i64,
    before: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<Conversation>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM conversations
             WHERE user_id = ?1 AND (?2 IS NULL OR created_at < ?2)
             ORDER BY created_at DESC, id DESC LIMIT ?3"
        ))
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![user_id, before, limit], from_row)
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub fn count_active(conn: &Connection) -> StoreResult<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM conversations WHERE status = 'active'",
        [],
        |row| row.get(0),
    )
    .map_err(db_err)
}

/// Conversations not touched since `cutoff`, whose workspaces may be removed.
pub fn idle_since(conn: &Connection, cutoff: &str) -> StoreResult<Vec<String>> {
    let mut stmt = conn
        .prepare("SELECT id FROM conversations WHERE updated_at < ?1")
        .map_err(db_err)?;
    let rows = stmt.query_map([cutoff], |row| row.get(0)).map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub fn all_ids(conn: &Connection) -> StoreResult<std::collections::HashSet<String>> {
    let mut stmt = conn
        .prepare("SELECT id FROM conversations")
        .map_err(db_err)?;
    let rows = stmt.query_map([], |row| row.get(0)).map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub role: String,
    pub content: String,
    pub content_tokens: u64,
    pub llm_model: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub error: Option<String>,
    pub created_at: String,
}

/// A message to store, with the raw usage the provider reported (JSON).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub role: &'static str,
    pub content: String,
    pub content_tokens: u64,
    pub llm_model: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub usage_raw: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
}

fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let tokens = |v: Option<i64>| v.map(|t| t.max(0) as u64);
    Ok(Message {
        id: row.get(0)?,
        role: row.get(1)?,
        content: row.get(2)?,
        content_tokens: row.get::<_, i64>(3)?.max(0) as u64,
        llm_model: row.get(4)?,
        prompt_tokens: tokens(row.get(5)?),
        completion_tokens: tokens(row.get(6)?),
        error: row.get(7)?,
        created_at: row.get(8)?,
    })
}

const MESSAGE_COLUMNS: &str = "id, role, content, content_tokens, llm_model, prompt_tokens, completion_tokens, error, created_at";

/// Every message of a conversation, oldest first.
pub fn messages(conn: &Connection, conversation_id: &str) -> StoreResult<Vec<Message>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 ORDER BY seq"
        ))
        .map_err(db_err)?;
    let rows = stmt
        .query_map([conversation_id], message_from_row)
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub use crate::llm::HistoryMessage;

/// The most recent successful messages, oldest first, whose tokens add up to
/// at most `budget` (the newest always), at most 200: the window a prompt's
/// history is taken from (`live::trim_window` keeps it the same way).
pub fn recent_window(
    conn: &Connection,
    conversation_id: &str,
    budget: u64,
) -> StoreResult<std::collections::VecDeque<HistoryMessage>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT role = 'assistant', content, content_tokens FROM messages
             WHERE conversation_id = ?1 AND error IS NULL ORDER BY seq DESC LIMIT 200",
        )
        .map_err(db_err)?;
    let mut rows = stmt.query([conversation_id]).map_err(db_err)?;
    let mut picked = std::collections::VecDeque::new();
    let mut used = 0u64;
    while let Some(row) = rows.next().map_err(db_err)? {
        let content_tokens = row.get::<_, i64>(2).map_err(db_err)?.max(0) as u64;
        used += content_tokens;
        if used > budget && !picked.is_empty() {
            break;
        }
        picked.push_front(HistoryMessage {
            from_assistant: row.get(0).map_err(db_err)?,
            content: row.get::<_, String>(1).map_err(db_err)?.into(),
            content_tokens,
        });
    }
    Ok(picked)
}

/// The `seq` of a conversation's newest message, failed turns included; 0
/// when it has none.
pub fn last_seq(conn: &Connection, conversation_id: &str) -> StoreResult<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?1")
        .and_then(|mut stmt| stmt.query_row([conversation_id], |row| row.get(0)))
        .map_err(db_err)
}

/// Appends messages to a conversation, marks it touched, and sets its title
/// from the first user message when it has none. Answers the first new
/// message's `seq`.
pub fn append_messages(
    conn: &Connection,
    conversation_id: &str,
    new_messages: &[NewMessage],
) -> StoreResult<i64> {
    let next_seq = last_seq(conn, conversation_id)? + 1;
    insert_messages(conn, conversation_id, next_seq, new_messages)?;
    let now = newest_time(new_messages);
    touch_for(
        conn,
        conversation_id,
        new_messages,
        &now,
        &a_minute_before(&now),
    )?;
    Ok(next_seq)
}

/// As [`append_messages`], but `NotFound` unless the conversation exists and
/// belongs to `user_id`. One statement checks the owner, finds the next `seq`
/// and tells whether the row must be touched, so that most turns leave the
/// conversation's row alone.
pub fn append_owned_messages(
    conn: &Connection,
    conversation_id: &str,
    user_id: i64,
    new_messages: &[NewMessage],
) -> StoreResult<i64> {
    let now = newest_time(new_messages);
    let recently = a_minute_before(&now);
    let (last, stale): (i64, bool) = conn
        .prepare_cached(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?1),
                    title IS NULL OR updated_at < ?3
             FROM conversations WHERE id = ?1 AND user_id = ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![conversation_id, user_id, recently], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
        })
        .map_err(db_err)?
        .ok_or(StoreError::NotFound)?;
    insert_messages(conn, conversation_id, last + 1, new_messages)?;
    if stale {
        touch_for(conn, conversation_id, new_messages, &now, &recently)?;
    }
    Ok(last + 1)
}

fn insert_messages(
    conn: &Connection,
    conversation_id: &str,
    first_seq: i64,
    new_messages: &[NewMessage],
) -> StoreResult<()> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO messages (id, conversation_id, seq, role, content, content_tokens, llm_model,
                                   prompt_tokens, completion_tokens, usage_raw, error, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .map_err(db_err)?;
    let signed = |v: Option<u64>| v.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
    for (offset, m) in new_messages.iter().enumerate() {
        insert
            .execute(params![
                m.id,
                conversation_id,
                first_seq + offset as i64,
                m.role,
                m.content,
                i64::try_from(m.content_tokens).unwrap_or(i64::MAX),
                m.llm_model,
                signed(m.prompt_tokens),
                signed(m.completion_tokens),
                m.usage_raw,
                m.error,
                m.created_at
            ])
            .map_err(db_err)?;
    }
    Ok(())
}

fn newest_time(new_messages: &[NewMessage]) -> String {
    new_messages
        .last()
        .map(|m| m.created_at.clone())
        .unwrap_or_default()
}

/// A minute before `now` (an RFC 3339 time); `now` itself if it is not one.
fn a_minute_before(now: &str) -> String {
    crate::time::parse(now)
        .map(|at| crate::time::rfc3339(at - chrono::Duration::minutes(1)))
        .unwrap_or_else(|| now.to_owned())
}

/// Marks the conversation touched at `now` by `new_messages`, unless it was
/// touched since `recently`, and titles it after the first user message when
/// it has no title yet.
fn touch_for(
    conn: &Connection,
    conversation_id: &str,
    new_messages: &[NewMessage],
    now: &str,
    recently: &str,
) -> StoreResult<()> {
    let title = new_messages
        .iter()
        .find(|m| m.role == "user")
        .map(|m| crate::conversation::title_of(&m.content));
    // `updated_at` only tells the sweeper that a workspace is in use (its
    // retention is counted in days), so a busy conversation's row, and its
    // entry in the `updated_at` index, is rewritten at most once a minute
    // rather than on every turn.
    conn.prepare_cached(
        "UPDATE conversations SET updated_at = ?2, title = COALESCE(title, ?3)
         WHERE id = ?1 AND (title IS NULL OR updated_at < ?4)",
    )
    .and_then(|mut stmt| stmt.execute(params![conversation_id, now, title, recently]))
    .map_err(db_err)?;
    Ok(())
}

/// Marks a conversation touched (an upload), so that its workspace is not swept.
pub fn touch(conn: &Connection, conversation_id: &str, now: &str) -> StoreResult<()> {
    conn.prepare_cached("UPDATE conversations SET updated_at = ?2 WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute(params![conversation_id, now]))
        .map_err(db_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: &'static str, content: &str, created_at: &str) -> NewMessage {
        NewMessage {
            id: uuid::Uuid::now_v7().to_string(),
            role,
            content: content.into(),
            content_tokens: 1,
            llm_model: None,
            prompt_tokens: None,
            completion_tokens: None,
            usage_raw: None,
            error: None,
            created_at: created_at.into(),
        }
    }

    fn updated_at(conn: &Connection) -> String {
        conn.query_row("SELECT updated_at FROM conversations", [], |row| row.get(0))
            .unwrap()
    }

    /// A database with user 1 and their conversation "c", untitled.
    fn one_conversation() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("magdi.db");
        crate::store::migrate_up_to(&path, i32::MAX).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES (1, 'a@b.c', 'x', 't')",
            [],
        )
        .unwrap();
        insert(
            &conn,
            &Conversation {
                id: "c".into(),
                user_id: 1,
                category: "qa_info".into(),
                assistant_id: "a".into(),
                agent_name: "A".into(),
                llm_model: "m".into(),
                status: "active".into(),
                title: None,
                created_at: "2026-12-04T10:00:00.000000Z".into(),
                ended_at: None,
            },
        )
        .unwrap();
        (dir, conn)
    }

    #[test]
    fn a_busy_conversation_is_marked_touched_at_most_once_a_minute() {
        let (_dir, conn) = one_conversation();
        let first = "2026-12-04T10:00:10.000000Z";
        assert_eq!(
            append_messages(&conn, "c", &[message("user", "hello", first)]).unwrap(),
            1
        );
        assert_eq!(
            updated_at(&conn),
            first,
            "the first message sets the title and the time"
        );
        let soon = "2026-12-04T10:00:50.000000Z";
        assert_eq!(
            append_messages(&conn, "c", &[message("user", "again", soon)]).unwrap(),
            2
        );
        assert_eq!(
            updated_at(&conn),
            first,
            "within a minute the row is left as it is"
        );
        let later = "2026-12-04T10:01:11.000000Z";
        append_messages(&conn, "c", &[message("user", "later", later)]).unwrap();
        assert_eq!(updated_at(&conn), later);
        let title: String = conn
            .query_row("SELECT title FROM conversations", [], |row| row.get(0))
            .unwrap();
        assert_eq!(title, "hello");
    }

    #[test]
    fn appending_as_the_owner_numbers_titles_and_touches_like_any_append() {
        let (_dir, conn) = one_conversation();
        let first = "2026-12-04T10:00:10.000000Z";
        assert!(matches!(
            append_owned_messages(&conn, "c", 2, &[message("user", "not yours", first)]),
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            append_owned_messages(&conn, "other", 1, &[message("user", "nowhere", first)]),
            Err(StoreError::NotFound)
        ));
        assert!(messages(&conn, "c").unwrap().is_empty());

        let turn = [
            message("user", "hello", first),
            message("assistant", "hi", first),
        ];
        assert_eq!(append_owned_messages(&conn, "c", 1, &turn).unwrap(), 1);
        assert_eq!(updated_at(&conn), first);
        let soon = "2026-12-04T10:00:50.000000Z";
        assert_eq!(
            append_owned_messages(&conn, "c", 1, &[message("user", "again", soon)]).unwrap(),
            3
        );
        assert_eq!(
            updated_at(&conn),
            first,
            "within a minute the row is left alone"
        );
        let later = "2026-12-04T10:01:11.000000Z";
        assert_eq!(
            append_owned_messages(&conn, "c", 1, &[message("user", "later", later)]).unwrap(),
            4
        );
        assert_eq!(updated_at(&conn), later);
        let title: String = conn
            .query_row("SELECT title FROM conversations", [], |row| row.get(0))
            .unwrap();
        assert_eq!(title, "hello");
        let contents: Vec<_> = messages(&conn, "c")
            .unwrap()
            .into_iter()
            .map(|m| m.content)
            .collect();
        assert_eq!(contents, ["hello", "hi", "again", "later"]);
    }
}
