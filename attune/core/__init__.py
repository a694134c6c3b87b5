"""The ground floor: the vocabulary every other room of Attune stands on (audio format, frames and events, the
emotion taxonomy, prosody parameters, errors, the trace). It imports nothing from the rooms above it."""
