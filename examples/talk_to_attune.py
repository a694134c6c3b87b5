"""Talk to Attune from Python: stream a recording in as if spoken, print what Attune heard and what it answered.

    python examples/talk_to_attune.py you.wav

The same Session the microphone and the WebSocket server use: 20 ms frames in, events out (docs/API.md).
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np

from attune import FRAME, Attune, load_audio


async def main(path: str) -> None:
    audio = load_audio(path)
    agent = await Attune.load()  # loads and warms the embedded stack once (seconds)
    async with agent.session() as session:
        done = asyncio.Event()

        async def listen() -> None:
            while True:
                event = await session.events.get()
                if event.type == "conversation.item.input_audio_transcription.completed":
                    print("heard:  ", event.data["transcript"])
                elif event.type == "emotion.turn":
                    emotion = event.data["emotion"] or {}
                    print("emotion:", event.data["context"], f"(confidence {emotion.get('confidence', 0):.2f})")
                elif event.type == "response.output_audio_transcript.delta":
                    print("said:   ", event.data["delta"])
                elif event.type in ("response.done", "response.cancelled"):
                    done.set()

        listener = asyncio.create_task(listen())
        silence = np.zeros(FRAME, np.float32)
        for start in range(0, len(audio) - FRAME + 1, FRAME):
            await session.push_audio(audio[start:start + FRAME])
            await asyncio.sleep(0.02)  # real time, as a person speaks
        for _ in range(1500):  # then quiet, until the reply is done (30 s at most)
            if done.is_set():
                break
            await session.push_audio(silence)
            await asyncio.sleep(0.02)
        listener.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
