"""The trainer: entry point, loop, step, optimizer, sharding, checkpoints, SIGTERM."""
