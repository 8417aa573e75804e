"""Running jobs over many inputs: one picture's job, the local pool, and Ray workers."""
