"""The conversation engine: one turn of a thread, and the prompt it sends."""
