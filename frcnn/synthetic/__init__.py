"""A seeded synthetic world: detection datasets and a tracked video whose every answer is known."""
