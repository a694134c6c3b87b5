"""End-of-turn models: does the speech so far sound like a finished turn (intonation and words)?"""
