"""IP address allocation for pods and Services (pure; no I/O).

An address is bound to a key (a pod's or Service's uid): asking again with the same key gives
the same address, and an address is never handed to another key while its key holds it. Free
addresses are taken round-robin from a cursor, so a just-released address is the last to be
reused (clients holding a stale endpoint do not reach a new pod by surprise).
"""

from __future__ import annotations

import ipaddress


class Exhausted(Exception):
    """No free address left in the network."""


class IPAllocator:
    def __init__(self, network: ipaddress.IPv4Network, *, reserved: int = 1) -> None:
        """Addresses from ``network``, skipping the network address and the first ``reserved``
        host addresses (kept for the node) and the broadcast address."""
        self.network = network
        self._first = int(network.network_address) + 1 + reserved
        self._last = int(network.broadcast_address) - 1
        if self._last < self._first:
            raise ValueError(f"network {network} is too small")
        self._cursor = self._first
        self._by_key: dict[str, int] = {}
        self._by_ip: dict[int, str] = {}

    @property
    def size(self) -> int:
        return self._last - self._first + 1

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: str) -> str | None:
        ip = self._by_key.get(key)
        return None if ip is None else str(ipaddress.IPv4Address(ip))

    def allocate(self, key: str) -> str:
        if key in self._by_key:
            return str(ipaddress.IPv4Address(self._by_key[key]))
        for _ in range(self.size):
            ip = self._cursor
            self._cursor = self._first if ip >= self._last else ip + 1
            if ip not in self._by_ip:
                self._by_key[key] = ip
                self._by_ip[ip] = key
                return str(ipaddress.IPv4Address(ip))
        raise Exhausted(f"no free address left in {self.network}")

    def reserve(self, key: str, address: str) -> bool:
        """Bind an address already in use (found on an existing object). False if it is outside
        the range or held by another key (the caller then allocates a fresh one)."""
        try:
            ip = int(ipaddress.IPv4Address(address))
        except ValueError:
            return False
        if not self._first <= ip <= self._last:
            return False
        holder = self._by_ip.get(ip)
        if holder is not None:
            return holder == key
        if key in self._by_key:
            self.release(key)
        self._by_key[key] = ip
        self._by_ip[ip] = key
        return True

    def release(self, key: str) -> None:
        ip = self._by_key.pop(key, None)
        if ip is not None:
            self._by_ip.pop(ip, None)
