"""Cron: schedules (pure), the entry store on Postgres, and the ticker that fires slots."""
