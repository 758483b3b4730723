-- 009: named accounts (users, their API tokens, login sessions) and the audit log.
-- `{schema}` is replaced by the configured schema name before this runs.

CREATE TABLE IF NOT EXISTS {schema}.users (
    -- Printable names only: a name is shown in the dashboard, the audit log and terminals.
    name           text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100 AND name !~ '[[:cntrl:]]'),
    role           text        NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    can_view_args  boolean     NOT NULL DEFAULT false,
    -- An argon2id hash (argon2-cffi's encoded form); NULL: no password login (tokens or SSO only).
    password_hash  text,
    disabled       boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- API tokens are 32 random bytes, shown once; only their SHA-256 is kept (a slow hash adds
-- nothing for a random secret of that length, and every API call looks one up).
CREATE TABLE IF NOT EXISTS {schema}.api_tokens (
    id            bigserial PRIMARY KEY,
    user_name     text        NOT NULL REFERENCES {schema}.users (name) ON DELETE CASCADE,
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100 AND name !~ '[[:cntrl:]]'),
    token_hash    bytea       NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX IF NOT EXISTS api_tokens_user_idx ON {schema}.api_tokens (user_name);

-- Login sessions live here, not in the cookie alone, so that logging out, disabling or
-- removing a user and changing a password end a session on every node, and a restart
-- brings none back. The cookie holds a random id; only its SHA-256 is stored.
CREATE TABLE IF NOT EXISTS {schema}.sessions (
    id_hash        bytea PRIMARY KEY,
    -- NULL for the shared dashboard tokens (the principal named `token`) and local mode.
    user_name      text REFERENCES {schema}.users (name) ON DELETE CASCADE,
    -- The role a shared-token session was granted; a user's session takes the user's role.
    role           text        NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    -- Which shared credential a session was opened with ('dashboard.token',
    -- 'dashboard.readonly_token' or 'local'; never the credential itself). Such a cookie also
    -- carries an HMAC keyed by that token, so rotating the token ends its sessions.
    credential     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user_idx ON {schema}.sessions (user_name);
CREATE INDEX IF NOT EXISTS sessions_expires_idx ON {schema}.sessions (expires_at);

-- One row per state-changing action, from the dashboard, the API and the CLI.
CREATE TABLE IF NOT EXISTS {schema}.audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text        NOT NULL,
    role     text        NOT NULL,
    action   text        NOT NULL,
    target   text,
    details  jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON {schema}.audit_log (at);
