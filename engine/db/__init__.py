"""The database layer: the store (the only code that talks to Postgres), its SQL, the
migrations, the embedded Postgres and the classification of database faults."""
