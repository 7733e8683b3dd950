"""The `/deepseek` commands: their language and the service that runs them."""
