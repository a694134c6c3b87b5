"""Language-model backends: llama-cpp-python in process (default), Ollama, and OpenAI-compatible servers."""
