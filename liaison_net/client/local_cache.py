"""What the officer's CLI keeps between runs, beside the keystore: the session token and
the verified directory, so that `liaison send` is one request and `liaison read` one TLS
session when both are warm (docs/performance.md has the counts).

A session token is a bearer credential and a directory is a trust decision, so both are
kept the same way, and an attacker who can write next to the keystore gains nothing:

* **sealed**: XChaCha20-Poly1305 under a key derived (BLAKE2b, personalised per kind) from
  the keystore's signing seed, so only the unlocked keystore opens its caches, and after
  `liaison officer rotate` (a new seed) the old files open for nobody;
* **bound**: the associated data names the officer, the signing key id, the node URL and
  the node id; a file copied from another keystore or written for another node, or with
  one byte changed, does not open;
* **written** 0600 from the first byte and replaced atomically (``write_secret``); **read**
  with O_NOFOLLOW, and only if it is a regular file owned by this user with no group or
  other permission bits;
* anything refused is one warning on stderr and is ignored, never trusted: the command
  then does what it would have done without a cache (log in, fetch the directory) and
  writes a good file over the bad one. Nothing here logs or prints a token.

The token file (``<keystore>.session``) holds the node's token, its expiry (the node's,
capped at ``MAX_TOKEN_CACHE_MS`` after the local clock at login) and the SHA-256 of the
node's TLS certificate the login went over: ``NodeSession`` sends the token only on a
connection presenting that same certificate, only while ``TOKEN_MARGIN_MS`` remain, and on
``unauthorized`` drops it and logs in afresh, once. `liaison logout` and `officer rotate`
delete it, and the node forgets the token too.

The directory file (``<keystore>.directory``) holds the node's answer exactly as received:
signed cards, node certificates, revocations. It is verified against the network CA on
every load as when it was fetched, used while younger than ``DIRECTORY_MAX_AGE_MS`` and
while it has a usable card for every officer the command names, else fetched again.

The node keys file (``<keystore>.nodekeys``) holds the node signing keys the client
believes: what ``verify_directory`` moves only along co-signed key changes (its ``held``).
Unlike the others it is not a cache but a trust anchor: `liaison logout` keeps it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509

from liaison_net.client.directory import Directory, verify_directory
from liaison_net.client.keystore import Keystore, check_ca_pem
from liaison_net.core import codec, crypto
from liaison_net.errors import LiaisonError, Malformed
from liaison_net.pki import certificates

TOKEN_SUFFIX = ".session"
DIRECTORY_SUFFIX = ".directory"
MAX_TOKEN_CACHE_MS = 3_600_000  # never trust a cached token for more than an hour
TOKEN_MARGIN_MS = 30_000  # a token this close to its end is not worth a 401 and a retry
DIRECTORY_MAX_AGE_MS = 300_000  # a revocation reaches the client at least this often
MAX_CLOCK_BACK_MS = 60_000  # a file "written" further in the future was not written by us
MAX_TOKEN_FILE_BYTES = 16 * 1024
MAX_DIRECTORY_FILE_BYTES = 16 * 1024 * 1024 + 4096  # MAX_DIRECTORY_BYTES and the envelope
_MAGIC = {"token": b"liaison-net session cache v1\n",
          "directory": b"liaison-net directory cache v1\n",
          "sent": b"liaison-net sent list v1\n",
          "node_keys": b"liaison-net held node keys v1\n"}
_TOKEN_FIELDS = {"token", "expires", "written", "tls"}
_DIRECTORY_FIELDS = {"directory", "written"}
SENT_SUFFIX = ".sent"  # what a front end sent (the desk's timelines), newest first
MAX_SENT_KEPT = 500
MAX_SENT_FILE_BYTES = 1024 * 1024
_SENT_FIELDS = {"sent", "written"}
NODE_KEYS_SUFFIX = ".nodekeys"  # the node keys the client holds (client/directory.py)
MAX_NODE_KEYS_FILE_BYTES = 16 * 1024
_NODE_KEYS_FIELDS = {"keys", "cosigners", "written"}


@dataclass(frozen=True, repr=False)
class CachedToken:
    token: str
    expires: int  # local ms
    tls_identity: str  # hex SHA-256 of the node certificate (DER) the login went over

    def __repr__(self) -> str:  # never the token itself
        return f"CachedToken(expires={self.expires}, tls={self.tls_identity[:16]}...)"


def _key(ks: Keystore, kind: str) -> bytes:
    """One key per kind, from the signing seed: a rotated keystore opens none of these."""
    return hashlib.blake2b(b"liaison-net/local-cache/" + kind.encode(), key=ks.signing.seed,
                           digest_size=crypto.CONTENT_KEY_BYTES).digest()


def _binding(ks: Keystore, kind: str) -> bytes:
    return _MAGIC[kind] + codec.pack({"officer": ks.officer,
                                      "signing_key_id": ks.signing.key_id,
                                      "node_url": ks.node_url, "node": ks.node})


class LocalCache:
    """The caches beside one keystore; ``now_ms`` is the CLI's clock, ``warn`` its stderr."""

    def __init__(self, keystore_path: Path, *, now_ms: Callable[[], int],
                 warn: Callable[[str], None] = lambda _: None) -> None:
        self.token_path = keystore_path.with_name(keystore_path.name + TOKEN_SUFFIX)
        self.directory_path = keystore_path.with_name(keystore_path.name + DIRECTORY_SUFFIX)
        self.now_ms = now_ms
        self.warn = warn

    # --- the session token ----------------------------------------------------------------

    def load_token(self, ks: Keystore) -> CachedToken | None:
        """The cached token if it is ours, for this node, and valid past the margin."""
        value = self._open("token", ks, self.token_path, MAX_TOKEN_FILE_BYTES, _TOKEN_FIELDS)
        if value is None:
            return None
        token, expires, tls = value["token"], value["expires"], value["tls"]
        if (not isinstance(token, str) or not isinstance(tls, str) or len(tls) != 64
                or not isinstance(expires, int) or isinstance(expires, bool)):
            self.warn(f"ignoring {self.token_path}: unexpected content")
            return None
        if self.now_ms() + TOKEN_MARGIN_MS >= expires:
            return None  # expired (or about to): a fresh login, no warning
        return CachedToken(token, expires, tls)

    def save_token(self, ks: Keystore, token: str, *, node_expires: int | None,
                   tls_identity: str) -> None:
        now = self.now_ms()
        expires = now + MAX_TOKEN_CACHE_MS
        if node_expires is not None:
            expires = min(expires, node_expires)
        if expires <= now + TOKEN_MARGIN_MS:
            return
        self._seal("token", ks, self.token_path,
                   {"token": token, "expires": expires, "written": now, "tls": tls_identity})

    def drop_token(self) -> None:
        self._remove(self.token_path)

    # --- the directory --------------------------------------------------------------------

    def load_directory(self, ks: Keystore) -> bytes | None:
        """The directory as the node served it, if fresh: the caller verifies it again."""
        value = self._open("directory", ks, self.directory_path, MAX_DIRECTORY_FILE_BYTES,
                           _DIRECTORY_FIELDS)
        if value is None:
            return None
        raw = value["directory"]
        if not isinstance(raw, bytes):
            self.warn(f"ignoring {self.directory_path}: unexpected content")
            return None
        if self.now_ms() >= value["written"] + DIRECTORY_MAX_AGE_MS:
            return None  # stale: fetch again
        return raw

    def save_directory(self, ks: Keystore, raw: bytes) -> None:
        self._seal("directory", ks, self.directory_path,
                   {"directory": raw, "written": self.now_ms()})

    def drop_directory(self) -> None:
        self._remove(self.directory_path)

    # --- the node keys the client holds -------------------------------------------------

    def load_node_keys(self, ks: Keystore) -> tuple[dict[str, bytes], frozenset[str]]:
        """The node signing keys believed last time, and the nodes whose co-signatures
        count: a new key is believed only through co-signed key changes from these. None
        kept (or a file refused): first contact."""
        value = self._open("node_keys", ks, self.node_keys_path, MAX_NODE_KEYS_FILE_BYTES,
                           _NODE_KEYS_FIELDS)
        if value is None:
            return {}, frozenset()
        keys, cosigners = value["keys"], value["cosigners"]
        if (not isinstance(keys, dict) or not isinstance(cosigners, list)
                or not all(isinstance(n, str) for n in cosigners)
                or not all(isinstance(n, str) and isinstance(k, bytes)
                           and len(k) == crypto.PUBLIC_KEY_BYTES for n, k in keys.items())):
            self.warn(f"ignoring {self.node_keys_path}: unexpected content")
            return {}, frozenset()
        return keys, frozenset(cosigners)

    def save_node_keys(self, ks: Keystore, keys: dict[str, bytes],
                       cosigners: frozenset[str]) -> None:
        self._seal("node_keys", ks, self.node_keys_path,
                   {"keys": keys, "cosigners": sorted(cosigners), "written": self.now_ms()})

    @property
    def node_keys_path(self) -> Path:
        return self.token_path.with_name(
            self.token_path.name.removesuffix(TOKEN_SUFFIX) + NODE_KEYS_SUFFIX)

    # --- what was sent (ids, recipients, subjects: sealed like the rest) -----------------

    def load_sent(self, ks: Keystore) -> list[dict[str, Any]]:
        """The sent list as saved (each record a map of plain values), newest first."""
        value = self._open("sent", ks, self.sent_path, MAX_SENT_FILE_BYTES, _SENT_FIELDS)
        records = value["sent"] if value is not None else []
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            self.warn(f"ignoring {self.sent_path}: unexpected content")
            return []
        return records[:MAX_SENT_KEPT]

    def save_sent(self, ks: Keystore, records: list[dict[str, Any]]) -> None:
        self._seal("sent", ks, self.sent_path,
                   {"sent": records[:MAX_SENT_KEPT], "written": self.now_ms()})

    @property
    def sent_path(self) -> Path:
        return self.token_path.with_name(
            self.token_path.name.removesuffix(TOKEN_SUFFIX) + SENT_SUFFIX)

    def clear(self) -> None:
        self.drop_token()
        self.drop_directory()

    # --- the files ------------------------------------------------------------------------

    def _seal(self, kind: str, ks: Keystore, path: Path, value: dict[str, Any]) -> None:
        nonce = crypto.new_nonce()
        blob = crypto.aead_encrypt(_key(ks, kind), nonce, codec.pack(value),
                                   _binding(ks, kind))
        try:
            certificates.write_secret(path, _MAGIC[kind] + nonce + blob)
        except LiaisonError as exc:  # a cache that cannot be written costs speed only
            self.warn(f"cannot keep the {kind} cache: {exc.detail}")

    def _open(self, kind: str, ks: Keystore, path: Path, max_bytes: int,
              fields: set[str]) -> dict[str, Any] | None:
        raw = self._read_own(path, max_bytes)
        if raw is None:
            return None
        magic = _MAGIC[kind]
        body = raw[len(magic):]
        if not raw.startswith(magic) or len(body) < crypto.NONCE_BYTES:
            self.warn(f"ignoring {path}: not a {kind} cache")
            return None
        try:
            plain = crypto.aead_decrypt(_key(ks, kind), body[:crypto.NONCE_BYTES],
                                        body[crypto.NONCE_BYTES:], _binding(ks, kind))
        except LiaisonError:
            # Tampered, planted, or written for another keystore, key or node.
            self.warn(f"ignoring {path}: it does not open for this keystore and node")
            return None
        try:
            value = codec.exact_map(kind, codec.unpack(plain, what=kind, max_bytes=max_bytes),
                                    fields)
            written = value["written"]
            if not isinstance(written, int) or isinstance(written, bool):
                raise Malformed("written must be an integer")
        except LiaisonError as exc:
            self.warn(f"ignoring {path}: {exc.detail}")
            return None
        if written > self.now_ms() + MAX_CLOCK_BACK_MS:
            self.warn(f"ignoring {path}: written in the future (has the clock moved back?)")
            return None
        return value

    def _read_own(self, path: Path, max_bytes: int) -> bytes | None:
        """The file's bytes if it is a regular file of ours that nobody else may read or
        write; None (with a warning, unless it simply is not there) otherwise."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            why = "it is a symbolic link" if exc.errno == errno.ELOOP else (exc.strerror or exc)
            self.warn(f"ignoring {path}: {why}")
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self.warn(f"ignoring {path}: not a regular file")
                return None
            if st.st_uid != os.getuid():
                self.warn(f"ignoring {path}: owned by uid {st.st_uid}, not by you")
                return None
            if st.st_mode & 0o077:
                self.warn(f"ignoring {path}: mode {stat.S_IMODE(st.st_mode):04o}, others may "
                          "read or change it (a cache is written 0600)")
                return None
            if st.st_size > max_bytes:
                self.warn(f"ignoring {path}: larger than {max_bytes} bytes")
                return None
            chunks: list[bytes] = []
            total = 0
            while total <= max_bytes:
                chunk = os.read(fd, max_bytes + 1 - total)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            if total > max_bytes:  # grew after the fstat
                self.warn(f"ignoring {path}: larger than {max_bytes} bytes")
                return None
            return b"".join(chunks)
        except OSError as exc:
            self.warn(f"ignoring {path}: {exc.strerror or exc}")
            return None
        finally:
            os.close(fd)

    def _remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.warn(f"cannot remove {path}: {exc.strerror or exc}")


# --- the directory, cached or fetched ---------------------------------------------------------


class DirectorySource(Protocol):
    async def directory_bytes(self) -> bytes: ...


async def verified_directory(node: DirectorySource, cache: LocalCache | None, ks: Keystore, *,
                             now: datetime, wanted: Iterable[str] = (),
                             refresh: bool = False) -> tuple[Directory, bool]:
    """The directory, verified against the CA at ``now``, and whether it came from the
    cache: the cached one if fresh and it has a usable card for each of ``wanted``, else
    the node's (kept for next time). ``refresh`` skips the cache: the caller found it
    wanting (a signer it does not know, a recipient the node refused)."""
    ca = check_ca_pem(ks.ca_cert_pem)
    if cache is not None and not refresh:
        raw = cache.load_directory(ks)
        if raw is not None:
            try:
                directory = holding(cache, ks, raw, ca, now=now)
            except LiaisonError as exc:
                cache.warn(f"ignoring {cache.directory_path}: {exc.detail}")
            else:
                at = int(now.timestamp() * 1000)
                try:
                    for officer in wanted:
                        directory.card(officer, now=at)
                except LiaisonError:
                    pass  # someone it does not know (yet): ask the node
                else:
                    return directory, True
    raw = await node.directory_bytes()
    directory = holding(cache, ks, raw, ca, now=now)
    if cache is not None:
        cache.save_directory(ks, raw)
    return directory, False


def holding(cache: LocalCache | None, ks: Keystore, raw: bytes, ca: x509.Certificate, *,
            now: datetime) -> Directory:
    """``raw`` verified under the node keys the client holds (none without a cache), and
    what it then holds kept for next time."""
    held, cosigners = cache.load_node_keys(ks) if cache is not None else ({}, frozenset())
    directory = verify_directory(raw, ca, now=now, held=held,
                                 cosigners=cosigners if held else None)
    if cache is not None and (directory.held, directory.cosigners) != (held, cosigners):
        cache.save_node_keys(ks, directory.held, directory.cosigners)
    return directory
