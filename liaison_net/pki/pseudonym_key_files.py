"""The network pseudonym key on disk: made with the CA, shared by every node, rotatable.

Files, in the CA directory and copied into each node's certificate directory:
``pseudonym.key`` (current) and, during a rotation window, ``pseudonym.key.previous``;
both 0600. No client ever holds them: clients get evaluations of blinded points only.
A node re-reads the files when they change, so installing a rotated key needs no restart.
"""

from __future__ import annotations

from pathlib import Path

from liaison_net.core import crypto
from liaison_net.core.pseudonym import KeyRing
from liaison_net.errors import ConfigError, Conflict
from liaison_net.pki import certificates

CURRENT = "pseudonym.key"
PREVIOUS = "pseudonym.key.previous"


def create(directory: Path) -> bytes:
    """A first network key; refuses to replace one (use ``rotate``)."""
    path = directory / CURRENT
    if path.exists():
        raise Conflict(f"a network pseudonym key already exists: {path}")
    key = crypto.new_oprf_key()
    certificates.write_secret(path, key)
    return key


def rotate(directory: Path) -> tuple[bytes, bytes]:
    """Make a new current key, keeping the old one as previous; (old id, new id)."""
    current = directory / CURRENT
    old = _read(current)
    new = crypto.new_oprf_key()
    certificates.write_secret(directory / PREVIOUS, old)
    certificates.write_secret(current, new)
    return KeyRing([old]).current_key_id, KeyRing([new]).current_key_id


def retire_previous(directory: Path) -> None:
    (directory / PREVIOUS).unlink(missing_ok=True)


def install(source: Path, node_dir: Path) -> KeyRing:
    """Copy the network's key files into a node's directory (0600), replacing its own."""
    ring = load(source)
    for name in (CURRENT, PREVIOUS):
        if (source / name).exists():
            certificates.write_secret(node_dir / name, (source / name).read_bytes())
        else:
            (node_dir / name).unlink(missing_ok=True)
    return ring


def load(directory: Path) -> KeyRing:
    keys = [_read(directory / CURRENT)]
    if (directory / PREVIOUS).exists():
        keys.append(_read(directory / PREVIOUS))
    return KeyRing(keys)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"no network pseudonym key at {path}: run `liaison admin "
                          "pseudonym-key install`") from exc


class WatchedKeyRing:
    """The node's key ring, re-read from disk whenever the files change."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stamp: tuple[int, ...] = ()
        self._ring: KeyRing | None = None

    def get(self) -> KeyRing:
        stamp = tuple(p.stat().st_mtime_ns if p.exists() else 0
                      for p in (self.directory / CURRENT, self.directory / PREVIOUS))
        if self._ring is None or stamp != self._stamp:
            self._ring = load(self.directory)
            self._stamp = stamp
        return self._ring
