"""The Gradio UI, the HTTP API, user ratings and the Space deployment."""
