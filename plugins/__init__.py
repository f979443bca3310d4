"""Plugin registry placeholder (filled in by the core commit)."""
