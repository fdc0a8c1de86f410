//! Accounts.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, StoreResult, db_err};

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub created_at: String,
    pub daily_token_limit: Option<u64>,
    pub disabled: bool,
    pub selected_category: Option<String>,
    /// Unix seconds of the last password change; older tokens are refused.
    pub password_changed_at: Option<i64>,
    /// Raised by each password change; only tokens of this generation work.
    pub token_generation: i64,
}

const COLUMNS: &str = "id, email, password_hash, created_at, daily_token_limit, disabled, selected_category, \
     password_changed_at, token_generation";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        password_hash: row.get(2)?,
        created_at: row.get(3)?,
        daily_token_limit: row.get::<_, Option<i64>>(4)?.map(|l| l.max(0) as u64),
        disabled: row.get(5)?,
        selected_category: row.get(6)?,
        password_changed_at: row.get(7)?,
        token_generation: row.get(8)?,
    })
}

/// Creates a user; `Conflict` when the email is taken (in any letter case).
/// Its id has never been anyone's: a deleted user's tokens name their id, and
/// must not come back to life in a new account.
pub fn insert(conn: &Connection, email: &str, password_hash: &str) -> StoreResult<User> {
    // Checked before anything is written: a writer's job that fails after
    // writing undoes its whole batch, other people's changes with it.
    if by_email(conn, email)?.is_some() {
        return Err(StoreError::Conflict);
    }
    let created_at = crate::time::now_rfc3339();
    let id: i64 = conn
        .prepare_cached(
            "UPDATE id_counters
             SET value = MAX(value, (SELECT COALESCE(MAX(id), 0) FROM users)) + 1
             WHERE name = 'users' RETURNING value",
        )
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(db_err)?;
    conn.prepare_cached(
        "INSERT INTO users (id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut stmt| stmt.execute(params![id, email, password_hash, created_at]))
    .map_err(db_err)?;
    by_id(conn, id)
}

pub fn by_id(conn: &Connection, id: i64) -> StoreResult<User> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], from_row))
        .map_err(db_err)
}

impl User {
    /// Whether a token issued at `issued_at` of `generation` still signs this
    /// user in: not when disabled, and a password change or `disable` signs
    /// out the tokens issued before it (their generation is past, and so, for
    /// tokens older than generations, is their time of issue).
    pub fn takes_token(&self, issued_at: i64, generation: i64) -> bool {
        !self.disabled
            && self.token_generation == generation
            && self
                .password_changed_at
                .is_none_or(|changed| issued_at >= changed)
    }
}

pub fn by_email(conn: &Connection, email: &str) -> StoreResult<Option<User>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE email = ?1"))
        .and_then(|mut stmt| stmt.query_row([email.trim()], from_row).optional())
        .map_err(db_err)
}

pub fn set_selected_category(conn: &Connection, id: i64, category: &str) -> StoreResult<()> {
    conn.prepare_cached("UPDATE users SET selected_category = ?2 WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute(params![id, category]))
        .map_err(db_err)?;
    Ok(())
}

fn update_by_email(
    conn: &Connection,
    sql: &str,
    email: &str,
    value: &dyn rusqlite::ToSql,
) -> StoreResult<()> {
    let changed = conn
        .execute(sql, params![email.trim(), value])
        .map_err(db_err)?;
    if changed == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub fn set_limit(conn: &Connection, email: &str, tokens: u64) -> StoreResult<()> {
    let tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
    update_by_email(
        conn,
        "UPDATE users SET daily_token_limit = ?2 WHERE email = ?1",
        email,
        &tokens,
    )
}

pub fn set_password(conn: &Connection, email: &str, hash: &str) -> StoreResult<()> {
    let sql = "UPDATE users SET password_hash = ?2 WHERE email = ?1";
    update_by_email(conn, sql, email, &hash)?;
    let now = chrono::Utc::now().timestamp();
    let sql = "UPDATE users SET password_changed_at = ?2, token_generation = token_generation + 1
               WHERE email = ?1";
    update_by_email(conn, sql, email, &now)
}

/// Stops a user signing in; the tokens issued before stay dead even if the
/// user is enabled again (a token leaked before the disable is no way back).
pub fn disable(conn: &Connection, email: &str) -> StoreResult<()> {
    update_by_email(
        conn,
        "UPDATE users SET disabled = ?2, token_generation = token_generation + 1 WHERE email = ?1",
        email,
        &true,
    )
}

/// Lets a disabled user sign in again.
pub fn enable(conn: &Connection, email: &str) -> StoreResult<()> {
    update_by_email(
        conn,
        "UPDATE users SET disabled = ?2 WHERE email = ?1",
        email,
        &false,
    )
}

/// Deletes a user and (by cascade) their rows; returns their conversation ids
/// so that the caller can remove the workspaces.
pub fn delete(conn: &Connection, email: &str) -> StoreResult<Deleted> {
    let user = by_email(conn, email)?.ok_or(StoreError::NotFound)?;
    let strings = |sql: &str| {
        conn.prepare(sql)
            .and_then(|mut stmt| {
                stmt.query_map([user.id], |row| row.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db_err)
    };
    let conversation_ids = strings("SELECT id FROM conversations WHERE user_id = ?1")?;
    let zip_ids = strings(
        "SELECT a.zip_id FROM artifacts a JOIN conversations c ON c.id = a.conversation_id
         WHERE c.user_id = ?1",
    )?;
    conn.execute("DELETE FROM users WHERE id = ?1", [user.id])
        .map_err(db_err)?;
    Ok(Deleted {
        conversation_ids,
        zip_ids,
    })
}

/// What a deleted user leaves on disk for the caller to remove: the
/// workspaces of their conversations and their artifacts' ZIPs.
#[derive(Debug, Default)]
pub struct Deleted {
    pub conversation_ids: Vec<String>,
    pub zip_ids: Vec<String>,
}

#[derive(Debug)]
pub struct UserSummary {
    pub id: i64,
    pub email: String,
    pub daily_token_limit: Option<u64>,
    pub disabled: bool,
    pub tokens_today: u64,
}

pub fn list_with_usage(conn: &Connection, today: &str) -> StoreResult<Vec<UserSummary>> {
    let mut stmt = conn
        .prepare(
            "SELECT u.id, u.email, u.daily_token_limit, u.disabled,
                    COALESCE(SUM(d.prompt_tokens + d.completion_tokens), 0)
             FROM users u LEFT JOIN usage_daily d ON d.user_id = u.id AND d.day = ?1
             GROUP BY u.id ORDER BY u.id",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([today], |row| {
            Ok(UserSummary {
                id: row.get(0)?,
                email: row.get(1)?,
                daily_token_limit: row.get::<_, Option<i64>>(2)?.map(|l| l.max(0) as u64),
                disabled: row.get(3)?,
                tokens_today: row.get::<_, i64>(4)?.max(0) as u64,
            })
        })
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}
