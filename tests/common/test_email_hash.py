"""Emails in logs: a keyed HMAC, the same in every process that has the same key, not reversible
with a list of addresses; a random per-process key (and a warning) when none is configured."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kmsync_common import configure_email_hash_key, hash_email, key_is_ephemeral

PROBE = "from kmsync_common import hash_email; print(hash_email('Jane.Doe@Acme.com'))"


def hash_in_a_new_process(env: dict[str, str]) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60,
                          check=True)
    return done.stdout.strip(), done.stderr


@pytest.fixture(autouse=True)
def forget_key() -> Iterator[None]:
    configure_email_hash_key(None)
    yield
    configure_email_hash_key(None)


def test_the_hash_is_keyed_not_a_plain_digest() -> None:
    configure_email_hash_key(b"k" * 32)
    h = hash_email("jane@acme.com")
    assert h.startswith("email#") and len(h) == len("email#") + 16
    plain = hashlib.sha256(b"jane@acme.com").hexdigest()
    assert h.removeprefix("email#") not in plain  # a dictionary of plain digests does not find it
    assert h == hash_email(" Jane@ACME.com ")
    configure_email_hash_key(b"q" * 32)
    assert hash_email("jane@acme.com") != h  # another deployment's key: another hash


def test_the_same_key_hashes_the_same_email_the_same_way_in_every_process(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("a-deployment-key-0123456789abcdef")
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    by_file = {**base, "KMSYNC_EMAIL_HASH_SECRET": f'{{"file": "{tmp_path / "key"}"}}'}
    by_env = {**base, "KMSYNC_EMAIL_HASH_SECRET": '{"env": "THE_KEY"}', "THE_KEY": "a-deployment-key-0123456789abcdef"}
    one, err_one = hash_in_a_new_process(by_file)
    two, _ = hash_in_a_new_process(by_env)
    assert one == two and one.startswith("email#") and "not set" not in err_one
    configure_email_hash_key(b"a-deployment-key-0123456789abcdef")
    assert hash_email("jane.doe@acme.com") == one  # a trace tool with the key finds the person


def test_without_a_key_each_process_uses_its_own_random_key_and_says_so() -> None:
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    one, err = hash_in_a_new_process(base)
    two, _ = hash_in_a_new_process(base)
    assert one != two
    assert "KMSYNC_EMAIL_HASH_SECRET is not set" in err


def test_a_key_that_does_not_resolve_falls_back_without_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMSYNC_EMAIL_HASH_SECRET", '{"env": "NO_SUCH_KEY_VAR"}')
    assert hash_email("jane@acme.com").startswith("email#")
    assert key_is_ephemeral()
