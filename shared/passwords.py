"""Password hashing with argon2id (argon2-cffi), its parameters always given explicitly."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cached_property

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


@dataclass(frozen=True)
class HashParams:
    """argon2id cost: RFC 9106's second recommended option by default (64 MiB, t=3, p=4)."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4
    hash_len: int = 32
    salt_len: int = 16


class Passwords:
    """Hashes and verifies passwords with one set of parameters.

    ``needs_rehash`` tells a stored hash made with other parameters (or another algorithm
    variant), so the sign-in that proves the password can store it again with these.
    """

    def __init__(self, params: HashParams = HashParams()) -> None:
        self.params = params
        self._hasher = argon2.PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=params.hash_len,
            salt_len=params.salt_len,
            type=argon2.Type.ID,
        )

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        """True when ``password`` matches ``stored``; False for a mismatch or a broken hash."""
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    @cached_property
    def _dummy(self) -> str:
        return self.hash("no user has this password: it only costs the same time")

    def verify_nobody(self, password: str) -> bool:
        """Spend what verifying a real user's password costs, so an unknown username cannot
        be told apart by the answer's timing; always False."""
        self.verify(self._dummy, password)
        return False


class PasswordGate:
    """Hashing off the event loop, at most ``concurrency`` at once: each hash takes its
    ``memory_kib`` and a core for a fraction of a second, so a flood of sign-ins waits here
    instead of exhausting memory or starving the requests that need no hashing."""

    def __init__(self, passwords: Passwords, concurrency: int = 2) -> None:
        self.passwords = passwords
        self._gate = asyncio.Semaphore(concurrency)

    async def verify(self, stored: str | None, password: str) -> bool:
        """``stored`` None (no such user, or disabled) costs the same and is False."""
        async with self._gate:
            if stored is None:
                return await asyncio.to_thread(self.passwords.verify_nobody, password)
            return await asyncio.to_thread(self.passwords.verify, stored, password)

    async def hash(self, password: str) -> str:
        async with self._gate:
            return await asyncio.to_thread(self.passwords.hash, password)
