"""Background services every processing node runs: heartbeats and rescue (lifeline),
staging of due jobs, pruning and the dependency sweeper (failed rounds reported through engine.db.faults.log_fault)."""
