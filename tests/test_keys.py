"""Every key the lab builds lives in its namespace; a SKU's keys share one hash tag (one slot)."""

import fnmatch
import re
from pathlib import Path

from inventory_lab import keys

PACKAGE = Path(keys.__file__).parent


def _hash_tag(key: str) -> str:
    """What Redis Cluster hashes: the text between the first `{` and the next `}`."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start)]


def test_a_skus_keys_share_a_hash_tag_and_the_namespace():
    stock, code = keys.stock_key("ns", "sku-1"), keys.anti_repeat_key("ns", "o-1", "sku-1")
    assert _hash_tag(stock) == _hash_tag(code) == "sku-1"
    for key in (stock, code, keys.throttle_key("ns", "sku-1")):
        assert fnmatch.fnmatchcase(key, keys.namespace_pattern("ns"))


def test_a_throttle_key_is_its_own_slot():
    assert _hash_tag(keys.throttle_key("ns", "sku-1")) == "throttle:sku-1"


def test_a_namespace_beside_is_not_cleared_with_the_labs():
    beside = keys.namespace_beside("ns", "throttle")
    assert not fnmatch.fnmatchcase(keys.throttle_key(beside, "x"), keys.namespace_pattern("ns"))


def test_no_module_but_keys_builds_a_key():
    """A key built from the namespace, or a hash tag, anywhere else in the package is a key
    string scattered in code: build it in keys.py."""
    built_here = re.compile(r"namespace\}[:-]|:\{\{")
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "keys.py" and path.parent == PACKAGE:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not built_here.search(line), f"{path.relative_to(PACKAGE)}:{number}: {line}"
