"""Settings: read once at start from the environment and `.env`, then passed down.

Nothing else in the code reads `os.environ`. The variable names are a public contract
(README, `.env.example`, `manifest.yml` and deploy docs depend on them).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Gateway = Literal["deepseek", "ourtoken", "tokenhub", "custom"]
ModelTier = Literal["pro", "flash"]
Effort = Literal["low", "high", "max"]

_GATEWAY_HOSTS: dict[str, Gateway] = {
    "api.deepseek.com": "deepseek",
    "api.ourtoken.ai": "ourtoken",
    "tokenhub.store": "tokenhub",
}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable and is safe to print."""


class Price(BaseModel):
    """USD per 1M tokens. `cache_hit` None means the gateway lists no cache discount."""

    input: Decimal
    cache_hit: Decimal | None = None
    output: Decimal


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    host: str = "0.0.0.0"
    port: int = Field(default=3000, ge=1, le=65535)

    # DeepSeek / gateway
    deepseek_api_key: SecretStr | None = None
    deepseek_base_url: str = "https://api.deepseek.com"
    deepseek_gateway: Gateway | None = None
    deepseek_pro_model: str = "deepseek-v4-pro"
    deepseek_flash_model: str = "deepseek-v4-flash"
    # Per-tier price overrides (USD per 1M tokens), JSON:
    # {"pro": {"input": "0.4", "cache_hit": "0.003", "output": "0.8"}}
    deepseek_prices: dict[ModelTier, Price] = Field(default_factory=dict)
    deepseek_connect_timeout: float = Field(default=10.0, gt=0)
    deepseek_read_timeout: float = Field(default=120.0, gt=0)
    deepseek_total_timeout: float = Field(default=600.0, gt=0)
    deepseek_max_retries: int = Field(default=4, ge=0, le=10)
    # First retry waits about this long (seconds, jittered), doubling per retry up to 8 s;
    # a Retry-After from the gateway wins.
    deepseek_retry_backoff: float = Field(default=0.5, gt=0, le=60)
    deepseek_max_tokens: int | None = Field(default=None, gt=0)

    default_model: ModelTier = "flash"
    default_thinking: bool = True
    default_effort: Effort = "high"

    # Storage
    redis_url: str | None = None
    history_ttl_days: int = Field(default=30, ge=1)
    usage_retention_days: int = Field(default=400, ge=1)
    context_token_budget: int = Field(default=200_000, ge=1_000)
    # A thread's turn lock expires this long after its holder stops renewing it (a replica
    # died mid-answer); the next turn in that thread waits at most this long.
    thread_lock_ttl: float = Field(default=30.0, ge=1.0)

    # People
    admin_user_ids: Annotated[frozenset[str], NoDecode] = frozenset()

    # Behaviour
    answer_follow_ups: bool = True
    ignore_other_bots: bool = True
    show_footer: bool = False
    # Seconds between batched Slack calls while an answer streams (the first words go at
    # once); the chat.update fallback waits 1.5 times as long (a Tier 3 method).
    slack_update_interval: float = Field(default=1.0, ge=0, le=10)
    over_budget_action: Literal["refuse", "flash"] = "refuse"

    # Tools
    tools_disabled: Annotated[frozenset[str], NoDecode] = frozenset()
    max_tool_rounds: int = Field(default=6, ge=1, le=50)
    tool_timeout: float = Field(default=20.0, gt=0)
    tool_output_cap: int = Field(default=12_000, ge=500)
    searxng_url: str | None = None
    brave_api_key: SecretStr | None = None
    tavily_api_key: SecretStr | None = None
    fetch_allow_hosts: Annotated[frozenset[str], NoDecode] = frozenset()
    # web_search: "auto" takes the first configured of SearXNG, Brave, Tavily.
    search_backend: Literal["auto", "searxng", "brave", "tavily"] = "auto"
    search_max_results: int = Field(default=5, ge=1, le=20)
    search_timeout: float = Field(default=10.0, gt=0)
    brave_api_url: str = "https://api.search.brave.com/res/v1/web/search"
    tavily_api_url: str = "https://api.tavily.com/search"
    # fetch_url: total time over all redirects, bytes read (the rest is cut), redirects followed.
    fetch_timeout: float = Field(default=15.0, gt=0)
    fetch_max_bytes: int = Field(default=2_000_000, ge=10_000)
    fetch_max_redirects: int = Field(default=5, ge=0, le=20)
    # Files shared in a thread: bigger ones are refused; up to `snippet_inline_chars` inlined.
    snippet_max_bytes: int = Field(default=1_000_000, ge=1_000)
    snippet_inline_chars: int = Field(default=4_000, ge=0)

    # Logging
    log_level: str = "INFO"
    log_format: Literal["json", "console"] | None = None

    @field_validator("admin_user_ids", "tools_disabled", "fetch_allow_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _api_url_slash(cls, value: str) -> str:
        # AsyncWebClient joins method names onto the base URL, so it must end with a slash.
        return value if value.endswith("/") else value + "/"

    @field_validator("deepseek_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if urlparse(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @property
    def gateway(self) -> Gateway:
        """The configured gateway, else inferred from the base URL's host."""
        if self.deepseek_gateway:
            return self.deepseek_gateway
        return _GATEWAY_HOSTS.get(urlparse(self.deepseek_base_url).hostname or "", "custom")

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def history_ttl_s(self) -> int:
        """HISTORY_TTL_DAYS in seconds: how long a thread's history, marks and turn records
        are kept after its last turn."""
        return self.history_ttl_days * 86_400

    def model_id(self, tier: ModelTier) -> str:
        return self.deepseek_pro_model if tier == "pro" else self.deepseek_flash_model

    def require(self, *names: str) -> None:
        """Raise ConfigError naming the first of `names` (field names) that is unset."""
        for name in names:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value in (None, ""):
                raise ConfigError(f"{name.upper()} is not set (see .env.example)")


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and `.env`; raise ConfigError with one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]).upper() if err["loc"] else "settings"
        # Never echo the input: it may be a secret.
        raise ConfigError(f"{name}: {err['msg']}") from None
