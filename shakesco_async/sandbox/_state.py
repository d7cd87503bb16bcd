"""The sandbox's business rules: one ``Business`` per API key, in memory, exact decimals.

Every method either applies its change completely or raises ``Refusal`` having changed
nothing, and none of them awaits, so a request is atomic within the event loop.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import secrets
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal
from typing import Any

__all__ = ["DEFAULT_EXPIRY", "MAX_STAKES", "Business", "Customer", "Refusal", "amount_text"]

MAX_STAKES = 50
DAY = 86400
DEFAULT_EXPIRY = 365 * DAY
"""How long a customer may be inactive before ``/expire-tokens`` may clear them; the real
API sets it when the token is launched, and no endpoint changes it."""
LINK_LIFETIME = 30 * 60
_QUANTUM = Decimal(1).scaleb(-18)
ZERO = Decimal(0)


class Refusal(Exception):
    """An API error answer: nothing was applied."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message


def invalid() -> Refusal:
    return Refusal(400, "Invalid parameters")


def amount_text(value: Decimal) -> str:
    """Human decimal strings as the API returns them ("50.0", "1.25")."""
    text = format(value, "f")
    if "." not in text:
        return text + ".0"
    text = text.rstrip("0")
    return text + "0" if text.endswith(".") else text


def _plain_number(value: Decimal) -> int | float | str:
    """Percentages and multipliers as plain JSON numbers, as the current docs show them
    (``20``, ``1.5``); a fraction a float would not write back exactly goes as a string."""
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else amount_text(value)


def _q(value: Decimal) -> Decimal:
    return value.quantize(_QUANTUM, rounding=ROUND_DOWN)


@dataclasses.dataclass
class Stake:
    amount: Decimal
    start: float
    lock_duration: int
    reward_percent: Decimal
    active: bool = True


@dataclasses.dataclass
class Grant:
    total: Decimal
    start: float
    vesting_duration: int
    cliff_duration: int
    cliff_percent: Decimal
    claimed: Decimal = ZERO
    active: bool = True

    def vested(self, now: float) -> Decimal:
        elapsed = Decimal(str(max(0.0, now - self.start)))
        if elapsed < self.cliff_duration:
            return ZERO
        if self.vesting_duration <= self.cliff_duration or elapsed >= self.vesting_duration:
            return self.total
        at_cliff = self.total * self.cliff_percent / 100
        linear = (
            (self.total - at_cliff) * (elapsed - self.cliff_duration) / (self.vesting_duration - self.cliff_duration)
        )
        return min(self.total, _q(at_cliff + linear))


@dataclasses.dataclass
class Customer:
    balance: Decimal = ZERO
    total_earned: Decimal = ZERO
    total_spent: Decimal = ZERO
    claimed_events: set[str] = dataclasses.field(default_factory=set)
    migrated: bool = False
    stakes: list[Stake] = dataclasses.field(default_factory=list)
    grant: Grant | None = None
    cashback_spent: dict[str, Decimal] = dataclasses.field(default_factory=dict)
    last_activity: float = 0.0
    cap_window_start: float = 0.0
    cap_window_earned: Decimal = ZERO

    def credit(self, amount: Decimal) -> None:
        self.balance += amount
        self.total_earned += amount


@dataclasses.dataclass
class Event:
    allocation: Decimal
    one_time: bool


@dataclasses.dataclass
class Business:
    """The state behind one API key (one business token)."""

    name: str = "Sandbox Rewards"
    symbol: str = "SBX"
    linked: bool = True
    clock: Callable[[], float] = dataclasses.field(default=lambda: 0.0, repr=False)
    expiry_period: int | None = DEFAULT_EXPIRY
    awarded: dict[str, Decimal] = dataclasses.field(default_factory=dict)
    events: dict[str, Event] = dataclasses.field(default_factory=dict)
    happy_end: float = 0.0
    happy_multiplier: Decimal = Decimal(1)
    daily_cap: Decimal | None = None
    tiers: tuple[Decimal, Decimal, Decimal] | None = None
    tokens_per_vote: Decimal = ZERO
    staking: tuple[int, Decimal] | None = None
    cashback: dict[str, tuple[Decimal, Decimal]] = dataclasses.field(default_factory=dict)
    customers: dict[str, Customer] = dataclasses.field(default_factory=dict)

    def customer(self, ref: str) -> Customer:
        found = self.customers.get(ref)
        if found is None:
            found = self.customers[ref] = Customer()
        return found

    def _touch(self, *customers: Customer) -> None:
        now = self.clock()
        for c in customers:
            c.last_activity = now

    @staticmethod
    def tx_hash() -> str:
        return "0x" + secrets.token_hex(32)

    # -- rewards ------------------------------------------------------------------------------
    def happy_active(self) -> bool:
        return self.clock() < self.happy_end

    def claim_tokens(self, event_name: str, customer_ref: str) -> None:
        event = self.events.get(event_name)
        if event is None:
            raise Refusal(404, "Event not found")
        c = self.customer(customer_ref)
        if event.one_time and event_name in c.claimed_events:
            raise Refusal(409, "Event already claimed")
        amount = event.allocation * (self.happy_multiplier if self.happy_active() else 1)
        # The window starts at the customer's first claim of a cycle, not at midnight; a
        # claim that would cross the cap is refused whole (the docs leave this open).
        now = self.clock()
        fresh = now - c.cap_window_start >= DAY
        earned = ZERO if fresh else c.cap_window_earned
        if self.daily_cap is not None and earned + amount > self.daily_cap:
            raise Refusal(429, "Daily earning cap exceeded")
        if fresh:
            c.cap_window_start = now
        c.cap_window_earned = earned + amount
        c.claimed_events.add(event_name)
        c.credit(amount)
        self.awarded[event_name] = self.awarded.get(event_name, ZERO) + amount
        self._touch(c)

    def redeem_tokens(self, customer_ref: str, amount: Decimal) -> None:
        c = self.customer(customer_ref)
        if amount > c.balance:
            raise Refusal(400, "Insufficient token balance")
        c.balance -= amount
        c.total_spent += amount
        self._touch(c)

    def expired(self, c: Customer) -> bool:
        """Inactive longer than the expiry period; never without one or without activity."""
        period = self.expiry_period
        return period is not None and c.last_activity > 0 and self.clock() - c.last_activity > period

    def expire_tokens(self, customer_ref: str) -> None:
        c = self.customer(customer_ref)
        if not self.expired(c):
            raise Refusal(400, "Tokens have not expired yet")
        c.balance = ZERO
        self._touch(c)  # the activity clock restarts: expiring again is refused

    def claim_pending_rewards(self, customer_ref: str) -> dict[str, Any]:
        self.customer(customer_ref)
        return self._link("claim", LINK_LIFETIME)

    def _link(self, kind: str, valid_for: int) -> dict[str, Any]:
        expires = _dt.datetime.fromtimestamp(self.clock() + valid_for, tz=_dt.UTC)
        return {
            "url": f"https://links.sandbox.invalid/{kind}/{secrets.token_urlsafe(16)}",
            "expires_at": expires.isoformat(),
        }

    # -- transfer & migration -------------------------------------------------------------------
    def transfer_tokens(self, from_customer_ref: str, to_customer_ref: str, amount: Decimal) -> None:
        if from_customer_ref == to_customer_ref:
            raise invalid()
        sender, receiver = self.customer(from_customer_ref), self.customer(to_customer_ref)
        if amount > sender.balance:
            raise Refusal(400, "Insufficient token balance")
        sender.balance -= amount
        receiver.credit(amount)
        self._touch(sender, receiver)

    def upgrade_to_shakesco(self, customer_ref: str, amount: Decimal) -> None:
        c = self.customer(customer_ref)
        if c.migrated:
            raise Refusal(409, "Event already claimed")
        c.migrated = True
        c.credit(amount)
        self._touch(c)

    def receive_from_shakesco(self, customer_ref: str, amount: Decimal) -> dict[str, Any]:
        self.customer(customer_ref)
        return self._link("receive", LINK_LIFETIME)

    # -- staking ----------------------------------------------------------------------------------
    def set_staking_rate(self, base_duration: int, base_reward_percent: Decimal) -> None:
        if base_duration <= 0:
            raise invalid()
        self.staking = (base_duration, base_reward_percent)

    def create_stake(self, customer_ref: str, amount: Decimal, lock_duration: int) -> None:
        if self.staking is None or lock_duration <= 0:
            raise invalid()
        c = self.customer(customer_ref)
        if len(c.stakes) >= MAX_STAKES:
            raise invalid()
        if amount > c.balance:
            raise Refusal(400, "Insufficient token balance")
        percent = self._reward_percent(lock_duration)
        c.balance -= amount
        c.stakes.append(Stake(amount, self.clock(), lock_duration, percent))
        self._touch(c)

    def unstake(self, customer_ref: str, stake_index: int) -> None:
        c = self.customer(customer_ref)
        if not 0 <= stake_index < len(c.stakes):
            raise invalid()
        stake = c.stakes[stake_index]
        if not stake.active:
            raise Refusal(409, "Stake already unlocked")
        reward = self._accrued(stake)
        stake.active = False
        c.balance += stake.amount
        c.credit(reward)
        self._touch(c)

    def prune_inactive_stakes(self, customer_ref: str) -> None:
        c = self.customer(customer_ref)
        c.stakes = [s for s in c.stakes if s.active]

    def stake_info(self, customer_ref: str, stake_index: int) -> dict[str, Any]:
        stakes = self.customer(customer_ref).stakes
        if not 0 <= stake_index < len(stakes):
            return {"amount": "0.0", "start_time": "0", "lock_duration": "0", "reward_percent": 0, "active": False}
        s = stakes[stake_index]
        return {
            "amount": amount_text(s.amount),
            "start_time": str(int(s.start)),
            "lock_duration": str(s.lock_duration),
            "reward_percent": _plain_number(s.reward_percent),
            "active": s.active,
        }

    def stake_count(self, customer_ref: str) -> dict[str, Any]:
        return {"stake_count": str(len(self.customer(customer_ref).stakes))}

    def _accrued(self, stake: Stake) -> Decimal:
        """What unstaking now pays on top of the principal: the reward pro rata to the time held."""
        elapsed = Decimal(str(max(0.0, self.clock() - stake.start)))
        fraction = min(Decimal(1), elapsed / stake.lock_duration)
        return _q(stake.amount * stake.reward_percent / 100 * fraction)

    def stake_rewards(self, customer_ref: str, stake_index: int) -> dict[str, Any]:
        stakes = self.customer(customer_ref).stakes
        stake = stakes[stake_index] if 0 <= stake_index < len(stakes) else None
        accrued = self._accrued(stake) if stake is not None and stake.active else ZERO
        return {"rewards": amount_text(accrued) if accrued else "0"}

    def staking_rate(self) -> dict[str, Any]:
        duration, percent = self.staking or (0, ZERO)
        return {
            "base_duration": str(duration),
            "base_reward_percent": _plain_number(percent),
            "is_set": self.staking is not None,
        }

    def _reward_percent(self, lock_duration: int) -> Decimal:
        base_duration, base_percent = self.staking or (1, ZERO)
        return _q(base_percent * lock_duration / base_duration)

    def calculate_staking_reward(self, duration: int) -> dict[str, Any]:
        return {"reward_percent": _plain_number(self._reward_percent(duration).normalize())}

    # -- vesting ----------------------------------------------------------------------------------
    def create_vesting_grant(
        self,
        customer_ref: str,
        total_amount: Decimal,
        vesting_duration: int,
        cliff_duration: int,
        cliff_percent: Decimal,
    ) -> None:
        if vesting_duration <= 0 or cliff_duration > vesting_duration:
            raise invalid()
        c = self.customer(customer_ref)
        if c.grant is not None and c.grant.active:
            raise Refusal(409, "Event already claimed")
        c.grant = Grant(total_amount, self.clock(), vesting_duration, cliff_duration, cliff_percent)
        self._touch(c)

    def claim_vested_tokens(self, customer_ref: str) -> None:
        c = self.customer(customer_ref)
        grant = c.grant
        if grant is None or not grant.active:
            raise Refusal(400, "No tokens are claimable")
        claimable = grant.vested(self.clock()) - grant.claimed
        if claimable <= 0:
            raise Refusal(400, "No tokens are claimable")
        grant.claimed += claimable
        c.credit(claimable)
        if grant.claimed >= grant.total:
            grant.active = False
        self._touch(c)

    def cancel_vesting(self, customer_ref: str) -> None:
        c = self.customer(customer_ref)
        grant = c.grant
        if grant is None or not grant.active:
            raise invalid()
        vested = grant.vested(self.clock()) - grant.claimed
        if vested > 0:
            grant.claimed += vested
            c.credit(vested)
        grant.active = False
        self._touch(c)

    def vesting_info(self, customer_ref: str) -> dict[str, Any]:
        g = self.customer(customer_ref).grant
        if g is None:
            g = Grant(ZERO, 0.0, 0, 0, ZERO, active=False)
        return {
            "total_amount": amount_text(g.total),
            "start_time": str(int(g.start)),
            "cliff_duration": str(g.cliff_duration),
            "cliff_percent": _plain_number(g.cliff_percent),
            "vesting_duration": str(g.vesting_duration),
            "claimed": amount_text(g.claimed),
            "active": g.active,
        }

    def vested_amount(self, customer_ref: str) -> dict[str, Any]:
        g = self.customer(customer_ref).grant
        claimable = g.vested(self.clock()) - g.claimed if g is not None and g.active else ZERO
        return {"vested_amount": amount_text(claimable) if claimable > 0 else "0"}

    # -- promotions -------------------------------------------------------------------------------
    def set_happy_hour(self, duration: int, multiplier: Decimal) -> None:
        if multiplier < 1 or duration <= 0:
            raise invalid()
        self.happy_end, self.happy_multiplier = self.clock() + duration, multiplier

    def end_happy_hour(self) -> None:
        self.happy_end, self.happy_multiplier = 0.0, Decimal(1)

    def happy_hour(self) -> dict[str, Any]:
        active = self.happy_active()
        return {
            "end_time": str(int(self.happy_end)) if active else "0",
            "multiplier": _plain_number(self.happy_multiplier) if active else 1,
            "is_active": active,
        }

    def set_daily_cap(self, cap_amount: Decimal) -> None:
        self.daily_cap = cap_amount

    def remove_daily_cap(self) -> None:
        self.daily_cap = None

    def daily_cap_settings(self) -> dict[str, Any]:
        return {"cap": amount_text(self.daily_cap or ZERO), "is_active": self.daily_cap is not None}

    def daily_earnings(self, customer_ref: str) -> dict[str, Any]:
        c = self.customer(customer_ref)
        current = c.cap_window_start > 0 and self.clock() - c.cap_window_start < DAY
        return {
            "earned_today": amount_text(c.cap_window_earned) if current else "0",
            "last_reset_time": str(int(c.cap_window_start)) if current else "0",
            "cap": amount_text(self.daily_cap or ZERO),
        }

    # -- governance & cashback --------------------------------------------------------------------
    def set_tiers(self, bronze: Decimal, silver: Decimal, gold: Decimal) -> None:
        if not bronze <= silver <= gold:
            raise invalid()
        self.tiers = (bronze, silver, gold)

    def tier_thresholds(self) -> dict[str, Any]:
        b, s, g = self.tiers or (ZERO, ZERO, ZERO)
        return {
            "bronze": amount_text(b),
            "silver": amount_text(s),
            "gold": amount_text(g),
            "is_active": self.tiers is not None,
        }

    def tier_of(self, balance: Decimal) -> str:
        """The tier label of an available balance."""
        if self.tiers is None:
            return "None"
        for label, threshold in (("Gold", self.tiers[2]), ("Silver", self.tiers[1]), ("Bronze", self.tiers[0])):
            if balance >= threshold:
                return label
        return "None"

    def user_tier(self, customer_ref: str) -> dict[str, Any]:
        return {"tier": self.tier_of(self.customer(customer_ref).balance)}

    def set_voting_ratio(self, tokens_per_vote: Decimal) -> None:
        self.tokens_per_vote = tokens_per_vote

    def votes(self, balance: Decimal) -> int:
        return int(balance // self.tokens_per_vote) if self.tokens_per_vote > 0 else 0

    def voting_power(self, customer_ref: str) -> dict[str, Any]:
        return {"voting_power": str(self.votes(self.customer(customer_ref).balance))}

    def set_cashback(self, spend_threshold: Decimal, currency: str, reward_tokens: Decimal) -> None:
        self.cashback[currency] = (spend_threshold, reward_tokens)

    def cashback_settings(self, currency: str) -> dict[str, Any]:
        threshold, reward = self.cashback.get(currency, (ZERO, ZERO))
        return {
            "spend_threshold": amount_text(threshold),
            "spend_threshold_currency": currency,
            "reward_tokens": amount_text(reward),
            "is_active": currency in self.cashback,
        }

    def process_cashback(self, customer_ref: str, spent_amount: Decimal, currency: str) -> None:
        programme = self.cashback.get(currency)
        if programme is None:
            raise Refusal(404, "Event not found")
        threshold, reward = programme
        c = self.customer(customer_ref)
        spent = c.cashback_spent.get(currency, ZERO) + spent_amount
        while spent >= threshold:  # each crossing pays once; the overflow carries over
            spent -= threshold
            c.credit(reward)
        c.cashback_spent[currency] = spent
        self._touch(c)

    def cashback_progress(self, customer_ref: str, currency: str) -> dict[str, Any]:
        threshold, _ = self.cashback.get(currency, (ZERO, ZERO))
        spent = self.customer(customer_ref).cashback_spent.get(currency, ZERO)
        return {
            "spent": amount_text(spent),
            "threshold": amount_text(threshold),
            "remaining": amount_text(max(ZERO, threshold - spent)),
            "currency": currency,
        }

    # -- reads ------------------------------------------------------------------------------------
    def balance(self, customer_ref: str) -> dict[str, Any]:
        return {"balance": amount_text(self.customer(customer_ref).balance)}

    def user_info(self, customer_ref: str) -> dict[str, Any]:
        c = self.customer(customer_ref)
        staked = sum((s.amount for s in c.stakes if s.active), ZERO)
        vesting = c.grant.total - c.grant.claimed if c.grant and c.grant.active else ZERO
        return {
            "available_balance": amount_text(c.balance),
            "each_token_value": "1.0",
            "each_token_value_in_business": "1.0",
            "total_staked": amount_text(staked),
            "total_vested": amount_text(vesting),
            "total_earned": amount_text(c.total_earned),
            "total_spent": amount_text(c.total_spent),
            "tier": self.tier_of(c.balance),
            "voting_power": str(self.votes(c.balance)),
        }

    def total_earned(self, customer_ref: str) -> dict[str, Any]:
        return {"total_earned": amount_text(self.customer(customer_ref).total_earned)}

    def total_spent(self, customer_ref: str) -> dict[str, Any]:
        return {"total_spent": amount_text(self.customer(customer_ref).total_spent)}

    def has_claimed_event(self, customer_ref: str, event_name: str) -> dict[str, Any]:
        return {"has_claimed": event_name in self.customer(customer_ref).claimed_events}

    def last_activity(self, customer_ref: str) -> dict[str, Any]:
        ts = self.customer(customer_ref).last_activity
        iso = _dt.datetime.fromtimestamp(ts, tz=_dt.UTC).isoformat() if ts else None
        return {"last_activity": str(int(ts)), "last_activity_iso": iso}

    def is_expired(self, customer_ref: str) -> dict[str, Any]:
        return {"is_expired": self.expired(self.customer(customer_ref))}

    def event_allocation(self, event_name: str) -> dict[str, Any]:
        return {"total_allocation": amount_text(self.awarded.get(event_name, ZERO))}

    # -- events -----------------------------------------------------------------------------------
    def set_event_details(self, event_name: str, allocation: Decimal, should_not_claim_twice: bool) -> None:
        if event_name != event_name.lower():
            raise invalid()
        self.events[event_name] = Event(allocation, should_not_claim_twice)

    def event_details(self, event_name: str) -> dict[str, Any]:
        event = self.events.get(event_name)
        if event is None:  # the docs: a missing event reads as allocation 0, not a 404
            return {"allocation": "0", "should_not_claim_twice": False}
        return {"allocation": amount_text(event.allocation), "should_not_claim_twice": event.one_time}

    def event_counter(self) -> dict[str, Any]:
        return {"event_count": len(self.events)}

    def event_by_index(self, index: int) -> dict[str, Any]:
        names = list(self.events)
        if not 0 <= index < len(names):
            raise Refusal(404, "Event not found")
        return {"event_name": names[index]}

    def token_info(self) -> dict[str, Any]:
        supply = ZERO
        for c in self.customers.values():
            supply += c.balance + sum((s.amount for s in c.stakes if s.active), ZERO)
        return {"name": self.name, "symbol": self.symbol, "decimals": 18, "total_supply": amount_text(supply)}
