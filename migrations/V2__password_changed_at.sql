-- Tokens issued before a password change stop working: a token's `iat` is
-- compared with this time, in Unix seconds. NULL means never changed.
ALTER TABLE users ADD COLUMN password_changed_at INTEGER;
