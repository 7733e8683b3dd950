"""Gateway profiles and exact cost arithmetic (pure: no I/O).

Costs are integer micro-dollars (1 USD = 1,000,000). Prices are USD per 1M tokens, so
`tokens * price` is already in micro-dollars; each call's cost is rounded once, half-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from bot.config import Gateway, ModelTier, Price, Settings
from bot.contracts.stream import Usage

D = Decimal

# Defaults from shared/REFERENCE.md (late 2026). Overridable with DEEPSEEK_PRICES.
# OurToken lists Pro only, at 80% of DeepSeek's official price; Flash is derived the same way.
# TokenHub lists no cache-hit price, so hits are billed as misses there (cache_hit=None).
DEFAULT_PRICES: Mapping[Gateway, Mapping[ModelTier, Price]] = {
    "deepseek": {
        "pro": Price(input=D("0.435"), cache_hit=D("0.003625"), output=D("0.87")),
        "flash": Price(input=D("0.14"), cache_hit=D("0.0028"), output=D("0.28")),
    },
    "ourtoken": {
        "pro": Price(input=D("0.348"), cache_hit=D("0.003"), output=D("0.696")),
        "flash": Price(input=D("0.112"), cache_hit=D("0.00224"), output=D("0.224")),
    },
    "tokenhub": {
        "pro": Price(input=D("1.80"), cache_hit=None, output=D("3.60")),
        "flash": Price(input=D("0.15"), cache_hit=None, output=D("0.30")),
    },
}
# A custom gateway is priced like DeepSeek itself unless DEEPSEEK_PRICES says otherwise.
DEFAULT_PRICES = {**DEFAULT_PRICES, "custom": DEFAULT_PRICES["deepseek"]}


@dataclass(frozen=True, slots=True)
class PriceTable:
    gateway: Gateway
    prices: Mapping[ModelTier, Price]

    @classmethod
    def from_settings(cls, settings: Settings) -> PriceTable:
        gateway = settings.gateway
        return cls(gateway, {**DEFAULT_PRICES[gateway], **settings.deepseek_prices})

    def cost_micros(self, tier: ModelTier, usage: Usage) -> int:
        """Cost of one call in integer micro-dollars. Reasoning is inside `completion`."""
        price = self.prices[tier]
        hit_price = price.input if price.cache_hit is None else price.cache_hit
        # A gateway that reports only prompt_tokens gives hit=miss=0: bill all as misses.
        miss = usage.cache_miss if usage.cache_hit + usage.cache_miss else usage.prompt
        exact = miss * price.input + usage.cache_hit * hit_price + usage.completion * price.output
        return int(exact.quantize(D(1), rounding=ROUND_HALF_UP))

    def saved_by_cache_micros(self, tier: ModelTier, cache_hit_tokens: int) -> int:
        """What the cache hits would have cost as misses, minus what they cost."""
        price = self.prices[tier]
        hit_price = price.input if price.cache_hit is None else price.cache_hit
        saved = cache_hit_tokens * (price.input - hit_price)
        return int(saved.quantize(D(1), rounding=ROUND_HALF_UP))


def format_usd(micros: int) -> str:
    """`1234567` -> `$1.2346`; four decimals because single turns cost fractions of a cent."""
    return f"${(D(micros) / D(1_000_000)).quantize(D('0.0001'), rounding=ROUND_HALF_UP)}"
