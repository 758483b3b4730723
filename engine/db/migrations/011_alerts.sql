-- 011: alerts ([[alerts]] in the config; README, "Alerts"). `{schema}` is replaced by the schema name.
--
-- The config says which alerts exist; these tables say where each one is and what it did,
-- so a restart or a second node picks up exactly where the last evaluation left off. One
-- node evaluates at a time (engine/maintenance/alerts.py): it takes alert_rounds' only row
-- with FOR UPDATE SKIP LOCKED, reads the metrics, and writes the new states, the history
-- rows and the notification jobs in that one transaction. An alert therefore fires once and
-- recovers once, whichever node sees it, and a notification is never lost or sent twice.

-- Where each alert is: ok, pending (above the threshold, waiting out `for`) or firing,
-- since when, and the last value read (detail: which queues, nodes or definitions).
-- A row whose alert left the config is kept (its history stays readable) and ignored.
CREATE TABLE IF NOT EXISTS {schema}.alert_states (
    name          text PRIMARY KEY,
    state         text        NOT NULL CHECK (state IN ('ok', 'pending', 'firing')),
    since         timestamptz NOT NULL,
    value         float8,
    detail        jsonb       NOT NULL DEFAULT '{}',
    evaluated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every transition that notified: fired (entered firing) and recovered (left it).
CREATE TABLE IF NOT EXISTS {schema}.alert_history (
    id         bigserial   PRIMARY KEY,
    name       text        NOT NULL,
    event      text        NOT NULL CHECK (event IN ('fired', 'recovered')),
    value      float8,
    threshold  float8,
    detail     jsonb       NOT NULL DEFAULT '{}',
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alert_history_name_idx ON {schema}.alert_history (name, id DESC);

-- The evaluation lease: one row, taken for the length of a round; evaluated_at keeps the
-- nodes to one round per alerts_interval between them.
CREATE TABLE IF NOT EXISTS {schema}.alert_rounds (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    evaluated_at  timestamptz NOT NULL DEFAULT '-infinity',
    evaluated_by  text
);
INSERT INTO {schema}.alert_rounds (id) VALUES (true) ON CONFLICT (id) DO NOTHING;
