"""Background services every processing node runs: heartbeats and rescue (lifeline),
staging of due jobs, pruning, the dependency sweeper, and the supervised loop they share."""
