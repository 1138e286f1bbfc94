"""The admin's login in Redis: the password hash, open logins and lock-out counters.

The calls of `admin.py` and `reactions admin …`, mixed into the Store.
"""

from __future__ import annotations

import secrets
import time

import redis

from .keys import ADMIN_KEY, ADMIN_LOGINS_KEY, ALL_LOGIN_FAILURES_KEY, login_failures_key


class AdminLogin:
    """The Store's admin-login calls; a mixin, since they need nothing but its client."""

    client: redis.Redis

    def admin_password_hash(self) -> str | None:
        return self.client.hget(ADMIN_KEY, "password")

    def set_admin_password_hash(self, password_hash: str) -> None:
        """A new password ends every open login."""
        pipe = self.client.pipeline(transaction=False)  # two keys: two cluster slots
        pipe.hset(ADMIN_KEY, "password", password_hash)
        pipe.delete(ADMIN_LOGINS_KEY)
        pipe.execute()

    def open_admin_login(self, lifetime: int) -> str:
        """A new login's random id, valid for `lifetime` seconds unless it is ended first.
        Logins that expired are forgotten here, so the record stays small."""
        now = time.time()
        expired = [
            login
            for login, until in self.client.hgetall(ADMIN_LOGINS_KEY).items()
            if float(until) <= now
        ]
        login = secrets.token_urlsafe(24)
        pipe = self.client.pipeline(transaction=False)
        if expired:
            pipe.hdel(ADMIN_LOGINS_KEY, *expired)
        pipe.hset(ADMIN_LOGINS_KEY, login, int(now + lifetime))
        pipe.expire(ADMIN_LOGINS_KEY, lifetime)  # no login outlives the newest one
        pipe.execute()
        return login

    def admin_login_open(self, login: str) -> bool:
        until = self.client.hget(ADMIN_LOGINS_KEY, login) if login else None
        return until is not None and float(until) > time.time()

    def end_admin_login(self, login: str) -> None:
        if login:
            self.client.hdel(ADMIN_LOGINS_KEY, login)

    def login_lockout(self, address: str, per_address: int, everyone: int | None) -> int:
        """Seconds before a login may be tried from this address: 0 unless its failures
        reached `per_address`, or everyone's together reached `everyone` (None: this address
        is not held by the global budget)."""
        # Not a transaction: the keys live on different cluster slots.
        pipe = self.client.pipeline(transaction=False)
        for key in (login_failures_key(address), ALL_LOGIN_FAILURES_KEY):
            pipe.get(key)
            pipe.ttl(key)
        mine, mine_ttl, all_, all_ttl = pipe.execute()
        wait = 0
        if int(mine or 0) >= per_address:
            wait = max(wait, mine_ttl, 1)
        if everyone is not None and int(all_ or 0) >= everyone:
            wait = max(wait, all_ttl, 1)
        return wait

    def count_login_failure(self, address: str, window: int) -> int:
        """Count a failed login from this address and in everyone's window; returns the
        address's failures. The address's window starts again with each failure; everyone's
        is fixed from its first failure, so a lock-out by many addresses ends with it."""
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(login_failures_key(address))
        pipe.expire(login_failures_key(address), window)
        pipe.set(ALL_LOGIN_FAILURES_KEY, 0, nx=True, ex=window)
        pipe.incr(ALL_LOGIN_FAILURES_KEY)
        pipe.hincrby(ADMIN_KEY, "failed_logins", 1)
        failures, *_ = pipe.execute()
        return int(failures)

    def clear_login_failures(self, address: str) -> None:
        self.client.delete(login_failures_key(address))

    def unlock_admin_login(self) -> int:
        """Forget every counted login failure, of every address and of everyone together:
        the admin's way in during an attack (`reactions admin unlock`). Returns how many
        counters were removed."""
        keys = [ALL_LOGIN_FAILURES_KEY, *self.client.scan_iter(match=login_failures_key("*"))]
        return sum(int(self.client.delete(key)) for key in keys)
