"""Network conditions between client and server: LAN, WiFi and 4G profiles, applied two ways.

1. **Kernel shaping** (``method = "netem"``): the run creates its own network namespace joined to the host
   by a veth pair with link-local addresses (169.254.x.y/30, never routed anywhere), starts the server
   inside it, and puts a ``tc netem`` qdisc (delay, jitter, rate) on each end. Needs root, iproute2 and a
   kernel with ``sch_netem``; :func:`netem_status` probes all three and says which is missing.
2. **Application shaping** (``method = "app"``): the load client's transport delays each request and
   response by the one-way delay (plus seeded jitter) and meters its bytes through a token bucket per
   direction at the profile's bandwidth. Works everywhere and against any URL, but it models the link in
   the client: the server sees no slow socket, and TCP effects (slow start, loss recovery) are absent.

Every result records which method was used and, for ``app``, why netem was not.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from inferperf.errors import ConfigError


@dataclass(frozen=True)
class NetworkProfile:
    """One-way delay and jitter (ms), bandwidth per direction (Mbit/s), loss (%)."""

    name: str
    delay_ms: float
    jitter_ms: float
    down_mbit: float
    up_mbit: float
    loss_pct: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Typical conditions (round trip = 2 × delay): a switched gigabit LAN, a busy campus WiFi, and an LTE
#: link with median-like latency and bandwidth. They are reference points, not measurements of a network.
PROFILES: dict[str, NetworkProfile] = {
    "lan": NetworkProfile("lan", delay_ms=0.25, jitter_ms=0.05, down_mbit=1000.0, up_mbit=1000.0),
    "wifi": NetworkProfile("wifi", delay_ms=5.0, jitter_ms=2.0, down_mbit=50.0, up_mbit=20.0),
    "4g": NetworkProfile("4g", delay_ms=25.0, jitter_ms=8.0, down_mbit=20.0, up_mbit=8.0),
}


def get_profile(name: str) -> NetworkProfile:
    try:
        return PROFILES[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown network profile {name!r}; known: {', '.join(PROFILES)}") from None


# ------------------------------------------------------------------------------ application shaping


class TokenBucket:
    """Bytes through a link of ``rate_bps`` with a ``burst`` allowance; later sends queue behind earlier ones.

    Tokens (bytes) refill at the rate up to ``burst``; a send takes its bytes even when that drives the
    balance negative, and waits until the balance is back to zero — a FIFO queue at the link rate.
    """

    def __init__(self, rate_bps: float, burst_bytes: float = 16_384.0) -> None:
        if rate_bps <= 0:
            raise ConfigError("a link rate must be positive")
        self.rate = rate_bps / 8.0  # bytes per second
        self.burst = float(burst_bytes)
        self.tokens = float(burst_bytes)
        self.last_s: float | None = None

    def delay_for(self, nbytes: int, now_s: float) -> float:
        """Seconds the ``nbytes`` sent at ``now_s`` wait before they are through the link."""
        if self.last_s is not None:
            self.tokens = min(self.burst, self.tokens + (now_s - self.last_s) * self.rate)
        self.last_s = now_s
        self.tokens -= nbytes
        return max(0.0, -self.tokens / self.rate)


class AppShaper:
    """The client-side network model: ``await uplink(n)`` before a request, ``await downlink(n)`` after."""

    method = "app"

    def __init__(self, profile: NetworkProfile, seed: int = 0, now: Callable[[], float] = time.perf_counter) -> None:
        self.profile = profile
        self.up = TokenBucket(profile.up_mbit * 1e6)
        self.down = TokenBucket(profile.down_mbit * 1e6)
        self._rng = random.Random(seed)
        self._now = now
        self.shaped_s = 0.0

    def one_way_delay_s(self) -> float:
        jitter = self._rng.gauss(0.0, self.profile.jitter_ms) if self.profile.jitter_ms else 0.0
        return max(0.0, self.profile.delay_ms + jitter) / 1e3

    def plan(self, bucket: TokenBucket, nbytes: int) -> float:
        """Seconds a transfer of ``nbytes`` takes on this link now (queueing + serialisation + delay)."""
        return bucket.delay_for(nbytes, self._now()) + self.one_way_delay_s()

    async def uplink(self, nbytes: int) -> None:
        wait = self.plan(self.up, nbytes)
        self.shaped_s += wait
        await asyncio.sleep(wait)

    async def downlink(self, nbytes: int) -> None:
        wait = self.plan(self.down, nbytes)
        self.shaped_s += wait
        await asyncio.sleep(wait)


# ------------------------------------------------------------------------------ kernel shaping (netem)

Run = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=20, check=False)


def netem_status(run: Run = _run) -> tuple[bool, str]:
    """(usable, reason): whether this machine can shape with netem inside a namespace of our own."""
    if os.geteuid() != 0:
        return False, "netem shaping needs root (network namespaces and tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return False, f"`{tool}` (iproute2) is not installed"
    ns = f"ipfprobe{os.getpid() % 100000}"
    try:
        r = run(["ip", "netns", "add", ns])
        if r.returncode != 0:
            return False, f"cannot create a network namespace: {r.stderr.strip()}"
        r = run(["ip", "-n", ns, "link", "add", "pa", "type", "veth", "peer", "name", "pb"])
        if r.returncode != 0:
            return False, f"cannot create a veth pair: {r.stderr.strip()}"
        r = run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "pa", "root", "netem", "delay", "1ms"])
        if r.returncode != 0:
            return False, f"tc netem is unavailable: {r.stderr.strip() or 'unknown error'} (kernel without sch_netem)"
        return True, "netem available"
    finally:
        run(["ip", "netns", "del", ns])


def netem_args(profile: NetworkProfile, rate_mbit: float) -> list[str]:
    """``tc qdisc ... netem`` arguments for one direction of a profile."""
    args = ["netem", "delay", f"{profile.delay_ms}ms"]
    if profile.jitter_ms:
        args += [f"{profile.jitter_ms}ms", "distribution", "normal"]
    args += ["rate", f"{rate_mbit}mbit"]
    if profile.loss_pct:
        args += ["loss", f"{profile.loss_pct}%"]
    # a queue deep enough for a whole burst of requests at the profile's rate
    args += ["limit", "10000"]
    return args


class NetemLink:
    """A namespace + veth pair with netem on both ends; the server runs inside, the client outside.

    ``with NetemLink(profile) as link:`` then start the server with ``link.exec_prefix + [command]`` bound
    to ``link.server_ip`` and point the client at it. Everything is removed on exit (deleting the
    namespace deletes the veth pair).
    """

    method = "netem"

    def __init__(self, profile: NetworkProfile, run: Run = _run, index: int | None = None) -> None:
        self.profile = profile
        self._run = run
        k = (os.getpid() if index is None else index) % 250 + 1
        self.ns = f"ipf{os.getpid() % 100000}x{k}"
        self.host_if = f"ipfh{k}"
        self.ns_if = f"ipfn{k}"
        self.host_ip = f"169.254.{k}.1"
        self.server_ip = f"169.254.{k}.2"
        self.created = False

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def commands(self) -> list[list[str]]:
        p = self.profile
        return [
            ["ip", "netns", "add", self.ns],
            ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if],
            ["ip", "link", "set", self.ns_if, "netns", self.ns],
            ["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if],
            ["ip", "-n", self.ns, "addr", "add", f"{self.server_ip}/30", "dev", self.ns_if],
            ["ip", "link", "set", self.host_if, "up"],
            ["ip", "-n", self.ns, "link", "set", self.ns_if, "up"],
            ["ip", "-n", self.ns, "link", "set", "lo", "up"],
            # client → server leaves the host end: the uplink; server → client leaves the namespace end
            ["tc", "qdisc", "add", "dev", self.host_if, "root", *netem_args(p, p.up_mbit)],
            ["ip", "netns", "exec", self.ns, "tc", "qdisc", "add", "dev", self.ns_if, "root",
             *netem_args(p, p.down_mbit)],
        ]

    def __enter__(self) -> NetemLink:
        self.created = True
        for cmd in self.commands():
            r = self._run(cmd)
            if r.returncode != 0:
                self.close()
                raise ConfigError(f"netem setup failed at `{' '.join(cmd)}`: {r.stderr.strip()}")
        return self

    def close(self) -> None:
        if self.created:
            self._run(["ip", "netns", "del", self.ns])
            self._run(["ip", "link", "del", self.host_if])
            self.created = False

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {"profile": self.profile.name, "method": "netem", **self.profile.to_dict(), "namespace": self.ns,
                "server_ip": self.server_ip}
