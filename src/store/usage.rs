//! Settled token usage per user, UTC day and model.

use rusqlite::{Connection, params};

use super::{StoreResult, db_err};

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unsigned(v: i64) -> u64 {
    v.max(0) as u64
}

/// Adds one turn's tokens.
pub fn add(
    conn: &Connection,
    user_id: i64,
    day: &str,
    model: &str,
    prompt_tokens: u64,
    completion_tokens: u64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO usage_daily (user_id, day, llm_model, prompt_tokens, completion_tokens, requests)
         VALUES (?1, ?2, ?3, ?4, ?5, 1)
         ON CONFLICT (user_id, day, llm_model) DO UPDATE SET
             prompt_tokens = prompt_tokens + excluded.prompt_tokens,
             completion_tokens = completion_tokens + excluded.completion_tokens,
             requests = requests + 1",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![user_id, day, model, signed(prompt_tokens), signed(completion_tokens)])
    })
    .map_err(db_err)?;
    Ok(())
}

/// Tokens the user has settled on `day`.
pub fn tokens_on(conn: &Connection, user_id: i64, day: &str) -> StoreResult<u64> {
    conn.prepare_cached(
        "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_daily
         WHERE user_id = ?1 AND day = ?2",
    )
    .and_then(|mut stmt| stmt.query_row(params![user_id, day], |row| row.get(0)))
    .map(unsigned)
    .map_err(db_err)
}

#[derive(Debug, Clone)]
pub struct ModelUsage {
    pub llm_model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub requests: u64,
}

#[derive(Debug, Clone)]
pub struct DayTotal {
    pub day: String,
    pub tokens_used: u64,
}

/// The user's usage on `day` by model, and their daily totals since `since`.
pub fn summary(
    conn: &Connection,
    user_id: i64,
    day: &str,
    since: &str,
) -> StoreResult<(Vec<ModelUsage>, Vec<DayTotal>)> {
    let mut by_model = conn
        .prepare_cached(
            "SELECT llm_model, prompt_tokens, completion_tokens, requests FROM usage_daily
             WHERE user_id = ?1 AND day = ?2 ORDER BY llm_model",
        )
        .map_err(db_err)?;
    let models = by_model
        .query_map(params![user_id, day], |row| {
            Ok(ModelUsage {
                llm_model: row.get(0)?,
                prompt_tokens: unsigned(row.get(1)?),
                completion_tokens: unsigned(row.get(2)?),
                requests: unsigned(row.get(3)?),
            })
        })
        .map_err(db_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err)?;

    let mut by_day = conn
        .prepare_cached(
            "SELECT day, SUM(prompt_tokens + completion_tokens) FROM usage_daily
             WHERE user_id = ?1 AND day >= ?2 GROUP BY day ORDER BY day",
        )
        .map_err(db_err)?;
    let days = by_day
        .query_map(params![user_id, since], |row| {
            Ok(DayTotal {
                day: row.get(0)?,
                tokens_used: unsigned(row.get(1)?),
            })
        })
        .map_err(db_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err)?;
    Ok((models, days))
}

/// Everybody's tokens on `day`, for the gauge.
pub fn total_on(conn: &Connection, day: &str) -> StoreResult<u64> {
    conn.query_row(
        "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_daily WHERE day = ?1",
        [day],
        |row| row.get(0),
    )
    .map(unsigned)
    .map_err(db_err)
}
