"""Keys the SDK makes for writes whose caller chose none."""

from __future__ import annotations

import re
import time

from shakesco_async.guard._wrapper import check_idempotency_key, sdk_key


def test_sdk_keys_are_unique_valid_and_grow_with_time() -> None:
    keys = [sdk_key() for _ in range(20_000)]
    assert len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"sdk_[0-9a-f]{32}", k) and check_idempotency_key(k) == k for k in keys)
    time.sleep(0.002)
    later = sdk_key()
    assert later > max(keys)  # milliseconds first: new entries go to one end of the key index
