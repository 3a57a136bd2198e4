"""Seeded frames for fuzzing the host's decoder: valid protocol messages, then mutated ones."""
