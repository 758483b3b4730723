"""Accounts without I/O: roles, names, passwords and tokens."""

from __future__ import annotations

import pytest

from engine.core.accounts import Role, check_name, hash_password, new_token, token_digest, verify_password


def test_each_role_may_do_what_the_roles_before_it_may() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR) and Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR) and not Role.OPERATOR.allows(Role.ADMIN)
    with pytest.raises(ValueError, match="viewer, operator, admin"):
        Role.parse("root")


@pytest.mark.parametrize("name", ["", "x" * 101, "a\x00b", "a\nb", "\x1b[31mred", "a\u2028b", "zero\u200bwidth",
                                  " padded", "token", "local", "cli:root", "x/../../jobs/5", "a\\b"])
def test_names_are_printable_and_not_reserved(name: str) -> None:
    with pytest.raises(ValueError):
        check_name(name)


def test_names_may_hold_spaces_and_any_script() -> None:
    assert check_name("Kim Min-jun 김민준") == "Kim Min-jun 김민준"


def test_passwords_are_hashed_with_argon2id_and_verified() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert verify_password(stored, "correct horse") and not verify_password(stored, "correct hors")
    assert not verify_password(None, "anything") and not verify_password("not a hash", "x")
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


def test_tokens_are_random_and_only_their_digest_is_kept() -> None:
    first, second = new_token(), new_token()
    assert first != second and first.startswith("je_") and len(first) > 40
    assert len(token_digest(first)) == 32 and first.encode() not in token_digest(first)
