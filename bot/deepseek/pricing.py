"""Prices upstream calls in exact integer micro-dollars (pure: no I/O)."""

# The only module that multiplies tokens by a price or converts between dollars and
# micro-dollars. Prices are USD per 1M tokens, so `tokens * price` is already in micro-dollars;
# each of a call's figures is rounded once, half-up.

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from bot.config import Gateway, ModelTier, Price, Settings
from bot.contracts.stream import Usage

D = Decimal
MICROS_PER_USD = 1_000_000

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


def billed_input(usage: Usage) -> tuple[int, int]:
    """(cache-hit, cache-miss) input tokens as billed. A gateway that reports only prompt
    tokens gives no split: all of them are misses."""
    if usage.cache_hit + usage.cache_miss:
        return usage.cache_hit, usage.cache_miss
    return 0, usage.prompt


def _hit_price(price: Price) -> Decimal:
    # A gateway that lists no cache-hit price bills hits as misses.
    return price.input if price.cache_hit is None else price.cache_hit


def _round(exact: Decimal) -> int:
    return int(exact.quantize(D(1), rounding=ROUND_HALF_UP))


def _listed(value: Decimal | None) -> str:
    return "none listed" if value is None else f"${value.normalize():f}"


@dataclass(frozen=True, slots=True)
class PriceTable:
    gateway: Gateway
    prices: Mapping[ModelTier, Price]

    @classmethod
    def from_settings(cls, settings: Settings) -> PriceTable:
        gateway = settings.gateway
        return cls(gateway, {**DEFAULT_PRICES[gateway], **settings.deepseek_prices})

    def cost_micros(self, tier: ModelTier, usage: Usage) -> int:
        """Cost of one call. Reasoning is inside `completion`."""
        price = self.prices[tier]
        hit, miss = billed_input(usage)
        return _round(
            miss * price.input + hit * _hit_price(price) + usage.completion * price.output
        )

    def saved_by_cache_micros(self, tier: ModelTier, usage: Usage) -> int:
        """What one call's cache hits would have cost as misses, minus what they cost."""
        price = self.prices[tier]
        hit, _ = billed_input(usage)
        return _round(hit * (price.input - _hit_price(price)))

    def describe(self) -> str:
        """One line naming the gateway with its prices, as recorded with usage:
        `deepseek: flash in $0.14 / hit $0.0028 / out $0.28; pro ... (USD per 1M tokens)`."""
        tiers = "; ".join(
            f"{tier} in {_listed(p.input)} / hit {_listed(p.cache_hit)} / out {_listed(p.output)}"
            for tier, p in sorted(self.prices.items())
        )
        return f"{self.gateway}: {tiers} (USD per 1M tokens)"


def micros_to_dollars(micros: int) -> Decimal:
    """Exact dollars (`1234567` -> `Decimal("1.234567")`)."""
    return D(micros) / D(MICROS_PER_USD)


def dollars_to_micros(amount: Decimal) -> int:
    """Dollars to micro-dollars, rounded half-up to a whole micro-dollar."""
    return _round(amount * MICROS_PER_USD)


def format_usd(micros: int) -> str:
    """`1234567` -> `$1.2346`; four decimals because single turns cost fractions of a cent."""
    return f"${micros_to_dollars(micros).quantize(D('0.0001'), rounding=ROUND_HALF_UP)}"
