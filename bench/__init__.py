"""``make bench``: throughput, latency and recovery of the saga, beside a raw-client ceiling."""
