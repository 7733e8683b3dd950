"""Redis: the key schema, thread history, turn records, claims, locks and settings."""
