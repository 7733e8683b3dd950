"""Types and errors every part of the bot shares: stream and engine events, the tool contract."""
