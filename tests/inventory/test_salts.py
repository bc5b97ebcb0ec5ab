"""PHI commitment salts (HIP-15) come from a bulk draw of os.urandom (clinic.inventory.chain.salt_hex)."""

from __future__ import annotations

import os
import re

from clinic.inventory.chain import salt_hex


def test_salts_are_16_random_bytes_never_repeated():
    salts = [salt_hex() for _ in range(5000)]  # past several refills of the pool
    assert all(re.fullmatch(r"[0-9a-f]{32}", s) for s in salts)
    assert len(set(salts)) == len(salts)


def test_a_forked_child_never_hands_out_the_parents_next_salts():
    salt_hex()  # the pool is filled in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, "".join(salt_hex() for _ in range(20)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        child = fh.read()
    os.waitpid(pid, 0)
    parent = "".join(salt_hex() for _ in range(20))
    assert len(child) == len(parent) == 640
    assert {child[i : i + 32] for i in range(0, 640, 32)}.isdisjoint(parent[i : i + 32] for i in range(0, 640, 32))
