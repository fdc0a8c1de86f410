-- Each password change starts a new generation of the user's tokens; a token
-- carries the generation it was issued in and is refused once it is not the
-- current one. Exact where `password_changed_at` (whole seconds) cannot tell
-- a token issued in the same second as the change from one issued after it.
ALTER TABLE users ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
