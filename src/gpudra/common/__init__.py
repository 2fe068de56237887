"""Small stdlib-only helpers shared by every layer (atomic file writes, model base, logging)."""
