-- Magdi's first schema. Times are RFC 3339 UTC strings, which sort as text.

-- Emails are stored trimmed and compared without regard to case, so the
-- unique index uses NOCASE. daily_token_limit NULL means "the server default".
CREATE TABLE users (
    id                INTEGER PRIMARY KEY,
    email             TEXT    NOT NULL COLLATE NOCASE UNIQUE,
    password_hash     TEXT    NOT NULL,
    created_at        TEXT    NOT NULL,
    daily_token_limit INTEGER,
    disabled          INTEGER NOT NULL DEFAULT 0,
    selected_category TEXT
);

-- A conversation belongs to one user; deleting the user deletes its
-- conversations, messages and artifacts through the cascades below.
CREATE TABLE conversations (
    id           TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    category     TEXT    NOT NULL,
    assistant_id TEXT    NOT NULL,
    agent_name   TEXT    NOT NULL,
    llm_model    TEXT    NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('active', 'ended')),
    title        TEXT,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    ended_at     TEXT
);
CREATE INDEX conversations_by_user ON conversations(user_id, created_at DESC);
CREATE INDEX conversations_by_update ON conversations(updated_at);

-- seq orders a conversation's messages without relying on clock resolution.
-- content_tokens caches the message's length in tokens so that building a
-- prompt does not tokenize the whole history again on every turn.
CREATE TABLE messages (
    id                TEXT    PRIMARY KEY,
    conversation_id   TEXT    NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq               INTEGER NOT NULL,
    role              TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
    content           TEXT    NOT NULL,
    content_tokens    INTEGER NOT NULL,
    llm_model         TEXT,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    usage_raw         TEXT,
    error             TEXT,
    created_at        TEXT    NOT NULL,
    UNIQUE (conversation_id, seq)
);

-- Settled token usage, one row per user, UTC day and model. In-flight
-- reservations live in memory only: after a crash they are simply gone.
CREATE TABLE usage_daily (
    user_id           INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    day               TEXT    NOT NULL,
    llm_model         TEXT    NOT NULL,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens INTEGER NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    requests          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day, llm_model)
) WITHOUT ROWID;
CREATE INDEX usage_by_day ON usage_daily(day);

-- A row is inserted only after its ZIP file is complete on disk.
CREATE TABLE artifacts (
    zip_id          TEXT    PRIMARY KEY,
    conversation_id TEXT    NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    files_changed   TEXT    NOT NULL,
    disposable      INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT    NOT NULL
);
CREATE INDEX artifacts_by_conversation ON artifacts(conversation_id, seq);
CREATE INDEX artifacts_by_age ON artifacts(created_at);

-- What each workspace holds, kept beside the files so that listing a
-- workspace (and its checksums) does not read every file again. Rows change
-- together with the files, after the files are in place.
CREATE TABLE workspace_files (
    conversation_id TEXT    NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    path            TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    sha256          TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    PRIMARY KEY (conversation_id, path)
) WITHOUT ROWID;
