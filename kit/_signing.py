"""Which results this user's kit made: an HMAC under a key kit creates once per user.

A folder someone sent can carry ``results/*.json`` files claiming anything. Each result kit
saves is signed with a random key kept in kit's config folder (mode 0600, never inside an
export), so a result that arrived with a folder cannot pass for one made here: the folder
never holds the key. Copying a signed result between this user's exports gains nothing
either, since what is signed includes the sha256 of every file the result is about.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from .errors import KitError

__all__ = ["config_dir", "key_path", "sign", "signed_here"]

_KEY_FILE = "signing.key"
_KEY_BYTES = 32


def config_dir() -> Path:
    """kit's per-user config folder: ``$KIT_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/kit``,
    else ``~/.config/kit``."""
    if explicit := os.environ.get("KIT_CONFIG_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "kit"


def key_path() -> Path:
    return config_dir() / _KEY_FILE


def _read_key(path: Path) -> bytes:
    """The key in ``path``: a regular file of this user's that nobody else can read."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            raise KitError(f"kit's signing key {path} is not a regular file of yours; delete it.")
        if info.st_mode & 0o077:
            raise KitError(
                f"kit's signing key {path} can be read by others (mode "
                f"{stat.S_IMODE(info.st_mode):o}); run chmod 600 {path}, or delete it."
            )
        key = bytes.fromhex(f.read(4 * _KEY_BYTES).decode("ascii", "replace").strip() or "x")
    if len(key) != _KEY_BYTES:
        raise KitError(f"kit's signing key {path} is not one kit wrote; delete it.")
    return key


def _create_key(path: Path) -> None:
    """Write a new key to ``path`` whole or not at all (two processes: the first one wins)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(_KEY_BYTES) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _key() -> bytes:
    """This user's key, created on first use.

    Raises:
        KitError: the key file exists but is unsafe or unreadable (one sentence saying what
            to do).
    """
    path = key_path()
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    except ValueError:
        raise KitError(f"kit's signing key {path} is not one kit wrote; delete it.") from None
    except OSError as exc:
        raise KitError(f"Cannot read kit's signing key {path}: {exc.strerror or exc}.") from None
    try:
        _create_key(path)
        return _read_key(path)
    except OSError as exc:
        raise KitError(f"Cannot create kit's signing key {path}: {exc.strerror or exc}.") from None


def sign(payload: bytes) -> str:
    """The hex HMAC-SHA256 of ``payload`` under this user's key."""
    return hmac.new(_key(), payload, hashlib.sha256).hexdigest()


def signed_here(payload: bytes, signature: str) -> bool:
    """Whether ``signature`` is this user's HMAC of ``payload`` (False when the key cannot
    be read: nothing unverifiable counts as made here)."""
    if not signature or len(signature) != 64:
        return False
    try:
        expected = sign(payload)
    except KitError:
        return False
    return hmac.compare_digest(expected, signature)
