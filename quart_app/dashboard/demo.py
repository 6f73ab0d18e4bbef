"""The built-in pool simulator behind ``serve --demo`` (DESIGN §3).

A dozen miners (user ids 1-12, so the page's users 1-3 have a full dashboard) with workers that
submit shares, change hashrate, go offline and back, find the odd block, earn badges and XP,
keep streaks and move on leaderboards; upcoming events with deadlines are there from the start.
Everything goes through :func:`quart_app.ingest.ingest_event`, the path real producers use, so
the demo exercises persistence, routing, rank changes and stats pushes exactly as production.
"""
from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from quart import Quart

from . import ingest
from .db_values import utcnow
from .gamification import BADGES
from .tasks import uninterrupted

log = logging.getLogger("pulse.demo")

TICK_SECONDS = 1.0
NAMES = ("satoshi-fan", "hashqueen", "blocksmith", "nonce-ninja", "diff-hunter", "sha-shaman",
         "mempool-max", "coinbase-kid", "asic-annie", "merkle-mike", "genesis-gal",
         "halving-hal")
CATEGORIES = ("hashrate", "shares", "best_diff")
TERA = 1e12


@dataclass
class Miner:
    user_id: int
    name: str
    workers: dict[str, float]                      # worker -> hashrate (H/s); 0 = offline
    shares: int = 0
    best: float = 0.0
    streak: int = 0
    badges: set[str] = field(default_factory=set)

    def score(self, category: str) -> float:
        if category == "hashrate":
            return round(sum(self.workers.values()) / TERA, 2)
        return float(self.shares) if category == "shares" else round(self.best, 1)


def _body(kind: str, user_id: int | None = None, **data) -> dict:
    body: dict = {"type": kind, "data": data}
    if user_id is not None:
        body["user_id"] = user_id
    return body


class Pool:
    """The simulated pool: its state, and the ingest bodies that describe what happens."""

    def __init__(self, rng: random.Random, miners: int = len(NAMES)) -> None:
        self.rng = rng
        self.height = 870_000 + rng.randrange(5_000)
        self.network_diff = 1.1e14
        self.miners = [self._miner(i + 1, NAMES[i % len(NAMES)]) for i in range(miners)]
        self.next_id = miners + 1
        self.deadlines: dict[str, datetime] = {}

    def _miner(self, user_id: int, name: str) -> Miner:
        count = self.rng.randint(1, 3)
        return Miner(user_id, name, {f"rig-{n + 1}": self.rng.uniform(20, 400) * TERA
                                     for n in range(count)})

    # -- the pool at start ------------------------------------------------------------------
    def seed(self, now: datetime) -> list[tuple[dict, datetime]]:
        """Bodies (with the moment they happened) that make the dashboard full at once."""
        out: list[tuple[dict, datetime]] = []
        yesterday = now - timedelta(days=1)
        for miner in self.miners:
            out.append((_body("new_miner", miner.user_id, display_name=miner.name), now))
            out.append((_body("share_submitted", miner.user_id,
                              shares=self.rng.randint(500, 4000)), yesterday))
            for hours in (20, 12, 6, 1):  # a hashrate history to compare with
                total = sum(miner.workers.values()) * self.rng.uniform(0.8, 1.1)
                out.append((_body("hashrate_update", miner.user_id, hashrate=total),
                            now - timedelta(hours=hours)))
            out += [(body, now) for body in self._seed_now(miner)]
        out.append((self.block(self.rng.choice(self.miners)), now))
        out += [(body, now) for body in self.upcoming(now)]
        out.append((self.match(), now))
        return out

    def _seed_now(self, miner: Miner) -> list[dict]:
        bodies = []
        for worker, rate in miner.workers.items():
            bodies.append(_body("worker_status", miner.user_id, worker=worker, status="online"))
            bodies.append(_body("hashrate_update", miner.user_id, worker=worker, hashrate=rate))
        shares = self.rng.randint(300, 3000)
        miner.shares += shares
        miner.best = self.rng.uniform(1e6, 5e9)
        bodies.append(_body("share_submitted", miner.user_id, worker="rig-1", shares=shares,
                            difficulty=miner.best))
        bodies.append(_body("xp_gained", miner.user_id, amount=self.rng.randint(80, 4000)))
        miner.streak = self.rng.randint(1, 45)
        bodies.append(_body("streak_update", miner.user_id, streak=miner.streak))
        for badge in self.rng.sample(sorted(BADGES), self.rng.randint(1, 3)):
            bodies.append(self.badge(miner, badge))
        bodies += [self.score(miner, category) for category in CATEGORIES]
        return bodies

    def upcoming(self, now: datetime, renew_only: bool = False) -> list[dict]:
        """Upcoming events with deadlines (fixed ids: re-issuing one moves it). With
        ``renew_only``, just those whose deadline has passed, so countdowns never jump back."""
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        plans = [
            ("demo-flash", "competition", "Flash challenge: best share wins", timedelta(minutes=10),
             "Highest difficulty in ten minutes takes the pot", "Join", "/challenge", None),
            ("demo-lottery", "lottery", "Weekly lottery draw", timedelta(hours=2),
             "Every share this week is a ticket", "View tickets", "/lottery", None),
            ("demo-world-cup", "world_cup", "World Cup: quarter-finals", timedelta(hours=26),
             "Your country plays at 18:00 UTC", "See bracket", "/world-cup", None),
            ("demo-maintenance", "maintenance", "Stratum maintenance window", timedelta(days=3),
             "Workers reconnect automatically", None, None, None),
        ] + [(f"demo-streak-{m.user_id}", "streak", "Keep your streak alive", midnight - now,
              f"Submit a share before midnight UTC ({m.streak} days)", None, None, m.user_id)
             for m in self.miners[:3]]
        bodies = []
        for event_id, kind, title, lasts, description, label, href, user in plans:
            if renew_only and self.deadlines.get(event_id, now) > now:
                continue
            self.deadlines[event_id] = now + lasts
            data = {"id": event_id, "event_type": kind, "title": title,
                    "ends_at": (now + lasts).isoformat(), "description": description}
            if label:
                data["action"] = {"label": label, "href": href}
            bodies.append(_body("event_reminder", user, **data))
        return bodies

    # -- one event each ----------------------------------------------------------------------
    def badge(self, miner: Miner, badge: str) -> dict:
        miner.badges.add(badge)
        return _body("badge_earned", miner.user_id, badge_id=badge)

    def score(self, miner: Miner, category: str) -> dict:
        return _body("leaderboard_update", miner.user_id, category=category,
                     score=miner.score(category))

    def block(self, miner: Miner) -> dict:
        self.height += 1
        self.network_diff *= self.rng.uniform(0.995, 1.01)
        return _body("block_found", miner.user_id, height=self.height,
                     network_diff=self.network_diff, reward=3.125)

    def match(self) -> dict:
        home, away = self.rng.sample(["Portugal", "Japan", "Brazil", "Kenya", "Canada",
                                      "Norway"], 2)
        goals = (self.rng.randint(0, 4), self.rng.randint(0, 4))
        return _body("match_update", None, match_id=f"wc-{self.rng.randrange(10_000)}",
                     result=f"{home} {goals[0]}-{goals[1]} {away}")

    # -- every second ------------------------------------------------------------------------
    def tick(self, now: datetime, number: int) -> list[dict]:
        rng = self.rng
        bodies = [self._share(m) for m in rng.sample(self.miners, rng.randint(3, 6))]
        for miner in rng.sample(self.miners, 2):
            bodies.append(self._hashrate(miner))
        if rng.random() < 0.05:
            bodies.append(self._toggle(rng.choice(self.miners)))
        if rng.random() < 0.3:
            bodies.append(_body("xp_gained", rng.choice(self.miners).user_id,
                                amount=rng.randint(10, 120)))
        if number % 2 == 0:
            bodies.append(self.score(rng.choice(self.miners), rng.choice(CATEGORIES)))
        bodies += self._rare(now, number)
        return bodies

    def _rare(self, now: datetime, number: int) -> list[dict]:
        rng, bodies = self.rng, []
        if number % 7 == 0:
            miner = rng.choice(self.miners)
            missing = sorted(set(BADGES) - miner.badges)
            if missing:
                bodies.append(self.badge(miner, rng.choice(missing)))
        if number % 15 == 0:
            miner = rng.choice(self.miners)
            miner.streak += 1
            bodies.append(_body("streak_update", miner.user_id, streak=miner.streak))
        if number % 30 == 0:
            bodies.append(self.block(rng.choice(self.miners)))
        if number % 20 == 0:
            bodies.append(self.match())
        if number % 60 == 0:
            bodies.append(_body("league_update", None, league="Pool League",
                                text=f"{rng.choice(self.miners).name} leads the Pool League"))
        if number % 5 == 0:
            bodies += self.upcoming(now, renew_only=True)
        if number % 120 == 0 and self.next_id <= 20:
            miner = self._miner(self.next_id, f"newbie-{self.next_id}")
            self.next_id += 1
            self.miners.append(miner)
            bodies.append(_body("new_miner", miner.user_id, display_name=miner.name))
        return bodies

    def _share(self, miner: Miner) -> dict:
        online = [w for w, rate in miner.workers.items() if rate > 0] or list(miner.workers)
        shares = self.rng.randint(1, 40)
        difficulty = self.rng.lognormvariate(14, 2.5)
        miner.shares += shares
        if difficulty > miner.best:
            miner.best = difficulty
            return _body("best_diff", miner.user_id, difficulty=difficulty,
                         worker=self.rng.choice(online))
        return _body("share_submitted", miner.user_id, worker=self.rng.choice(online),
                     shares=shares, difficulty=difficulty)

    def _hashrate(self, miner: Miner) -> dict:
        worker = self.rng.choice(list(miner.workers))
        rate = miner.workers[worker] or self.rng.uniform(20, 400) * TERA
        miner.workers[worker] = max(1 * TERA, rate * self.rng.uniform(0.93, 1.07))
        return _body("hashrate_update", miner.user_id, worker=worker,
                     hashrate=miner.workers[worker])

    def _toggle(self, miner: Miner) -> dict:
        worker = self.rng.choice(list(miner.workers))
        online = [w for w, rate in miner.workers.items() if rate > 0]
        going_offline = miner.workers[worker] > 0 and len(online) > 1
        miner.workers[worker] = 0.0 if going_offline else self.rng.uniform(20, 400) * TERA
        return _body("worker_status", miner.user_id, worker=worker,
                     status="offline" if going_offline else "online")


async def _send(svc, body: dict, now: datetime | None = None) -> None:
    try:
        await uninterrupted(ingest.ingest_event(svc, body, now=now))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # one bad moment must not end the simulation
        log.warning("demo event %s failed: %s: %s", body.get("type"), type(exc).__name__, exc)


async def run(svc, tick_seconds: float = TICK_SECONDS, seed: int | None = None) -> None:
    """Seed the pool, then play one tick per ``tick_seconds`` until cancelled."""
    pool = Pool(random.Random(seed))
    for body, moment in pool.seed(utcnow()):
        await _send(svc, body, moment)
    log.info("demo: %d miners seeded; simulating", len(pool.miners))
    number = 0
    while True:
        await asyncio.sleep(tick_seconds)
        number += 1
        for body in pool.tick(utcnow(), number):
            await _send(svc, body)


def install(app: Quart, svc, tick_seconds: float = TICK_SECONDS, seed: int | None = None) -> None:
    """Run the simulator as a background job of ``svc`` (started and stopped with the app)."""

    async def demo(svc) -> None:
        await run(svc, tick_seconds, seed)

    svc.background.append(demo)

