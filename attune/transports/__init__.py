"""The ways into a session: a recorded file and the local microphone (WebSocket and kiosk join them here). Each
turns its source into 20 ms frames for ``Session.push_audio`` and plays or stores the session's events."""
