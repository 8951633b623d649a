"""RFC 9162 Merkle trees: the reference vectors of Certificate Transparency, and for any pair
of sizes, consistency proofs that verify and tampered ones that do not."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from liaison_net.core import merkle

# The eight leaves of the CT reference tests (certificate-transparency merkle_tree_test).
CT_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [bytes.fromhex(h) for h in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")]
CT_CONSISTENCY = {
    (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}
HASHES = [merkle.leaf_hash(x) for x in CT_LEAVES]


def test_reference_roots() -> None:
    for n in range(1, 9):
        assert merkle.root(HASHES[:n]) == CT_ROOTS[n - 1]


def test_reference_consistency_proofs() -> None:
    for (m, n), hexes in CT_CONSISTENCY.items():
        proof = [bytes.fromhex(h) for h in hexes]
        assert merkle.consistency_proof(m, HASHES[:n]) == proof
        assert merkle.verify_consistency(m, n, CT_ROOTS[m - 1], CT_ROOTS[n - 1], proof)


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


sizes = st.integers(1, 70).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n)))


@given(sizes)
def test_any_consistency_proof_verifies(pair: tuple[int, int]) -> None:
    m, n = pair
    leaves = _leaves(n)
    proof = merkle.consistency_proof(m, leaves)
    assert merkle.verify_consistency(m, n, merkle.root(leaves[:m]), merkle.root(leaves), proof)


@given(sizes, st.data())
def test_a_tampered_consistency_proof_is_refused(pair: tuple[int, int],
                                                 data: st.DataObject) -> None:
    m, n = pair
    leaves = _leaves(n)
    old, new = merkle.root(leaves[:m]), merkle.root(leaves)
    proof = merkle.consistency_proof(m, leaves)
    flip = bytes([1] + [0] * 31)

    def xor(h: bytes) -> bytes:
        return bytes(a ^ b for a, b in zip(h, flip, strict=True))

    assert not merkle.verify_consistency(m, n, xor(old), new, proof)
    assert not merkle.verify_consistency(m, n, old, xor(new), proof)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        assert not merkle.verify_consistency(m, n, old, new,
                                             [*proof[:i], xor(proof[i]), *proof[i + 1:]])
        assert not merkle.verify_consistency(m, n, old, new, proof[:-1])
        assert not merkle.verify_consistency(m, n, old, new, [*proof, proof[-1]])
    if m < n:
        # A rewritten first leaf: no proof leads from the old root to the new one.
        rewritten = [merkle.leaf_hash(b"rewritten"), *leaves[1:]]
        assert not merkle.verify_consistency(m, n, old, merkle.root(rewritten),
                                             merkle.consistency_proof(m, rewritten))


@given(st.integers(1, 70).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n))))
def test_any_inclusion_proof_verifies(pair: tuple[int, int]) -> None:
    index, n = pair
    leaves = _leaves(n)
    proof = merkle.inclusion_proof(index, leaves)
    assert merkle.verify_inclusion(leaves[index], index, n, proof, merkle.root(leaves))
    assert not merkle.verify_inclusion(leaves[index], index, n, proof,
                                       merkle.leaf_hash(b"other"))


def test_odd_inputs_are_refused_not_raised() -> None:
    leaves = _leaves(5)
    r = merkle.root(leaves)
    assert not merkle.verify_consistency(0, 5, r, r, [])
    assert not merkle.verify_consistency(6, 5, r, r, [])
    assert not merkle.verify_consistency(3, 5, r, r, [])
    assert not merkle.verify_consistency(3, 5, r, r, [b"short"])
    assert merkle.verify_consistency(5, 5, r, r, [])
    assert not merkle.verify_consistency(5, 5, r, r, [r])


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))),
       st.data())
def test_the_log_gives_the_same_roots_and_proofs_as_the_lists(pair: tuple[int, int],
                                                                data: st.DataObject) -> None:
    m, n = pair
    leaves = _leaves(n)
    log = merkle.MerkleLog(leaves[:m])
    assert log.root() == merkle.root(leaves[:m])
    for leaf in leaves[m:]:
        log.append(leaf)
    assert len(log) == n and log.root() == merkle.root(leaves)
    assert log.root(m) == merkle.root(leaves[:m])
    assert log.consistency_proof(m, n) == merkle.consistency_proof(m, leaves)
    index = data.draw(st.integers(0, n - 1))
    assert log.inclusion_proof(index, n) == merkle.inclusion_proof(index, leaves)
    assert log.leaves(0, n) == b"".join(leaves)


def test_the_log_refuses_sizes_it_does_not_hold() -> None:
    log = merkle.MerkleLog(_leaves(3))
    for call in (lambda: log.root(4), lambda: log.root(0), lambda: log.consistency_proof(0, 3),
                 lambda: log.inclusion_proof(3, 3), lambda: log.append(b"short")):
        try:
            call()
        except ValueError:
            continue
        raise AssertionError("accepted")


def _recursive_root(leaves: list[bytes]) -> bytes:
    """MTH as RFC 9162 §2.1.1 defines it: split at the largest power of two below n."""
    if len(leaves) == 1:
        return leaves[0]
    k = merkle.split_point(len(leaves))
    return merkle.inner_hash(_recursive_root(leaves[:k]), _recursive_root(leaves[k:]))


def test_the_level_by_level_root_is_the_recursive_definition() -> None:
    for n in range(1, 1100):  # every size up to past a batch's and a checkpoint's
        leaves = _leaves(n)
        assert merkle.root(leaves) == _recursive_root(leaves), n
