"""The ways into a session, one module each (``file``: a recorded file; ``microphone``: the local microphone).
Each turns its source into 20 ms frames (``core.audio.FRAME``) for ``Session.push_audio`` and plays, sends or
stores the session's events."""
