"""The conversational mind: strategy, prompts, memory, persona and the emotion -> expression mapping."""
