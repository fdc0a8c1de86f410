-- Messages are read by conversation and `seq`, never by their id, yet the id,
-- as primary key, kept an index of its own that every insert had to update.
-- The table is rebuilt without it; ids stay, unique by construction (UUIDv7).
CREATE TABLE messages_new (
    id                TEXT    NOT NULL,
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
INSERT INTO messages_new (id, conversation_id, seq, role, content, content_tokens, llm_model,
                          prompt_tokens, completion_tokens, usage_raw, error, created_at)
    SELECT id, conversation_id, seq, role, content, content_tokens, llm_model,
           prompt_tokens, completion_tokens, usage_raw, error, created_at
    FROM messages ORDER BY conversation_id, seq;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
