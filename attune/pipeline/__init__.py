"""The streaming machinery: frames, audio utilities, turn detection, the emotion window, sessions and transports."""
