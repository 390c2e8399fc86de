"""Cloud providers used by `spotplan migrate`: one module per cloud behind the Protocol in `base`."""
