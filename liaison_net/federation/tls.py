"""TLS 1.3 contexts: mutual TLS between nodes, server-authenticated TLS for officers.

Trust has one anchor, the network CA certificate in the node directory; the system trust
store is never loaded, so no public CA can vouch for a peer. A peer's node id comes from
its verified certificate (``peer_node_id``), never from anything the peer says later.

Two listeners share the node's server certificate:

* the federation listener (``require_client_cert=True``): the handshake fails unless the
  peer presents a certificate issued by the network CA for client authentication;
* the officer API listener (``require_client_cert=False``): officers have no certificates,
  they prove who they are by signing their requests, so TLS only protects the channel.
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

from cryptography import x509

from liaison_net import errors
from liaison_net.pki.certificates import (
    CA_CERT_FILE,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    node_id_from_certificate,
)


def server_context(node_dir: Path, *, require_client_cert: bool) -> ssl.SSLContext:
    """Server side of a node listener; ``require_client_cert`` is a decision, not a default."""
    ctx = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    _load_own_certificate(ctx, node_dir)
    if require_client_cert:
        # CERT_REQUIRED, not CERT_OPTIONAL: a peer without a certificate must not get in.
        ctx.verify_mode = ssl.CERT_REQUIRED
        _load_trust_anchor(ctx, node_dir / CA_CERT_FILE)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_context(node_dir: Path) -> ssl.SSLContext:
    """A node calling a peer: presents its certificate, trusts only the network CA."""
    # PROTOCOL_TLS_CLIENT defaults to CERT_REQUIRED and check_hostname=True.
    ctx = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    _load_trust_anchor(ctx, node_dir / CA_CERT_FILE)
    _load_own_certificate(ctx, node_dir)
    return ctx


def officer_client_context(ca_cert_path: Path) -> ssl.SSLContext:
    """An officer's CLI calling the home node: trusts only the network CA, no client cert."""
    ctx = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    _load_trust_anchor(ctx, ca_cert_path)
    return ctx


def peer_node_id(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """The node id bound in the peer's certificate, once the handshake has verified it.

    With aiohttp: ``peer_node_id(request.transport.get_extra_info("ssl_object"))``; a
    sender calls it on its own connection too, to check it reached the peer it meant.
    """
    if ssl_object is None:
        raise errors.Unauthorized("connection is not TLS: no peer certificate")
    # Reading an id from an unverified certificate would let anyone claim any node.
    if ssl_object.context.verify_mode != ssl.CERT_REQUIRED:
        raise errors.Unauthorized("peer certificates are not verified on this connection")
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise errors.Unauthorized("peer presented no certificate")
    return _node_id_of(der)


@functools.lru_cache(maxsize=64)
def _node_id_of(der: bytes) -> str:
    """The node id in a certificate the handshake verified. Memoised: every request of a
    kept-alive connection asks again, and parsing the certificate showed in the light-load
    profile (bounded: a few peers, a few rotations). The id depends on the bytes alone."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise errors.Malformed("peer certificate cannot be parsed") from None
    return node_id_from_certificate(cert)


def _tls13(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    # Strict RFC 5280 checks: our own certificates satisfy them, a sloppy forgery may not.
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def _load_own_certificate(ctx: ssl.SSLContext, node_dir: Path) -> None:
    cert, key = node_dir / TLS_CERT_FILE, node_dir / TLS_KEY_FILE
    try:
        ctx.load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError) as exc:
        # ssl.SSLError is an OSError; its text names the OpenSSL reason, never key bytes.
        raise errors.ConfigError(
            f"cannot load TLS certificate {cert} and key {key}: {exc}"
        ) from None


def _load_trust_anchor(ctx: ssl.SSLContext, ca_cert: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=ca_cert)
    except (OSError, ssl.SSLError) as exc:
        raise errors.ConfigError(f"cannot load CA certificate {ca_cert}: {exc}") from None
