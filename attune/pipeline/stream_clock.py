"""The session's clock: the input stream's time, and where the agent's audio sits on it.

``now`` advances with every input frame (the transport keeps sending frames, silence included, while the agent
speaks); reply audio is scheduled against it (``schedule_output``: at most ``lookahead_s`` ahead of the input), and
the clock remembers until when the agent is heard (``playhead``) so the emotion window never analyses the agent's
own voice or its echo (``echo_free_from``).
"""

from __future__ import annotations

import asyncio
import time


class StreamClock:
    """Stream time in seconds of input received. ``advance`` is the input stage's; the rest is read by the
    session's turn-taking and its replies."""

    def __init__(self) -> None:
        self.now = 0.0  # seconds of input received
        self.wall_at_now = time.perf_counter()  # perf_counter() when ``now`` was last advanced
        self.playhead = 0.0  # stream time until which reply audio has been scheduled
        self.echo_tail_s = 0.0  # set by a transport whose microphone hears its speaker
        self._audible_until = 0.0  # stream time until which agent audio played outside a reply is heard
        self._tick = asyncio.Condition()

    async def advance(self, seconds: float) -> None:
        """The input stage took ``seconds`` more input: wake the output waiting for its time."""
        self.now += seconds
        self.wall_at_now = time.perf_counter()
        async with self._tick:
            self._tick.notify_all()

    async def schedule_output(self, duration_s: float, lookahead_s: float) -> float:
        """Reserve the next ``duration_s`` of output; returns its stream start time once it is due to be sent
        (at most ``lookahead_s`` ahead of the input clock)."""
        start = max(self.playhead, self.now)
        async with self._tick:
            await self._tick.wait_for(lambda: self.now >= start - lookahead_s)
        start = max(self.playhead, start)
        self.playhead = start + duration_s
        return start

    def cut(self, at_s: float) -> None:
        """The reply was interrupted at stream time ``at_s``: nothing after it is heard."""
        self.playhead = min(self.playhead, at_s)

    @property
    def audible(self) -> bool:
        """Reply audio is still being heard at the current stream time."""
        return self.playhead > self.now + 1e-3

    @property
    def played_out(self) -> bool:
        """Every scheduled reply frame has been heard."""
        return self.playhead <= self.now

    def note_agent_audio(self, until_s: float) -> None:
        """Agent audio played outside a reply (a kiosk's greeting) is heard until stream time ``until_s``."""
        self._audible_until = max(self._audible_until, until_s)

    def echo_free_from(self) -> float:
        """The stream time from which the input holds no echo of the agent: the end of what it played (the
        reply's, cut short by an interruption, or the transport's own) plus ``echo_tail_s``."""
        return max(self._audible_until, min(self.playhead, self.now)) + self.echo_tail_s

    def wall_of(self, stream_s: float) -> float:
        """The ``perf_counter()`` time at which the input reached stream time ``stream_s`` (for turn traces)."""
        return self.wall_at_now - (self.now - stream_s)
