"""Two 'hosts' on this machine for the multi-host tests: two network namespaces joined by a
veth pair (10.200.0.1/24 and 10.200.0.2/24), loopback up in each. Needs root and iproute2;
the tests skip with the reason when namespaces cannot be made."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest


@dataclass
class Hosts:
    a: str  # namespace names
    b: str
    addr_a: str = "10.200.0.1"
    addr_b: str = "10.200.0.2"

    def pids(self) -> list[str]:
        """Processes running in either namespace."""
        out = []
        for ns in (self.a, self.b):
            out += subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30).stdout.split()
        return out


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@contextmanager
def two_hosts(tag: str) -> Iterator[Hosts]:
    """Make the namespaces (names from `tag`, at most 11 characters); on exit kill whatever
    still runs in them (only the tests start processes there) and delete them."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("two-host tests need root and iproute2 (ip netns) to make network namespaces")
    hosts = Hosts(f"{tag}a", f"{tag}b")
    try:
        _ip("netns", "add", hosts.a)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"network namespaces are not permitted here: {exc.stderr.strip()}")
    try:
        _ip("netns", "add", hosts.b)
        _ip("link", "add", f"{tag}va", "type", "veth", "peer", "name", f"{tag}vb")
        for ns, dev, addr in ((hosts.a, f"{tag}va", hosts.addr_a), (hosts.b, f"{tag}vb", hosts.addr_b)):
            _ip("link", "set", dev, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", dev, "up")
        yield hosts
    finally:
        for pid in hosts.pids():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        for ns in (hosts.a, hosts.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", f"{tag}va"], capture_output=True, timeout=30)  # if never moved
