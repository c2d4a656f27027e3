"""The scoring pipeline's parts: tokenization, the window rule, batching, the head, the encoder."""
