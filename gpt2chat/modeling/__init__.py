"""Tokens -> GPT-2 model -> training (recipes/, exact resume) -> preset run directory -> streaming generation with a KV cache, in Keras or its OpenVINO export."""
