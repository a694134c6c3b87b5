"""Speech synthesis: Piper (embedded), espeak-ng (fallback), the CSM client and service, and the router."""
