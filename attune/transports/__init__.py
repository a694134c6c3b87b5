"""The ways into a session. Two exist today: a recorded file (``file``) and the local microphone (``microphone``);
a network or kiosk transport would be a third module here. Each turns its source into 20 ms frames
(``core.audio.FRAME``) for ``Session.push_audio`` and plays or stores the session's events."""
