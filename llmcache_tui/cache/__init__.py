"""The cache contract: keys, per-request policy, stored entries and the backends."""
