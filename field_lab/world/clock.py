"""The lab's two clocks: real seconds since the run began, and the meters' virtual clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class LabClock:
    """Real time drives links, handsets and the platform; meters run `scale` times faster."""

    loop: asyncio.AbstractEventLoop
    t0: float
    scale: float

    @classmethod
    def start(cls, scale: float) -> LabClock:
        loop = asyncio.get_running_loop()
        return cls(loop, loop.time(), scale)

    def real(self) -> float:
        """Seconds since the run began."""
        return self.loop.time() - self.t0

    def meter(self) -> float:
        """The meters' device clock: virtual seconds since the run began."""
        return self.real() * self.scale

    def real_seconds(self, virtual: float) -> float:
        """How long `virtual` device seconds take in real time."""
        return virtual / self.scale
